# Shared helpers for switchyard's scripts. Source it; do not run it.
# Its variables are read by the scripts that source it, which shellcheck cannot see from here.
# shellcheck shell=bash disable=SC2034

SWITCHYARD_CACHE="${SWITCHYARD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/switchyard}"
KUBE_VERSION="v1.20.2"
KUBE_APISERVER_BIN="$SWITCHYARD_CACHE/bin/kube-apiserver"
# The real node's parts, built from the same source tree as the apiserver (install-deps.sh).
KUBELET_BIN="$SWITCHYARD_CACHE/bin/kubelet"
KUBE_SCHEDULER_BIN="$SWITCHYARD_CACHE/bin/kube-scheduler"
KUBE_CONTROLLER_MANAGER_BIN="$SWITCHYARD_CACHE/bin/kube-controller-manager"
PAUSE_BIN="$SWITCHYARD_CACHE/bin/pause"
HELM_BIN="$SWITCHYARD_CACHE/bin/helm"

step() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
note() { printf '    %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

need_root() {
  [ "$(id -u)" = 0 ] || die "run as root (it installs Debian packages and creates network namespaces)"
}

# The switchyard image's binaries, built for the real-node tests and demo into
# target/image/ (Cargo.toml's `image` profile; tests/src/images.rs reads them from there).
IMAGE_BINARIES=(switchyard-controller switchyard-node-agent kubectl-switchyard switchyard-cni)
build_image_binaries() {
  local packages=() name
  for name in "${IMAGE_BINARIES[@]}"; do packages+=(-p "$name"); done
  cargo build --profile image --locked -q "${packages[@]}"
}
