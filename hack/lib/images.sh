#!/usr/bin/env bash
# Images for the local node, made without a registry or a container engine: a static pause binary
# (hack/images/pause.c) as containerd's sandbox image, a busybox image for test clients, and CoreDNS
# (hack/lib/build.sh coredns) under the name kubeadm expects, for the cluster DNS.
# Each is an OCI archive cached in $NETSHIFT_CACHE/images/, keyed by version (and source hash), that
# `ctr -n k8s.io images import` loads. Sourced by hack/cluster; runnable alone:
#   hack/lib/images.sh pause|busybox|coredns   print the path of the (built or cached) archive
set -euo pipefail
shopt -s inherit_errexit
IMAGES_HACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=../versions.env
. "$IMAGES_HACK_DIR/versions.env"
NETSHIFT_CACHE=${NETSHIFT_CACHE:-$HOME/.cache/netshift}
IMAGE_CACHE=$NETSHIFT_CACHE/images

ilog() { printf '[images] %s\n' "$*" >&2; }

# The archive for image $1 with cache key $2 (tag and source hash), built by function $3 into a rootfs.
cached_image() { # ref key builder
  local ref=$1 key=$2 builder=$3
  local out="$IMAGE_CACHE/$key.tar"
  [ -s "$out" ] && { echo "$out"; return; }
  mkdir -p "$IMAGE_CACHE"
  (
    tmp=$(mktemp -d "$IMAGE_CACHE/.build-XXXXXX")
    # shellcheck disable=SC2064
    trap "rm -rf '$tmp'" EXIT
    mkdir "$tmp/rootfs"
    ilog "building $ref -> $out"
    args=$("$builder" "$tmp/rootfs" "$tmp")
    # shellcheck disable=SC2086  # the builder prints extra oci-image.py arguments, one word each
    python3 "$IMAGES_HACK_DIR/lib/oci-image.py" --name "$ref" --rootfs "$tmp/rootfs" --out "$out" $args >&2
  )
  echo "$out"
}

# Remove a debootstrap work tree; an interrupted debootstrap may leave /proc or /sys mounted in it.
remove_tree() {
  local m
  awk -v d="$1/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
  rm -rf --one-file-system "$1"
}

src_hash() { cat "$@" | sha256sum | cut -c1-12; }

rootfs_pause() { # rootfs tmp
  command -v gcc >/dev/null || { echo "gcc is required to build the pause image (apt-get install gcc libc6-dev)" >&2; return 1; }
  gcc -static -Os -Wall -Wextra -o "$1/pause" "$IMAGES_HACK_DIR/images/pause.c"
  strip "$1/pause"
  echo "--entrypoint [\"/pause\"] --user 65535:65535 --label org.opencontainers.image.version=$PAUSE_VERSION"
}

pause_image() {
  cached_image "$PAUSE_IMAGE" "pause-$PAUSE_VERSION-$(src_hash "$IMAGES_HACK_DIR/images/pause.c" "$IMAGES_HACK_DIR/lib/oci-image.py")" rootfs_pause
}

rootfs_busybox() { # rootfs tmp
  local bb=/bin/busybox r=$1 a
  [ -x "$bb" ] && "$bb" --list >/dev/null 2>&1 && ! ldd "$bb" >/dev/null 2>&1 \
    || { echo "a static /bin/busybox is required (apt-get install busybox-static)" >&2; return 1; }
  mkdir -p "$r/bin" "$r/etc" "$r/tmp" "$r/root" "$r/home" "$r/var/www"
  chmod 1777 "$r/tmp"
  cp "$bb" "$r/bin/busybox"
  for a in $("$bb" --list); do
    [ "$a" = busybox ] || ln -s busybox "$r/bin/$a"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n' > "$r/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' > "$r/etc/group"
  echo "--cmd [\"sh\"] --env PATH=/bin --label org.opencontainers.image.version=$(dpkg-query -W -f='${Version}' busybox-static 2>/dev/null || echo unknown)"
}

busybox_image() {
  local v
  v=$(dpkg-query -W -f='${Version}' busybox-static 2>/dev/null | tr ':~+' '___') || v=unknown
  cached_image "$BUSYBOX_IMAGE" "busybox-$v-$(src_hash "$IMAGES_HACK_DIR/lib/oci-image.py" "${BASH_SOURCE[0]}")" rootfs_busybox
}

# Like the upstream image but without distroless's files (CoreDNS needs none) and running as root:
# file capabilities do not survive these layers, and a non-root user would need them to bind port 53.
# kubeadm's Deployment drops every capability but NET_BIND_SERVICE and forbids privilege escalation.
rootfs_coredns() { # rootfs tmp
  local bin
  bin=$("$IMAGES_HACK_DIR/lib/build.sh" coredns)
  mkdir -p "$1/tmp"
  chmod 1777 "$1/tmp"
  cp "$bin/coredns" "$1/coredns"
  echo "--entrypoint [\"/coredns\"] --label org.opencontainers.image.version=$COREDNS_VERSION"
}

coredns_image() {
  cached_image "$COREDNS_IMAGE" "coredns-$COREDNS_VERSION-$(src_hash "$IMAGES_HACK_DIR/lib/oci-image.py" "${BASH_SOURCE[0]}")" rootfs_coredns
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  case "${1:-}" in
    pause) pause_image ;;
    busybox) busybox_image ;;
    coredns) coredns_image ;;
    *) echo "usage: $0 pause|busybox|coredns" >&2; exit 2 ;;
  esac
fi
