#!/usr/bin/env python3
"""What a server holds right now, from /proc: its process tree's resident memory, processes, threads
and open descriptors; or how long until it holds no more than a baseline.

    server_state.py state PID [--pss]        # one JSON object
    server_state.py wait PID --fds N --threads N --processes N [--timeout 30]

"state": rss_kib is VmRSS summed over PID and its descendants (a forking server's children count,
and the pages they share with the parent count once per process); with --pss, pss_kib is Pss from
/proc/P/smaps_rollup summed the same way, which splits shared pages among the processes sharing
them (slow: about 1 ms per process). threads and fds are summed over the tree too: a threading, pool
or reactor server holds a descriptor per connection; `sockserv serve` runs a forking server in a
process of its own under the supervising one, each request child holds its connection, and the
forking server keeps a copy of each child's until it reaps the child.

"wait": polls every 50 ms until fds, threads and processes are all at or below the given values
(the server has let go of every connection), at most --timeout seconds; prints the state then, with
"seconds" (how long it took) and "reached" (false on timeout). Exits 1 if PID is gone.
"""

import argparse
import json
import os
import sys
import time

from idle_memory import descendants, field_kib

POLL = 0.05


def descriptors(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0  # gone since the tree was listed


def state(pid, pss=False):
    tree = descendants(pid)
    out = {
        "rss_kib": sum(field_kib(f"/proc/{p}/status", "VmRSS") for p in tree),
        "processes": len(tree),
        "threads": sum(field_kib(f"/proc/{p}/status", "Threads") for p in tree),
        "fds": sum(descriptors(p) for p in tree),
    }
    if pss:
        out["pss_kib"] = sum(field_kib(f"/proc/{p}/smaps_rollup", "Pss") for p in tree)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["state", "wait"])
    parser.add_argument("pid", type=int)
    parser.add_argument("--pss", action="store_true", help="state: add Pss (slow)")
    parser.add_argument("--fds", type=int, help="wait: at most this many descriptors")
    parser.add_argument("--threads", type=int, help="wait: at most this many threads")
    parser.add_argument("--processes", type=int, help="wait: at most this many processes")
    parser.add_argument("--timeout", type=float, default=30.0, help="wait: give up after")
    args = parser.parse_args()
    if not os.path.exists(f"/proc/{args.pid}"):
        sys.exit(f"server_state.py: no process {args.pid}")
    started = time.monotonic()
    if args.command == "state":
        out = state(args.pid, args.pss)
    else:
        if None in (args.fds, args.threads, args.processes):
            sys.exit("server_state.py wait: --fds, --threads and --processes are needed")
        limit = min(max(args.timeout, 0.0), 600.0)
        while True:
            out = state(args.pid)
            reached = (
                out["fds"] <= args.fds
                and out["threads"] <= args.threads
                and out["processes"] <= args.processes
            )
            if reached or time.monotonic() - started >= limit:
                break
            time.sleep(POLL)
        out["reached"] = reached
    out["seconds"] = round(time.monotonic() - started, 3)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
