# Starts the local control plane in the background and exports KUBECONFIG for the caller.
# Source it after building: `source scripts/control-plane.sh; start_control_plane DIR`.
# shellcheck shell=bash

start_control_plane() {
  local workdir="$1" bin="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/debug/switchyard-control-plane"
  local envfile="$workdir/control-plane.env"
  rm -f "$envfile"
  "$bin" --env-file "$envfile" 2>"$workdir/control-plane.log" &
  CONTROL_PLANE_PID=$!
  for _ in $(seq 1 600); do
    [ -s "$envfile" ] && break
    kill -0 "$CONTROL_PLANE_PID" 2>/dev/null || { cat "$workdir/control-plane.log" >&2; die "the control plane failed to start"; }
    sleep 0.1
  done
  [ -s "$envfile" ] || die "the control plane did not start within 60s"
  set -a
  # shellcheck disable=SC1090
  source "$envfile"
  set +a
  note "$(tail -n1 "$workdir/control-plane.log")"
}

stop_control_plane() {
  if [ -n "${CONTROL_PLANE_PID:-}" ] && kill -0 "$CONTROL_PLANE_PID" 2>/dev/null; then
    kill "$CONTROL_PLANE_PID" 2>/dev/null || true
    wait "$CONTROL_PLANE_PID" 2>/dev/null || true
  fi
  CONTROL_PLANE_PID=
}
