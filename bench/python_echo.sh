#!/usr/bin/env bash
# Python echo under sockserv against Python's own servers, in one run (issue 16, item 4; goals: the
# best of sockserv threading/pool >= 2x ThreadingTCPServer, sockserv's reactor >= 1.5x asyncio).
#
# The same classes everywhere (bench/anchors/python_echo.py): `Echo`, a socketserver handler, under
# sockserv's Python plugin with threading and pool and under socketserver.ThreadingTCPServer;
# `EchoProtocol`, an asyncio.Protocol, under sockserv's reactor (python-asyncio) and under asyncio's
# create_server. loadgen runs against each in turn, alternating, RUNS times; the medians go into a
# markdown table on stdout.
#
#   bench/python_echo.sh                      # C=50, 64 B, 5 s per run after 1 s warm-up, 3 runs
#   RUNS=1 DURATION=2 bench/python_echo.sh    # a quick look
#
# Needs Python's development files (python3-dev) for the plugin; PYTHON names the interpreter
# (default /usr/bin/python3), used both to build the plugin (PYO3_PYTHON) and to run the anchors.
# Knobs: RECONNECT=1 (a new connection per request: the accept path, a thread and a handler
# instance per request), CONNECTIONS, SIZE, DURATION, WARMUP, RUNS, POOL_WORKERS (default: CONNECTIONS),
# LOOPS (the reactor's event loops; default: sockserv's, one per core). Loopback only;
# loadgen bounds every run itself.
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD
. bench/lib.sh
connections=${CONNECTIONS:-50}
size=${SIZE:-64}
duration=${DURATION:-5}
warmup=${WARMUP:-1}
runs=${RUNS:-3}
python=${PYTHON:-/usr/bin/python3}
extra=()
[ "${RECONNECT:-0}" = 1 ] && extra+=(--reconnect)

bench_setup python-echo
PYO3_PYTHON=$python cargo build --release -p sockserv-python >&2
cp "${CARGO_TARGET_DIR:-target}/release/libsockserv_python.so" "$tmp/"
anchor_pid=
stop_all() {
  if [ -n "$anchor_pid" ]; then
    stop_process "$anchor_pid" 5
  fi
  bench_cleanup
}
trap stop_all EXIT

module=$root/bench/anchors/python_echo.py
server_table() {
  printf '[[server]]\nname = "%s"\nlisten = "tcp://127.0.0.1:0"\nhandler = "%s"\nstrategy = "%s"\n' \
    "$1" "$2" "$1"
  # A worker per connection: a persistent connection holds its worker.
  if [ "$1" = pool ]; then
    printf 'workers = %s\n' "${POOL_WORKERS:-$connections}"
  fi
  if [ "$1" = reactor ] && [ -n "${LOOPS:-}" ]; then
    printf 'loops = %s\n' "$LOOPS"
  fi
  printf '[server.socket]\nnodelay = true\nrequest_queue_size = 128\n'
  printf '[server.options]\nmodule = "%s"\nclass = "%s"\n\n' "$module" "$3"
}
{
  printf '[[plugin]]\npath = "%s"\n\n' "$tmp/libsockserv_python.so"
  server_table threading python Echo
  server_table pool python Echo
  server_table reactor python-asyncio EchoProtocol
} >"$tmp/python-echo.toml"

# Logging at warn: the per-connection line would cost sockserv alone (Python's servers print none).
RUST_LOG=${RUST_LOG:-warn} "$sockserv" serve "$tmp/python-echo.toml" >"$tmp/stdout" 2>"$tmp/stderr" &
server_pid=$!
for _ in $(seq 100); do
  [ "$(grep -c '^listening: ' "$tmp/stdout" || true)" -ge 3 ] && break
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "python_echo.sh: sockserv exited:" >&2
    cat "$tmp/stderr" >&2
    exit 1
  fi
  sleep 0.1
done
endpoint() { awk -v name="$1" '$1 == "listening:" && $2 == name { print $3 }' "$2"; }

field() { sed -n "s/.*\"$1\": \([0-9.]*\).*/\1/p"; }
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# One loadgen run against $2 (server pid $3), recorded under the name $1.
measure() {
  local json rate
  json=$("$loadgen" echo "$2" -c "$connections" --size "$size" --duration "$duration" \
    --warmup "$warmup" --server-pid "$3" "${extra[@]}" --json)
  rate=$(field requests_per_s <<<"$json")
  echo "run $run $1 $2: $rate round trips/s" >&2
  for f in requests_per_s latency_p50_us latency_p99_us server_cpu_us_per_request errors; do
    field "$f" <<<"$json" >>"$tmp/$1.$f"
  done
}

# An anchor: python_echo.py MODE ($1), started for one measurement and stopped after it.
anchor() {
  "$python" "$module" "$1" tcp://127.0.0.1:0 >"$tmp/anchor.out" 2>"$tmp/anchor.err" &
  anchor_pid=$!
  for _ in $(seq 100); do
    grep -q '^listening: ' "$tmp/anchor.out" && break
    sleep 0.1
  done
  measure "$1" "$(endpoint anchor "$tmp/anchor.out")" "$anchor_pid"
  stop_process "$anchor_pid" 5
  anchor_pid=
}

for run in $(seq "$runs"); do
  for which in threading pool reactor; do
    measure "$which" "$(endpoint "$which" "$tmp/stdout")" "$server_pid"
  done
  anchor socketserver
  anchor asyncio
done

med() { median <"$tmp/$1.$2"; }
total_errors=$(cat "$tmp"/*.errors | awk '{ s += $1 } END { print s + 0 }')
ratio() {
  awk -v a="$(med "$1" requests_per_s)" -v b="$(med "$2" requests_per_s)" \
    'BEGIN { printf "%.2f", a / b }'
}
best=threading
if awk -v p="$(med pool requests_per_s)" -v t="$(med threading requests_per_s)" \
  'BEGIN { exit !(p > t) }'; then
  best=pool
fi
blocking=$(ratio "$best" socketserver)
evented=$(ratio reactor asyncio)
verdict() { awk -v r="$1" -v goal="$2" 'BEGIN { print (r >= goal ? "meets" : "misses") }'; }

row() {
  printf '| %s | %.0f | %s | %s | %s | %s |\n' "$1" "$(med "$2" requests_per_s)" \
    "$(sort -n "$tmp/$2.requests_per_s" | awk '{ printf "%s%.0f", (NR > 1 ? ", " : ""), $1 }')" \
    "$(med "$2" latency_p50_us)" "$(med "$2" latency_p99_us)" "$(med "$2" server_cpu_us_per_request)"
}
version=$("$python" -c 'import platform; print(platform.python_version())')
echo "TCP 127.0.0.1, C=$connections ${extra[*]:-persistent}, $size B, ${duration} s per run after ${warmup} s" \
  "warm-up, $runs runs each (alternating), medians; Python $version; loadgen shares the machine" \
  "($(nproc) cores)."
echo
echo "| server | round trips/s | all runs | p50 µs | p99 µs | server CPU µs/request |"
echo "|---|---:|---|---:|---:|---:|"
row "sockserv threading, \`Echo\` (socketserver handler)" threading
row "sockserv pool, \`Echo\`" pool
row "sockserv reactor, \`EchoProtocol\` (asyncio.Protocol)" reactor
row "socketserver.ThreadingTCPServer, \`Echo\`" socketserver
row "asyncio create_server, \`EchoProtocol\`" asyncio
echo
echo "**sockserv $best / ThreadingTCPServer: ${blocking}×** (goal ≥ 2: $(verdict "$blocking" 2));" \
  "**sockserv reactor / asyncio: ${evented}×** (goal ≥ 1.5: $(verdict "$evented" 1.5));" \
  "errors: $total_errors."
[ "$total_errors" -eq 0 ]
