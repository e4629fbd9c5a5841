#!/usr/bin/env python3
"""Turns bench/limits.sh's raw results into markdown: idle connections against a well-behaved
client's p99, memory per held idle connection, idle_timeout, and max_connections_per_source, each
with its target met or missed.

    limits_report.py DIR      # DIR holds held.jsonl, timeout.jsonl and per_source.jsonl

held.jsonl: one line per round, {"strategy", "name", "idle", "round", "base", "loaded", "before",
"held", "hold", "after"}: base and loaded are {"result": loadgen echo's --json object or null,
"machine": foreign_cpu.py's object, "tries"}; before and held are server_state.py states (with Pss);
hold is `loadgen hold --json`'s report; after is server_state.py's wait. timeout.jsonl: {"strategy",
"idle", "round", "idle_timeout", "quiet", "hold", "gone", "after"}. per_source.jsonl: {"strategy",
"round", "attempts", "hold", "echo_1", "echo_3", "log_refusals", "log_left_out",
"log_other_refusals"}. Medians are taken over rounds.
"""

import json
import os
import statistics
import sys

P99_FACTOR = 2.0  # the loaded p99 may be at most this times the unloaded one
GONE_WITHIN = 6.0  # seconds after going idle, with idle_timeout = 5
RSS_SLACK = 1.10  # resident memory after the idle connections are gone, against the baseline
FOREIGN_LIMIT = float(os.environ.get("FOREIGN_LIMIT", "0.5"))


def lines(folder, name):
    path = os.path.join(folder, name)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def get(obj, *keys):
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def mib(kib):
    return "–" if kib is None else f"{kib / 1024:.1f} MiB"


def num(value, fmt="{:.0f}"):
    return "–" if value is None else fmt.format(value)


def verdict(ok):
    return "**met**" if ok else "**missed**"


def by_name(rows, key="name"):
    names, out = [], {}
    for row in rows:
        if row[key] not in out:
            names.append(row[key])
        out.setdefault(row[key], []).append(row)
    return [(name, out[name]) for name in names]


def label(name):
    return {
        "pool": "pool",
        "pool-overflow": "pool, more idle than workers",
    }.get(name, name)


def errors(run):
    """The client's errors in an echo_run: the kept run's and those of the runs set aside."""
    runs = [run.get("result")] + [d.get("result") for d in run.get("discarded", [])]
    return sum((r or {}).get("errors") or 0 for r in runs)


def p99(run):
    """The kept run's p99 in µs; None when no request completed (a histogram of nothing)."""
    result = run.get("result") or {}
    return result.get("latency_p99_us") if result.get("requests") else None


def disturbed(runs):
    """Echo runs kept although other processes used FOREIGN_LIMIT cores or more meanwhile."""
    return [r for r in runs if (get(r, "machine", "foreign_cores") or 0) >= FOREIGN_LIMIT]


def held_table(rows):
    out = [
        "| strategy | idle held | opened in | held to the end | p99 without (rounds) | p99 with (rounds) | with / without | client errors with (without) | verdict |",
        "|---|---:|---:|---:|---|---|---:|---:|---|",
    ]
    notes = []
    for name, group in by_name(rows):
        base = [p99(r["base"]) for r in group]
        loaded = [p99(r["loaded"]) for r in group]
        loaded_errors = sum(errors(r["loaded"]) for r in group)
        base_errors = sum(errors(r["base"]) for r in group)
        failed = sum(get(r, "loaded", "result") is None for r in group)
        held = [get(r, "hold", "open_at_end") for r in group]
        opened_in = median([get(r, "hold", "open_s") for r in group])
        idle = group[0]["idle"]
        b, l = median(base), median(loaded)
        ratio = l / b if b and l else None
        ok = (
            ratio is not None
            and ratio <= P99_FACTOR
            and loaded_errors == 0
            and failed == 0
            and all(h == idle for h in held)
        )
        out.append(
            f"| {label(name)} | {idle} | {num(opened_in, '{:.1f} s')} | "
            f"{', '.join(num(h) for h in held)} | {num(b, '{:.0f} µs')} ({', '.join(num(v) for v in base)}) | "
            f"{num(l, '{:.0f} µs')} ({', '.join(num(v) for v in loaded)}) | {num(ratio, '{:.2f}×')} | "
            f"{loaded_errors} ({base_errors}) | {verdict(ok)} |"
        )
        for r in group:
            hold = r.get("hold") or {}
            if hold.get("refused") or hold.get("unanswered_at_end") or hold.get("errors"):
                notes.append(
                    f"{label(name)}, round {r['round']}: the attacker's {idle} connections: "
                    f"{hold.get('answered')} answered, {hold.get('unanswered_at_end')} never "
                    f"answered, {hold.get('refused')} refused, {hold.get('errors')} connect errors"
                )
            first = get(r, "loaded", "result", "first_error")
            if first:
                notes.append(f"{label(name)}, round {r['round']}: the client's first error: {first}")
            for which in ("base", "loaded"):
                for run in disturbed([r[which]]):
                    notes.append(
                        f"{label(name)}, round {r['round']}, {'without' if which == 'base' else 'with'}: "
                        f"other processes used {get(run, 'machine', 'foreign_cores')} cores "
                        f"(mostly {get(run, 'machine', 'top')}) after {run.get('tries')} retries"
                    )
    return out, notes


def memory_table(rows):
    out = [
        "| strategy | idle held | RSS before | RSS held | RSS KiB / connection | Pss KiB / connection | processes held | threads held |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, group in by_name(rows):
        per_rss, per_pss = [], []
        for r in group:
            opened = get(r, "hold", "open_at_end") or 0
            before, held = r.get("before") or {}, r.get("held") or {}
            if opened and "rss_kib" in held:
                per_rss.append((held["rss_kib"] - before["rss_kib"]) / opened)
                per_pss.append((held["pss_kib"] - before["pss_kib"]) / opened)
        pick = lambda key, which: median([get(r, which, key) for r in group])  # noqa: E731
        out.append(
            f"| {label(name)} | {group[0]['idle']} | {mib(pick('rss_kib', 'before'))} | "
            f"{mib(pick('rss_kib', 'held'))} | {num(median(per_rss), '{:.1f}')} | "
            f"{num(median(per_pss), '{:.1f}')} | {num(pick('processes', 'held'))} | "
            f"{num(pick('threads', 'held'))} |"
        )
    return out


def timeout_table(rows):
    out = [
        "| strategy | round | idle connections | closed by the server | idle before its close: min / p50 / max | every one gone within 6 s | the server's threads, processes and descriptors back to baseline, after the last went idle | RSS baseline | RSS after | after / baseline (growth) | memory within 10 % |",
        "|---|---:|---:|---:|---|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        hold, gone = r.get("hold") or {}, r.get("gone") or {}
        base, after = get(r, "quiet", "rss_kib"), get(r, "after", "rss_kib")
        ratio = after / base if base and after else None
        all_closed = (
            hold.get("opened") == r["idle"]
            and hold.get("closed") == r["idle"]
            and hold.get("open_at_end") == 0
        )
        # Gone: the server closed it (the attacker saw FIN or reset) within 6 s of its last byte.
        in_time = all_closed and (hold.get("closed_idle_max_s") or 1e9) <= GONE_WITHIN
        idle_s = " / ".join(
            num(hold.get(f"closed_idle_{s}_s"), "{:.2f}") for s in ("min", "p50", "max")
        )
        out.append(
            f"| {r['strategy']} | {r['round']} | {r['idle']} | {hold.get('closed')} | {idle_s} s | "
            f"{verdict(in_time)} | "
            f"{num(gone.get('seconds'), '{:.2f} s')}{'' if gone.get('reached') else ' (not reached)'} | "
            f"{mib(base)} | {mib(after)} | {num(ratio, '{:.2f}×')} "
            f"(+{mib(None if ratio is None else after - base)}) | "
            f"{verdict(ratio is not None and ratio <= RSS_SLACK)} |"
        )
    return out


def per_source_table(rows):
    out = [
        "| strategy | round | attacker (127.0.0.2): opened / served / refused / still held | refusals logged | other sources refused (log) | 127.0.0.1, -c 2: round trips, p99, errors | 127.0.0.3, -c 2: round trips, p99, errors | verdict |",
        "|---|---:|---|---:|---:|---|---|---|",
    ]
    for r in rows:
        hold = r.get("hold") or {}
        a, b = get(r, "echo_1", "result") or {}, get(r, "echo_3", "result") or {}
        a_errors, b_errors = errors(r.get("echo_1") or {}), errors(r.get("echo_3") or {})
        refused = hold.get("refused")
        logged = r["log_refusals"]
        ok = (
            hold.get("answered") == 2
            and refused == r["attempts"] - 2
            and hold.get("open_at_end") == 2
            and logged + r["log_left_out"] >= refused
            and logged <= refused
            and r["log_other_refusals"] == 0
            and a_errors == 0
            and b_errors == 0
            and (a.get("requests") or 0) > 0
            and (b.get("requests") or 0) > 0
        )
        left = f" (+{r['log_left_out']} left out)" if r["log_left_out"] else ""
        echo = lambda e, n: (  # noqa: E731
            f"{e.get('requests', '–')}, {num(e.get('latency_p99_us'))} µs, {n}"
        )
        out.append(
            f"| {r['strategy']} | {r['round']} | {hold.get('opened')} / {hold.get('answered')} / "
            f"{refused} / {hold.get('open_at_end')} | {logged}{left} | {r['log_other_refusals']} | "
            f"{echo(a, a_errors)} | {echo(b, b_errors)} | {verdict(ok)} |"
        )
    return out


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    folder = sys.argv[1]
    held = lines(folder, "held.jsonl")
    if held:
        table, notes = held_table(held)
        print("#### Idle connections held while a well-behaved client runs\n")
        print("\n".join(table))
        if notes:
            print("\n" + "\n".join(f"- {n}" for n in notes))
        print("\n#### Memory per held idle connection\n")
        print("\n".join(memory_table(held)))
        print()
    timeout = lines(folder, "timeout.jsonl")
    if timeout:
        print(f"#### idle_timeout = {timeout[0]['idle_timeout']} s\n")
        print("\n".join(timeout_table(timeout)))
        print()
    per_source = lines(folder, "per_source.jsonl")
    if per_source:
        print("#### max_connections_per_source = 2\n")
        print("\n".join(per_source_table(per_source)))
        print()


if __name__ == "__main__":
    main()
