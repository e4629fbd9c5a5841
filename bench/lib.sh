# Shared by the benchmark scripts (sourced, not run): build the release binaries, copy them into a
# temporary folder (so a rebuild in the tree during a run cannot change what is measured), and stop
# the server under test on exit, whatever happens.
#
#   bench_setup NAME   sets $tmp, $sockserv, $loadgen and the EXIT/INT/TERM traps
#   stop_server        SIGTERM (then SIGKILL after 5 s) the server whose pid is in $server_pid
#   stop_process PID SECONDS [group]
#                      SIGTERM PID (its whole process group with "group"), SIGKILL it if it has
#                      not ended SECONDS later, and reap it

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

stop_process() {
  local pid=$1 seconds=$2 target=$1
  [ "${3:-}" = group ] && target="-$1"
  kill -TERM -- "$target" 2>/dev/null || true
  for _ in $(seq $((seconds * 10))); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL -- "$target" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

stop_server() {
  [ -n "$server_pid" ] || return 0
  stop_process "$server_pid" 5
  server_pid=
}

bench_cleanup() {
  stop_server
  rm -rf "$tmp"
}
