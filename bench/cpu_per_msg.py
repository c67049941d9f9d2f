"""cpu_per_msg - CPU time per message of each MTA process, around one load run

SYNOPSIS
    .venv/bin/python bench/cpu_per_msg.py [--split] MASTER_PID|CONFIG_DIR N -- COMMAND...

DESCRIPTION
    Reads utime and stime of the master process and all its descendants
    from /proc/PID/stat, runs COMMAND (typically smtp-source sending N
    messages), reads them again and prints the CPU microseconds per message
    of each process name (/proc/PID/comm: Postel names its children smtpd,
    cleanup, qmgr, ... as Postfix does), then the total and the rate.

    CPU time, unlike wall-clock throughput, hardly moves when another job
    shares the machine, so it is the figure to compare while optimising;
    bench/run.py measures throughput against Postfix.

    --split prints user and system time separately.

EXAMPLES
    bench/cpu_per_msg.py .postel 2000 -- smtp-source -s 20 -m 2000 -l 1024 \\
        -f a@example.com -t b@example.net 127.0.0.1:2525
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

HZ = os.sysconf("SC_CLK_TCK")


def _master_pid(arg: str) -> int:
    if arg.isdigit():
        return int(arg)
    for name in ("data/master.pid", "queue/pid/master.pid", "pid/master.pid"):
        path = os.path.join(arg, name)
        if os.path.exists(path):
            with open(path) as f:
                return int(f.read().split()[0])
    raise SystemExit(f"cpu_per_msg: no master.pid under {arg}")


def _tree(root: int) -> list[int]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        kids.setdefault(ppid, []).append(int(entry))
    out, i = [root], 0
    while i < len(out):
        out += kids.get(out[i], [])
        i += 1
    return out


def _snapshot(root: int) -> dict[int, tuple[str, int, int]]:
    snap = {}
    for pid in _tree(root):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{pid}/comm") as f:
                name = f.read().strip()
        except OSError:
            continue
        snap[pid] = (name, int(fields[11]), int(fields[12]))
    return snap


def main(argv: list[str]) -> int:
    split = "--split" in argv
    argv = [a for a in argv if a != "--split"]
    if "--" not in argv or argv.index("--") != 2:
        print(__doc__.split("DESCRIPTION")[0].strip(), file=sys.stderr)
        return 2
    root, n, cmd = _master_pid(argv[0]), int(argv[1]), argv[3:]
    before = _snapshot(root)
    start = time.monotonic()
    rc = subprocess.run(cmd).returncode
    elapsed = time.monotonic() - start
    after = _snapshot(root)
    per: dict[str, list[int]] = {}
    for pid, (name, user, system) in after.items():
        _, user0, system0 = before.get(pid, (name, 0, 0))
        acc = per.setdefault(name, [0, 0])
        acc[0] += user - user0
        acc[1] += system - system0
    scale = 1e6 / HZ / max(n, 1)
    total = 0.0
    for name, (user, system) in sorted(per.items(), key=lambda kv: -sum(kv[1])):
        if user + system == 0:
            continue
        total += (user + system) * scale
        extra = f"  (user {user * scale:.0f}, sys {system * scale:.0f})" if split else ""
        print(f"{(user + system) * scale:8.0f} us/msg  {name}{extra}")
    print(f"total {total:.0f} us/msg; {elapsed:.2f} s, {n / elapsed:.0f} msg/s; command exit {rc}")
    return 0 if rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
