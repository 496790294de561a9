#!/usr/bin/env bash
# switchyard's benchmark: the node agent against the raw rtnetlink floor and the reference CNI
# macvlan plugin, in private network namespaces with a private control plane on 127.0.0.1.
# Installs nothing beyond scripts/install-deps.sh; builds release binaries; run as root.
#
#   scripts/bench.sh [--sizes 100,1000,4000] [--skip-cni] [--cni-max N] [--output FILE.md]
#
# Every option is passed to switchyard-bench (see `switchyard-bench --help`). It prints the
# machine and one markdown table per N, with the floor measured in the same run.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
source scripts/lib.sh
need_root

bash scripts/install-deps.sh

step "Building release binaries (node agent, bench)"
cargo build --release --locked -q -p switchyard-node-agent -p switchyard-bench
target="${CARGO_TARGET_DIR:-$REPO_ROOT/target}"

step "Benchmarking (N = 4000 takes several minutes)"
exec "$target/release/switchyard-bench" --agent-bin "$target/release/switchyard-node-agent" "$@"
