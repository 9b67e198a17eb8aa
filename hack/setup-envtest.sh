#!/usr/bin/env bash
# Provides the local control plane binaries (kube-apiserver, etcd and, on
# request, kube-controller-manager) that envtest, the demo and the e2e suite
# run. It installs them where setup-envtest would:
#   ${ENVTEST_STORE:-~/.local/share/kubebuilder-envtest}/k8s/<version>-linux-<arch>/
# and prints that directory as the last line of its output (stdout), so
#   export KUBEBUILDER_ASSETS="$(hack/setup-envtest.sh)"
# works. Progress goes to stderr.
#
# Order of attempts:
#   1. binaries already in the store: reuse them;
#   2. setup-envtest (pinned, from the Go module proxy) downloading a release;
#   3. build from source through the Go module proxy: a wrapper module that
#      requires k8s.io/kubernetes with its staging modules replaced by their
#      published versions, and one that requires go.etcd.io/etcd/server/v3.
#      The first build of kube-apiserver takes about 10 minutes on 2 cores.
#
# Environment:
#   ENVTEST_K8S_VERSION   Kubernetes version (default 1.37.2)
#   ENVTEST_ETCD_VERSION  etcd version (default 3.7.3)
#   ENVTEST_STORE         store root (default ~/.local/share/kubebuilder-envtest)
#   ENVTEST_WITH_KCM      1 to also provide kube-controller-manager
#   ENVTEST_WITH_NODE     1 to also build what a real one-node cluster needs:
#                         kube-scheduler, kubelet, kube-proxy and kubectl
#   SETUP_ENVTEST_VERSION setup-envtest module version (default v0.25.1)
#   ENVTEST_SKIP_DOWNLOAD 1 to skip the setup-envtest attempt
set -euo pipefail

k8s_version="${ENVTEST_K8S_VERSION:-1.37.2}"
etcd_version="${ENVTEST_ETCD_VERSION:-3.7.3}"
store="${ENVTEST_STORE:-${XDG_DATA_HOME:-$HOME/.local/share}/kubebuilder-envtest}"
with_kcm="${ENVTEST_WITH_KCM:-0}"
with_node="${ENVTEST_WITH_NODE:-0}"
node_targets=(kube-scheduler kubelet kube-proxy kubectl)
setup_envtest_version="${SETUP_ENVTEST_VERSION:-v0.25.1}"
goos="$(go env GOOS)"
goarch="$(go env GOARCH)"
dest="${store}/k8s/${k8s_version}-${goos}-${goarch}"
minor="$(echo "$k8s_version" | cut -d. -f2)"
staging_version="v0.${minor}.$(echo "$k8s_version" | cut -d. -f3)"

log() { echo "setup-envtest: $*" >&2; }

have_all() {
  [ -x "$dest/kube-apiserver" ] && [ -x "$dest/etcd" ] || return 1
  [ "$with_kcm" != 1 ] || [ -x "$dest/kube-controller-manager" ] || return 1
  if [ "$with_node" = 1 ]; then
    for t in "${node_targets[@]}"; do [ -x "$dest/$t" ] || return 1; done
  fi
}

if have_all; then
  log "using $dest"
  echo "$dest"
  exit 0
fi

mkdir -p "$dest"

if [ "${ENVTEST_SKIP_DOWNLOAD:-0}" != 1 ] && [ ! -x "$dest/kube-apiserver" ]; then
  log "trying setup-envtest ${setup_envtest_version} for Kubernetes ${k8s_version}"
  timeout 180 go run "sigs.k8s.io/controller-runtime/tools/setup-envtest@${setup_envtest_version}" \
    use "$k8s_version" --bin-dir "$store" -p path >/dev/null 2>&1 || true
  if [ -x "$dest/kube-apiserver" ]; then
    log "downloaded release binaries"
  else
    log "no release download reachable; building from source instead"
  fi
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=v${k8s_version} \
-X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${minor} \
-X k8s.io/component-base/version.gitTreeState=clean"

build_kubernetes() {
  local targets=("$@")
  local mod="$work/kubernetes"
  mkdir -p "$mod"
  log "resolving k8s.io/kubernetes v${k8s_version} (staging modules at ${staging_version})"
  local gomod
  gomod="$(cd "$mod" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@v${k8s_version}" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  {
    echo "module isolator.local/envtest-kubernetes"
    echo
    echo "go $(go env GOVERSION | sed 's/^go//' | cut -d. -f1,2)"
    echo
    echo "require k8s.io/kubernetes v${k8s_version}"
    echo
    sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9.-]*\) => \./staging/src/.*#replace \1 => \1 '"${staging_version}"'#p' "$gomod"
  } >"$mod/go.mod"
  {
    echo "//go:build tools"
    echo
    echo "package tools"
    echo
    echo "import ("
    for t in "${targets[@]}"; do echo "	_ \"k8s.io/kubernetes/cmd/$t\""; done
    echo ")"
  } >"$mod/tools.go"
  (cd "$mod" && go mod tidy >&2)
  for t in "${targets[@]}"; do
    log "building $t v${k8s_version} (first build takes about 10 minutes on 2 cores)"
    local start=$SECONDS
    (cd "$mod" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$dest/$t.tmp" "k8s.io/kubernetes/cmd/$t")
    mv "$dest/$t.tmp" "$dest/$t"
    log "built $t in $((SECONDS - start))s"
  done
}

build_etcd() {
  local mod="$work/etcd"
  mkdir -p "$mod"
  log "building etcd v${etcd_version}"
  local start=$SECONDS
  cat >"$mod/go.mod" <<GOMOD
module isolator.local/envtest-etcd

go $(go env GOVERSION | sed 's/^go//' | cut -d. -f1,2)

require go.etcd.io/etcd/server/v3 v${etcd_version}
GOMOD
  cat >"$mod/tools.go" <<'GOSRC'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
GOSRC
  (cd "$mod" && go mod tidy >&2)
  (cd "$mod" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$dest/etcd.tmp" go.etcd.io/etcd/server/v3)
  mv "$dest/etcd.tmp" "$dest/etcd"
  log "built etcd in $((SECONDS - start))s"
}

[ -x "$dest/etcd" ] || build_etcd
k8s_targets=()
[ -x "$dest/kube-apiserver" ] || k8s_targets+=(kube-apiserver)
[ "$with_kcm" != 1 ] || [ -x "$dest/kube-controller-manager" ] || k8s_targets+=(kube-controller-manager)
if [ "$with_node" = 1 ]; then
  for t in "${node_targets[@]}"; do [ -x "$dest/$t" ] || k8s_targets+=("$t"); done
fi
[ ${#k8s_targets[@]} -eq 0 ] || build_kubernetes "${k8s_targets[@]}"

have_all || { log "binaries missing in $dest"; exit 1; }
"$dest/kube-apiserver" --version >&2
log "ready: $dest"
echo "$dest"
