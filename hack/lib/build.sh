#!/usr/bin/env bash
# Build the test cluster's upstream binaries with the Go toolchain from the Go module proxy.
# Each component lands in $NETSHIFT_CACHE/<component>-<version>/bin and is built only once per version.
set -euo pipefail
shopt -s inherit_errexit
HACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=../versions.env
. "$HACK_DIR/versions.env"
NETSHIFT_CACHE=${NETSHIFT_CACHE:-$HOME/.cache/netshift}
export GOFLAGS="-buildvcs=false -trimpath" CGO_ENABLED=${CGO_ENABLED:-0}

log() { printf '[build] %s\n' "$*" >&2; }

# Kubernetes 1.35 needs Go >= 1.24 (Debian bookworm's golang-go is too old); newer toolchains
# are fetched from the Go module proxy by GOTOOLCHAIN=auto when go.mod asks for them.
need_go() {
  command -v go >/dev/null || { echo "Go >= 1.24 is required to build the test cluster (https://go.dev/dl)" >&2; exit 1; }
  local v; v=$(go env GOVERSION); v=${v#go}
  [ "$(printf '%s\n1.24\n' "${v%.*}" | sort -V | head -1)" = 1.24 ] || { echo "Go $v is too old; need >= 1.24" >&2; exit 1; }
}

# k8s.io/kubernetes replaces its staging modules with local paths; a wrapper module must
# replace each of them with the published v0.Y.Z module instead.
build_kubernetes() {
  local out="$NETSHIFT_CACHE/kubernetes-$K8S_VERSION/bin"
  local cmds=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy)
  local missing=0 c
  for c in "${cmds[@]}"; do [ -x "$out/$c" ] || missing=1; done
  [ "$missing" = 0 ] && { echo "$out"; return; }
  need_go
  local work="$NETSHIFT_CACHE/src/kubernetes-$K8S_VERSION"
  mkdir -p "$work" "$out"
  local staging="v0.${K8S_VERSION#v1.}"
  log "kubernetes $K8S_VERSION (staging $staging) in $work"
  (
    cd "$work"
    [ -f go.mod ] || go mod init netshift.local/k8s-build >/dev/null 2>&1
    local gomod
    gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
    local args=(-require "k8s.io/kubernetes@$K8S_VERSION")
    local m
    for m in $(grep -oE '^\s*k8s.io/[a-z0-9-]+ => ./staging' "$gomod" | awk '{print $1}'); do
      args+=(-replace "$m=$m@$staging")
    done
    go mod edit "${args[@]}"
    local pkgs=()
    for c in "${cmds[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
    go get "${pkgs[@]/%/@$K8S_VERSION}" >/dev/null 2>&1 || go mod tidy >/dev/null 2>&1 || true
    local minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
    local ld="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
    go build -ldflags "$ld" -o "$out/" "${pkgs[@]}"
  )
  for c in "${cmds[@]}"; do [ -x "$out/$c" ] || { echo "build of $c failed" >&2; return 1; }; done
  echo "$out"
}

# A wrapper module whose main.go (read from stdin) imports module $3 at version $2: binary $1 in
# $NETSHIFT_CACHE/$1-$2/bin, linked with extra ldflags $4.
build_go_main() { # name version module [ldflags]
  local out="$NETSHIFT_CACHE/$1-$2/bin"
  [ -x "$out/$1" ] && { echo "$out"; return; }
  need_go
  local work="$NETSHIFT_CACHE/src/$1-$2"
  mkdir -p "$work" "$out"
  log "$1 $2 in $work"
  (
    cd "$work"
    [ -f go.mod ] || go mod init "netshift.local/$1-build" >/dev/null 2>&1
    cat > main.go
    go get "$3@$2" >/dev/null 2>&1
    go mod tidy >/dev/null 2>&1
    go build -ldflags "-s -w ${4:-}" -o "$out/$1" .
  )
  [ -x "$out/$1" ] || { echo "build of $1 failed" >&2; return 1; }
  echo "$out"
}

build_etcd() { # [version] (default $ETCD_VERSION; kind's etcd image uses $KIND_ETCD_VERSION)
  build_go_main etcd "${1:-$ETCD_VERSION}" go.etcd.io/etcd/server/v3 <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
}

build_helm() {
  local out="$NETSHIFT_CACHE/helm-$HELM_VERSION/bin"
  [ -x "$out/helm" ] && { echo "$out"; return; }
  need_go
  local work="$NETSHIFT_CACHE/src/helm-$HELM_VERSION"
  mkdir -p "$work" "$out"
  log "helm $HELM_VERSION in $work"
  (
    cd "$work"
    [ -f go.mod ] || go mod init netshift.local/helm-build >/dev/null 2>&1
    go get "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >/dev/null 2>&1
    go build -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" -o "$out/helm" helm.sh/helm/v3/cmd/helm
  )
  [ -x "$out/helm" ] || { echo "build of helm failed" >&2; return 1; }
  echo "$out"
}

# Multus as a thin CNI plugin (the `multus` binary runs on the host, no daemonset). Its module
# may carry replace directives that a wrapper module must repeat; they are copied from its go.mod.
build_multus() {
  local out="$NETSHIFT_CACHE/multus-$MULTUS_VERSION/bin"
  [ -x "$out/multus" ] && { echo "$out"; return; }
  need_go
  local mod=gopkg.in/k8snetworkplumbingwg/multus-cni.v4
  local work="$NETSHIFT_CACHE/src/multus-$MULTUS_VERSION"
  mkdir -p "$work" "$out"
  log "multus $MULTUS_VERSION in $work"
  (
    cd "$work"
    [ -f go.mod ] || go mod init netshift.local/multus-build >/dev/null 2>&1
    local gomod
    gomod=$(go mod download -json "$mod@$MULTUS_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
    local args=(-require "$mod@$MULTUS_VERSION") line
    # both `replace a => b v` and the lines of a `replace ( ... )` block
    while read -r line; do
      [ -n "$line" ] && args+=(-replace "$line")
    done < <(awk '/^replace \($/{b=1;next} b&&/^\)/{b=0} b{print} /^replace [^(]/{sub(/^replace /,"");print}' "$gomod" \
      | sed -E 's#//.*##; s#^[[:space:]]+|[[:space:]]+$##g; s#[[:space:]]*=>[[:space:]]*#=#; s#[[:space:]]+#@#g')
    go mod edit "${args[@]}"
    go get "$mod/cmd/multus@$MULTUS_VERSION" >/dev/null 2>&1 || go mod tidy >/dev/null 2>&1 || true
    local ld="-s -w -X $mod/pkg/multus.version=$MULTUS_VERSION -X $mod/pkg/multus.gitTreeState=clean"
    go build -ldflags "$ld" -o "$out/multus" "$mod/cmd/multus"
  )
  [ -x "$out/multus" ] || { echo "build of multus failed" >&2; return 1; }
  echo "$out"
}

# kubeadm for kind's node image: the wrapper module of build_kubernetes (its go.mod and go.sum
# are copied) plus the two modules only kubeadm imports.
build_kubeadm() {
  local out="$NETSHIFT_CACHE/kubernetes-$K8S_VERSION/bin"
  [ -x "$out/kubeadm" ] && { echo "$out"; return; }
  build_kubernetes >/dev/null
  local work="$NETSHIFT_CACHE/src/kubeadm-$K8S_VERSION"
  mkdir -p "$work"
  log "kubeadm $K8S_VERSION in $work"
  (
    cd "$work"
    cp "$NETSHIFT_CACHE/src/kubernetes-$K8S_VERSION/go.mod" "$NETSHIFT_CACHE/src/kubernetes-$K8S_VERSION/go.sum" .
    go get "k8s.io/kubernetes/cmd/kubeadm@$K8S_VERSION" k8s.io/system-validators \
      github.com/coredns/corefile-migration >/dev/null 2>&1 || go mod tidy >/dev/null 2>&1 || true
    local minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
    local ld="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
    go build -ldflags "$ld" -o "$out/kubeadm" k8s.io/kubernetes/cmd/kubeadm
  )
  [ -x "$out/kubeadm" ] || { echo "build of kubeadm failed" >&2; return 1; }
  echo "$out"
}

# A Go command published as a module without replace directives: `go install pkg@version`.
go_install() { # name package version
  local out="$NETSHIFT_CACHE/$1-$3/bin"
  [ -x "$out/$1" ] && { echo "$out"; return; }
  need_go
  log "$1 $3"
  mkdir -p "$out"
  GOBIN=$out go install -ldflags "-s -w" "$2@$3"
  [ -x "$out/$1" ] || { echo "build of $1 failed" >&2; return 1; }
  echo "$out"
}
build_kind() { go_install kind sigs.k8s.io/kind "$KIND_VERSION"; }
build_crictl() { go_install crictl sigs.k8s.io/cri-tools/cmd/crictl "$CRICTL_VERSION"; }

# CoreDNS with only the plugins kubeadm's default Corefile uses, plus log (the full plugin set would
# build every cloud SDK); the directive `prometheus` is the package plugin/metrics. Directive order
# stays CoreDNS's own (dnsserver.Directives): a directive whose plugin is not linked in is only an
# error if a Corefile uses it.
build_coredns() {
  local p
  {
    printf 'package main\n\nimport (\n\t_ "github.com/coredns/coredns/core/dnsserver"\n'
    for p in errors health ready kubernetes metrics forward cache loop reload loadbalance log; do
      printf '\t_ "github.com/coredns/coredns/plugin/%s"\n' "$p"
    done
    printf '\n\t"github.com/coredns/coredns/coremain"\n)\n\nfunc main() { coremain.Run() }\n'
  } | build_go_main coredns "$COREDNS_VERSION" github.com/coredns/coredns \
    "-X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  case "${1:-all}" in
    kubernetes) build_kubernetes ;;
    etcd) build_etcd ;;
    helm) build_helm ;;
    multus) build_multus ;;
    kind) build_kind ;;
    kubeadm) build_kubeadm ;;
    crictl) build_crictl ;;
    kind-etcd) build_etcd "$KIND_ETCD_VERSION" ;;
    coredns) build_coredns ;;
    all) build_etcd; build_kubernetes; build_helm; build_multus; build_coredns ;;
    *) echo "usage: $0 [all|kubernetes|etcd|helm|multus|coredns|kind|kubeadm|crictl|kind-etcd]" >&2; exit 2 ;;
  esac
fi
