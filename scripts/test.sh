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

step "Building"
cargo build --workspace --all-targets --locked -q

step "libvirt conformance (../shared/corpus/libvirt)"
cargo test --locked -q -p switchyard-libvirt --test corpus -- --nocapture 2>&1 | grep -E '^libvirt corpus:' \
  || die "the libvirt corpus test failed; run: cargo test -p switchyard-libvirt --test corpus"

step "Starting the local control plane (etcd + kube-apiserver $KUBE_VERSION)"
start_control_plane "$work"

step "Running the tests"
cargo test --workspace --locked --no-fail-fast -- --test-threads="${SWITCHYARD_TEST_THREADS:-4}"
