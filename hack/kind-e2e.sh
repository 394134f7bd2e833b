#!/usr/bin/env bash
# The end-to-end tier on a kind cluster of several nodes (docs/e2e.md).
#
#   hack/kind-e2e.sh [--offline] [--nodes N] [--keep] [--no-tests] [-- PYTEST_ARGS...]
#   hack/kind-e2e.sh --delete     remove a cluster kept by --keep (and its network namespace)
#
# Two ways to get the cluster:
#   online   (Docker or podman and the internet; the default when a Docker daemon answers and CI is
#            unset): kind's stock node image and kindnet, Multus's release daemonset manifest, the
#            reference CNI plugins' release for macvlan/static/tuning.
#   offline  (--offline, or no Docker daemon, or CI=true): everything built here and cached by version
#            (hack/lib/kind.sh): kind and the Kubernetes binaries from the Go module proxy, the node
#            image from Debian packages with the images kubeadm pulls preloaded, Multus's thin plugin
#            in the node image, a bridge CNI with one pod range per node and routes between nodes.
#            podman, netavark and kind run as root inside the network namespace netshift-kind-<name>
#            (no uplink: nothing leaves it, and the host's nftables and /etc/cni/net.d stay as they
#            are; under CI=true this is checked).
#
# Then, in both modes: the netshift image is loaded on every node, charts/netshift is installed
# with Helm (the operator on the control-plane node, so it never shares a node with its routers),
# an "external" network (a podman/docker network without a gateway, eth1 on the workers) is the
# EgressRouters' macvlan master, and the e2e tier (tests/e2e) runs against the cluster.
#
#   --nodes N      nodes in all: one control plane and N-1 workers (default 3)
#   --keep         keep the cluster (and its network namespace); prints how to use and delete it
#   --no-tests     only create the cluster (with --keep: a cluster to play with)
#
# Environment: KIND_CLUSTER_NAME (default netshift-e2e), KIND_NODE_IMAGE (online: node image),
# NETSHIFT_KIND_LOGS (where `kind export logs` writes on failure; default $TMPDIR/kind-logs-<name>).
set -euo pipefail
shopt -s inherit_errexit
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=lib/kind.sh
. "$ROOT/hack/lib/kind.sh"

CLUSTER=${KIND_CLUSTER_NAME:-netshift-e2e}
NODES=3 KEEP=0 TESTS=1 MODE=""
while [ $# -gt 0 ]; do
  case "$1" in
    --offline) MODE=offline ;;
    --nodes) NODES=$2; shift ;;
    --keep) KEEP=1 ;;
    --no-tests) TESTS=0 ;;
    --delete) MODE=delete ;;
    --) shift; break ;;
    -h|--help) sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[[ $NODES =~ ^[1-9][0-9]*$ ]] || { echo "--nodes needs a number >= 1" >&2; exit 2; }
PYTEST_EXTRA=("$@")

RELEASE=netshift
NAMESPACE=netshift-system
VERSION=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' operator/netshift/__init__.py)
IMAGE=localhost/netshift:$VERSION
NETNS=netshift-kind-$CLUSTER
EXTNET=$CLUSTER-ext
POD_SUBNET=10.244.0.0/16
EXT_SUBNET=10.250.77.0/24  # the external network's own addressing (its frames carry the tests' ranges)

say() { printf '[kind-e2e] %s\n' "$*" >&2; }
die() { printf '[kind-e2e] ERROR: %s\n' "$*" >&2; exit 1; }

if [ -z "$MODE" ]; then
  if [ "${CI:-}" != true ] && command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    MODE=online
  else
    MODE=offline
  fi
fi

# -- the host's state that must not change -----------------------------------------------------------
# hack/cluster's node changes the host's tables on its own while this runs: its kube-proxy rewrites
# the kube-proxy tables as Services come and go, and its kubelet re-creates its canary chains (which
# moves their table in the listing). Those are left out and the tables sorted; podman and kind write
# to none of them.
host_state() {
  nft -s list ruleset 2>&1 | python3 -c '
import re, sys
tables = re.split(r"(?m)^(?=table )", sys.stdin.read())
keep = [re.sub(r"(?m)^\tchain KUBE-[A-Z-]*CANARY \{\n\t\}\n", "", t) for t in tables
        if not re.match(r"table (ip|ip6) kube-proxy ", t)]
print("".join(sorted(keep)))'
  sysctl net.ipv4.ip_forward net.ipv6.conf.all.forwarding 2>&1
  find /etc/cni/net.d -xdev -exec stat -c '%n %a %s' {} + 2>&1 | sort
  find /etc/cni/net.d -xdev -type f -exec sha256sum {} + 2>&1 | sort
}

if [ "$MODE" != online ] && [ "$(id -u)" != 0 ]; then
  # rootless podman refuses cgroup v1, and the network namespace needs root
  [ "${CI:-}" = true ] && die "offline mode needs root (CI=true: not skipped)"
  say "SKIPPED: offline mode needs root (run as root, or with Docker and the internet)"
  exit 0
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/kind-e2e-XXXXXX")
STATE_FILE=$NETSHIFT_CACHE/kind-$CLUSTER.state  # what --delete needs to know about a kept cluster
KUBECONFIG_FILE=$WORK/kubeconfig
STATE_BEFORE=$WORK/host-state.before
created=0 made_modules=0 made_netns=0 failed=1

# Commands of the cluster: in offline mode inside the network namespace with podman as kind's provider.
in_ns() {
  if [ "$MODE" = offline ]; then nsenter --net="/run/netns/$NETNS" "$@"; else "$@"; fi
}
engine() { if [ "$MODE" = offline ]; then in_ns podman "$@"; else docker "$@"; fi; }
podman_() { engine "$@"; }
kind_() { in_ns "$KIND_BIN/kind" "$@"; }
kubectl_() { in_ns "$K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG_FILE" "$@"; }
on_node() { local n=$1; shift; engine exec -i "$n" "$@"; }

cleanup() {
  local rc=$?
  trap - EXIT
  trap '' INT TERM  # a second Ctrl-C must not cut the clean-up short (its commands ignore it too)
  set +e
  if [ "$created" = 1 ] && [ "$failed" = 1 ]; then
    local logs=${NETSHIFT_KIND_LOGS:-${TMPDIR:-/tmp}/kind-logs-$CLUSTER}
    say "failed: kind export logs -> $logs"
    kind_ export logs "$logs" --name "$CLUSTER" >/dev/null 2>&1 && say "logs in $logs"
  fi
  if [ "$KEEP" = 1 ] && [ "$created" = 1 ]; then
    local kept=$NETSHIFT_CACHE/kind-$CLUSTER.kubeconfig
    cp "$KUBECONFIG_FILE" "$kept"
    say "kept cluster $CLUSTER; kubeconfig: $kept"
    [ "$MODE" = offline ] && say "use it inside its namespace: ip netns exec $NETNS kubectl --kubeconfig $kept get nodes"
    printf 'MODE=%s made_modules=%s\n' "$MODE" "$made_modules" > "$STATE_FILE"
    say "delete it with: KIND_CLUSTER_NAME=$CLUSTER hack/kind-e2e.sh --delete"
  else
    teardown
  fi
  if [ "$MODE" = offline ] && [ "$KEEP" = 0 ] && [ -s "$STATE_BEFORE" ]; then
    if host_state | cmp -s - "$STATE_BEFORE"; then
      say "host nftables ruleset and /etc/cni/net.d unchanged"
    elif [ "${CI:-}" = true ]; then
      say "ERROR: the host's nftables ruleset or /etc/cni/net.d changed during the run:"
      host_state | diff "$STATE_BEFORE" - | head -40 >&2
      [ "$rc" = 0 ] && rc=1
    else
      say "WARNING: the host's nftables ruleset or /etc/cni/net.d changed (other users of the machine?)"
    fi
  fi
  rm -rf "$WORK"
  exit "$rc"
}

teardown() {
  if [ "$created" = 1 ] || [ "$MODE" = offline ]; then
    say "deleting cluster $CLUSTER"
    kind_ delete cluster --name "$CLUSTER" >/dev/null 2>&1
    engine network rm -f "$EXTNET" >/dev/null 2>&1
  fi
  if [ "$MODE" = offline ]; then
    engine network rm -f kind >/dev/null 2>&1
    if [ "$made_netns" = 1 ] || [ -e "/run/netns/$NETNS" ]; then
      local pids
      pids=$(ip netns pids "$NETNS" 2>/dev/null | tr '\n' ' ')
      # shellcheck disable=SC2086  # what is left in our namespace (aardvark-dns, conmon): ours
      [ -n "$pids" ] && kill $pids 2>/dev/null
      ip netns del "$NETNS" 2>/dev/null
    fi
    [ "$made_modules" = 1 ] && rmdir /lib/modules 2>/dev/null
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# -- offline: tools, node image, namespace -------------------------------------------------------------
prepare_offline() {
  "$ROOT/hack/deps.sh" kind
  KIND_BIN=$(build_kind)
  K8S_BIN=$(build_kubernetes)
  HELM_BIN=$(build_helm)
  MULTUS_BIN=$(build_multus)
  export CONTAINERS_CONF=$KIND_CACHE/containers.conf KIND_EXPERIMENTAL_PROVIDER=podman
  mkdir -p "$KIND_CACHE/networks"
  # root here lacks CAP_SYS_RESOURCE: limits at or below the hard ones; no systemd as PID 1;
  # network definitions kept out of /etc/containers
  cat > "$CONTAINERS_CONF" <<EOT
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
log_driver = "k8s-file"
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
[network]
network_backend = "netavark"
network_config_dir = "$KIND_CACHE/networks"
EOT
  host_state > "$STATE_BEFORE"
  if [ ! -e "/run/netns/$NETNS" ]; then
    ip netns add "$NETNS"
    made_netns=1
  fi
  ip -n "$NETNS" link set lo up
  [ -d /lib/modules ] || { mkdir /lib/modules; made_modules=1; }  # kind bind-mounts it
  NODE_IMAGE=$(node_image)
  say "node image $NODE_IMAGE"
  ARCHIVE=$(NETSHIFT_CONTAINERD_SOCKET=none "$ROOT/hack/build-image.sh" >/dev/null && echo "$NETSHIFT_CACHE/images/netshift-$VERSION.tar")
}

prepare_online() {
  local t
  for t in kind kubectl helm curl sha256sum; do command -v "$t" >/dev/null || die "$t is required"; done
  KIND_BIN=$(dirname "$(command -v kind)") K8S_BIN=$(dirname "$(command -v kubectl)")
  HELM_BIN=$(dirname "$(command -v helm)")
  command -v docker >/dev/null || export KIND_EXPERIMENTAL_PROVIDER=podman
  NODE_IMAGE=${KIND_NODE_IMAGE:-}
  say "building $IMAGE (docker build)"
  engine build -t "$IMAGE" "$ROOT"
  ARCHIVE=$WORK/netshift.tar
  engine save -o "$ARCHIVE" "$IMAGE"
}

kind_config() {
  local i
  cat <<EOT
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
networking:
  podSubnet: $POD_SUBNET
EOT
  [ "$MODE" = offline ] && cat <<'EOT'
  disableDefaultCNI: true
kubeadmConfigPatches:
  - |
    kind: KubeletConfiguration
    failCgroupV1: false
EOT
  echo "nodes:"
  echo "  - role: control-plane"
  for ((i = 1; i < NODES; i++)); do echo "  - role: worker"; done
}

# -- offline: pod network, Multus ------------------------------------------------------------------------
# Each node: the bridge CNI on its own pod range (spec.podCIDR), behind Multus's thin plugin, and a
# route to every other node's range via that node's address on kind's network.
pod_network_offline() {
  local n cidr server ca token
  declare -A CIDR IP
  for n in "${NODE_NAMES[@]}"; do
    for _ in $(seq 60); do
      cidr=$(kubectl_ get node "$n" -o jsonpath='{.spec.podCIDR}')
      [ -n "$cidr" ] && break
      sleep 1
    done
    [ -n "$cidr" ] || die "node $n has no podCIDR"
    CIDR[$n]=$cidr
    IP[$n]=$(kubectl_ get node "$n" -o jsonpath='{.status.addresses[?(@.type=="InternalIP")].address}')
  done
  kubectl_ apply --server-side -f hack/manifests/nad-crd.yaml -f hack/manifests/multus-rbac.yaml >/dev/null
  kubectl_ apply -f - >/dev/null <<'EOT'
apiVersion: v1
kind: ServiceAccount
metadata: {name: netshift-multus, namespace: kube-system}
---
apiVersion: v1
kind: Secret
type: kubernetes.io/service-account-token
metadata:
  name: netshift-multus
  namespace: kube-system
  annotations: {kubernetes.io/service-account.name: netshift-multus}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: netshift:multus:kind}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: netshift:multus}
subjects: [{kind: ServiceAccount, name: netshift-multus, namespace: kube-system}]
EOT
  for _ in $(seq 30); do
    token=$(kubectl_ -n kube-system get secret netshift-multus -o jsonpath='{.data.token}' | base64 -d)
    [ -n "$token" ] && break
    sleep 1
  done
  [ -n "$token" ] || die "no token for the Multus service account"
  server=$(kind_ get kubeconfig --internal --name "$CLUSTER" | sed -n 's/^ *server: //p' | head -1)
  ca=$(kind_ get kubeconfig --internal --name "$CLUSTER" | sed -n 's/^ *certificate-authority-data: //p' | head -1)
  for n in "${NODE_NAMES[@]}"; do
    on_node "$n" sh -c 'mkdir -p /etc/cni/net.d/multus.d && cat > /etc/cni/net.d/multus.d/multus.kubeconfig' <<EOT
apiVersion: v1
kind: Config
clusters: [{name: kind, cluster: {server: "$server", certificate-authority-data: "$ca"}}]
users: [{name: multus, user: {token: "$token"}}]
contexts: [{name: multus, context: {cluster: kind, user: multus}}]
current-context: multus
EOT
    # containerd 1.6 reloads on rename in its conf_dir, not on create
    on_node "$n" sh -c 'cat > /etc/cni/net.d/.00-multus.conf && mv /etc/cni/net.d/.00-multus.conf /etc/cni/net.d/00-multus.conf' <<EOT
{
  "cniVersion": "1.0.0",
  "name": "netshift-multus",
  "type": "multus",
  "kubeconfig": "/etc/cni/net.d/multus.d/multus.kubeconfig",
  "binDir": "/opt/cni/bin",
  "confDir": "/etc/cni/net.d/multus.d",
  "delegates": [{
    "cniVersion": "1.0.0",
    "name": "kind-pods",
    "plugins": [
      {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
       "ipam": {"type": "host-local", "ranges": [[{"subnet": "${CIDR[$n]}"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
      {"type": "portmap", "capabilities": {"portMappings": true}}
    ]
  }]
}
EOT
    on_node "$n" sysctl -qw net.ipv4.ip_forward=1
    local m
    for m in "${NODE_NAMES[@]}"; do
      [ "$m" = "$n" ] || on_node "$n" ip route replace "${CIDR[$m]}" via "${IP[$m]}"
    done
    say "node $n: pods ${CIDR[$n]}, address ${IP[$n]}"
  done
}

multus_online() {
  local v=$MULTUS_VERSION arch tgz base cni_v=v1.6.2
  say "installing Multus $v (release manifest) and macvlan/static/tuning $cni_v"
  curl -fsSL "https://raw.githubusercontent.com/k8snetworkplumbingwg/multus-cni/$v/deployments/multus-daemonset.yml" \
    | sed "s|ghcr.io/k8snetworkplumbingwg/multus-cni:snapshot|ghcr.io/k8snetworkplumbingwg/multus-cni:$v|g" \
    | kubectl_ apply -f - >/dev/null
  case "$(uname -m)" in x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; *) die "unsupported architecture" ;; esac
  tgz=cni-plugins-linux-$arch-$cni_v.tgz
  base=https://github.com/containernetworking/plugins/releases/download/$cni_v
  curl -fsSL -o "$WORK/$tgz" "$base/$tgz"
  curl -fsSL -o "$WORK/$tgz.sha256" "$base/$tgz.sha256"
  (cd "$WORK" && sha256sum -c "$tgz.sha256" >/dev/null) || die "checksum mismatch for $tgz"
  mkdir -p "$WORK/cni" && tar -xzf "$WORK/$tgz" -C "$WORK/cni"
  local n p
  for n in "${NODE_NAMES[@]}"; do
    for p in macvlan static tuning; do engine cp "$WORK/cni/$p" "$n:/opt/cni/bin/$p"; done
  done
  kubectl_ -n kube-system rollout status daemonset/kube-multus-ds --timeout=300s
}

if [ "$MODE" = delete ]; then
  [ -s "$STATE_FILE" ] || die "no kept cluster $CLUSTER ($STATE_FILE)"
  # shellcheck source=/dev/null
  . "$STATE_FILE"
  if [ "$MODE" = offline ]; then
    KIND_BIN=$(build_kind)
    export CONTAINERS_CONF=$KIND_CACHE/containers.conf KIND_EXPERIMENTAL_PROVIDER=podman
  else
    KIND_BIN=$(dirname "$(command -v kind)")
  fi
  created=1 failed=0
  rm -f "$STATE_FILE" "$NETSHIFT_CACHE/kind-$CLUSTER.kubeconfig"
  exit 0
fi

# -- the cluster ------------------------------------------------------------------------------------------
t_start=$SECONDS
say "mode $MODE, $NODES node(s), cluster $CLUSTER"
if [ "$MODE" = offline ]; then prepare_offline; else prepare_online; fi
t_built=$SECONDS
kind_ get clusters 2>/dev/null | grep -qx "$CLUSTER" \
  && die "a kind cluster named $CLUSTER exists already (delete it: kind delete cluster --name $CLUSTER)"
kind_config > "$WORK/kind.yaml"
created=1
image_args=()
[ -n "$NODE_IMAGE" ] && image_args=(--image "$NODE_IMAGE")
say "kind create cluster"
kind_ create cluster --name "$CLUSTER" "${image_args[@]}" --config "$WORK/kind.yaml" \
  --kubeconfig "$KUBECONFIG_FILE" --retain
mapfile -t NODE_NAMES < <(kind_ get nodes --name "$CLUSTER" | sort)
[ "${#NODE_NAMES[@]}" = "$NODES" ] || die "kind reports ${#NODE_NAMES[@]} nodes, not $NODES"
WORKERS=()
for n in "${NODE_NAMES[@]}"; do [[ $n == *-control-plane ]] || WORKERS+=("$n"); done
[ "${#WORKERS[@]}" -gt 0 ] || WORKERS=("${NODE_NAMES[0]}")

if [ "$MODE" = offline ]; then pod_network_offline; fi
kubectl_ wait --for=condition=Ready node --all --timeout=180s >/dev/null
kubectl_ -n kube-system rollout status daemonset/kube-proxy --timeout=180s >/dev/null
kubectl_ -n kube-system rollout status deployment/coredns --timeout=180s >/dev/null
if [ "$MODE" = online ]; then multus_online; fi
kubectl_ wait --for=condition=Established --timeout=60s crd/network-attachment-definitions.k8s.cni.cncf.io >/dev/null

# The external network: eth1 on every worker, a bridge without a gateway or NAT on the engine's side.
engine network create --internal --subnet "$EXT_SUBNET" "$EXTNET" >/dev/null
for n in "${WORKERS[@]}"; do engine network connect "$EXTNET" "$n"; done
if [ "$MODE" = offline ]; then
  LAN_BRIDGE=$(engine network inspect "$EXTNET" --format '{{.NetworkInterface}}')
else
  LAN_BRIDGE=br-$(docker network inspect "$EXTNET" --format '{{.Id}}' | cut -c1-12)
fi

say "loading $IMAGE on every node"
kind_ load image-archive "$ARCHIVE" --name "$CLUSTER" >/dev/null
say "helm install charts/netshift as $RELEASE in $NAMESPACE (operator on ${NODE_NAMES[0]})"
in_ns "$HELM_BIN/helm" --kubeconfig "$KUBECONFIG_FILE" install "$RELEASE" charts/netshift \
  --namespace "$NAMESPACE" --create-namespace \
  --set image.repository="${IMAGE%:*}" --set image.tag="$VERSION" --set operator.logFormat=plain \
  --set-string 'nodeSelector.node-role\.kubernetes\.io/control-plane=' \
  --set 'tolerations[0].key=node-role.kubernetes.io/control-plane' --set 'tolerations[0].effect=NoSchedule' \
  --wait --timeout 300s >/dev/null
t_ready=$SECONDS
say "cluster ready in $((t_ready - t_built))s (tools and images $((t_built - t_start))s); nodes:"
kubectl_ get nodes -o wide >&2

if [ "$TESTS" = 1 ]; then
  say "running the e2e tier on ${NODE_NAMES[*]}"
  rc=0
  PATH=$K8S_BIN:$HELM_BIN:$PATH \
  NETSHIFT_TEST_KUBECONFIG=$KUBECONFIG_FILE \
  NETSHIFT_E2E_IMAGE=$IMAGE NETSHIFT_E2E_RELEASE=$RELEASE NETSHIFT_E2E_NAMESPACE=$NAMESPACE \
  NETSHIFT_E2E_NODE_EXEC="$( [ "$MODE" = offline ] && echo "nsenter --net=/run/netns/$NETNS" )" \
  NETSHIFT_E2E_LAN_BRIDGE=$LAN_BRIDGE NETSHIFT_E2E_MASTER=eth1 NETSHIFT_E2E_MULTINODE=1 \
    in_ns "$ROOT/.venv/bin/python" -m pytest tests/e2e -m e2e "${PYTEST_EXTRA[@]}" 2>&1 \
    | tee "$WORK/pytest.log" || rc=$?
  say "e2e tier on kind (nodes ${NODE_NAMES[*]}): $(grep -E '^=+ .*(passed|failed|error|skipped).* =+$' "$WORK/pytest.log" | tail -1 | tr -d '=' | xargs) in $((SECONDS - t_ready))s; total $((SECONDS - t_start))s"
  [ "$rc" = 0 ] || die "the e2e tier failed on kind"
fi
failed=0
