#!/usr/bin/env python3
"""CPU used by other processes while a benchmark runs: everything outside one process tree (the bench
script's: its servers and loadgen), so that a run disturbed by other work on a shared machine can be
told apart and repeated.

    foreign_cpu.py snapshot ROOT_PID > before.json
    ... the run ...
    foreign_cpu.py since before.json ROOT_PID SECONDS     # {"foreign_cores": 0.03, "top": "rustc"}

A process's CPU is utime + stime + cutime + cstime from /proc/P/stat (children it reaped included);
a process that started during the run counts whole. Kernel threads (children of kthreadd, pid 2) are
left out: on loopback they mostly do the benchmark's own network work (softirqs).
"""

import json
import os
import sys


def processes():
    """{pid: (ppid, ticks, name)} for every process."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        name = stat[stat.find("(") + 1 : stat.rfind(")")]
        fields = stat[stat.rfind(")") + 2 :].split()
        ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))
        out[int(entry)] = (int(fields[1]), ticks, name)
    return out


def others(root):
    """{pid: (ticks, name)} of the processes outside root's tree and not kernel threads."""
    procs = processes()
    children = {}
    for pid, (ppid, _, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    skip, todo = set(), [root, 2]
    while todo:
        pid = todo.pop()
        skip.add(pid)
        todo.extend(children.get(pid, []))
    return {pid: (ticks, name) for pid, (_, ticks, name) in procs.items() if pid not in skip}


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "snapshot":
        json.dump({str(pid): t for pid, (t, _) in others(int(sys.argv[2])).items()}, sys.stdout)
    elif len(sys.argv) == 5 and sys.argv[1] == "since":
        with open(sys.argv[2]) as f:
            before = {int(pid): t for pid, t in json.load(f).items()}
        now = others(int(sys.argv[3]))
        seconds = max(float(sys.argv[4]), 1e-3)
        used = {}
        for pid, (ticks, name) in now.items():
            used[name] = used.get(name, 0) + ticks - before.get(pid, 0)
        hz = os.sysconf("SC_CLK_TCK")
        total = sum(max(t, 0) for t in used.values()) / hz / seconds
        top = max(used, key=used.get) if used else ""
        print(json.dumps({"foreign_cores": round(total, 2), "top": top if used.get(top, 0) > 0 else ""}))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
