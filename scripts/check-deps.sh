#!/usr/bin/env bash
# The kubectl plugin is a client: it must not link the controller crate, its axum server or
# hyper's server half. Feature unification in a workspace build would otherwise pull the
# webhook server into the plugin as soon as the plugin depends on anything that brings it.
# Fast (reads Cargo.lock and the manifests, builds nothing); run by test.sh before building.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
source scripts/lib.sh

plugin="kubectl-switchyard"
# What the plugin's binary links: normal dependencies only, each package and feature once.
linked="$(cargo tree --locked -p "$plugin" -e normal --prefix none --format '{p}')"
features="$(cargo tree --locked -p "$plugin" -e features,normal --prefix none --format '{p}')"

banned="$(grep -E '^(axum|axum-core|switchyard-controller) ' <<<"$linked" | sort -u || true)"
[ -z "$banned" ] || die "$plugin depends on $(tr '\n' ' ' <<<"$banned")— the plugin must not link the controller or a server (cargo tree -p $plugin -e normal -i <crate> shows why)"
if grep -qE '^hyper feature "server"' <<<"$features"; then
  die "$plugin turns on hyper's \"server\" feature (cargo tree -p $plugin -e features,normal -i hyper shows who)"
fi
note "$plugin links no controller, axum or hyper server"
