#!/usr/bin/env bash
# switchyard's whole test suite: formatting, lints, unit tests, the libvirt corpus, and the
# end-to-end tests against a real local kube-apiserver and real network namespaces.
# Installs what it needs first (see install-deps.sh). Run as root on Debian 12.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
source scripts/lib.sh
source scripts/control-plane.sh
need_root

bash scripts/install-deps.sh

# A clean CI clone gains nothing from incremental caches; they only cost disk.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

work="$(mktemp -d /tmp/switchyard-test.XXXXXX)"
cleanup() {
  stop_control_plane
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

step "Formatting and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -q -- -D warnings
shellcheck --external-sources --source-path=SCRIPTDIR --severity=warning scripts/*.sh

step "Dependency boundaries"
bash scripts/check-deps.sh

step "Building"
cargo build --workspace --all-targets --locked -q
note "the image's binaries (profile image, for the real-node tests)"
build_image_binaries

step "libvirt conformance (../shared/corpus/libvirt)"
if cargo test --locked -q -p switchyard-libvirt --test corpus -- --nocapture >"$work/corpus.log" 2>&1; then
  grep -E '^libvirt corpus:' "$work/corpus.log"
else
  cat "$work/corpus.log" >&2
  die "the libvirt corpus test failed (its output is above)"
fi

step "Starting the local control plane (etcd + kube-apiserver $KUBE_VERSION)"
start_control_plane "$work"

step "Running the tests"
cargo test --workspace --locked --no-fail-fast -- --test-threads="${SWITCHYARD_TEST_THREADS:-4}"

# A newcomer runs the README's demo first: it must run to completion.
step "The README's demo (scripts/demo.sh)"
bash scripts/demo.sh >"$work/demo.log" 2>&1 || { cat "$work/demo.log" >&2; die "scripts/demo.sh failed (its output is above)"; }
grep -q 'no macvtap left on node-a' "$work/demo.log" || { cat "$work/demo.log" >&2; die "scripts/demo.sh stopped before its end"; }
