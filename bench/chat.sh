#!/usr/bin/env bash
# Chat fan-out (issue 5, item 10): messages delivered per second to 100 listening clients, and the p99
# delivery latency, under threading and reactor.
#
#   bench/chat.sh                                # under a minute: threading and reactor, 3 runs
#   RUNS=1 DURATION=2 bench/chat.sh              # a quick look
#   STRATEGIES=threading LISTENERS=200 bench/chat.sh
#
# One sockserv process per strategy serves the chat handler on tcp://127.0.0.1:0 (nodelay, backlog
# 128, the handler's defaults: 256-message queues, overflow = "disconnect"). loadgen's chat mode joins
# LISTENERS listeners and S senders to the room; every message a sender sends reaches every listener
# (and the other senders), stamped by the server; a listener measures a delivery's latency from the
# send time the message carries. A sender keeps at most DEPTH messages not yet delivered to every
# listener, so no queue overflows and nothing is dropped: a lost delivery is an error. Loads:
# 1 sender at depth 1 (each message reaches all listeners before the next: latency) and 4 senders at
# depth 16 (throughput). Medians of RUNS runs of DURATION s after WARMUP s.
#
# Knobs (environment): STRATEGIES [threading reactor] (one `sockserv check` refuses for chat is
# skipped, with a note), LISTENERS [100], RUNS [3], DURATION [3], WARMUP [0.5], SIZE [64] (bytes per
# message line), RUST_LOG [warn: the chat handler logs every join and leave at info]. Prints a
# markdown table on stdout, progress on stderr; exits non-zero if a delivery failed. Loopback only;
# loadgen bounds every run; the server is stopped on exit, whatever happened.
set -euo pipefail

cd "$(dirname "$0")/.."
strategies=${STRATEGIES:-threading reactor}
listeners=${LISTENERS:-100}
runs=${RUNS:-3}
duration=${DURATION:-3}
warmup=${WARMUP:-0.5}
size=${SIZE:-64}
log_level=${RUST_LOG:-warn}
loads=("1 sender, depth 1|--senders 1 --depth 1" "4 senders, depth 16|--senders 4 --depth 16")

# shellcheck source=bench/lib.sh
source bench/lib.sh
bench_setup chat-bench

field() { sed -n "s/.*\"$1\": \([0-9.]*\).*/\1/p"; }
touch "$tmp/results.tsv"
skipped=()
for strategy in $strategies; do
  printf '[[server]]\nname = "chat"\nlisten = "tcp://127.0.0.1:0"\nhandler = "chat"\nstrategy = "%s"\n[server.socket]\nnodelay = true\nrequest_queue_size = 128\n' \
    "$strategy" >"$tmp/$strategy.toml"
  if ! "$sockserv" check "$tmp/$strategy.toml" >"$tmp/check.out" 2>&1; then
    echo "chat.sh: skipping $strategy: $(tail -1 "$tmp/check.out")" >&2
    skipped+=("$strategy: $(grep -m1 -v 'ok,' "$tmp/check.out" || true)")
    continue
  fi
  RUST_LOG=$log_level "$sockserv" serve "$tmp/$strategy.toml" >"$tmp/stdout" 2>>"$tmp/server.log" &
  server_pid=$!
  for _ in $(seq 100); do
    grep -q '^listening: ' "$tmp/stdout" && break
    kill -0 "$server_pid" 2>/dev/null || { tail -5 "$tmp/server.log" >&2; exit 1; }
    sleep 0.1
  done
  target=$(awk '$1 == "listening:" { print $3; exit }' "$tmp/stdout")
  for run in $(seq "$runs"); do
    for load in "${loads[@]}"; do
      read -r -a flags <<<"${load#*|}"
      json=$("$loadgen" chat "$target" -c "$listeners" "${flags[@]}" --size "$size" \
        --duration "$duration" --warmup "$warmup" --server-pid "$server_pid" --json) || true
      printf '%s\t%s\t%s\n' "$strategy" "${load%%|*}" "${json:-null}" >>"$tmp/results.tsv"
      echo "  $strategy, ${load%%|*}, run $run: $(field requests_per_s <<<"$json") delivered/s," \
        "p99 $(field latency_p99_us <<<"$json") µs, $(field errors <<<"$json") errors" >&2
    done
  done
  stop_server
done

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
echo "Date: $(date -u +%Y-%m-%d). Machine: $(nproc) CPUs ($cpu), Linux $(uname -r), $(rustc --version | cut -d' ' -f1-2); loadgen shares the cores with the server."
echo "Command: \`bench/chat.sh\` ($listeners listeners, $size B lines, RUNS=$runs, DURATION=$duration, WARMUP=$warmup, sockserv logging at $log_level)."
echo
status=0
python3 - "$tmp/results.tsv" <<'EOF' || status=$?
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    strategy, load, blob = line.rstrip("\n").split("\t", 2)
    rows.setdefault((strategy, load), []).append(json.loads(blob))
def med(runs, key):
    vals = [float(r[key]) for r in runs if r and r.get(key) is not None]
    return statistics.median(vals) if vals else None
def n(v, f="{:.0f}"):
    return "–" if v is None else f.format(v)
print("| strategy | load | delivered/s | all runs | sent/s | p50 µs | p99 µs | p99.9 µs | server CPU µs/delivery | errors |")
print("|---|---|---:|---|---:|---:|---:|---:|---:|---:|")
errors = 0
for (strategy, load), runs in rows.items():
    e = sum(int(r["errors"]) for r in runs if r) + sum(1 for r in runs if not r)
    errors += e
    every = ", ".join(n(float(r["requests_per_s"])) if r else "failed" for r in runs)
    print(f"| {strategy} | {load} | {n(med(runs, 'requests_per_s'))} | {every} | {n(med(runs, 'sent_per_s'))} | "
          f"{n(med(runs, 'latency_p50_us'))} | {n(med(runs, 'latency_p99_us'))} | {n(med(runs, 'latency_p99_9_us'))} | "
          f"{n(med(runs, 'server_cpu_us_per_request'), '{:.2f}')} | {e} |")
sys.exit(1 if errors else 0)
EOF
for s in "${skipped[@]}"; do echo "Skipped: $s"; done
exit "$status"
