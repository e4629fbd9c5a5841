#!/usr/bin/env bash
# Plugin echo against built-in echo, under the same load (issue 3, item 8; target: the plugin at
# >= 0.95x the built-in's round trips per second).
#
# One sockserv process serves both, each on tcp://127.0.0.1:0 under the threading strategy: the
# built-in `echo`, and the example plugin `shout` with `uppercase = false` (a plain echo that crosses
# the plugin C ABI for every read and write). loadgen runs against each in turn, alternating, and the
# medians go into a markdown table on stdout.
#
#   bench/plugin_echo.sh                      # C=50, 64 B, 5 s per run after 1 s warm-up, 3 runs each
#   RUNS=1 DURATION=2 bench/plugin_echo.sh    # a quick look
#
# Knobs (environment): CONNECTIONS, SIZE, DURATION, WARMUP, RUNS; RECONNECT=1 for a new connection per
# request (per-connection costs: thread, buffers, plugin instance, log line); RUST_LOG for the server's
# logging (default info, the server's own default). Loopback only; loadgen bounds every run itself.
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD
connections=${CONNECTIONS:-50}
size=${SIZE:-64}
duration=${DURATION:-5}
warmup=${WARMUP:-1}
runs=${RUNS:-3}
extra=()
[ "${RECONNECT:-0}" = 1 ] && extra+=(--reconnect)

cargo build --release -p sockserv -p sockserv-example-shout -p sockserv-bench >&2
release=${CARGO_TARGET_DIR:-$root/target}/release
sockserv=$release/sockserv
loadgen=$release/loadgen
plugin=$release/libsockserv_example_shout.so

tmp=$(mktemp -d)
server_pid=
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid"
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

# Both servers get the same socket options: TCP_NODELAY, and a backlog that takes 50 connects at once
# (socketserver's default of 5 would make connecting, not echoing, the first thing measured).
cat >"$tmp/plugin-echo.toml" <<EOF
[[plugin]]
path = "$plugin"

[[server]]
name = "builtin"
listen = "tcp://127.0.0.1:0"
handler = "echo"
strategy = "threading"
[server.socket]
nodelay = true
request_queue_size = 128

[[server]]
name = "plugin"
listen = "tcp://127.0.0.1:0"
handler = "shout"
strategy = "threading"
[server.socket]
nodelay = true
request_queue_size = 128
[server.options]
uppercase = false
EOF

RUST_LOG=${RUST_LOG:-info} "$sockserv" serve "$tmp/plugin-echo.toml" >"$tmp/stdout" 2>"$tmp/stderr" &
server_pid=$!

# The real ports, from the `listening: NAME ENDPOINT ...` lines (at most 10 s).
for _ in $(seq 100); do
  [ "$(grep -c '^listening: ' "$tmp/stdout" || true)" -ge 2 ] && break
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "plugin_echo.sh: the server exited:" >&2
    cat "$tmp/stderr" >&2
    exit 1
  fi
  sleep 0.1
done
endpoint() { awk -v name="$1" '$1 == "listening:" && $2 == name { print $3 }' "$tmp/stdout"; }
declare -A target=([builtin]=$(endpoint builtin) [plugin]=$(endpoint plugin))
for which in builtin plugin; do
  if [ -z "${target[$which]}" ]; then
    echo "plugin_echo.sh: no listening line for $which" >&2
    cat "$tmp/stdout" "$tmp/stderr" >&2
    exit 1
  fi
done

field() { sed -n "s/.*\"$1\": \([0-9.]*\).*/\1/p"; }
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

for run in $(seq "$runs"); do
  for which in builtin plugin; do
    json=$("$loadgen" echo "${target[$which]}" -c "$connections" --size "$size" \
      --duration "$duration" --warmup "$warmup" --server-pid "$server_pid" "${extra[@]}" --json)
    rate=$(field requests_per_s <<<"$json")
    echo "run $run $which ${target[$which]}: $rate round trips/s" >&2
    for f in requests_per_s latency_p50_us latency_p99_us server_cpu_us_per_request errors; do
      field "$f" <<<"$json" >>"$tmp/$which.$f"
    done
  done
done

med() { median <"$tmp/$1.$2"; }
total_errors=$(cat "$tmp"/*.errors | awk '{ s += $1 } END { print s + 0 }')
ratio=$(awk -v p="$(med plugin requests_per_s)" -v b="$(med builtin requests_per_s)" \
  'BEGIN { printf "%.3f", p / b }')
verdict=$(awk -v r="$ratio" 'BEGIN { print (r >= 0.95 ? "meets" : "misses") }')

row() {
  printf '| %s | %.0f | %s | %s | %s | %s |\n' "$1" "$(med "$2" requests_per_s)" \
    "$(sort -n "$tmp/$2.requests_per_s" | awk '{ printf "%s%.0f", (NR > 1 ? ", " : ""), $1 }')" \
    "$(med "$2" latency_p50_us)" "$(med "$2" latency_p99_us)" "$(med "$2" server_cpu_us_per_request)"
}
cat <<EOF
TCP 127.0.0.1, threading, C=$connections, $size B,${extra[*]:+ ${extra[*]},} ${duration} s per run after ${warmup} s warm-up, $runs runs each (alternating), medians; loadgen shares the machine ($(nproc) cores).

| server | round trips/s | all runs | p50 µs | p99 µs | server CPU µs/request |
|---|---:|---|---:|---:|---:|
$(row "built-in \`echo\`" builtin)
$(row "plugin \`shout\`, uppercase = false" plugin)

**plugin / built-in: ${ratio}×** (target ≥ 0.95: $verdict); errors: $total_errors.
EOF
[ "$total_errors" -eq 0 ]
