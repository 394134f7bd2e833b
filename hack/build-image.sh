#!/usr/bin/env bash
# Build the netshift image from the project's own Dockerfile with no registry and no Docker daemon.
#
#   hack/build-image.sh [build]   base image (cached) + netshift image (cached by source hash) + archive,
#                                 then import into the cluster's containerd when its socket exists;
#                                 prints the image reference on stdout
#   hack/build-image.sh base      only the local base image (bookworm + python3.11, like python:3.11-slim)
#   hack/build-image.sh import    import the cached archive into containerd (fails without a socket)
#   hack/build-image.sh ref       print the image reference (localhost/netshift:<version>)
#   hack/build-image.sh key       print the source hash the archive is keyed by
#   hack/build-image.sh clean     remove the buildah storage and the cached archives
#
# Environment:
#   NETSHIFT_CACHE              cache root (default ~/.cache/netshift); images in $NETSHIFT_CACHE/images
#   NETSHIFT_CONTAINERD_SOCKET  containerd socket to import into (default: $CONTAINERD_ADDRESS, else
#                               the one `hack/cluster env` prints, else /run/containerd/containerd.sock
#                               if present; the import is skipped when none exists); "none" skips it
#   NETSHIFT_IMAGE_REBUILD=1    rebuild even when the archive matches the sources
#   NETSHIFT_BUILDAH_DRIVER     buildah storage driver (default overlay; vfs works everywhere)
#   NETSHIFT_DEBIAN_MIRROR      Debian mirror for debootstrap (default: http://deb.debian.org/debian)
#   NETSHIFT_WITH_HAPROXY=0     build the image without HAProxy (the Route data plane)
#   NETSHIFT_BUILD_CA_DIR       CA certificates the build's RUN steps trust (default /etc/ssl/certs of
#                               this machine, mounted read-only; empty: the base image's own)
#
# The image is localhost/netshift:<version of operator/netshift/__init__.py>; pods use
# imagePullPolicy IfNotPresent, so the kubelet never tries to pull it.
set -euo pipefail
shopt -s inherit_errexit
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=lib/images.sh
. "$ROOT/hack/lib/images.sh"  # remove_tree
NETSHIFT_CACHE=${NETSHIFT_CACHE:-$HOME/.cache/netshift}
IMAGES=$NETSHIFT_CACHE/images
DRIVER=${NETSHIFT_BUILDAH_DRIVER:-overlay}
MIRROR=${NETSHIFT_DEBIAN_MIRROR:-http://deb.debian.org/debian}
WITH_HAPROXY=${NETSHIFT_WITH_HAPROXY:-1}
CA_DIR=${NETSHIFT_BUILD_CA_DIR-/etc/ssl/certs}

# The base image: Debian bookworm minbase with Debian's python3 (3.11) and venv support, which is
# what python:3.11-slim-bookworm provides to the Dockerfile. Bump BASE_REV when the recipe changes.
BASE_SUITE=bookworm
BASE_REV=1
BASE_PACKAGES=python3,python3-venv,ca-certificates,netbase
BASE_KEY=$BASE_SUITE-py3-r$BASE_REV-$(printf '%s' "$BASE_PACKAGES" | sha256sum | cut -c1-8)
BASE_REF=localhost/netshift-base:$BASE_KEY
BASE_TAR=$IMAGES/base-$BASE_KEY.tar.gz

VERSION=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$ROOT/operator/netshift/__init__.py")
[ -n "$VERSION" ] || { echo "cannot read __version__ from operator/netshift/__init__.py" >&2; exit 1; }
IMAGE_REF=localhost/netshift:$VERSION
ARCHIVE=$IMAGES/netshift-$VERSION.tar

log() { printf '[image] %s\n' "$*" >&2; }
die() { printf '[image] ERROR: %s\n' "$*" >&2; exit 1; }

bah() {
  buildah --root "$NETSHIFT_CACHE/buildah/storage" --runroot "${XDG_RUNTIME_DIR:-/run}/netshift-buildah" \
    --storage-driver "$DRIVER" "$@"
}

need_tools() {
  [ "$(id -u)" = 0 ] || die "run as root (debootstrap and buildah's chroot isolation need it)"
  local missing=()
  command -v buildah >/dev/null || missing+=(buildah)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  [ ${#missing[@]} -eq 0 ] || "$ROOT/hack/deps.sh" "${missing[@]}"
}

# The hash of everything that goes into the image (Dockerfile, .dockerignore, packaging, sources),
# plus the base and the build arguments.
source_key() {
  (
    cd "$ROOT"
    {
      printf 'base=%s haproxy=%s\n' "$BASE_KEY" "$WITH_HAPROXY"
      find Dockerfile .dockerignore pyproject.toml README.md operator -type f \
        ! -path '*/__pycache__/*' ! -name '*.pyc' ! -path '*.egg-info/*' -print0 \
        | LC_ALL=C sort -z | xargs -0 sha256sum
    } | sha256sum | cut -c1-16
  )
}

has_image() { bah inspect --type image "$1" >/dev/null 2>&1; }

build_base_rootfs() {
  [ -s "$BASE_TAR" ] && return
  local work
  work=$(mktemp -d "$IMAGES/.base-XXXXXX")
  # shellcheck disable=SC2064  # expand now: the trap must remove this very directory
  trap "remove_tree '$work'" EXIT
  log "debootstrap $BASE_SUITE minbase + $BASE_PACKAGES (once per $BASE_KEY)"
  local t0=$SECONDS
  debootstrap --variant=minbase --include="$BASE_PACKAGES" "$BASE_SUITE" "$work/rootfs" "$MIRROR" \
    > "$work/debootstrap.log" 2>&1 || { tail -n 30 "$work/debootstrap.log" >&2; die "debootstrap failed"; }
  local r=$work/rootfs
  # The same sources as the official Debian images (deb822), updates and security included.
  rm -f "$r/etc/apt/sources.list"
  cat > "$r/etc/apt/sources.list.d/debian.sources" <<EOT
Types: deb
URIs: $MIRROR
Suites: $BASE_SUITE $BASE_SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${MIRROR%/debian}/debian-security
Suites: $BASE_SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOT
  # As in Debian's container images: maintainer scripts never start services inside a build.
  printf '#!/bin/sh\nexit 101\n' > "$r/usr/sbin/policy-rc.d"
  chmod 755 "$r/usr/sbin/policy-rc.d"
  # Image hygiene as in Debian's container images: no caches, no docs, no recommends.
  printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' \
    > "$r/etc/apt/apt.conf.d/90netshift-norecommends"
  cat > "$r/etc/dpkg/dpkg.cfg.d/90netshift-nodoc" <<'EOT'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
EOT
  find "$r/usr/share/doc" -mindepth 1 ! -name copyright ! -type d -delete 2>/dev/null || true
  rm -rf "$r"/usr/share/man/* "$r"/usr/share/info/* "$r"/usr/share/locale/* \
    "$r"/var/cache/apt/* "$r"/var/lib/apt/lists/* "$r"/var/log/* "$r"/tmp/* "$r"/root/.cache \
    "$r/debootstrap"
  find "$r/usr/lib/python3"* -name __pycache__ -type d -prune -exec rm -rf {} + 2>/dev/null || true
  : > "$r/etc/machine-id"
  printf 'nameserver 127.0.0.1\n' > "$r/etc/resolv.conf"  # replaced by the runtime
  tar --numeric-owner --xattrs -C "$r" -czf "$BASE_TAR.tmp" .
  mv "$BASE_TAR.tmp" "$BASE_TAR"
  remove_tree "$work"
  trap - EXIT
  log "base rootfs $(du -h "$BASE_TAR" | cut -f1) in $((SECONDS - t0))s: $BASE_TAR"
}

cmd_base() {
  need_tools
  mkdir -p "$IMAGES"
  has_image "$BASE_REF" && return
  build_base_rootfs
  log "importing $BASE_TAR as $BASE_REF"
  local ctr
  ctr=$(bah from --pull=never scratch)
  bah add --quiet "$ctr" "$BASE_TAR" / >/dev/null
  # What python:3.11-slim sets and the Dockerfile may rely on.
  bah config --env LANG=C.UTF-8 --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --cmd python3 --os linux --arch "$(dpkg --print-architecture)" \
    --label "org.opencontainers.image.description=Debian $BASE_SUITE minbase with python3 (netshift local base)" \
    "$ctr"
  bah commit --quiet --rm "$ctr" "$BASE_REF" >/dev/null
}

# Keep the layer cache of the last build (every step it made or reused, in both stages: the next
# build reuses the dependency and apt layers) and remove the untagged images of earlier builds.
prune_intermediates() { # build log
  local keep id name
  keep=$(sed -n 's/^--> \(Using cache \)\{0,1\}\([0-9a-f]\{11\}\).*/\2/p' "$1" | sort -u)
  bah images --all --noheading --format '{{.ID}} {{.Name}}' | while read -r id name; do
    [ "$name" = "<none>" ] || continue
    grep -qx "${id:0:11}" <<<"$keep" || bah rmi --force "$id" >/dev/null 2>&1 || true
  done
}

archive_current() {
  [ -s "$ARCHIVE" ] && [ "$(cat "$ARCHIVE.key" 2>/dev/null)" = "$(source_key)" ] \
    && [ "${NETSHIFT_IMAGE_REBUILD:-0}" != 1 ]
}

cmd_build() {
  need_tools
  mkdir -p "$IMAGES"
  local key t0=$SECONDS
  key=$(source_key)
  if archive_current; then
    log "$IMAGE_REF is current (sources $key): $ARCHIVE"
  else
    cmd_base
    log "building $IMAGE_REF (sources $key) from Dockerfile on $BASE_REF"
    # --layers keeps the dependency layer when only the package sources changed. The RUN steps
    # see this machine's CA certificates (read-only, not copied into the image), so that pip works
    # behind a TLS-inspecting proxy as the host's own pip does.
    local mounts=()
    [ -n "$CA_DIR" ] && [ -d "$CA_DIR" ] && mounts=(--volume "$CA_DIR:/etc/ssl/certs:ro")
    bah bud --layers --pull=never --network host --isolation chroot --format docker "${mounts[@]}" \
      --build-arg "BASE_IMAGE=$BASE_REF" --build-arg "WITH_HAPROXY=$WITH_HAPROXY" \
      --label "io.netshift.source-key=$key" \
      -f "$ROOT/Dockerfile" -t "$IMAGE_REF" "$ROOT" 2>&1 | tee "$IMAGES/.build.log" >&2
    rm -f "$ARCHIVE" "$ARCHIVE.key"
    bah push --quiet "$IMAGE_REF" "docker-archive:$ARCHIVE.tmp:$IMAGE_REF" >/dev/null
    mv "$ARCHIVE.tmp" "$ARCHIVE"
    printf '%s\n' "$key" > "$ARCHIVE.key"
    prune_intermediates "$IMAGES/.build.log"
    log "built $IMAGE_REF in $((SECONDS - t0))s; archive $(du -h "$ARCHIVE" | cut -f1): $ARCHIVE"
  fi
  local sock
  sock=$(containerd_socket)
  if [ -n "$sock" ]; then
    import_into "$sock"
  else
    log "no containerd socket (set NETSHIFT_CONTAINERD_SOCKET); not imported"
  fi
  echo "$IMAGE_REF"
}

containerd_socket() {
  local s=${NETSHIFT_CONTAINERD_SOCKET:-${CONTAINERD_ADDRESS:-}}
  [ "$s" = none ] && return
  if [ -z "$s" ]; then
    # The node of hack/cluster exports CONTAINERD_ADDRESS in `hack/cluster env` once it runs one.
    s=$("$ROOT/hack/cluster" env 2>/dev/null | sed -n 's/^export CONTAINERD_ADDRESS=//p' | tr -d "'\"" || true)
  fi
  [ -z "$s" ] && [ -S /run/containerd/containerd.sock ] && s=/run/containerd/containerd.sock
  [ -n "$s" ] && [ -S "$s" ] && echo "$s"
  return 0
}

import_into() { # socket
  local sock=$1 key
  command -v ctr >/dev/null || die "ctr (Debian package containerd) is needed to import the image"
  key=$(cat "$ARCHIVE.key")
  # Skip the import when containerd already has the image of these very sources (label set below).
  if ctr -a "$sock" -n k8s.io images ls "name==$IMAGE_REF" 2>/dev/null | grep -q "netshift.io/source-key=$key"; then
    log "containerd at $sock already has $IMAGE_REF (sources $key)"
    return
  fi
  log "importing $ARCHIVE into containerd at $sock (namespace k8s.io)"
  ctr -a "$sock" -n k8s.io images import "$ARCHIVE" >&2
  ctr -a "$sock" -n k8s.io images label "$IMAGE_REF" "netshift.io/source-key=$key" >/dev/null
}

cmd_import() {
  [ -s "$ARCHIVE" ] || die "no archive at $ARCHIVE: run hack/build-image.sh first"
  local sock
  sock=$(containerd_socket)
  [ -n "$sock" ] || die "no containerd socket: set NETSHIFT_CONTAINERD_SOCKET"
  import_into "$sock"
}

cmd_clean() {
  if command -v buildah >/dev/null; then bah rmi --all --force >/dev/null 2>&1 || true; fi
  rm -rf "$NETSHIFT_CACHE/buildah" "$IMAGES"/netshift-*.tar "$IMAGES"/netshift-*.tar.key
  log "removed buildah storage and image archives (base rootfs kept: rm $IMAGES/base-*.tar.gz)"
}

# One build at a time per cache (concurrent test runs share the buildah storage and the archive).
locked() {
  mkdir -p "$IMAGES"
  exec 8>"$IMAGES/.build.lock"
  flock -w 1800 8 || die "timed out waiting for another hack/build-image.sh"
  "$@"
}

case "${1:-build}" in
  build) locked cmd_build ;;
  base) locked cmd_base ;;
  import) cmd_import ;;
  ref) echo "$IMAGE_REF" ;;
  key) source_key ;;
  clean) cmd_clean ;;
  -h|--help|help) sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//' ;;
  *) sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
