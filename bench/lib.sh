# Shared by the benchmark scripts (sourced, not run): build the release binaries, copy them into a
# temporary folder (so a rebuild in the tree during a run cannot change what is measured), and stop
# the server under test on exit, whatever happens.
#
#   bench_setup NAME   sets $tmp, $sockserv, $loadgen and the EXIT/INT/TERM traps
#   stop_server        SIGTERM (then SIGKILL after 5 s) the server whose pid is in $server_pid

bench_setup() {
  cargo build --release -p sockserv -p sockserv-bench >&2
  tmp=$(mktemp -d "/tmp/sockserv-$1.XXXXXX")
  local release=${CARGO_TARGET_DIR:-target}/release
  cp "$release/sockserv" "$release/loadgen" "$tmp"/
  sockserv=$tmp/sockserv
  loadgen=$tmp/loadgen
  server_pid=
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
}

stop_server() {
  [ -n "$server_pid" ] || return 0
  kill -TERM "$server_pid" 2>/dev/null || true
  for _ in $(seq 50); do
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=
}

bench_cleanup() {
  stop_server
  rm -rf "$tmp"
}
