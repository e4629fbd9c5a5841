#!/usr/bin/env python3
"""Turns bench/side_by_side.sh's raw results into markdown: rates, ratios to the anchors, the
issue 6 targets (met or missed), UDP and memory per idle connection.

    side_by_side_report.py DIR      # DIR holds results.jsonl and idle.jsonl, as the script writes them

results.jsonl: one line per loadgen run, {"server", "transport", "cell", "run", "result"} where
"result" is loadgen's --json object (null if the run failed outright). idle.jsonl: one line per
server, {"server", "result"} with idle_memory.py's object. Medians are taken over runs.
"""

import json
import os
import statistics
import sys

NAMES = {
    "sockserv-sync": "sockserv sync",
    "sockserv-threading": "sockserv threading",
    "sockserv-pool": "sockserv pool",
    "sockserv-forking": "sockserv forking",
    "sockserv-reactor": "sockserv reactor",
    "sockserv-reactor-1": "sockserv reactor, loops = 1",
    "rust-blocking": "Rust blocking, thread per connection",
    "rust-udp-loop": "Rust recv_from/send_to loop",
    "tokio": "tokio (multi-thread, 2 workers)",
    "python-threading": "Python ThreadingTCPServer",
    "python-forking": "Python ForkingTCPServer",
    "python-asyncio": "Python asyncio",
}
UNIX_NAMES = {
    "python-threading": "Python ThreadingUnixStreamServer",
    "python-forking": "Python ForkingUnixStreamServer",
}
UDP_NAMES = {"python-threading": "Python ThreadingUDPServer"}
CELLS = [
    ("c1-64", "C=1, 64 B"),
    ("c1-16k", "C=1, 16 KiB"),
    ("c50-64", "C=50, 64 B"),
    ("c50-16k", "C=50, 16 KiB"),
    ("c50-depth16", "C=50, 64 B, depth 16"),
    ("reconnect", "reconnect, C=4"),
]
SOCKSERV = ["sockserv-sync", "sockserv-threading", "sockserv-pool", "sockserv-forking", "sockserv-reactor"]
STREAM_SOCKSERV = SOCKSERV + ["sockserv-reactor-1"]


def name(server, transport):
    table = {"unix": UNIX_NAMES, "udp": UDP_NAMES}.get(transport, {})
    return table.get(server, NAMES.get(server, server))


def load(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


class Figures:
    """Medians over runs of each (transport, server, cell)."""

    def __init__(self, records):
        self.runs = {}
        for r in records:
            key = (r["transport"], r["server"], r["cell"])
            self.runs.setdefault(key, []).append(r["result"])

    def has(self, t, s, c):
        return (t, s, c) in self.runs

    def median(self, t, s, c, field):
        values = [float(r[field]) for r in self.runs.get((t, s, c), []) if r and r.get(field) is not None]
        return statistics.median(values) if values else None

    def rate(self, t, s, c):
        # A failed run (no JSON) counts as 0 round trips/s.
        runs = self.runs.get((t, s, c))
        if not runs:
            return None
        return statistics.median(float(r["requests_per_s"]) if r else 0.0 for r in runs)

    def all_rates(self, t, s, c):
        return [float(r["requests_per_s"]) if r else 0.0 for r in self.runs.get((t, s, c), [])]

    @staticmethod
    def disturbed(records, threshold=0.25):
        """Runs during which processes outside the bench used at least `threshold` cores."""
        out = []
        for r in records:
            machine = r.get("machine") or {}
            foreign = float(machine.get("foreign_cores", 0))
            if foreign >= threshold:
                top = f", mostly {machine['top']}" if machine.get("top") else ""
                out.append(f"{r['transport']}/{r['server']}/{r['cell']} run {r['run']} ({foreign:.2f} cores{top})")
        return out

    def errors(self):
        out = []
        for (t, s, c), runs in sorted(self.runs.items()):
            n = sum(int(r["errors"]) for r in runs if r)
            failed = sum(1 for r in runs if not r)
            if n or failed:
                first = next((r.get("first_error") for r in runs if r and r.get("first_error")), None)
                out.append((t, s, c, n, failed, first))
        return out


def k(rate):
    if rate is None:
        return "–"
    return f"{rate / 1000:.1f}k" if rate >= 10000 else f"{rate:.0f}"


def us(v):
    if v is None:
        return "–"
    return f"{v / 1000:.1f} ms" if v >= 10000 else f"{v:.0f} µs"


def ratio(a, b):
    if a is None or not b:
        return None
    return a / b


def fmt_ratio(r):
    return "–" if r is None else f"{r:.2f}×"


def rate_table(f, transport, servers):
    head = "| server | " + " | ".join(label for _, label in CELLS) + " |"
    rows = [head, "|---|" + "---:|" * len(CELLS)]
    for s in servers:
        if not any(f.has(transport, s, c) for c, _ in CELLS):
            continue
        cells = []
        for c, _ in CELLS:
            rate = f.rate(transport, s, c)
            p99 = f.median(transport, s, c, "latency_p99_us")
            cells.append("–" if rate is None else f"{k(rate)} · {us(p99)}")
        rows.append(f"| {name(s, transport)} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def ratio_table(f, transport):
    head = "| sockserv | " + " | ".join(label for _, label in CELLS) + " |"
    rows = [head, "|---|" + "---:|" * len(CELLS)]
    for s in STREAM_SOCKSERV:
        if not any(f.has(transport, s, c) for c, _ in CELLS):
            continue
        cells = []
        for c, _ in CELLS:
            ours = f.rate(transport, s, c)
            t = ratio(ours, f.rate(transport, "tokio", c))
            b = ratio(ours, f.rate(transport, "rust-blocking", c))
            cells.append("–" if t is None and b is None else f"{fmt_ratio(t)} / {fmt_ratio(b)}")
        rows.append(f"| {name(s, transport).removeprefix('sockserv ')} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def cpu_table(f, transport, servers):
    cols = [c for c in CELLS if c[0] in ("c50-64", "c50-16k", "c50-depth16", "reconnect")]
    head = "| server | " + " | ".join(label for _, label in cols) + " |"
    rows = [head, "|---|" + "---:|" * len(cols)]
    for s in servers:
        if not any(f.has(transport, s, c) for c, _ in cols):
            continue
        cells = []
        for c, _ in cols:
            v = f.median(transport, s, c, "server_cpu_us_per_request")
            cells.append("–" if v is None else f"{v:.1f}")
        rows.append(f"| {name(s, transport)} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


class Targets:
    def __init__(self):
        self.rows = []

    def add(self, what, ours, anchor, ratio_, bar, p99=None, extra=""):
        if ratio_ is None:
            verdict = "not measured"
        else:
            ok = ratio_ >= bar if bar > 0 else ratio_ < -bar
            verdict = "**met**" if ok else "**missed**"
            if p99 is not None and ok and p99[0] is not None and p99[1] is not None and p99[0] > p99[1]:
                verdict = "**missed** (p99)"
        p = "" if p99 is None else f"{us(p99[0])} / {us(p99[1])}"
        self.rows.append(f"| {what} | {ours} | {anchor} | {fmt_ratio(ratio_) if bar > 0 else extra} | {p} | {verdict} |")

    def table(self):
        head = "| target | sockserv | anchor | ratio | p99 sockserv / anchor | verdict |\n|---|---:|---:|---:|---:|---|"
        return head + "\n" + "\n".join(self.rows)


def targets(f, idle):
    t = Targets()
    for transport in ("tcp", "unix"):
        for c, label in [("c50-64", "C=50, 64 B"), ("c50-16k", "C=50, 16 KiB"), ("c50-depth16", "C=50, depth 16")]:
            ours, theirs = f.rate(transport, "sockserv-reactor", c), f.rate(transport, "tokio", c)
            p99 = (f.median(transport, "sockserv-reactor", c, "latency_p99_us"), f.median(transport, "tokio", c, "latency_p99_us"))
            t.add(f"reactor ≥ 1.0× tokio, {transport.upper() if transport == 'tcp' else 'Unix'} {label}, p99 no worse",
                  k(ours), k(theirs), ratio(ours, theirs), 1.0, p99)
    for transport in ("tcp", "unix"):
        for c, label in [("c50-64", "C=50, 64 B"), ("c50-16k", "C=50, 16 KiB")]:
            ours, theirs = f.rate(transport, "sockserv-threading", c), f.rate(transport, "rust-blocking", c)
            t.add(f"threading ≥ 1.0× Rust blocking echo, {transport.upper() if transport == 'tcp' else 'Unix'} {label}",
                  k(ours), k(theirs), ratio(ours, theirs), 1.0)
    theirs = f.rate("udp", "rust-udp-loop", "udp-c50")
    for s in ("sockserv-threading", "sockserv-reactor"):
        ours = f.rate("udp", s, "udp-c50")
        t.add(f"UDP C=50: {s.removeprefix('sockserv-')} ≥ 0.9× plain Rust loop", k(ours), k(theirs), ratio(ours, theirs), 0.9)
    for transport in ("tcp", "unix"):
        tn = transport.upper() if transport == "tcp" else "Unix"
        ours = f.rate(transport, "sockserv-threading", "reconnect")
        rust = [r for r in (f.rate(transport, "tokio", "reconnect"), f.rate(transport, "rust-blocking", "reconnect")) if r]
        best = max(rust) if rust else None
        t.add(f"reconnect {tn}: threading ≥ 0.9× the faster Rust server", k(ours), k(best), ratio(ours, best), 0.9)
        ours = f.rate(transport, "sockserv-forking", "reconnect")
        theirs = f.rate(transport, "python-forking", "reconnect")
        t.add(f"reconnect {tn}: forking ≥ 3× {name('python-forking', transport).removeprefix('Python ')}",
              k(ours), k(theirs), ratio(ours, theirs), 3.0)
    for s, bound in (("sockserv-reactor", 8), ("sockserv-threading", 64)):
        r = idle.get(s)
        if r:
            v = float(r["rss_kib_per_connection"])
            t.rows.append(f"| memory per idle connection, {s.removeprefix('sockserv-')} < {bound} KiB | {v:.1f} KiB | – | – | | {'**met**' if v < bound else '**missed**'} |")
    t.rows.append("| plugin echo ≥ 0.95× built-in echo | see \"Plugin echo vs built-in echo\" (bench/plugin_echo.sh) | | | | |")
    return t.table()


def udp_table(f):
    servers = SOCKSERV + ["rust-udp-loop", "python-threading"]
    base = f.rate("udp", "rust-udp-loop", "udp-c50")
    rows = ["| server | round trips/s | all runs | p50 | p99 | server CPU µs/request | vs Rust loop |", "|---|---:|---|---:|---:|---:|---:|"]
    for s in servers:
        if not f.has("udp", s, "udp-c50"):
            continue
        rate = f.rate("udp", s, "udp-c50")
        runs = ", ".join(k(r) for r in sorted(f.all_rates("udp", s, "udp-c50")))
        cpu = f.median("udp", s, "udp-c50", "server_cpu_us_per_request")
        rows.append(
            f"| {name(s, 'udp')} | {k(rate)} | {runs} | {us(f.median('udp', s, 'udp-c50', 'latency_p50_us'))} | "
            f"{us(f.median('udp', s, 'udp-c50', 'latency_p99_us'))} | {'–' if cpu is None else f'{cpu:.1f}'} | {fmt_ratio(ratio(rate, base))} |"
        )
    return "\n".join(rows)


def idle_table(idle, order):
    rows = ["| server | connections | RSS before | RSS after | RSS KiB / connection | PSS KiB / connection | processes after |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    for s in order:
        r = idle.get(s)
        if not r:
            continue
        rows.append(
            f"| {name(s, 'tcp')} | {r['connections']} | {r['rss_before_kib'] / 1024:.1f} MiB | {r['rss_after_kib'] / 1024:.1f} MiB | "
            f"{float(r['rss_kib_per_connection']):.1f} | {float(r['pss_kib_per_connection']):.1f} | {r['processes_after']} |"
        )
    return "\n".join(rows)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    d = sys.argv[1]
    records = load(os.path.join(d, "results.jsonl"))
    f = Figures(records)
    idle = {r["server"]: r["result"] for r in load(os.path.join(d, "idle.jsonl")) if r["result"]}
    stream_order = STREAM_SOCKSERV + ["rust-blocking", "tokio", "python-threading", "python-forking", "python-asyncio"]
    out = []
    out.append("### Targets (issue 6, item 6)\n")
    out.append(targets(f, idle))
    for transport, title in (("tcp", "TCP 127.0.0.1"), ("unix", "Unix stream")):
        if not any(key[0] == transport for key in f.runs):
            continue
        out.append(f"\n### {title}: round trips/s · p99 latency (medians)\n")
        out.append(rate_table(f, transport, stream_order))
        out.append(f"\n{title}, sockserv against the Rust anchors (round trips/s ratio: ×tokio / ×Rust blocking):\n")
        out.append(ratio_table(f, transport))
        out.append(f"\n{title}, server CPU µs per round trip (medians):\n")
        out.append(cpu_table(f, transport, stream_order))
    if any(key[0] == "udp" for key in f.runs):
        out.append("\n### UDP 127.0.0.1, C=50, 64 B\n")
        out.append(udp_table(f))
    if idle:
        n = next(iter(idle.values()))["connections"]
        out.append(f"\n### Memory per idle connection (TCP, {n} connections, one 64 B round trip each, then idle)\n")
        out.append(idle_table(idle, stream_order))
    errors = f.errors()
    out.append("")
    if errors:
        out.append("Errors: " + "; ".join(
            f"{t}/{s}/{c}: {n} errors{f', {fl} failed runs' if fl else ''}{f' (first: {first})' if first else ''}"
            for t, s, c, n, fl, first in errors))
    else:
        out.append("Errors: none in any run.")
    set_aside = f.disturbed(load(os.path.join(d, "disturbed.jsonl")))
    if set_aside:
        out.append(f"\n{len(set_aside)} runs were set aside and run again, other processes having used 0.25 cores "
                   "or more meanwhile: " + "; ".join(set_aside) + ".")
    kept = f.disturbed(records)
    if kept:
        out.append("\nRuns kept although other processes used 0.25 cores or more (no retries left): " + "; ".join(kept) + ".")
    else:
        out.append("\nNo run kept in the figures saw other processes use 0.25 cores or more.")
    print("\n".join(out))


if __name__ == "__main__":
    main()
