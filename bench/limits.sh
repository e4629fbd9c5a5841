#!/usr/bin/env bash
# The [server.limits] benchmark (the limits issue, item 6), under threading, pool, forking and
# reactor, each serving echo on tcp://127.0.0.1:0. Three sections, each with a server of its own:
#
#   held        an attacker (`loadgen hold --ping`) holds IDLE idle connections while a well-behaved
#               client (`loadgen echo -c CLIENTS`) measures its p99; the same client without them is
#               the baseline, alternating, ROUNDS rounds. Target: p99 within 2x, no request of the
#               client refused (no error). Also memory per held idle connection (VmRSS and Pss of the
#               server's process tree, before and while held). Config: max_connections = "none" (the
#               default 1024 would refuse the attacker), idle_timeout left at its default (300 s).
#   timeout     idle_timeout = IDLE_TIMEOUT (5 s): the attacker's IDLE connections, each after one
#               echo, must all be closed by the server within 6 s of going idle (the attacker times
#               each close; the table also says when the server's threads, processes and
#               descriptors were back to their baseline), and the server's
#               resident memory must come back within 10 % of its baseline (taken after a warm-up
#               echo run, once the warm-up's connections are gone). ROUNDS rounds, a fresh server
#               each (as for held).
#   per_source  max_connections_per_source = 2: an attacker from 127.0.0.2 opens 10 connections one
#               after another; the third and later must be refused (closed before any byte: counted
#               by the attacker, and cross-checked with the server's `refused ...: limit:
#               per_source (2)` log lines) while two other sources, 127.0.0.1 and 127.0.0.3, each run
#               `loadgen echo -c 2` without an error. ROUNDS rounds.
#
#   bench/limits.sh                                   # everything: about 10 minutes on 2 cores
#   ROUNDS=1 DURATION=2 IDLE=2000 bench/limits.sh     # a quick look
#   STRATEGIES=reactor SECTIONS=held bench/limits.sh
#
# Counts: threading and reactor hold IDLE (10 000) connections. pool holds IDLE_POOL (4 000) with
# POOL_WORKERS (4 096, its maximum) workers: a pool worker serves one connection at a time, idle or
# not, so beyond the workers connections wait in the queue (128) and then are refused; one extra row
# (POOL_OVERFLOW=1) holds IDLE against the same pool to show it. forking holds IDLE_FORKING (4 000)
# with max_children = MAX_CHILDREN (10 000): opening the n-th connection costs the server O(n) (see
# RESULTS.md), so 10 000 do not open within loadgen's 120 s bound on 2 shared cores. A forking server
# at max_children stops accepting: further connections wait in the listen backlog.
#
# Machine: the script raises the descriptor limit (ulimit -n) to what IDLE needs and fails if it
# cannot; it checks threads-max, pid_max and ulimit -u for threading's thread per connection. Each
# echo run records the CPU other processes used meanwhile (bench/foreign_cpu.py); one that saw
# FOREIGN_LIMIT cores or more is run again, RETRIES times at most per run, then kept and flagged.
#
# Knobs (environment): STRATEGIES [threading pool forking reactor], SECTIONS [held timeout
# per_source], ROUNDS [2], DURATION [5] (seconds per echo run, after 0.5 s warm-up), CLIENTS [10],
# IDLE [10000], IDLE_POOL [4000], IDLE_FORKING [4000], POOL_WORKERS [4096], MAX_CHILDREN [10000],
# POOL_OVERFLOW [1], IDLE_TIMEOUT [5], RUST_LOG (the server's log level) [info], RETRIES [2],
# FOREIGN_LIMIT [0.5], RAW (a folder to keep the raw results and logs in).
#
# Prints markdown on stdout, progress on stderr. Loopback only (127.0.0.1, .2, .3). Every loadgen
# run is bounded by loadgen and by `timeout`, every wait by a count; the servers (whole process
# groups, forked children included) and the attacker are stopped on exit, whatever happened.
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD
strategies=${STRATEGIES:-threading pool forking reactor}
sections=${SECTIONS:-held timeout per_source}
rounds=${ROUNDS:-2}
duration=${DURATION:-5}
clients=${CLIENTS:-10}
idle=${IDLE:-10000}
idle_pool=${IDLE_POOL:-4000}
idle_forking=${IDLE_FORKING:-4000}
pool_workers=${POOL_WORKERS:-4096}
max_children=${MAX_CHILDREN:-10000}
pool_overflow=${POOL_OVERFLOW:-1}
idle_timeout=${IDLE_TIMEOUT:-5}
log_level=${RUST_LOG:-info}
retries=${RETRIES:-2}
foreign_limit=${FOREIGN_LIMIT:-0.5}
# The attacker opens this many connections at once (connect, ping, reply).
hold_depth=64
per_source_attempts=10

fail() {
  echo "limits.sh: $*" >&2
  exit 1
}

idle_for() {
  case $1 in
    pool) echo "$idle_pool" ;;
    forking) echo "$idle_forking" ;;
    *) echo "$idle" ;;
  esac
}

# Descriptors, threads and processes for the largest hold: the server and the attacker each need a
# descriptor per connection (the forking parent keeps a copy of each child's too).
raise_limits() {
  local most=0 s n need hard
  for s in $strategies; do
    n=$(idle_for "$s")
    [ "$n" -gt "$most" ] && most=$n
  done
  if [ "$pool_overflow" = 1 ] && [ "$idle" -gt "$most" ]; then most=$idle; fi
  need=$((most + 1024))
  if [ "$(ulimit -Sn)" != unlimited ] && [ "$(ulimit -Sn)" -lt "$need" ]; then
    hard=$(ulimit -Hn)
    if [ "$hard" != unlimited ] && [ "$hard" -lt "$need" ]; then
      ulimit -Hn "$need" 2>/dev/null ||
        fail "$most connections need $need descriptors per process; the hard limit is $hard and cannot be raised here (run as root, or lower IDLE)"
    fi
    ulimit -Sn "$need" || fail "cannot raise the descriptor limit to $need"
  fi
  echo "limits.sh: descriptor limit $(ulimit -Sn) (need $need)" >&2
  if [[ " $strategies " == *" threading "* ]]; then
    need=$((idle + 2048))
    for f in /proc/sys/kernel/threads-max /proc/sys/kernel/pid_max; do
      [ "$(cat "$f")" -ge "$need" ] || fail "threading with $idle connections needs $f >= $need"
    done
    if [ "$(ulimit -Su)" != unlimited ] && [ "$(ulimit -Su)" -lt "$need" ]; then
      ulimit -Su "$need" 2>/dev/null || fail "threading with $idle connections needs ulimit -u >= $need"
    fi
  fi
}

echo "limits.sh: building (release)" >&2
cargo build --release -p sockserv -p sockserv-bench >&2
raise_limits
target_dir=${CARGO_TARGET_DIR:-target}
tmp=$(mktemp -d /tmp/sockserv-limits.XXXXXX)
# Copies, so that a rebuild in the shared tree during the run cannot change what is measured.
cp "$target_dir/release/sockserv" "$target_dir/release/loadgen" "$tmp"/
sockserv=$tmp/sockserv
loadgen=$tmp/loadgen
server_pid=
hold_pid=
started=$(date +%s)

# shellcheck source=bench/lib.sh
source bench/lib.sh
stop_hold() {
  [ -n "$hold_pid" ] || return 0
  stop_process "$hold_pid" 10
  hold_pid=
}
stop_server() {
  [ -n "$server_pid" ] || return 0
  # The server leads its own process group (setsid): this reaches forked children too.
  stop_process "$server_pid" 10 group
  server_pid=
}
cleanup() {
  stop_hold
  stop_server
  if [ -n "${RAW:-}" ]; then
    mkdir -p "$RAW" && cp "$tmp"/*.jsonl "$tmp"/*.log "$RAW"/ 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
touch "$tmp/held.jsonl" "$tmp/timeout.jsonl" "$tmp/per_source.jsonl" "$tmp/server.log" "$tmp/loadgen.log"

# The config for STRATEGY in SECTION; WORKERS overrides the pool's workers.
write_config() {
  local strategy=$1 section=$2
  {
    printf '[[server]]\nname = "limits"\nlisten = "tcp://127.0.0.1:0"\nhandler = "echo"\nstrategy = "%s"\n' \
      "$strategy"
    case $strategy in
      pool) echo "workers = $pool_workers" ;;
      forking) echo "max_children = $max_children" ;;
    esac
    printf '[server.socket]\nrequest_queue_size = 4096\nnodelay = true\n[server.limits]\n'
    case $section in
      held) echo 'max_connections = "none"' ;;
      timeout) printf 'max_connections = "none"\nidle_timeout = %s\n' "$idle_timeout" ;;
      per_source) echo 'max_connections_per_source = 2' ;;
    esac
  } >"$tmp/limits.toml"
  "$sockserv" check "$tmp/limits.toml" >/dev/null || fail "sockserv check refused the $strategy config"
}

# Starts the server (its own session, so its children can be stopped with it); sets target.
start_server() {
  : >"$tmp/stdout"
  echo "== $1 $2" >>"$tmp/server.log"
  RUST_LOG=$log_level setsid "$sockserv" serve "$tmp/limits.toml" >"$tmp/stdout" 2>>"$tmp/server.log" &
  server_pid=$!
  target=
  for _ in $(seq 100); do
    target=$(awk '$1 == "listening:" { print $3; exit }' "$tmp/stdout")
    [ -n "$target" ] && break
    kill -0 "$server_pid" 2>/dev/null || { tail -5 "$tmp/server.log" >&2; fail "$1 server exited"; }
    sleep 0.1
  done
  [ -n "$target" ] || fail "the $1 server did not say it was listening"
  sleep 0.3 # let threads, loops and pool workers start before any baseline
}

state() { python3 "$root/bench/server_state.py" state "$server_pid" "$@"; }
field() { sed -n "s/.*\"$1\": \([0-9.]*\).*/\1/p" <<<"$2"; }

# Waits (bounded) until the server holds no more than BASE (a state JSON) does; prints the state.
released() {
  python3 "$root/bench/server_state.py" wait "$server_pid" --fds "$(field fds "$1")" \
    --threads "$(field threads "$1")" --processes "$(field processes "$1")" --timeout "${2:-60}"
}

# One loadgen echo run (FLAGS...), repeated while other processes used FOREIGN_LIMIT cores or more
# (RETRIES times at most); prints {"result": loadgen's JSON or null, "machine": ..., "tries": N,
# "discarded": [the runs set aside, each {"result", "machine"}]}: their errors still count.
echo_run() {
  local tries=0 json t0 t1 foreign snapshot="$tmp/foreign.$BASHPID.json" discarded=
  while :; do
    python3 "$root/bench/foreign_cpu.py" snapshot $$ >"$snapshot"
    t0=$(date +%s.%N)
    json=$(timeout 60 "$loadgen" echo "$target" --duration "$duration" --warmup 0.5 --json "$@" \
      2>>"$tmp/loadgen.log") || true
    t1=$(date +%s.%N)
    foreign=$(python3 "$root/bench/foreign_cpu.py" since "$snapshot" $$ \
      "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')")
    if [ "$tries" -lt "$retries" ] && awk -v f="$(field foreign_cores "$foreign")" \
      -v l="$foreign_limit" 'BEGIN { exit !(f >= l) }'; then
      tries=$((tries + 1))
      discarded+="${discarded:+, }{\"result\": ${json:-null}, \"machine\": $foreign}"
      echo "    echo run disturbed ($foreign), again" >&2
      continue
    fi
    break
  done
  # The kept run last, so that field() (which takes a key's last occurrence) reads its figures.
  printf '{"discarded": [%s], "tries": %d, "machine": %s, "result": %s}' "$discarded" "$tries" \
    "$foreign" "${json:-null}"
}

# Starts the attacker: loadgen hold TARGET ARGS... in the background, its JSON report to hold.json;
# returns once it says it holds them (or has exited).
start_hold() {
  : >"$tmp/hold.json"
  : >"$tmp/hold.err"
  timeout 900 "$loadgen" hold "$target" --ping --json "$@" >"$tmp/hold.json" 2>"$tmp/hold.err" &
  hold_pid=$!
  for _ in $(seq 1500); do
    grep -q 'holding' "$tmp/hold.err" && return 0
    kill -0 "$hold_pid" 2>/dev/null || break
    sleep 0.1
  done
  cat "$tmp/hold.err" >>"$tmp/loadgen.log"
  grep -q 'holding' "$tmp/hold.err" || echo "    the attacker did not get to hold: $(tail -1 "$tmp/hold.err")" >&2
}

# Ends the attacker (SIGTERM: it reports and closes everything); prints its report or null.
end_hold() {
  stop_hold
  cat "$tmp/hold.err" >>"$tmp/loadgen.log"
  if [ -s "$tmp/hold.json" ]; then cat "$tmp/hold.json"; else echo null; fi
}

# Warm-up: one short echo run, then wait until its connections are gone; prints the state then.
warm_up() {
  local fresh
  fresh=$(state)
  timeout 30 "$loadgen" echo "$target" -c "$clients" --duration 1 >/dev/null 2>>"$tmp/loadgen.log" || true
  released "$fresh" 30 >/dev/null
  sleep 0.5
  state
}

# held: IDLE idle connections against the well-behaved client's p99. NAME is the row's label. Each
# round has a fresh server, so that no round starts with memory an earlier one left behind.
section_held() {
  local strategy=$1 n=$2 name=$3 runs=$4 base before quiet loaded held hold after
  write_config "$strategy" held
  for round in $(seq "$runs"); do
    start_server "$name" held
    quiet=$(warm_up)
    echo "  held $name round $round: echo without the attacker" >&2
    base=$(echo_run -c "$clients")
    before=$(state --pss)
    echo "  held $name round $round: the attacker opens $n connections" >&2
    start_hold -c "$n" --depth "$hold_depth" --duration 600
    sleep 1
    held=$(state --pss)
    echo "  held $name round $round: echo while they are held" >&2
    loaded=$(echo_run -c "$clients")
    hold=$(end_hold)
    after=$(released "$quiet" 120)
    printf '{"strategy": "%s", "name": "%s", "idle": %d, "round": %d, "base": %s, "loaded": %s, "before": %s, "held": %s, "hold": %s, "after": %s}\n' \
      "$strategy" "$name" "$n" "$round" "$base" "$loaded" "$before" "$held" "$hold" "$after" >>"$tmp/held.jsonl"
    echo "    p99 $(field latency_p99_us "$base") -> $(field latency_p99_us "$loaded") µs, errors $(field errors "$loaded"), held $(field open_at_end "$hold") of $n" >&2
    stop_server
  done
}

# timeout: idle_timeout closes every idle connection; memory comes back. A fresh server per round.
section_timeout() {
  local strategy=$1 n=$2 quiet hold gone after
  write_config "$strategy" timeout
  for round in $(seq "$rounds"); do
    start_server "$strategy" timeout
    quiet=$(warm_up)
    echo "  timeout $strategy round $round: $n connections, then idle" >&2
    start_hold -c "$n" --depth "$hold_depth" --duration 120
    # From the moment the last connection went idle: when does the server hold nothing more?
    gone=$(released "$quiet" 60)
    for _ in $(seq 300); do
      kill -0 "$hold_pid" 2>/dev/null || break
      sleep 0.1
    done
    hold=$(end_hold)
    sleep 2
    after=$(state)
    printf '{"strategy": "%s", "idle": %d, "round": %d, "idle_timeout": %s, "quiet": %s, "hold": %s, "gone": %s, "after": %s}\n' \
      "$strategy" "$n" "$round" "$idle_timeout" "$quiet" "$hold" "$gone" "$after" >>"$tmp/timeout.jsonl"
    echo "    closed $(field closed "$hold") of $(field opened "$hold"), longest idle $(field closed_idle_max_s "$hold") s, server released in $(field seconds "$gone") s, RSS $(field rss_kib "$quiet") -> $(field rss_kib "$after") KiB" >&2
    stop_server
  done
}

# per_source: the third connection from one source is refused; the others are served.
section_per_source() {
  local strategy=$1 offset hold a b lines left_out others
  write_config "$strategy" per_source
  start_server "$strategy" per_source
  for round in $(seq "$rounds"); do
    echo "  per_source $strategy round $round" >&2
    offset=$(stat -c %s "$tmp/server.log")
    start_hold -c "$per_source_attempts" --depth 1 --bind 127.0.0.2 --duration 120
    echo_run -c 2 >"$tmp/a.json" &
    local a_pid=$!
    echo_run -c 2 --bind 127.0.0.3 >"$tmp/b.json"
    wait "$a_pid" || true
    a=$(cat "$tmp/a.json")
    b=$(cat "$tmp/b.json")
    hold=$(end_hold)
    sleep 1.2 # past the log's rate-limit window, so a left-out count would be written
    tail -c +"$((offset + 1))" "$tmp/server.log" >"$tmp/round.log"
    lines=$(grep -c 'refused 127\.0\.0\.2:[0-9]*: limit: per_source (2)' "$tmp/round.log" || true)
    left_out=$(sed -n 's/.*(\([0-9]*\) more like it left out.*/\1/p' "$tmp/round.log" | awk '{ s += $1 } END { print s + 0 }')
    others=$(grep -c 'refused 127\.0\.0\.[13]:' "$tmp/round.log" || true)
    printf '{"strategy": "%s", "round": %d, "attempts": %d, "hold": %s, "echo_1": %s, "echo_3": %s, "log_refusals": %d, "log_left_out": %d, "log_other_refusals": %d}\n' \
      "$strategy" "$round" "$per_source_attempts" "$hold" "$a" "$b" "$lines" "$left_out" "$others" >>"$tmp/per_source.jsonl"
    echo "    attacker: answered $(field answered "$hold"), refused $(field refused "$hold"); log: $lines; echo errors $(field errors "$a") + $(field errors "$b")" >&2
  done
  stop_server
}

has() { [[ " $sections " == *" $1 "* ]]; }
for strategy in $strategies; do
  n=$(idle_for "$strategy")
  if has held; then
    section_held "$strategy" "$n" "$strategy" "$rounds"
    if [ "$strategy" = pool ] && [ "$pool_overflow" = 1 ]; then
      section_held pool "$idle" pool-overflow 1
    fi
  fi
  if has timeout; then section_timeout "$strategy" "$n"; fi
  if has per_source; then section_per_source "$strategy"; fi
done

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
cat <<EOF
Date: $(date -u +%Y-%m-%d). Machine: $(nproc) CPUs ($cpu), $(free -g | awk '/^Mem:/ { print $2 }') GiB, Linux $(uname -r), $(rustc --version | cut -d' ' -f1-2); loadgen shares the cores with the server, and the machine with other work.
Command: \`bench/limits.sh\` (STRATEGIES="$strategies", ROUNDS=$rounds, DURATION=$duration, CLIENTS=$clients, IDLE=$idle, IDLE_POOL=$idle_pool, IDLE_FORKING=$idle_forking, POOL_WORKERS=$pool_workers, MAX_CHILDREN=$max_children, IDLE_TIMEOUT=$idle_timeout; sockserv logging at $log_level); $(($(date +%s) - started)) s in all, build included.

EOF
python3 "$root/bench/limits_report.py" "$tmp"
