#!/usr/bin/env bash
# Remove what e2e sessions left behind (NETSHIFT_E2E_KEEP=1, or a session that was killed):
#
#   hack/e2e-cleanup.sh
#
# - Kubernetes: namespaces nse2e-* (routers, client) and the Helm releases netshift-e2e-* with their
#   namespaces (a release named by NETSHIFT_E2E_RELEASE is never touched);
# - the node (this machine, or through NETSHIFT_E2E_NODE_EXEC): network namespaces nse2e-* with the
#   processes in them, and links nse2e-*.
# Do not run it while an e2e session is running: it removes that session's things too.
set -euo pipefail
shopt -s inherit_errexit
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
say() { printf '[e2e-cleanup] %s\n' "$*" >&2; }

if [ -n "${NETSHIFT_TEST_KUBECONFIG:-}" ]; then
  export KUBECONFIG=$NETSHIFT_TEST_KUBECONFIG
  KUBECTL=kubectl HELM=helm
else
  mapfile -t bins < <("$ROOT/hack/cluster" bin)
  export KUBECONFIG
  KUBECONFIG=$("$ROOT/hack/cluster" kubeconfig)
  KUBECTL=${bins[0]}/kubectl HELM=${bins[2]}/helm
fi
read -r -a NODE_EXEC <<<"${NETSHIFT_E2E_NODE_EXEC:-}"
on_node() { "${NODE_EXEC[@]}" "$@"; }

if "$KUBECTL" version --request-timeout=5s >/dev/null 2>&1; then
  "$HELM" list -A --no-headers 2>/dev/null | awk '$1 ~ /^netshift-e2e-[0-9a-f]+$/ {print $1, $2}' \
    | while read -r release ns; do
        say "helm uninstall $release -n $ns"
        "$HELM" uninstall "$release" -n "$ns" --wait --timeout 120s >/dev/null || true
        "$KUBECTL" delete namespace "$ns" --wait=false --ignore-not-found >/dev/null || true
      done
  for ns in $("$KUBECTL" get namespaces -o name | sed -n 's|^namespace/\(nse2e-[0-9a-f]*\)$|\1|p'); do
    say "deleting namespace $ns"
    "$KUBECTL" delete namespace "$ns" --wait=true --timeout=180s >/dev/null || true
  done
else
  say "API server not reachable: skipping Kubernetes objects"
fi

for ns in $(on_node ip netns list | awk '$1 ~ /^nse2e-/ {print $1}'); do
  say "removing network namespace $ns"
  pids=$(on_node ip netns pids "$ns" || true)
  # shellcheck disable=SC2086  # one word per pid
  [ -z "$pids" ] || on_node kill -KILL $pids || true
  on_node ip netns del "$ns" || true
done
for link in $(on_node ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | grep '^nse2e-' || true); do
  say "removing link $link"
  on_node ip link del "$link" 2>/dev/null || true
done
say "done"
