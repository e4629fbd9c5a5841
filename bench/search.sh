#!/usr/bin/env bash
# The search handler under load (issue 4, item 7): requests per second and server CPU per request,
# keep-alive and one request per connection, against the same load on the echo server.
#
#   bench/search.sh                              # about 2 minutes: threading and reactor, 3 runs
#   RUNS=1 DURATION=1 bench/search.sh            # a quick look
#   STRATEGIES="threading pool" bench/search.sh
#
# One sockserv process per strategy serves both, on tcp://127.0.0.1:0 (nodelay, backlog 128): the
# search handler with its default index (the tutorial's three entries, exact match), and echo.
# loadgen's search mode sends the tutorial's request {"action": "search", "value": "morpheus"}
# (header and content: the bytes per request are measured) and checks each reply; the echo load is
# the same shape — echo requests of the same size as the search request, same connections, same
# reconnecting — so the difference is what parsing the frame, looking up the index and building the
# JSON reply cost. Loads: C=1 and C=50 keep-alive connections, and a new connection per request
# (C=4). Runs alternate search and echo; medians of RUNS runs of DURATION s after WARMUP s.
#
# Knobs (environment): STRATEGIES [threading reactor] (a strategy `sockserv check` refuses for
# search is skipped, with a note), RUNS [3], DURATION [3], WARMUP [0.5], RUST_LOG [info], POOL_WORKERS
# [64]. Prints a markdown table on stdout, progress on stderr; exits non-zero if a request failed.
# Loopback only; loadgen bounds every run; the server is stopped on exit, whatever happened.
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD
strategies=${STRATEGIES:-threading reactor}
runs=${RUNS:-3}
duration=${DURATION:-3}
warmup=${WARMUP:-0.5}
pool_workers=${POOL_WORKERS:-64}
log_level=${RUST_LOG:-info}
loads=("keep-alive C=1|-c 1" "keep-alive C=50|-c 50" "reconnect C=4|-c 4 --reconnect")

# shellcheck source=bench/lib.sh
source bench/lib.sh
bench_setup search-bench

config() {
  local strategy=$1 handler
  for handler in search echo; do
    printf '[[server]]\nname = "%s"\nlisten = "tcp://127.0.0.1:0"\nhandler = "%s"\nstrategy = "%s"\n' \
      "$handler" "$handler" "$strategy"
    if [ "$strategy" = pool ]; then echo "workers = $pool_workers"; fi
    printf '[server.socket]\nnodelay = true\nrequest_queue_size = 128\n\n'
  done
}

field() { sed -n "s/.*\"$1\": \([0-9.]*\).*/\1/p"; }
touch "$tmp/results.tsv"
skipped=()
for strategy in $strategies; do
  config "$strategy" >"$tmp/$strategy.toml"
  if ! "$sockserv" check "$tmp/$strategy.toml" >"$tmp/check.out" 2>&1; then
    echo "search.sh: skipping $strategy: $(tail -1 "$tmp/check.out")" >&2
    skipped+=("$strategy ($(grep -m1 -v '^ok' "$tmp/check.out" || true))")
    continue
  fi
  RUST_LOG=$log_level "$sockserv" serve "$tmp/$strategy.toml" >"$tmp/stdout" 2>>"$tmp/server.log" &
  server_pid=$!
  for _ in $(seq 100); do
    [ "$(grep -c '^listening: ' "$tmp/stdout" || true)" -ge 2 ] && break
    kill -0 "$server_pid" 2>/dev/null || { tail -5 "$tmp/server.log" >&2; exit 1; }
    sleep 0.1
  done
  search=$(awk '$1 == "listening:" && $2 == "search" { print $3 }' "$tmp/stdout")
  echo=$(awk '$1 == "listening:" && $2 == "echo" { print $3 }' "$tmp/stdout")
  for load in "${loads[@]}"; do
    label=${load%%|*}
    read -r -a flags <<<"${load#*|}"
    size=
    for run in $(seq "$runs"); do
      json=$("$loadgen" search "$search" "${flags[@]}" --duration "$duration" --warmup "$warmup" \
        --server-pid "$server_pid" --json) || true
      # The echo requests are as large as a search request: bytes sent per request.
      if [ -z "$size" ] && [ -n "$json" ]; then
        size=$(awk -v b="$(field bytes_out <<<"$json")" -v n="$(field requests <<<"$json")" \
          'BEGIN { printf "%d", (n > 0 ? b / n : 150) }')
      fi
      printf '%s\t%s\tsearch\t%s\n' "$strategy" "$label" "${json:-null}" >>"$tmp/results.tsv"
      echo "  $strategy $label run $run search: $(field requests_per_s <<<"$json") requests/s" >&2
      json=$("$loadgen" echo "$echo" "${flags[@]}" --size "${size:-150}" --duration "$duration" \
        --warmup "$warmup" --server-pid "$server_pid" --json) || true
      printf '%s\t%s\techo\t%s\n' "$strategy" "$label" "${json:-null}" >>"$tmp/results.tsv"
      echo "  $strategy $label run $run echo ($size B): $(field requests_per_s <<<"$json") requests/s" >&2
    done
    echo "$size" >"$tmp/size"
  done
  stop_server
done

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
echo "Date: $(date -u +%Y-%m-%d). Machine: $(nproc) CPUs ($cpu), Linux $(uname -r), $(rustc --version | cut -d' ' -f1-2); loadgen shares the cores with the server."
echo "Command: \`bench/search.sh\` (RUNS=$runs, DURATION=$duration, WARMUP=$warmup, sockserv logging at $log_level)."
echo
status=0
python3 - "$tmp/results.tsv" "$(cat "$tmp/size" 2>/dev/null || echo '?')" <<'EOF' || status=$?
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    strategy, load, mode, blob = line.rstrip("\n").split("\t", 3)
    rows.setdefault((strategy, load), {}).setdefault(mode, []).append(json.loads(blob))
def med(runs, key):
    vals = [float(r[key]) for r in runs if r and r.get(key) is not None]
    return statistics.median(vals) if vals else None
def n(v, f="{:.0f}"):
    return "–" if v is None else f.format(v)
print(f"Search request: {sys.argv[2]} B out (prefix, JSON header, content); echo requests of the same size.\n")
print("| strategy | load | search req/s | echo req/s | search / echo | search p99 µs | echo p99 µs | search CPU µs/req | echo CPU µs/req | search − echo CPU µs |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
errors = 0
for (strategy, load), modes in rows.items():
    s, e = modes.get("search", []), modes.get("echo", [])
    errors += sum(int(r["errors"]) for r in s + e if r) + sum(1 for r in s + e if not r)
    sr, er = med(s, "requests_per_s"), med(e, "requests_per_s")
    sc, ec = med(s, "server_cpu_us_per_request"), med(e, "server_cpu_us_per_request")
    ratio = f"{sr / er:.2f}×" if sr and er else "–"
    diff = n(sc - ec, "{:+.1f}") if sc is not None and ec is not None else "–"
    print(f"| {strategy} | {load} | {n(sr)} | {n(er)} | {ratio} | {n(med(s, 'latency_p99_us'))} | {n(med(e, 'latency_p99_us'))} | {n(sc, '{:.2f}')} | {n(ec, '{:.2f}')} | {diff} |")
print(f"\nErrors: {errors}.")
sys.exit(1 if errors else 0)
EOF
for s in "${skipped[@]}"; do echo "Skipped: $s"; done
exit "$status"
