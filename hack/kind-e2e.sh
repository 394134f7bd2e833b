#!/usr/bin/env bash
# The end-to-end tier on kind, for users with Docker (it cannot run on the project's own machines,
# which have no container engine; there `make test` runs the same tier on hack/cluster's node).
#
#   hack/kind-e2e.sh
#
# Creates a kind cluster, adds the CNI plugins EgressRouters need (macvlan, static, tuning) to its
# node, installs Multus (thin plugin, the release's own daemonset manifest), builds the image with
# `docker build`, loads it with `kind load docker-image`, installs charts/netshift with Helm and runs
# `make test-e2e` against the cluster. The cluster is deleted on exit, also on failure or Ctrl-C.
#
# Needs: docker, kind, kubectl, helm, curl, make, sha256sum.
# Environment:
#   KIND_CLUSTER_NAME     cluster name (default netshift-e2e)
#   KIND_NODE_IMAGE       node image (default: kind's own default)
#   KEEP_CLUSTER=1        keep the cluster afterwards (its kubeconfig is saved to
#                         ~/.cache/netshift/kind-<name>.kubeconfig)
#   MULTUS_VERSION        Multus release (default: MULTUS_VERSION of hack/versions.env)
#   CNI_PLUGINS_VERSION   containernetworking/plugins release for macvlan/static/tuning (default v1.6.2)
#   E2E_ARGS              extra arguments for pytest, passed as PYTEST_ARGS to make
set -euo pipefail
shopt -s inherit_errexit
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=versions.env
. "$ROOT/hack/versions.env"

CLUSTER=${KIND_CLUSTER_NAME:-netshift-e2e}
MULTUS_VERSION=${MULTUS_VERSION:-v4.2.2}
CNI_PLUGINS_VERSION=${CNI_PLUGINS_VERSION:-v1.6.2}
RELEASE=netshift
NAMESPACE=netshift-system
VERSION=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' operator/netshift/__init__.py)
IMAGE=localhost/netshift:$VERSION
MULTUS_MANIFEST=https://raw.githubusercontent.com/k8snetworkplumbingwg/multus-cni/$MULTUS_VERSION/deployments/multus-daemonset.yml
MULTUS_IMAGE=ghcr.io/k8snetworkplumbingwg/multus-cni:$MULTUS_VERSION

say() { printf '[kind-e2e] %s\n' "$*" >&2; }
die() { printf '[kind-e2e] ERROR: %s\n' "$*" >&2; exit 1; }

for tool in docker kind kubectl helm curl make sha256sum; do
  command -v "$tool" >/dev/null || die "$tool is required"
done
[ -n "$VERSION" ] || die "cannot read __version__ from operator/netshift/__init__.py"
docker info >/dev/null 2>&1 || die "docker is not running (or not reachable by this user)"

WORK=$(mktemp -d)
KUBECONFIG_FILE=$WORK/kubeconfig
created=0
cleanup() {
  local rc=$?
  if [ "$created" = 1 ]; then
    if [ "${KEEP_CLUSTER:-0}" = 1 ]; then
      local kept=${XDG_CACHE_HOME:-$HOME/.cache}/netshift/kind-$CLUSTER.kubeconfig
      mkdir -p "$(dirname "$kept")"
      cp "$KUBECONFIG_FILE" "$kept" 2>/dev/null || true
      say "kept cluster $CLUSTER; kubeconfig: $kept"
      say "delete it with: kind delete cluster --name $CLUSTER"
    else
      say "deleting cluster $CLUSTER"
      kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
    fi
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

kind get clusters 2>/dev/null | grep -qx "$CLUSTER" \
  && die "a kind cluster named $CLUSTER exists already (set KIND_CLUSTER_NAME or delete it)"

# -- cluster -------------------------------------------------------------------------------------
say "creating kind cluster $CLUSTER"
node_image=()
[ -n "${KIND_NODE_IMAGE:-}" ] && node_image=(--image "$KIND_NODE_IMAGE")
created=1
kind create cluster --name "$CLUSTER" "${node_image[@]}" --kubeconfig "$KUBECONFIG_FILE" --wait 180s
export KUBECONFIG=$KUBECONFIG_FILE
mapfile -t NODES < <(kind get nodes --name "$CLUSTER")
[ ${#NODES[@]} -gt 0 ] || die "kind reports no nodes for $CLUSTER"

# kind's nodes carry only the CNI plugins of its default network (ptp, host-local, portmap,
# loopback); EgressRouters need macvlan, static IPAM and tuning from the reference plugins.
case "$(docker info --format '{{.Architecture}}')" in
  x86_64|amd64) arch=amd64 ;;
  aarch64|arm64) arch=arm64 ;;
  *) die "unsupported architecture: $(docker info --format '{{.Architecture}}')" ;;
esac
tgz=cni-plugins-linux-$arch-$CNI_PLUGINS_VERSION.tgz
base=https://github.com/containernetworking/plugins/releases/download/$CNI_PLUGINS_VERSION
say "installing macvlan, static and tuning ($CNI_PLUGINS_VERSION) on the kind node(s)"
curl -fsSL -o "$WORK/$tgz" "$base/$tgz"
curl -fsSL -o "$WORK/$tgz.sha256" "$base/$tgz.sha256"
(cd "$WORK" && sha256sum -c "$tgz.sha256" >/dev/null) || die "checksum mismatch for $tgz"
mkdir -p "$WORK/cni"
tar -xzf "$WORK/$tgz" -C "$WORK/cni"
for node in "${NODES[@]}"; do
  for plugin in macvlan static tuning; do
    docker cp "$WORK/cni/$plugin" "$node:/opt/cni/bin/$plugin"
  done
done

# -- Multus (thin plugin) ------------------------------------------------------------------------
say "installing Multus $MULTUS_VERSION (thin plugin)"
curl -fsSL "$MULTUS_MANIFEST" \
  | sed "s|ghcr.io/k8snetworkplumbingwg/multus-cni:snapshot|$MULTUS_IMAGE|g" \
  | kubectl apply -f -
kubectl -n kube-system rollout status daemonset/kube-multus-ds --timeout=300s
kubectl wait --for=condition=Established --timeout=60s \
  crd/network-attachment-definitions.k8s.cni.cncf.io

# -- image -----------------------------------------------------------------------------------------
say "building $IMAGE"
docker build -t "$IMAGE" "$ROOT"
kind load docker-image "$IMAGE" --name "$CLUSTER"

# -- operator --------------------------------------------------------------------------------------
say "installing charts/netshift as $RELEASE in $NAMESPACE"
helm install "$RELEASE" "$ROOT/charts/netshift" --namespace "$NAMESPACE" --create-namespace \
  --set image.repository=localhost/netshift --set image.tag="$VERSION" \
  --wait --timeout 300s
kubectl -n "$NAMESPACE" rollout status "deployment/$RELEASE-operator" --timeout=120s

# -- e2e tier ------------------------------------------------------------------------------------
# The tier only needs a kubeconfig; the rest tells it what this script set up.
say "running make test-e2e"
NETSHIFT_TEST_KUBECONFIG=$KUBECONFIG_FILE \
NETSHIFT_E2E_IMAGE=$IMAGE \
NETSHIFT_E2E_RELEASE=$RELEASE \
NETSHIFT_E2E_NAMESPACE=$NAMESPACE \
NETSHIFT_E2E_NODE_EXEC="docker exec -i ${NODES[0]}" \
  make test-e2e ${E2E_ARGS:+PYTEST_ARGS="$E2E_ARGS"}
say "e2e passed on kind"
