#!/usr/bin/env bash
# sockserv side by side with what users pick instead (issue 6, items 5 and 6): echo round trips
# against sockserv under each strategy and against the anchors — Python socketserver (threading,
# forking, UDP), Python asyncio, a minimal tokio echo, a blocking thread-per-connection Rust echo and a
# plain Rust UDP loop (bench/anchors/) — then memory per idle connection. Prints markdown on stdout:
# the targets (met or missed), round trips/s and p99 per cell, ratios, CPU per request, UDP, memory.
#
#   bench/side_by_side.sh                         # everything: about 13 minutes on 2 cores
#   RUNS=1 DURATION=1 bench/side_by_side.sh       # a quick look (about 4 minutes)
#   SECTIONS=udp bench/side_by_side.sh            # only some sections: stream, udp, idle
#   SERVERS="sockserv-reactor tokio" SECTIONS=stream TRANSPORTS=tcp bench/side_by_side.sh
#
# Cells, on TCP 127.0.0.1 and on a Unix stream socket: C=1 and C=50 persistent connections with 64 B
# and 16 KiB payloads, C=50 pipelined at depth 16, and a new connection per request (C=4); UDP at
# C=50, 64 B; 1 000 TCP connections that each made one round trip, held idle (bench/idle_memory.py:
# resident memory of the server's process tree before and after, per connection).
#
# Each server runs alone, in its own session (setsid), and is stopped — its whole process group —
# after its cells; runs alternate between servers so drift spreads over all of them. Medians of RUNS
# runs (C=1 cells: C1_RUNS runs), each DURATION s after WARMUP s. sockserv's configs set
# request_queue_size = 128 (and nodelay on TCP), pool has POOL_WORKERS workers (more than C, else
# persistent connections wait in the queue), forking servers allow MAX_CHILDREN children (1 000 idle
# connections need as many); the anchors set the same (see their headers).
#
# A run during which processes outside this script used FOREIGN_LIMIT cores or more (another build or
# test on a shared machine; bench/foreign_cpu.py) is set aside and run again, RETRIES times at most.
#
# Knobs (environment): RUNS [3], C1_RUNS [1], DURATION [2], WARMUP [0.3], SECTIONS [stream udp idle],
# TRANSPORTS [tcp unix], SERVERS (a subset of the names below), IDLE_CONNECTIONS [1000],
# POOL_WORKERS [64], MAX_CHILDREN [1100], RUST_LOG (sockserv's log level) [info], RAW (a folder to
# keep the raw JSON results in), RETRIES [24], FOREIGN_LIMIT [0.25]. Loopback only; every load run is
# bounded by loadgen (and `timeout`), so the whole is too.
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD
runs=${RUNS:-3}
c1_runs=${C1_RUNS:-1}
duration=${DURATION:-2}
warmup=${WARMUP:-0.3}
retries=${RETRIES:-24}
foreign_limit=${FOREIGN_LIMIT:-0.25}
sections=${SECTIONS:-stream udp idle}
transports=${TRANSPORTS:-tcp unix}
idle_connections=${IDLE_CONNECTIONS:-1000}
pool_workers=${POOL_WORKERS:-64}
max_children=${MAX_CHILDREN:-1100}
log_level=${RUST_LOG:-info}
only=${SERVERS:-}

stream_servers=(sockserv-sync sockserv-threading sockserv-pool sockserv-forking sockserv-reactor
  sockserv-reactor-1 rust-blocking tokio python-threading python-forking python-asyncio)
udp_servers=(sockserv-sync sockserv-threading sockserv-pool sockserv-forking sockserv-reactor
  rust-udp-loop python-threading)
# Pool is left out: an idle connection holds a worker, so 1 000 of them need 1 000 workers (threading).
idle_servers=(sockserv-threading sockserv-forking sockserv-reactor rust-blocking tokio
  python-threading python-forking python-asyncio)
# name|loadgen flags; sync serves one connection at a time, so it gets the C=1 and reconnect cells
# only; sockserv-reactor-1 (the reactor with `loops = 1` instead of one per core) the C=50 cells.
cells=(
  "c1-64|-c 1 --size 64"
  "c1-16k|-c 1 --size 16384"
  "c50-64|-c 50 --size 64"
  "c50-16k|-c 50 --size 16384"
  "c50-depth16|-c 50 --size 64 --depth 16"
  "reconnect|-c 4 --size 64 --reconnect"
)

started=$(date +%s)
echo "side_by_side.sh: building (release)" >&2
cargo build --release -p sockserv -p sockserv-bench >&2
cargo build --release --manifest-path bench/anchors/rust/Cargo.toml >&2
export MAX_CHILDREN=$max_children # read by bench/anchors/socketserver_echo.py

tmp=$(mktemp -d /tmp/sockserv-side-by-side.XXXXXX)
# Copies, so that a rebuild in the shared tree during the run cannot change what is measured.
mkdir "$tmp/bin"
release=${CARGO_TARGET_DIR:-target}/release
anchors_release=${CARGO_TARGET_DIR:-bench/anchors/rust/target}/release
cp "$release/sockserv" "$release/loadgen" "$anchors_release"/{tokio,blocking,udp}-echo \
  "$tmp/bin"/
sockserv=$tmp/bin/sockserv
loadgen=$tmp/bin/loadgen
anchors=$tmp/bin
server_pid=
# shellcheck source=bench/lib.sh
source bench/lib.sh
stop_server() {
  [ -n "$server_pid" ] || return 0
  # The server leads its own process group (setsid): this reaches forked children too.
  stop_process "$server_pid" 5 group
  server_pid=
}
cleanup() {
  stop_server
  if [ -n "${RAW:-}" ]; then
    mkdir -p "$RAW" && cp "$tmp"/*.jsonl "$tmp"/*.log "$RAW"/ 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wanted() { [ -z "$only" ] || [[ " $only " == *" $1 "* ]]; }
has_section() { [[ " $sections " == *" $1 "* ]]; }

# sockserv's config for one server: echo, STRATEGY, on LISTEN.
write_config() {
  local strategy=$1 listen=$2 transport=$3 loops=
  if [ "$strategy" = reactor-1 ]; then strategy=reactor loops=1; fi
  {
    printf '[[server]]\nname = "bench"\nlisten = "%s"\nhandler = "echo"\nstrategy = "%s"\n' \
      "$listen" "$strategy"
    case $strategy in
      forking) echo "max_children = $max_children" ;;
      pool) echo "workers = $pool_workers" ;;
    esac
    if [ "$loops" ]; then echo "loops = $loops"; fi
    if [ "$transport" != udp ]; then
      printf '[server.socket]\nrequest_queue_size = 128\n'
      if [ "$transport" = tcp ]; then echo 'nodelay = true'; fi
    fi
  } >"$tmp/bench.toml"
}

# Starts server ID on TRANSPORT; sets server_pid and target (its real endpoint).
start_server() {
  local id=$1 transport=$2 listen cmd
  case $transport in
    unix) listen="unix://$tmp/$id.sock" ;;
    *) listen="$transport://127.0.0.1:0" ;;
  esac
  case $id in
    sockserv-*)
      write_config "${id#sockserv-}" "$listen" "$transport"
      cmd=("$sockserv" serve "$tmp/bench.toml")
      ;;
    python-threading | python-forking)
      cmd=(python3 "$root/bench/anchors/socketserver_echo.py" "${id#python-}" "$listen")
      ;;
    python-asyncio) cmd=(python3 "$root/bench/anchors/asyncio_echo.py" "$listen") ;;
    tokio) cmd=("$anchors/tokio-echo" "$listen") ;;
    rust-blocking) cmd=("$anchors/blocking-echo" "$listen") ;;
    rust-udp-loop) cmd=("$anchors/udp-echo" "$listen") ;;
    *)
      echo "side_by_side.sh: unknown server $id" >&2
      exit 2
      ;;
  esac
  : >"$tmp/stdout"
  echo "== $id $transport" >>"$tmp/server.log"
  RUST_LOG=$log_level setsid "${cmd[@]}" >"$tmp/stdout" 2>>"$tmp/server.log" &
  server_pid=$!
  target=
  for _ in $(seq 100); do
    target=$(awk '$1 == "listening:" { print $3; exit }' "$tmp/stdout")
    [ -n "$target" ] && break
    if ! kill -0 "$server_pid" 2>/dev/null; then
      echo "side_by_side.sh: $id on $transport exited:" >&2
      tail -5 "$tmp/server.log" >&2
      exit 1
    fi
    sleep 0.1
  done
  if [ -z "$target" ]; then
    echo "side_by_side.sh: $id on $transport did not say it was listening" >&2
    exit 1
  fi
}

# One loadgen run against the running server; appends a line to results.jsonl. The line carries the
# CPU that processes outside this script used meanwhile (bench/foreign_cpu.py): a run during which
# they took FOREIGN_LIMIT cores or more is set aside (kept in disturbed.jsonl) and run once again, up
# to RETRIES times in all, so that other work on a shared machine does not decide a median.
measure() {
  local id=$1 transport=$2 cell=$3 run=$4 flags=$5 json t0 t1 foreign line
  while :; do
    python3 "$root/bench/foreign_cpu.py" snapshot $$ >"$tmp/foreign.json"
    t0=$(date +%s.%N)
    # shellcheck disable=SC2086 # flags are words
    json=$(timeout 90 "$loadgen" echo "$target" $flags --duration "$duration" --warmup "$warmup" \
      --server-pid "$server_pid" --json 2>>"$tmp/loadgen.log") || true
    t1=$(date +%s.%N)
    foreign=$(python3 "$root/bench/foreign_cpu.py" since "$tmp/foreign.json" $$ \
      "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')")
    [ -n "$json" ] || json=null
    line=$(printf '{"server": "%s", "transport": "%s", "cell": "%s", "run": %d, "machine": %s, "result": %s}' \
      "$id" "$transport" "$cell" "$run" "$foreign" "$json")
    if [ "$retries" -gt 0 ] && awk -v f="$(sed -n 's/.*"foreign_cores": \([0-9.]*\).*/\1/p' <<<"$foreign")" \
      -v l="$foreign_limit" 'BEGIN { exit !(f >= l) }'; then
      retries=$((retries - 1))
      echo "$line" >>"$tmp/disturbed.jsonl"
      echo "  run $run $transport $id $cell: disturbed ($foreign), again" >&2
      continue
    fi
    echo "$line" >>"$tmp/results.jsonl"
    break
  done
  local rate errors
  rate=$(sed -n 's/.*"requests_per_s": \([0-9.]*\).*/\1/p' <<<"$json")
  errors=$(sed -n 's/.*"errors": \([0-9]*\).*/\1/p' <<<"$json")
  echo "  run $run $transport $id $cell: ${rate:-failed} round trips/s, ${errors:-?} errors" >&2
}

touch "$tmp/results.jsonl" "$tmp/disturbed.jsonl" "$tmp/idle.jsonl" "$tmp/server.log" "$tmp/loadgen.log"

if has_section stream; then
  for run in $(seq "$runs"); do
    for transport in $transports; do
      [ "$transport" = udp ] && continue
      for id in "${stream_servers[@]}"; do
        wanted "$id" || continue
        start_server "$id" "$transport"
        for cell in "${cells[@]}"; do
          name=${cell%%|*}
          [[ $name == c1-* && $run -gt $c1_runs ]] && continue
          [[ $id == sockserv-sync && $name == c50-* ]] && continue
          [[ $id == sockserv-reactor-1 && $name != c50-* ]] && continue
          measure "$id" "$transport" "$name" "$run" "${cell#*|}"
        done
        stop_server
      done
    done
  done
fi

if has_section udp; then
  for run in $(seq "$runs"); do
    for id in "${udp_servers[@]}"; do
      wanted "$id" || continue
      start_server "$id" udp
      measure "$id" udp udp-c50 "$run" "-c 50 --size 64"
      stop_server
    done
  done
fi

if has_section idle; then
  for id in "${idle_servers[@]}"; do
    wanted "$id" || continue
    start_server "$id" tcp
    sleep 0.3 # let the server finish starting (threads, loops) before "before"
    json=$(timeout 90 python3 "$root/bench/idle_memory.py" --pid "$server_pid" \
      -n "$idle_connections" "$target" 2>>"$tmp/loadgen.log") || true
    [ -n "$json" ] || json=null
    printf '{"server": "%s", "result": %s}\n' "$id" "$json" >>"$tmp/idle.jsonl"
    echo "  idle $id: $(sed -n 's/.*"rss_kib_per_connection": \([0-9.-]*\).*/\1/p' <<<"$json") KiB/connection" >&2
    stop_server
  done
fi

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
cat <<EOF
Date: $(date -u +%Y-%m-%d). Machine: $(nproc) CPUs ($cpu), Linux $(uname -r), $(rustc --version | cut -d' ' -f1-2), $(python3 --version); loadgen shares the cores with the server.
Command: \`bench/side_by_side.sh\` (RUNS=$runs, C1_RUNS=$c1_runs, DURATION=$duration, WARMUP=$warmup, RETRIES=$retries left; sockserv logging at $log_level); $(($(date +%s) - started)) s in all, build included.

EOF
python3 "$root/bench/side_by_side_report.py" "$tmp"
