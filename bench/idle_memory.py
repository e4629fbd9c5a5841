#!/usr/bin/env python3
"""Memory per mostly idle connection: a server's resident memory before and after N connections
that each made one echo round trip and then stay open, idle (issue 6, item 5).

    idle_memory.py --pid PID tcp://127.0.0.1:PORT              # 1 000 connections, one JSON line
    idle_memory.py --pid PID -n 200 unix:///tmp/echo.sock

Memory is summed over PID and all its descendants (a forking server's children): VmRSS from
/proc/P/status, and Pss from /proc/P/smaps_rollup, which splits pages shared between processes
(copy-on-write after fork) among them, so a forking server's per-connection figure is not inflated by
pages every child shares. "after" is read SETTLE seconds after the last round trip, with every
connection still open; then all are closed. Bounded: every connect and read times out after 5 s, and
the whole run after 60 s. Loopback only. Prints one JSON object; exits 1 if a connection failed.
"""

import argparse
import json
import os
import socket
import sys
import time

PAYLOAD = b"i" * 64
TIMEOUT = 5.0
DEADLINE = 60.0


def descendants(pid):
    """pid and every process whose parent chain leads to it."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rfind(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(children.get(p, []))
    return tree


def field_kib(path, name):
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(name + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def memory(pid):
    """(rss KiB, pss KiB, processes) of pid's tree."""
    tree = descendants(pid)
    rss = sum(field_kib(f"/proc/{p}/status", "VmRSS") for p in tree)
    pss = sum(field_kib(f"/proc/{p}/smaps_rollup", "Pss") for p in tree)
    return rss, pss, len(tree)


def connect(endpoint):
    scheme, _, rest = endpoint.partition("://")
    if scheme == "tcp":
        host, _, port = rest.rpartition(":")
        sock = socket.socket(socket.AF_INET6 if host.startswith("[") else socket.AF_INET)
        sock.settimeout(TIMEOUT)
        sock.connect((host.strip("[]"), int(port)))
    elif scheme == "unix":
        sock = socket.socket(socket.AF_UNIX)
        sock.settimeout(TIMEOUT)
        sock.connect(rest)
    else:
        sys.exit(f"idle_memory.py: tcp:// or unix://, not {endpoint}")
    return sock


def round_trip(sock):
    sock.sendall(PAYLOAD)
    got = b""
    while len(got) < len(PAYLOAD):
        chunk = sock.recv(len(PAYLOAD) - len(got))
        if not chunk:
            raise ConnectionError("closed before the echo")
        got += chunk
    if got != PAYLOAD:
        raise ConnectionError("wrong echo")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("endpoint")
    parser.add_argument("--pid", type=int, required=True, help="the server's process id")
    parser.add_argument("-n", "--connections", type=int, default=1000)
    parser.add_argument("--settle", type=float, default=1.0, help="seconds before 'after'")
    args = parser.parse_args()
    if not 1 <= args.connections <= 10000:
        sys.exit("idle_memory.py: -n from 1 to 10000")
    started = time.monotonic()
    before = memory(args.pid)
    socks, errors, first_error = [], 0, None
    for _ in range(args.connections):
        if time.monotonic() - started > DEADLINE:
            errors += 1
            first_error = first_error or "deadline"
            break
        try:
            sock = connect(args.endpoint)
            round_trip(sock)
            socks.append(sock)
        except OSError as e:
            errors += 1
            first_error = first_error or str(e)
    time.sleep(args.settle)
    after = memory(args.pid)
    n = max(len(socks), 1)
    print(
        json.dumps(
            {
                "connections": len(socks),
                "errors": errors,
                "first_error": first_error,
                "rss_before_kib": before[0],
                "rss_after_kib": after[0],
                "pss_before_kib": before[1],
                "pss_after_kib": after[1],
                "processes_before": before[2],
                "processes_after": after[2],
                "rss_kib_per_connection": round((after[0] - before[0]) / n, 2),
                "pss_kib_per_connection": round((after[1] - before[1]) / n, 2),
                "seconds": round(time.monotonic() - started, 2),
            }
        ),
        flush=True,
    )
    for sock in socks:
        sock.close()
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
