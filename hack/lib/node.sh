#!/usr/bin/env bash
# The node of the local cluster: containerd + runc (Debian), CNI plugins (Debian) behind the Multus thin
# plugin, kubelet and kube-proxy (built by hack/lib/build.sh). Sourced by hack/cluster, which provides
# STATE, PKI, LOGS, RUN, K8S_BIN, say, die, start, alive, pid_of, sign, advertise_address, curl_api.
#
# Everything the node creates is named so that `down` can find it again, also after a crash:
#   processes   command lines contain $STATE/ (containerd, shims, kubelet, kube-proxy); pod processes
#               live in the cgroup $NODE_CGROUP (kubelet's cgroupRoot) in every hierarchy
#   files       $STATE/{containerd,kubelet,cni,node}, pod logs in $STATE/pod-logs, kubelet's fixed
#               /var/lib/kubelet/device-plugins (when it was not there before), the legacy
#               /var/log/containers symlinks kubelet makes into it, the CNI result cache entries of our
#               sandboxes in /var/lib/cni/results and our shims' sockets in /run/containerd/s
#   mounts      under $STATE (rootfs overlays, shm, volumes) and the pods' /var/run/netns/cni-*
#   network     bridge $POD_BRIDGE and its veths, nftables table inet $NFT_TABLE, kube-proxy's tables,
#               sysctls set by us, kubelet and kube-proxy (saved before, restored by down)
# The cluster DNS (CoreDNS, hack/manifests/coredns.yaml) is API objects and pods: down needs nothing more.
# shellcheck disable=SC2154  # the variables above are set by hack/cluster

NODE_NAME=${NETSHIFT_NODE_NAME:-netshift-node}
CLUSTER_CIDR=${NETSHIFT_CLUSTER_CIDR:-10.244.0.0/16}
# The node's own range is the Node's spec.podCIDR, handed out by the controller manager from
# CLUSTER_CIDR; the bridge network's host-local IPAM is written from it once the node registered.
POD_BRIDGE=nsbr0
# kubeadm's choice: the tenth address of the Service range (10.96.0.10)
CLUSTER_DNS=${SERVICE_CIDR%.0/*}.10
NFT_TABLE=netshift-node
GUARD_TABLE=netshift-uplink-guard
NODE_CGROUP=netshift
NODE_COMPONENTS=(containerd kubelet kube-proxy)
CTRD=$STATE/containerd
CTRD_SOCK=$CTRD/containerd.sock
KUBELET_DIR=$STATE/kubelet
POD_LOGS=$STATE/pod-logs
CNI=$STATE/cni
NODE_CONF=$STATE/node
CNI_PLUGIN_DIR=${NETSHIFT_CNI_PLUGIN_DIR:-/usr/lib/cni}
# Host settings the node needs, or that kubelet and kube-proxy change; saved once, restored by down.
NODE_SYSCTLS=(net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables vm.overcommit_memory vm.panic_on_oom
  kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes
  net.netfilter.nf_conntrack_max net.ipv4.conf.all.route_localnet)

# shellcheck source=images.sh
. "$HACK_DIR/lib/images.sh"

ctr_() { ctr --address "$CTRD_SOCK" --namespace k8s.io "$@"; }
kubectl_() { "$K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG_PATH" "$@"; }

uplink() { ip -4 route get 1.1.1.1 2>/dev/null | sed -n 's/.* dev \([^ ]*\).*/\1/p' | head -1; }

node_bins() {
  "$HACK_DIR/deps.sh" node || die "could not install the node's Debian packages (hack/deps.sh node)"
  command -v containerd >/dev/null && command -v runc >/dev/null && [ -x "$CNI_PLUGIN_DIR/bridge" ] \
    || die "the node needs containerd, runc and the CNI plugins in $CNI_PLUGIN_DIR"
  MULTUS_BIN=$(build_multus)
}

# ---------------------------------------------------------------------------------------------- PKI

gen_node_pki() {
  [ -f "$PKI/multus.crt" ] && return
  say "generating node certificates in $PKI"
  (
    cd "$PKI" || exit 1
    umask 077
    printf 'extendedKeyUsage=clientAuth\n' > client.ext
    printf 'subjectAltName=DNS:%s,IP:%s,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' \
      "$NODE_NAME" "$(advertise_address)" > kubelet-serving.ext
    sign kubelet "/O=system:nodes/CN=system:node:$NODE_NAME" client.ext
    sign kubelet-serving "/CN=$NODE_NAME" kubelet-serving.ext
    sign kube-proxy "/CN=system:kube-proxy" client.ext
    sign multus "/CN=netshift:multus" client.ext
  )
}

# ------------------------------------------------------------------------------------------ configs

# The pod network (Multus delegating eth0 to the bridge) for range $1; containerd picks it up when the
# file appears and then reports the network ready, which makes the node Ready.
write_cni_conf() {
  # containerd 1.6 reloads on write/rename/remove in conf_dir but ignores create: rename inside it
  local cidr=$1 tmp="$CNI/net.d/.00-multus.conf.tmp"
  cat > "$tmp" <<EOT
{
  "cniVersion": "1.0.0",
  "name": "netshift-multus",
  "type": "multus",
  "kubeconfig": "$CNI/multus.kubeconfig",
  "binDir": "$CNI/bin",
  "cniDir": "$CNI/multus",
  "confDir": "$CNI/multus.d",
  "logFile": "$LOGS/multus.log",
  "logLevel": "verbose",
  "delegates": [
    {
      "cniVersion": "1.0.0",
      "name": "netshift-pods",
      "plugins": [
        {
          "type": "bridge",
          "bridge": "$POD_BRIDGE",
          "isGateway": true,
          "ipMasq": false,
          "hairpinMode": true,
          "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": "$cidr"}]],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dataDir": "$CNI/networks"
          }
        },
        {"type": "portmap", "capabilities": {"portMappings": true}}
      ]
    }
  ]
}
EOT
  mv "$tmp" "$CNI/net.d/00-multus.conf"
  echo "$cidr" > "$RUN/pod-cidr"
}

# The Node's spec.podCIDR once the controller manager assigned it (or the first /24 of CLUSTER_CIDR when
# it does not allocate ranges).
node_pod_cidr() {
  local i cidr
  for ((i = 0; i < 150; i++)); do
    cidr=$(kubectl_ get node "$NODE_NAME" -o jsonpath='{.spec.podCIDR}' 2>/dev/null || true)
    [ -n "$cidr" ] && { echo "$cidr"; return; }
    alive kubelet || return 0
    sleep 0.2
  done
  cidr="${CLUSTER_CIDR%.*/*}.0/24"
  say "warning: the controller manager assigned no podCIDR to $NODE_NAME; using $cidr"
  echo "$cidr"
}

write_node_configs() {
  local node_ip=$1
  mkdir -p "$CTRD" "$KUBELET_DIR" "$POD_LOGS" "$CNI/bin" "$CNI/net.d" "$CNI/multus" "$CNI/networks" "$NODE_CONF"
  write_kubeconfig "$NODE_CONF/kubelet.kubeconfig" kubelet
  write_kubeconfig "$NODE_CONF/kube-proxy.kubeconfig" kube-proxy
  write_kubeconfig "$CNI/multus.kubeconfig" multus

  # CNI: Debian's plugins and our multus in one directory; Multus is the only network containerd sees
  # and delegates every pod's eth0 to the bridge network, extra interfaces to NetworkAttachmentDefinitions.
  # The network config itself comes with the node's podCIDR (write_cni_conf).
  local p
  for p in "$CNI_PLUGIN_DIR"/*; do ln -sfn "$p" "$CNI/bin/"; done
  ln -sfn "$MULTUS_BIN/multus" "$CNI/bin/multus"
  rm -f "$CNI/net.d/00-multus.conf"

  cat > "$CTRD/config.toml" <<EOT
# containerd for the netshift node: own root, state, socket and runc root, so that it never meets a
# system containerd. Written by hack/cluster.
version = 2
root = "$CTRD/root"
state = "$CTRD/state"
oom_score = 0

[grpc]
  address = "$CTRD_SOCK"

[ttrpc]
  address = ""

[debug]
  address = ""
  level = "warn"

[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "$CTRD/opt"
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "$PAUSE_IMAGE"
    disable_apparmor = true
    enable_selinux = false
    # root here lacks CAP_SYS_RESOURCE: a pod's oom_score_adj may not go below containerd's own
    restrict_oom_score_adj = true
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    max_container_log_line_size = 16384
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      discard_unpacked_layers = false
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          SystemdCgroup = false
          BinaryName = "${NETSHIFT_RUNC:-$(command -v runc)}"
          Root = "$CTRD/runc"
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "$CNI/bin"
      conf_dir = "$CNI/net.d"
      max_conf_num = 1
EOT

  # The node's own resolver, for pods of dnsPolicy Default (CoreDNS itself): nothing outside the
  # machine (a closed local port answers at once, no timeouts). ClusterFirst pods get $CLUSTER_DNS.
  printf '# netshift local cluster: no upstream DNS\nnameserver 127.0.0.1\noptions ndots:1 timeout:1 attempts:1\n' \
    > "$NODE_CONF/resolv.conf"
  write_kubelet_config "$node_ip"

  cat > "$NODE_CONF/kube-proxy.yaml" <<EOT
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
clusterCIDR: $CLUSTER_CIDR
hostnameOverride: $NODE_NAME
bindAddress: 0.0.0.0
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
clientConnection:
  kubeconfig: $NODE_CONF/kube-proxy.kubeconfig
# leave the host's conntrack sysctls alone
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
EOT
}

write_kubelet_config() { # node-ip
  cat > "$NODE_CONF/kubelet.yaml" <<EOT
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# cgroup v1 without systemd
cgroupDriver: cgroupfs
failCgroupV1: false
cgroupRoot: /$NODE_CGROUP
cgroupsPerQOS: true
containerRuntimeEndpoint: unix://$CTRD_SOCK
address: $node_ip
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
rotateCertificates: false
serverTLSBootstrap: false
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization:
  mode: Webhook
clusterDomain: cluster.local
clusterDNS: [$CLUSTER_DNS]
resolvConf: $NODE_CONF/resolv.conf
podLogsDir: $POD_LOGS
serializeImagePulls: false
maxPods: 110
failSwapOn: false
# images are imported, never pulled: never garbage-collect them; never evict on a full-ish disk
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 50Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
  imagefs.available: 1%
  imagefs.inodesFree: 1%
protectKernelDefaults: false
registerNode: true
nodeStatusUpdateFrequency: 10s
syncFrequency: 10s
fileCheckFrequency: 20s
volumeStatsAggPeriod: 1m
shutdownGracePeriod: 0s
logging:
  format: text
EOT
}

# ----------------------------------------------------------------------------------- host network

save_sysctls() {
  [ -f "$RUN/sysctls.saved" ] && return
  local s v
  for s in "${NODE_SYSCTLS[@]}"; do
    if v=$(sysctl -n "$s" 2>/dev/null); then printf '%s=%s\n' "$s" "$v"; fi
  done > "$RUN/sysctls.saved.tmp"
  mv "$RUN/sysctls.saved.tmp" "$RUN/sysctls.saved"
}

restore_sysctls() {
  [ -f "$RUN/sysctls.saved" ] || return 0
  local line
  while IFS= read -r line; do
    [ "$(sysctl -n "${line%%=*}" 2>/dev/null)" = "${line#*=}" ] || sysctl -qw "$line" >/dev/null 2>&1 || true
  done < "$RUN/sysctls.saved"
  rm -f "$RUN/sysctls.saved"
}

# The bridge exists before any pod so that our table can name it; pods never leave through the uplink.
setup_host_network() {
  local up rule=""; up=$(uplink)
  [ -z "$up" ] || rule="ip saddr $CLUSTER_CIDR oifname \"$up\" counter drop comment \"pods never send traffic out of the uplink\""
  save_sysctls
  sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1 >/dev/null
  nft list tables > "$RUN/nft-tables.before" 2>/dev/null || true
  nft -f - <<EOT
table inet $NFT_TABLE
delete table inet $NFT_TABLE
table inet $NFT_TABLE {
  chain forward {
    type filter hook forward priority filter - 10; policy accept;
    $rule
  }
}
EOT
  guard_uplink "$up"
}

# A macvlan whose master is the uplink (an EgressRouter without macvlan.master makes the plugin pick
# the default-route interface) transmits through the uplink's egress hook with its own MAC address:
# drop every frame that does not carry the uplink's own MAC, so no test router ever reaches the outside.
guard_uplink() {
  local up=$1 mac
  [ -n "$up" ] && mac=$(cat "/sys/class/net/$up/address" 2>/dev/null) || return 0
  nft -f - <<EOT
table netdev $GUARD_TABLE
delete table netdev $GUARD_TABLE
table netdev $GUARD_TABLE {
  chain egress {
    type filter hook egress device "$up" priority filter; policy accept;
    ether saddr != $mac counter drop comment "only the machine's own frames leave the uplink"
  }
}
EOT
}

# ------------------------------------------------------------------------------------------ start

start_node() {
  node_bins
  local node_ip; node_ip=$(advertise_address)
  mkdir -p "$LOGS" "$RUN"
  touch "$RUN/node.started"  # from here on, down cleans up the node
  # kubelet's device-plugin socket path is fixed: /var/lib/kubelet/device-plugins; remove it on down
  # when it was not there before
  [ -e /var/lib/kubelet ] || [ -e "$RUN/var-lib-kubelet.ours" ] || touch "$RUN/var-lib-kubelet.ours"
  gen_node_pki
  write_node_configs "$node_ip"
  setup_cgroup_root
  setup_host_network
  local t0=$SECONDS
  start containerd containerd --config "$CTRD/config.toml"
  wait_for containerd 30 ctr_ version
  import_image "$PAUSE_IMAGE" "$(pause_image)"
  import_image "$BUSYBOX_IMAGE" "$(busybox_image)"
  kubectl_ apply --server-side --force-conflicts -f "$HACK_DIR/manifests/multus-rbac.yaml" >/dev/null
  if [ "${NETSHIFT_NAD_CRD:-1}" != 0 ]; then
    kubectl_ apply --server-side -f "$HACK_DIR/manifests/nad-crd.yaml" >/dev/null 2>&1 \
      || kubectl_ get crd network-attachment-definitions.k8s.cni.cncf.io >/dev/null \
      || die "could not install the NetworkAttachmentDefinition CRD"
  fi
  start_kubelet "$node_ip"
  start kube-proxy "$K8S_BIN/kube-proxy" --config "$NODE_CONF/kube-proxy.yaml" --v=1
  wait_for kubelet 60 curl -fsS http://127.0.0.1:10248/healthz
  local cidr
  cidr=$(node_pod_cidr)
  [ -n "$cidr" ] || wait_for kubelet 1 false
  write_cni_conf "$cidr"
  wait_for kube-proxy 60 curl -fsS http://127.0.0.1:10256/livez
  wait_for kubelet 90 node_ready
  say "node $NODE_NAME Ready in $((SECONDS - t0))s (node IP $node_ip, pods $cidr on $POD_BRIDGE)"
}

start_kubelet() { # node-ip
  start kubelet "$K8S_BIN/kubelet" --config "$NODE_CONF/kubelet.yaml" \
    --kubeconfig "$NODE_CONF/kubelet.kubeconfig" --root-dir "$KUBELET_DIR" \
    --hostname-override "$NODE_NAME" --node-ip "$1" --v=1
}

node_ready() {
  [ "$(kubectl_ get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}

node_healthy() {
  local c
  for c in "${NODE_COMPONENTS[@]}"; do alive "$c" || return 1; done
  node_ready
}

import_image() { # ref archive
  ctr_ images ls -q "name==$1" 2>/dev/null | grep -qxF "$1" && return
  ctr_ images import --no-unpack=false "$2" >/dev/null 2>&1 || ctr_ images import "$2" >/dev/null \
    || die "could not import $2 into containerd"
}

# ------------------------------------------------------------------------------------- cluster DNS

# A node started without cluster DNS (before it existed, or by a hack/cluster without it) gets it by a
# restart of kubelet alone: its pods keep running; those made before keep their resolver file.
upgrade_kubelet_dns() {
  grep -qxF "clusterDNS: [$CLUSTER_DNS]" "$NODE_CONF/kubelet.yaml" 2>/dev/null && return
  say "kubelet runs without cluster DNS: restarting it with clusterDNS $CLUSTER_DNS"
  local node_ip i p
  node_ip=$(advertise_address)
  write_kubelet_config "$node_ip"
  p=$(pid_of kubelet)
  [ -z "$p" ] || kill "$p" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do alive kubelet || break; sleep 0.2; done
  [ -z "$p" ] || kill -9 "$p" 2>/dev/null || true
  rm -f "$RUN/kubelet.pid"
  start_kubelet "$node_ip"
  wait_for kubelet 60 curl -fsS http://127.0.0.1:10248/healthz
  wait_for kubelet 90 node_ready
}

# CoreDNS as kube-dns at $CLUSTER_DNS (hack/manifests/coredns.yaml), Ready; idempotent.
start_dns() {
  local t0=$SECONDS
  import_image "$COREDNS_IMAGE" "$(coredns_image)"
  sed -e "s|@DNS_IP@|$CLUSTER_DNS|g" -e "s|@COREDNS_IMAGE@|$COREDNS_IMAGE|g" "$HACK_DIR/manifests/coredns.yaml" \
    | kubectl_ apply --server-side --force-conflicts -f - >/dev/null
  if ! kubectl_ -n kube-system rollout status deployment/coredns --timeout=120s >/dev/null; then
    kubectl_ -n kube-system describe pods -l k8s-app=kube-dns | tail -n 25 >&2 || true
    kubectl_ -n kube-system logs -l k8s-app=kube-dns --tail=25 >&2 || true
    die "CoreDNS not ready after 120s"
  fi
  say "cluster DNS ready at $CLUSTER_DNS (CoreDNS $COREDNS_VERSION) in $((SECONDS - t0))s"
}

# kubelet's cgroupRoot, in every v1 hierarchy (and the hybrid unified one); cpuset needs its values.
cgroup_mounts() { awk '$3 == "cgroup" || $3 == "cgroup2" {print $2}' /proc/mounts; }

setup_cgroup_root() {
  local m
  for m in $(cgroup_mounts); do
    mkdir -p "$m/$NODE_CGROUP"
    if [ -f "$m/cpuset.cpus" ] && [ -f "$m/$NODE_CGROUP/cpuset.cpus" ]; then
      [ -n "$(cat "$m/$NODE_CGROUP/cpuset.cpus")" ] || cat "$m/cpuset.cpus" > "$m/$NODE_CGROUP/cpuset.cpus"
      [ -n "$(cat "$m/$NODE_CGROUP/cpuset.mems")" ] || cat "$m/cpuset.mems" > "$m/$NODE_CGROUP/cpuset.mems"
    fi
  done
}

# ------------------------------------------------------------------------------------------- stop

pod_pids() {
  local m
  for m in $(cgroup_mounts); do
    if [ -d "$m/$NODE_CGROUP" ]; then find "$m/$NODE_CGROUP" -name cgroup.procs -exec cat {} + 2>/dev/null || true; fi
  done | sort -un
}

# Our sandboxes' ids, from containerd's state and root (there even when containerd crashed).
sandbox_ids() {
  local d
  for d in "$CTRD/root/io.containerd.grpc.v1.cri/sandboxes"/* "$CTRD/state/io.containerd.runtime.v2.task/k8s.io"/*; do
    d=${d##*/}
    if [[ $d =~ ^[0-9a-f]{64}$ ]]; then echo "$d"; fi
  done | sort -u
}

# Stop the node's processes and remove what they made. Safe to run when nothing runs.
stop_node() {
  local c p i ids pids
  [ -f "$RUN/node.started" ] || return 0
  ids=$(sandbox_ids)
  for c in kube-proxy kubelet; do
    p=$(pid_of "$c"); [ -n "$p" ] && kill "$p" 2>/dev/null || true
  done
  for ((i = 0; i < 25; i++)); do alive kubelet || alive kube-proxy || break; sleep 0.2; done
  for c in kube-proxy kubelet; do
    p=$(pid_of "$c"); [ -z "$p" ] || kill -9 "$p" 2>/dev/null || true
    rm -f "$RUN/$c.pid"
  done
  # pod processes: by cgroup (freeze-free: SIGKILL until the cgroups are empty)
  for ((i = 0; i < 50; i++)); do
    pids=$(pod_pids)
    [ -z "$pids" ] && break
    # shellcheck disable=SC2086
    kill -9 $pids 2>/dev/null || true
    sleep 0.1
  done
  # shim sockets: containerd names them /run/containerd/s/sha256(<containerd address>/<namespace>/<id>)
  local id
  for id in $ids; do
    rm -f "/run/containerd/s/$(printf '%s' "$CTRD_SOCK/k8s.io/$id" | sha256sum | cut -d' ' -f1)"
  done
  # shims, runc and containerd carry $STATE in their command lines
  p=$(pid_of containerd); [ -n "$p" ] && kill "$p" 2>/dev/null || true
  pids=$(pgrep -f -- "$CTRD/" || true)
  # shellcheck disable=SC2086
  [ -z "$pids" ] || kill -9 $pids 2>/dev/null || true
  for ((i = 0; i < 25; i++)); do [ -z "$(pgrep -f -- "$CTRD/" || true)" ] && break; sleep 0.2; done
  rm -f "$RUN/containerd.pid"
  cleanup_node_mounts
  cleanup_node_network "$ids"
  cleanup_cgroups
  for id in $ids; do rm -f /var/lib/cni/results/*-"$id"-* 2>/dev/null || true; done
  if [ -d /var/log/containers ]; then
    find /var/log/containers -maxdepth 1 -type l -lname "$POD_LOGS/*" -delete 2>/dev/null || true
    rmdir /var/log/containers 2>/dev/null || true
  fi
  rmdir /run/containerd/s /run/containerd /var/lib/cni/results /var/lib/cni 2>/dev/null || true
  if [ -f "$RUN/var-lib-kubelet.ours" ]; then
    rm -f /var/lib/kubelet/device-plugins/kubelet.sock /var/lib/kubelet/device-plugins/kubelet_internal_checkpoint
    rmdir /var/lib/kubelet/device-plugins /var/lib/kubelet 2>/dev/null || true
    rm -f "$RUN/var-lib-kubelet.ours"
  fi
  restore_sysctls
  rm -f "$RUN/node.started"
}

netns_ours() { # path: a pod netns we created (containerd's cni-* names) when no other containerd runs
  local other
  other=$(pgrep -x containerd | while read -r p; do
    [ "$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null)" = Z ] && continue  # a zombie not yet reaped
    tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null | grep -qF -- "$CTRD/" || echo "$p"; done)
  [ -z "$other" ]
}

cleanup_node_mounts() {
  local m i
  for ((i = 0; i < 3; i++)); do
    # deepest first
    for m in $(awk -v s="$STATE/" 'index($2, s) == 1 {print $2}' /proc/mounts | awk '{print length, $0}' | sort -rn | cut -d' ' -f2-); do
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done
    grep -qF " $STATE/" /proc/mounts || break
  done
  if netns_ours; then
    for m in /var/run/netns/cni-* /run/netns/cni-*; do
      [ -e "$m" ] || continue
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
      rm -f "$m"
    done
  else
    say "another containerd runs on this machine: leaving /var/run/netns/cni-* alone"
  fi
}

cleanup_node_network() {
  local l
  if ip link show "$POD_BRIDGE" >/dev/null 2>&1; then
    for l in $(ip -o link show master "$POD_BRIDGE" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
      ip link del "$l" 2>/dev/null || true
    done
    ip link del "$POD_BRIDGE" 2>/dev/null || true
  fi
  nft delete table inet "$NFT_TABLE" 2>/dev/null || true
  nft delete table netdev "$GUARD_TABLE" 2>/dev/null || true
  # kube-proxy's nftables tables (and any iptables chains of an older mode)
  if [ -x "${K8S_BIN:-}/kube-proxy" ]; then "$K8S_BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true; fi
  nft delete table ip kube-proxy 2>/dev/null || true
  nft delete table ip6 kube-proxy 2>/dev/null || true
  cleanup_iptables_leftovers
}

# kubelet (and kube-proxy --cleanup) make iptables-nft chains (KUBE-*, CNI-*); remove them, and the
# iptables tables themselves when they were not there before the node started and are now empty.
cleanup_iptables_leftovers() {
  local fam tab chain
  for fam in ip ip6; do
    for tab in mangle nat filter; do
      nft list table "$fam" "$tab" >/dev/null 2>&1 || continue
      for chain in $(nft list table "$fam" "$tab" 2>/dev/null | awk '$1 == "chain" && ($2 ~ /^KUBE-/ || $2 ~ /^CNI-/) {print $2}'); do
        nft flush chain "$fam" "$tab" "$chain" 2>/dev/null || true
      done
      # rules that jump to those chains
      nft -a list table "$fam" "$tab" 2>/dev/null | awk -v f="$fam" -v t="$tab" '
        $1 == "chain" {c = $2} /(jump|goto) (KUBE|CNI)-/ && /# handle/ {print "delete rule " f " " t " " c " handle " $NF}' \
        | nft -f - 2>/dev/null || true
      for chain in $(nft list table "$fam" "$tab" 2>/dev/null | awk '$1 == "chain" && ($2 ~ /^KUBE-/ || $2 ~ /^CNI-/) {print $2}'); do
        nft delete chain "$fam" "$tab" "$chain" 2>/dev/null || true
      done
      if ! grep -qx "table $fam $tab" "$RUN/nft-tables.before" 2>/dev/null \
        && [ "$(nft list table "$fam" "$tab" 2>/dev/null | grep -cvE '^\s*(table|chain|type|policy|\}|$)')" = 0 ]; then
        nft delete table "$fam" "$tab" 2>/dev/null || true
      fi
    done
  done
}

cleanup_cgroups() {
  local m d
  for m in $(cgroup_mounts); do
    [ -d "$m/$NODE_CGROUP" ] || continue
    # deepest first
    find "$m/$NODE_CGROUP" -depth -type d 2>/dev/null | while read -r d; do rmdir "$d" 2>/dev/null || true; done
  done
}

# What `down` promises, checked: no process, mount, netns, link or table of the node is left.
verify_node_gone() {
  local left=()
  local procs
  procs=$(pgrep -f -- "$CTRD/|$NODE_CONF/" | tr '\n' ' ' || true)
  [ -z "$procs" ] || left+=("processes: $procs")
  [ -z "$(pod_pids)" ] || left+=("pod processes: $(pod_pids | tr '\n' ' ')")
  ! grep -qF "$STATE/" /proc/mounts || left+=("mounts: $(grep -F "$STATE/" /proc/mounts | awk '{print $2}' | head -3 | tr '\n' ' ')")
  if netns_ours; then
    ! compgen -G '/var/run/netns/cni-*' >/dev/null || left+=("netns: $(echo /var/run/netns/cni-*)")
  fi
  ! ip link show "$POD_BRIDGE" >/dev/null 2>&1 || left+=("link $POD_BRIDGE")
  ! nft list table inet "$NFT_TABLE" >/dev/null 2>&1 || left+=("nftables table inet $NFT_TABLE")
  ! nft list table netdev "$GUARD_TABLE" >/dev/null 2>&1 || left+=("nftables table netdev $GUARD_TABLE")
  ! nft list table ip kube-proxy >/dev/null 2>&1 || left+=("nftables table ip kube-proxy")
  local m
  for m in $(cgroup_mounts); do [ ! -d "$m/$NODE_CGROUP" ] || { left+=("cgroup $m/$NODE_CGROUP"); break; }; done
  [ ${#left[@]} -eq 0 ] || { printf '[cluster] left behind: %s\n' "${left[@]}" >&2; return 1; }
}

status_node() {
  local c rc=0
  for c in "${NODE_COMPONENTS[@]}"; do
    if alive "$c"; then printf '%-24s running (pid %s)\n' "$c" "$(pid_of "$c")"
    else
      printf '%-24s stopped (log %s)\n' "$c" "$LOGS/$c.log"; rc=1
      [ -f "$LOGS/$c.log" ] && tail -n 15 "$LOGS/$c.log" | sed 's/^/    /'
    fi
  done
  if node_ready; then echo "node $NODE_NAME Ready (pods $(cat "$RUN/pod-cidr" 2>/dev/null) on $POD_BRIDGE)"
  else echo "node $NODE_NAME not Ready"; rc=1; fi
  local dns
  dns=$(kubectl_ -n kube-system get deployment coredns -o jsonpath='{.status.readyReplicas}' 2>/dev/null || true)
  if [ "${dns:-0}" -gt 0 ]; then echo "cluster DNS ready at $CLUSTER_DNS (CoreDNS, kube-system/kube-dns)"
  else echo "cluster DNS not ready (kube-system deployment/coredns)"; rc=1; fi
  return $rc
}
