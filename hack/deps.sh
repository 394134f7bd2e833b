#!/usr/bin/env bash
# Install Debian packages when they are missing. Needs root (or sudo) only when something is missing.
#
#   hack/deps.sh            everything the tools, the cluster and the tests need (`make deps`)
#   hack/deps.sh node       what hack/cluster's node needs
#   hack/deps.sh kind       what hack/kind-e2e.sh's offline mode needs (podman, debootstrap)
#   hack/deps.sh PKG...     the named packages
set -euo pipefail
# The one package list: the node's part, then the rest.
NODE=(containerd runc containernetworking-plugins nftables iptables conntrack busybox-static gcc libc6-dev)
# podman's package ships a CNI config for the host: never installed (/etc/cni/net.d stays as it is)
KIND=(podman netavark aardvark-dns conmon debootstrap jq)
ALL=("${NODE[@]}" "${KIND[@]}" openssl curl ca-certificates iproute2 iperf3 debootstrap buildah shellcheck haproxy wrk)
case "${1:-}" in
  "") set -- "${ALL[@]}" ;;
  node) set -- "${NODE[@]}" ;;
  kind) set -- "${KIND[@]}" ;;
esac
missing=()
for p in "$@"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "[deps] installing: ${missing[*]}" >&2
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
  -o DPkg::Options::=--path-exclude=/etc/cni/net.d/87-podman-bridge.conflist "${missing[@]}" >/dev/null
