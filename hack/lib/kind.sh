#!/usr/bin/env bash
# kind's node image for $K8S_VERSION, assembled offline (no registry, no Docker): a Debian root
# filesystem (debootstrap) with systemd, containerd, runc and the CNI plugins, kind's own base files
# from the kind module, the Kubernetes binaries built by hack/lib/build.sh and the images kubeadm
# pulls, built here under their exact names and preloaded into the node's containerd store.
# Cached by version: $NETSHIFT_CACHE/kind/ and podman's storage (image localhost/netshift/kind-node).
#
#   hack/lib/kind.sh node-image   build (or reuse) the node image; prints its reference
#   hack/lib/kind.sh images       build (or reuse) the OCI archives kubeadm needs; prints their paths
# Sourced by hack/kind-e2e.sh (which runs podman in its own network namespace).
set -euo pipefail
shopt -s inherit_errexit
KIND_HACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=build.sh
. "$KIND_HACK_DIR/lib/build.sh"
# shellcheck source=images.sh
. "$KIND_HACK_DIR/lib/images.sh"
KIND_CACHE=$NETSHIFT_CACHE/kind
MIRROR=${NETSHIFT_DEBIAN_MIRROR:-http://deb.debian.org/debian}

klog() { printf '[kind-image] %s\n' "$*" >&2; }

# What kind's base image installs (images/base/Dockerfile), from Debian bookworm; bump ROOTFS_REV
# when the recipe changes.
ROOTFS_REV=1
ROOTFS_PACKAGES=systemd,containerd,runc,containernetworking-plugins,iptables,nftables,conntrack,iproute2,ethtool,util-linux,mount,kmod,procps,ca-certificates,jq,libseccomp2
ROOTFS_TAR=$KIND_CACHE/rootfs-bookworm-r$ROOTFS_REV-$(printf '%s' "$ROOTFS_PACKAGES" | sha256sum | cut -c1-8).tar.gz

node_rootfs() {
  [ -s "$ROOTFS_TAR" ] && return
  mkdir -p "$KIND_CACHE"
  local work t0=$SECONDS
  work=$(mktemp -d "$KIND_CACHE/.rootfs-XXXXXX")
  # shellcheck disable=SC2064  # this very directory
  trap "remove_tree '$work'" RETURN
  klog "debootstrap bookworm minbase + $ROOTFS_PACKAGES"
  debootstrap --variant=minbase --include="$ROOTFS_PACKAGES" bookworm "$work/r" "$MIRROR" \
    > "$work/log" 2>&1 || { tail -n 30 "$work/log" >&2; return 1; }
  rm -rf "$work/r"/var/cache/apt/* "$work/r"/var/lib/apt/lists/* "$work/r/debootstrap"
  tar --numeric-owner --xattrs -C "$work/r" -czf "$ROOTFS_TAR.tmp" .
  mv "$ROOTFS_TAR.tmp" "$ROOTFS_TAR"
  klog "root filesystem in $((SECONDS - t0))s: $ROOTFS_TAR"
}

# -- the images kubeadm pulls ---------------------------------------------------------------------

KIND_PAUSE_IMAGE=registry.k8s.io/pause:$KIND_PAUSE_VERSION
KIND_ETCD_IMAGE=registry.k8s.io/etcd:${KIND_ETCD_VERSION#v}-0

# Copy binaries and the shared libraries they load (from this Debian machine) into a rootfs.
copy_with_libs() { # rootfs binary...
  local r=$1 b lib; shift
  for b in "$@"; do
    mkdir -p "$r$(dirname "$b")"
    cp -L "$b" "$r$b"
    for lib in $(ldd "$b" 2>/dev/null | grep -oE '/[^ ]+'); do
      mkdir -p "$r$(dirname "$lib")"
      cp -L "$lib" "$r$lib"
    done
  done
}

# A static binary at /usr/local/bin (the static pods name the command; the default PATH finds it).
rootfs_static() { # rootfs tmp  (KIND_BIN: the binary)
  mkdir -p "$1/usr/local/bin" "$1/tmp" "$1/etc"
  chmod 1777 "$1/tmp"
  cp "$KIND_BIN" "$1/usr/local/bin/"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$1/etc/passwd"
}

# kube-proxy runs iptables(-restore/-save, the nft backend like the node's) and conntrack: Debian's,
# from this machine.
rootfs_kube_proxy() { # rootfs tmp
  KIND_BIN=$K8S_BIN/kube-proxy rootfs_static "$1"
  # the match and target extensions are loaded with dlopen: ldd of the binary does not name them
  copy_with_libs "$1" /usr/sbin/xtables-nft-multi /usr/sbin/nft /usr/sbin/conntrack \
    "$(dirname "$(readlink -f /usr/lib/*/libxtables.so.12)")"/xtables/*.so
  local t
  for t in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
    ln -s xtables-nft-multi "$1/usr/sbin/$t"
  done
  mkdir -p "$1/var/run" "$1/run"
}

kube_images() {
  K8S_BIN=$(build_kubernetes)
  local etcd_bin c key
  etcd_bin=$(build_etcd "$KIND_ETCD_VERSION")
  key=$(src_hash "${BASH_SOURCE[0]}" "$KIND_HACK_DIR/lib/oci-image.py")
  for c in kube-apiserver kube-controller-manager kube-scheduler; do
    KIND_BIN=$K8S_BIN/$c cached_image "registry.k8s.io/$c:$K8S_VERSION" "$c-$K8S_VERSION-$key" rootfs_static
  done
  cached_image "registry.k8s.io/kube-proxy:$K8S_VERSION" "kube-proxy-$K8S_VERSION-$key" rootfs_kube_proxy
  KIND_BIN=$etcd_bin/etcd cached_image "$KIND_ETCD_IMAGE" "etcd-$KIND_ETCD_VERSION-$key" rootfs_static
  coredns_image
  cached_image "$KIND_PAUSE_IMAGE" "pause-$KIND_PAUSE_VERSION-$key-$(src_hash "$KIND_HACK_DIR/images/pause.c")" rootfs_pause
}

# -- the node image --------------------------------------------------------------------------------

# Keyed by the recipe and every pin (versions.env): a warm run finds it in podman's storage.
node_image_ref() {
  echo "localhost/netshift/kind-node:$K8S_VERSION-$(src_hash "${BASH_SOURCE[0]}" "$KIND_HACK_DIR/versions.env" \
    "$KIND_HACK_DIR/lib/images.sh" "$KIND_HACK_DIR/lib/oci-image.py" "$KIND_HACK_DIR/images/pause.c")"
}

# Assemble the root filesystem and import it into podman (podman_ is the caller's podman wrapper).
node_image() {
  local ref
  ref=$(node_image_ref)
  if podman_ image exists "$ref"; then echo "$ref"; return; fi
  node_rootfs
  local archives kind_mod k8s crictl_bin work t0=$SECONDS
  mapfile -t archives < <(kube_images)
  build_kubeadm >/dev/null
  k8s=$(build_kubernetes)
  crictl_bin=$(build_crictl)
  build_kind >/dev/null
  kind_mod=$(go env GOMODCACHE)/sigs.k8s.io/kind@$KIND_VERSION
  [ -d "$kind_mod/images/base/files" ] || go mod download "sigs.k8s.io/kind@$KIND_VERSION"
  work=$(mktemp -d "$KIND_CACHE/.node-XXXXXX")
  # shellcheck disable=SC2064  # this very directory
  trap "remove_tree '$work'" RETURN
  klog "assembling $ref"
  local r=$work/r f=$kind_mod/images/base/files
  mkdir -p "$r"
  tar --numeric-owner -xzf "$ROOTFS_TAR" -C "$r"
  # kind's base files, as its Dockerfile copies them
  cp -r "$f/usr/local/bin/." "$r/usr/local/bin/"
  mkdir -p "$r/kind" "$r/etc/systemd/system/kubelet.service.d"
  cp -r "$f/kind/." "$r/kind/"
  cp -r "$f/etc/." "$r/etc/"
  chmod -R u+rwX,go+rX,go-w "$r/kind" "$r/etc/systemd/system" "$r/etc/containerd"
  chmod 755 "$r"/usr/local/bin/* "$r"/kind/bin/*
  find "$r/lib/systemd/system/sysinit.target.wants/" -name systemd-tmpfiles-setup.service -delete
  rm -f "$r"/lib/systemd/system/multi-user.target.wants/* "$r"/etc/systemd/system/*.wants/* \
    "$r"/lib/systemd/system/local-fs.target.wants/* "$r"/lib/systemd/system/sockets.target.wants/*udev* \
    "$r"/lib/systemd/system/sockets.target.wants/*initctl* "$r"/lib/systemd/system/basic.target.wants/*
  echo "ReadKMsg=no" >> "$r/etc/systemd/journald.conf"
  ln -sf /usr/lib/systemd/systemd "$r/sbin/init"
  systemctl --root="$r" enable kubelet.service containerd.service undo-mount-hacks.service >/dev/null 2>&1
  systemctl --root="$r" mask systemd-binfmt.service >/dev/null 2>&1
  mkdir -p "$r/etc/kubernetes/manifests" "$r/opt/cni/bin" "$r/etc/cni/net.d"
  # Debian puts containerd in /usr/bin and the CNI plugins in /usr/lib/cni; kind expects them in
  # /usr/local/bin and /opt/cni/bin.
  ln -sf /usr/bin/containerd "$r/usr/local/bin/containerd"
  cp -a "$r"/usr/lib/cni/. "$r/opt/cni/bin/"
  cp "$MULTUS_BIN/multus" "$r/opt/cni/bin/multus"
  ctr oci spec | jq '.hooks.createContainer[.hooks.createContainer| length] |= . + {"path": "/kind/bin/mount-product-files.sh"}' \
    | jq 'del(.process.rlimits)' > "$r/etc/containerd/cri-base.json"
  # the sandbox image kubeadm wants; no process here may lower its oom_score_adj (-997 fails)
  sed -i -e "s|sandbox_image = .*|sandbox_image = \"$KIND_PAUSE_IMAGE\"|" \
    -e 's|restrict_oom_score_adj = false|restrict_oom_score_adj = true|' "$r/etc/containerd/config.toml"
  install -m 755 "$k8s/kubelet" "$k8s/kubeadm" "$k8s/kubectl" "$r/usr/bin/"
  install -m 755 "$crictl_bin/crictl" "$r/usr/local/bin/"
  echo "$K8S_VERSION" > "$r/kind/version"
  preload_images "$r" "$work" "${archives[@]}"
  rm -rf "$r"/var/cache/apt/* "$r"/var/log/* "$r"/tmp/*
  tar --numeric-owner --xattrs -C "$r" -c . | podman_ import \
    --change 'ENTRYPOINT ["/usr/local/bin/entrypoint","/sbin/init"]' --change 'ENV container=docker' \
    --change 'STOPSIGNAL SIGRTMIN+3' - "$ref" >/dev/null
  klog "node image $ref in $((SECONDS - t0))s"
  local old  # earlier recipes' node images: 1 GB each
  for old in $(podman_ images --format '{{.Repository}}:{{.Tag}}' localhost/netshift/kind-node); do
    [ "$old" = "$ref" ] || podman_ rmi "$old" >/dev/null 2>&1 || true
  done
  echo "$ref"
}

# Import the OCI archives into the rootfs's containerd store with a private containerd (content only:
# the node's containerd unpacks on first use).
preload_images() { # rootfs work archive...
  local r=$1 w=$2 a pid; shift 2
  mkdir -p "$w/ctrd"
  cat > "$w/ctrd/config.toml" <<EOT
version = 2
root = "$r/var/lib/containerd"
state = "$w/ctrd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$w/ctrd/sock"
EOT
  containerd --config "$w/ctrd/config.toml" > "$w/ctrd/log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do [ -S "$w/ctrd/sock" ] && break; sleep 0.1; done
  for a in "$@"; do
    ctr -a "$w/ctrd/sock" -n k8s.io images import --no-unpack "$a" >/dev/null \
      || { kill "$pid"; cat "$w/ctrd/log" >&2; return 1; }
  done
  kill "$pid"
  wait "$pid" 2>/dev/null || true
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  podman_() { podman "$@"; }
  case "${1:-}" in
    node-image) MULTUS_BIN=$(build_multus); node_image ;;
    images) kube_images ;;
    *) echo "usage: $0 node-image|images" >&2; exit 2 ;;
  esac
fi
