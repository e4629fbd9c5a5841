#!/usr/bin/env bash
# What counting for /metrics costs (issue 12, item 4; target: < 3 % fewer echo round trips/s).
#
# Two sockserv binaries in one run: this tree's (which counts every accept, read, write and close
# in the shared metrics board) and one built from BASE_REV, a commit from before the metrics
# (default: the parent of the first metrics commit, found by its subject). Each serves the same
# config — echo on tcp://127.0.0.1:0 under threading, reactor and forking — in a process of its
# own; loadgen runs against each cell of each binary in turn, alternating binaries run by run, and
# the medians go into a markdown table on stdout.
#
# Both run at RUST_LOG=warn: the base binary logs one info line per connection, this tree's at
# debug, and the point is the counting, not the log line.
#
#   bench/metrics_cost.sh                    # C=50 64 B persistent + C=4 reconnect, 3 runs of 5 s
#   RUNS=1 DURATION=2 bench/metrics_cost.sh  # a quick look
#
# Each cell is measured in pairs (one run of each binary, back to back, the order alternating);
# the table gives the change between the medians and the median of the pairs' ratios. A pair
# disturbed by other work on the machine (bench/foreign_cpu.py) is run again. (Loading both at
# once, to have other work slow both alike, was tried and is no comparison: one server takes the
# cores and the other's clients starve, 218 against 64 139 round trips/s in one pair.)
#
# Knobs (environment): BASE_REV, BASE_BIN (a base sockserv binary already built: skips the
# build), RUNS [3], DURATION [5], WARMUP [1], STRATEGIES [threading reactor forking],
# RETRIES [30], FOREIGN_LIMIT [0.25 cores].
# Loopback only; loadgen bounds every run itself.
set -euo pipefail

cd "$(dirname "$0")/.."
source bench/lib.sh
runs=${RUNS:-3}
duration=${DURATION:-5}
warmup=${WARMUP:-1}
strategies=(${STRATEGIES:-threading reactor forking})

bench_setup metrics-cost
if [ -n "${BASE_BIN:-}" ]; then
  cp "$BASE_BIN" "$tmp/sockserv-base"
else
  first=$(git log --format=%H --grep='^metrics: per-server counters' | tail -1)
  base_rev=${BASE_REV:-$first^}
  git worktree add --detach "$tmp/base-src" "$base_rev" >&2
  CARGO_TARGET_DIR="$tmp/base-target" cargo build --release -p sockserv \
    --manifest-path "$tmp/base-src/Cargo.toml" >&2
  cp "$tmp/base-target/release/sockserv" "$tmp/sockserv-base"
  git worktree remove --force "$tmp/base-src"
  rm -rf "$tmp/base-target"
fi

config=$tmp/echo.toml
for strategy in "${strategies[@]}"; do
  children=
  [ "$strategy" = forking ] && children="max_children = 200"
  cat >>"$config" <<EOF
[[server]]
name = "$strategy"
listen = "tcp://127.0.0.1:0"
handler = "echo"
strategy = "$strategy"
$children
[server.socket]
nodelay = true
request_queue_size = 128

EOF
done

declare -A pid
start() { # start NAME BINARY
  RUST_LOG=warn setsid "$2" serve "$config" >"$tmp/$1.stdout" 2>"$tmp/$1.stderr" &
  pid[$1]=$!
  for _ in $(seq 100); do
    [ "$(grep -c '^listening: ' "$tmp/$1.stdout" || true)" -ge "${#strategies[@]}" ] && return
    sleep 0.1
  done
  echo "metrics_cost.sh: $1 did not start:" >&2
  cat "$tmp/$1.stderr" >&2
  exit 1
}
stop_both() {
  for name in "${!pid[@]}"; do stop_process "${pid[$name]}" 5 group; done
}
trap 'stop_both; bench_cleanup' EXIT
start base "$tmp/sockserv-base"
start metrics "$sockserv"
endpoint() { awk -v name="$2" '$1 == "listening:" && $2 == name { print $3 }' "$tmp/$1.stdout"; }

field() { sed -n "s/.*\"$1\": \([0-9.]*\).*/\1/p"; }
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# One pair of runs of a cell, the binaries in `order`, each appending its figures. The CPU that
# processes outside this script used meanwhile is measured (bench/foreign_cpu.py): a pair during
# which they took FOREIGN_LIMIT cores or more is set aside and run again, RETRIES times in all, so
# that other work on a shared machine does not decide the comparison.
measure_pair() { # measure_pair RUN STRATEGY CELL FLAGS KEY BINARY...
  local run=$1 strategy=$2 cell=$3 flags=$4 key=$5 which json t0 t1 foreign cores
  shift 5
  while :; do
    python3 bench/foreign_cpu.py snapshot $$ >"$tmp/foreign.json"
    t0=$(date +%s.%N)
    for which in "$@"; do
      # shellcheck disable=SC2086 # flags are words
      json=$("$loadgen" echo "$(endpoint "$which" "$strategy")" $flags \
        --duration "$duration" --warmup "$warmup" --server-pid "${pid[$which]}" --json)
      echo "$json" >"$tmp/pair.$which"
    done
    t1=$(date +%s.%N)
    foreign=$(python3 bench/foreign_cpu.py since "$tmp/foreign.json" $$ \
      "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')")
    cores=$(sed -n 's/.*"foreign_cores": \([0-9.]*\).*/\1/p' <<<"$foreign")
    if [ "$retries" -gt 0 ] && awk -v f="$cores" -v l="$foreign_limit" 'BEGIN { exit !(f >= l) }'
    then
      retries=$((retries - 1))
      disturbed=$((disturbed + 1))
      echo "run $run $strategy $cell: disturbed ($foreign), again" >&2
      continue
    fi
    break
  done
  for which in "$@"; do
    json=$(cat "$tmp/pair.$which")
    echo "run $run $which $strategy $cell: $(field requests_per_s <<<"$json") round trips/s" >&2
    for f in requests_per_s server_cpu_us_per_request errors; do
      field "$f" <<<"$json" >>"$tmp/$which.$key.$f"
    done
  done
  awk -v b="$(field requests_per_s <"$tmp/pair.base")" \
    -v w="$(field requests_per_s <"$tmp/pair.metrics")" \
    'BEGIN { printf "%.4f\n", w / b }' >>"$tmp/ratio.$key"
}

retries=${RETRIES:-30}
foreign_limit=${FOREIGN_LIMIT:-0.25}
disturbed=0
# cell: name|loadgen flags
cells=("C=50 64 B|-c 50 --size 64" "C=4 reconnect|-c 4 --size 64 --reconnect")
for run in $(seq "$runs"); do
  order=(base metrics)
  [ $((run % 2)) = 0 ] && order=(metrics base)
  for strategy in "${strategies[@]}"; do
    for cell in "${cells[@]}"; do
      key="$strategy.${cell%%|*}"
      key=${key// /_}
      measure_pair "$run" "$strategy" "${cell%%|*}" "${cell#*|}" "$key" "${order[@]}"
    done
  done
done

med() { median <"$tmp/$1.$2.$3"; }
total_errors=$(cat "$tmp"/*.errors | awk '{ s += $1 } END { print s + 0 }')
echo "Echo, TCP 127.0.0.1, nodelay, RUST_LOG=warn, ${duration} s per run after ${warmup} s warm-up,"
echo "$runs runs each (binaries alternating), medians; loadgen shares the machine ($(nproc) cores)."
echo
echo "| strategy | cell | without metrics rt/s | with metrics rt/s | change (medians) | change (median of pairs) | CPU µs/req without | with |"
echo "|---|---|---:|---:|---:|---:|---:|---:|"
for strategy in "${strategies[@]}"; do
  for cell in "${cells[@]}"; do
    key="$strategy.${cell%%|*}"
    key=${key// /_}
    base=$(med base "$key" requests_per_s)
    with=$(med metrics "$key" requests_per_s)
    change=$(awk -v b="$base" -v w="$with" 'BEGIN { printf "%+.1f %%", (w / b - 1) * 100 }')
    paired=$(median <"$tmp/ratio.$key" | awk '{ printf "%+.1f %%", ($1 - 1) * 100 }')
    printf '| %s | %s | %.0f | %.0f | %s | %s | %s | %s |\n' "$strategy" "${cell%%|*}" "$base" \
      "$with" "$change" "$paired" "$(med base "$key" server_cpu_us_per_request)" \
      "$(med metrics "$key" server_cpu_us_per_request)"
  done
done
echo
echo "errors: $total_errors; pairs set aside as disturbed by other work and run again: $disturbed"
[ "$total_errors" -eq 0 ]
