#!/usr/bin/env python3
"""CPU used by other processes while a benchmark runs: everything outside one process tree (the bench
script's: its servers and loadgen), so that a run disturbed by other work on a shared machine can be
told apart and repeated.

    foreign_cpu.py snapshot ROOT_PID > before.json
    ... the run ...
    foreign_cpu.py since before.json ROOT_PID SECONDS     # {"foreign_cores": 0.03, "top": "rustc"}

A process's CPU is utime + stime + cutime + cstime from /proc/P/stat (children it reaped included);
a process that started during the run counts whole. A process that ended during the run adds its
whole life's CPU to its parent's cutime/cstime when it is reaped; what it had used before the run
(known from the snapshot) is taken back off the parent's figure, else a long build finishing during
a 2 s run would read as dozens of cores. Kernel threads (children of kthreadd, pid 2) are left out:
on loopback they mostly do the benchmark's own network work (softirqs).
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
    """{pid: (ticks, name, ppid)} of the processes outside root's tree and not kernel threads."""
    procs = processes()
    children = {}
    for pid, (ppid, _, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    skip, todo = set(), [root, 2]
    while todo:
        pid = todo.pop()
        skip.add(pid)
        todo.extend(children.get(pid, []))
    return {
        pid: (ticks, name, ppid) for pid, (ppid, ticks, name) in procs.items() if pid not in skip
    }


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "snapshot":
        snapshot = {str(pid): [t, ppid] for pid, (t, _, ppid) in others(int(sys.argv[2])).items()}
        json.dump(snapshot, sys.stdout)
    elif len(sys.argv) == 5 and sys.argv[1] == "since":
        with open(sys.argv[2]) as f:
            before = {int(pid): (t, ppid) for pid, (t, ppid) in json.load(f).items()}
        now = others(int(sys.argv[3]))
        seconds = max(float(sys.argv[4]), 1e-3)
        delta = {pid: ticks - before.get(pid, (0, 0))[0] for pid, (ticks, _, _) in now.items()}
        for pid, (ticks, ppid) in before.items():
            if pid not in now and ppid in delta:
                # Reaped during the run: its parent's c*time gained its whole life.
                delta[ppid] = max(delta[ppid] - ticks, 0)
        used = {}
        for pid, (_, name, _) in now.items():
            used[name] = used.get(name, 0) + delta[pid]
        hz = os.sysconf("SC_CLK_TCK")
        total = sum(max(t, 0) for t in used.values()) / hz / seconds
        top = max(used, key=used.get) if used else ""
        print(json.dumps({"foreign_cores": round(total, 2), "top": top if used.get(top, 0) > 0 else ""}))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
