#!/usr/bin/env bash
# `make run`: point at a cluster (the user's $KUBECONFIG, or the embedded local one), install the
# CRDs, and run the operator in the foreground. `--crds-only` stops after installing the CRDs.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

if [ -n "${KUBECONFIG:-}" ]; then
  echo "[run] using KUBECONFIG=$KUBECONFIG" >&2
  KUBECTL=$(command -v kubectl || true)
  if [ -z "$KUBECTL" ]; then eval "$(hack/cluster env)" >/dev/null; KUBECTL=$(command -v kubectl); fi
else
  hack/cluster up
  eval "$(hack/cluster env)"
  KUBECTL=$(command -v kubectl)
  echo "[run] local cluster; in another shell: eval \"\$(hack/cluster env)\" && kubectl get egressrouters,routes -A" >&2
fi

"$KUBECTL" apply --server-side --force-conflicts -f crds/
"$KUBECTL" wait --for=condition=Established --timeout=60s -f crds/
[ "${1:-}" = "--crds-only" ] && exit 0
exec .venv/bin/netshift operator --log-format "${NETSHIFT_LOG_FORMAT:-plain}" "$@"
