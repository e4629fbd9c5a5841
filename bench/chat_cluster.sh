#!/usr/bin/env bash
# Chat across instances (issue 14, item 7): cross-instance delivery latency at a fixed rate, and the
# fan-out throughput of two clustered instances against a single instance's.
#
#   bench/chat_cluster.sh                        # about a minute
#   RUNS=1 DURATION=2 bench/chat_cluster.sh      # a quick look
#
# Starts its own redis-server (Debian's redis-server package) on a free loopback port with no
# persistence, two sockserv instances A and B in one cluster and, for comparison, one instance
# without the cluster option; all serve chat under STRATEGY on tcp://127.0.0.1:0 with nodelay, the
# members' `rate` lifted (1000000/s, burst 1024: the default 100/s per member would be the limit
# measured) and 1024-message queues.
# loadgen's chat mode joins LISTENERS listeners, every other one on B (`--spread`), and senders on
# A; only the listeners on B are measured, so every latency is a delivery that went A -> Redis ->
# B, measured from the send time in the message. Loads:
#   - latency: 1 sender at RATE messages a second (default 1000), a window of 64;
#   - throughput: 4 senders at depth 16 as fast as the window allows (as bench/chat.sh), on the
#     cluster (deliveries counted on B: half the listeners) and on the single instance (all).
# Each sender keeps at most its window of messages not yet delivered to every listener, local and
# remote, so no queue overflows: a lost delivery is an error. Medians of RUNS runs of DURATION s
# after WARMUP s. Knobs: STRATEGY [reactor], LISTENERS [100], RATE [1000], RUNS [3], DURATION [3],
# WARMUP [0.5], SIZE [64]. Prints a markdown table on stdout, progress on stderr; loopback only;
# loadgen bounds every run; every process it started is stopped on exit.
set -euo pipefail

cd "$(dirname "$0")/.."
strategy=${STRATEGY:-reactor}
listeners=${LISTENERS:-100}
rate=${RATE:-1000}
runs=${RUNS:-3}
duration=${DURATION:-3}
warmup=${WARMUP:-0.5}
size=${SIZE:-64}

redis_server=$(command -v redis-server || true)
if [ -z "$redis_server" ]; then
  echo "chat_cluster.sh: redis-server is not installed (Debian package redis-server)" >&2
  exit 1
fi

# shellcheck source=bench/lib.sh
source bench/lib.sh
bench_setup chat-cluster-bench
pids=()
cluster_cleanup() {
  for pid in "${pids[@]}"; do stop_process "$pid" 5; done
  bench_cleanup
}
trap cluster_cleanup EXIT

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$redis_server" --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$tmp" \
  >"$tmp/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done

# start NAME [CLUSTER-TABLE]: serves chat; sets $target_NAME and $pid_NAME.
start() {
  local name=$1 cluster=${2:-}
  printf '[[server]]\nname = "chat"\nlisten = "tcp://127.0.0.1:0"\nhandler = "chat"\nstrategy = "%s"\n[server.socket]\nnodelay = true\nrequest_queue_size = 128\n[server.options]\nqueue_messages = 1024\nrate = 1000000\nburst = 1024\n%s\n' \
    "$strategy" "$cluster" >"$tmp/$name.toml"
  RUST_LOG=warn "$sockserv" serve "$tmp/$name.toml" >"$tmp/$name.out" 2>>"$tmp/server.log" &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 100); do
    grep -qs '^listening: ' "$tmp/$name.out" && break
    kill -0 "$pid" 2>/dev/null || { tail -5 "$tmp/server.log" >&2; exit 1; }
    sleep 0.1
  done
  printf -v "target_$name" '%s' "$(awk '$1 == "listening:" { print $3; exit }' "$tmp/$name.out")"
  printf -v "pid_$name" '%s' "$pid"
}
cluster='[server.options.cluster]\nredis = "redis://127.0.0.1:'"$port"'/0"\nnode = "%s"'
start a "$(printf "$cluster" a)"
start b "$(printf "$cluster" b)"
start single

field() { sed -n "s/.*\"$1\": \([0-9.]*\).*/\1/p"; }
touch "$tmp/results.tsv"
for run in $(seq "$runs"); do
  for load in \
    "cluster|latency, 1 sender at $rate/s|$target_a|--spread $target_b --senders 1 --depth 64 --rate $rate" \
    "cluster|throughput, 4 senders, depth 16|$target_a|--spread $target_b --senders 4 --depth 16" \
    "single|throughput, 4 senders, depth 16|$target_single|--senders 4 --depth 16"; do
    IFS='|' read -r setup what target flags <<<"$load"
    read -r -a flags <<<"$flags"
    json=$("$loadgen" chat "$target" -c "$listeners" "${flags[@]}" --size "$size" \
      --duration "$duration" --warmup "$warmup" --json) || true
    printf '%s\t%s\t%s\n' "$setup" "$what" "${json:-null}" >>"$tmp/results.tsv"
    echo "  $setup, $what, run $run: $(field sent_per_s <<<"$json") sent/s," \
      "p50 $(field latency_p50_us <<<"$json") µs, p99 $(field latency_p99_us <<<"$json") µs," \
      "$(field errors <<<"$json") errors" >&2
  done
done

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
echo "Date: $(date -u +%Y-%m-%d). Machine: $(nproc) CPUs ($cpu), Linux $(uname -r), $("$redis_server" --version | cut -d' ' -f1-3); loadgen, Redis and both instances share the cores."
echo "Command: \`bench/chat_cluster.sh\` ($strategy, $listeners listeners, $size B lines, RUNS=$runs, DURATION=$duration, WARMUP=$warmup)."
echo
python3 - "$tmp/results.tsv" "$listeners" <<'PY'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    setup, what, blob = line.rstrip("\n").split("\t", 2)
    rows.setdefault((setup, what), []).append(json.loads(blob))
listeners = int(sys.argv[2])
def med(runs, key):
    vals = [float(r[key]) for r in runs if r and r.get(key) is not None]
    return statistics.median(vals) if vals else None
def n(v, f="{:.0f}"):
    return "–" if v is None else f.format(v)
print("| setup | load | sent/s | deliveries/s (all listeners) | measured | p50 µs | p99 µs | p99.9 µs | errors |")
print("|---|---|---:|---:|---|---:|---:|---:|---:|")
errors = 0
for (setup, what), runs in rows.items():
    e = sum(int(r["errors"]) for r in runs if r) + sum(1 for r in runs if not r)
    errors += e
    sent = med(runs, "sent_per_s")
    measured = "across (B's listeners)" if setup == "cluster" else "all listeners"
    print(f"| {setup} | {what} | {n(sent)} | {n(None if sent is None else sent * listeners)} | {measured} | "
          f"{n(med(runs, 'latency_p50_us'))} | {n(med(runs, 'latency_p99_us'))} | {n(med(runs, 'latency_p99_9_us'))} | {e} |")
sys.exit(1 if errors else 0)
PY
