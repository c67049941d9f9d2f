"""profile - where Postel's acceptance path spends its time (py-spy)

SYNOPSIS
    .venv/bin/python bench/run.py --profile 20 [--profile-out FILE]

DESCRIPTION
    Starts a Postel instance with delivery held (qmgr commented out, as in
    workload 3), keeps it busy with smtp-source (20 sessions, 1 KiB), and
    samples master and every child with `py-spy record --subprocesses
    --format raw` for the given seconds.  Each child is named after the
    service that logged under its pid (postel/smtpd[PID]: ...).  Prints,
    per service, the frames with the most samples by own time (the leaf
    frame) and by total time (anywhere on the stack).

    py-spy is not a Postel dependency: `.venv/bin/pip install py-spy`.
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .mta import PostelMTA, Reaper, free_port
from .workloads import SMTP_SOURCE

PROC_RX = re.compile(r"^process (\d+):")
LOG_PID_RX = re.compile(r"postel/([\w-]+)\[(\d+)\]")
MAIN_RX = re.compile(r"^main \(postel/(\w+)/service\.py")
PLUMBING = ("postel/master/", "postel/ipc/skeleton.py", "<frozen", "threading.py", "runners.py")


def parse_raw(text: str) -> list[tuple[int | None, list[str], int]]:
    """parse_raw - py-spy raw (collapsed) lines as (pid, frames root first, count)."""
    out = []
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        pid = None
        while frames and (m := PROC_RX.match(frames[0])):     # parent chain, then the process
            pid = int(m.group(1))
            frames = frames[1:]
        out.append((pid, frames, int(count)))
    return out


def top_frames(samples: list[tuple[int | None, list[str], int]], n: int = 15
               ) -> tuple[list[tuple[str, int]], list[tuple[str, int]], int]:
    """top_frames - (by own samples, by total samples, sample count)."""
    own: collections.Counter = collections.Counter()
    total: collections.Counter = collections.Counter()
    all_samples = 0
    for _pid, frames, count in samples:
        if not frames:
            continue
        all_samples += count
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    return own.most_common(n), total.most_common(n), all_samples


def _service(sample: tuple[int | None, list[str], int], names: dict[int, str]) -> str:
    """_service - the service a sample belongs to: its main() frame, else the maillog."""
    for frame in sample[1]:
        m = MAIN_RX.match(frame)
        if m:
            return m.group(1)
    return names.get(sample[0] or 0, "master")


def service_names(log_path: str) -> dict[int, str]:
    """service_names - pid -> service, from the instance's maillog."""
    names: dict[int, str] = {}
    try:
        with open(log_path, encoding="utf-8", errors="replace") as f:
            for line in f:
                m = LOG_PID_RX.search(line)
                if m:
                    names[int(m.group(2))] = m.group(1)
    except OSError:
        pass
    return names


def profile_acceptance(workdir: str, reaper: Reaper, seconds: float, raw_out: str | None) -> int:
    """profile_acceptance - run the profile and print the report; exit status."""
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not os.path.exists(pyspy):
        print("bench: py-spy not found (.venv/bin/pip install py-spy)", file=sys.stderr)
        return 1
    mta = reaper.add(PostelMTA(workdir, "hold", {"relayhost": f"[127.0.0.1]:{free_port()}",
                                                 "in_flow_delay": "0s"}))
    mta.start()
    count = int(seconds * 2000)        # more than it can take in the time
    load = subprocess.Popen([SMTP_SOURCE, "-s", "20", "-m", str(count), "-l", "1024",
                             "-f", "bench@example.org", "-t", "sink@example.com",
                             f"127.0.0.1:{mta.smtp_port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    class _Stop:
        def stop(self) -> None:
            if load.poll() is None:
                load.kill()
                load.wait()
    reaper.add(_Stop())
    raw = raw_out or os.path.join(tempfile.mkdtemp(dir=workdir), "pyspy.txt")
    cp = subprocess.run([pyspy, "record", "--pid", str(mta.master_pid()), "--subprocesses",
                         "--nonblocking", "--rate", "200", "--duration", str(int(seconds)),
                         "--format", "raw", "--output", raw],
                        capture_output=True, text=True, timeout=seconds + 60)
    load.kill()
    load.wait()
    if cp.returncode != 0 or not os.path.exists(raw):
        print(f"bench: py-spy failed: {cp.stderr.strip()[-500:]}", file=sys.stderr)
        return 1
    accepted = mta.queue_counts()["incoming"]
    with open(raw) as f:
        samples = parse_raw(f.read())
    names = service_names(mta.log_path)
    by_service: dict[str, list] = collections.defaultdict(list)
    for s in samples:
        by_service[_service(s, names)].append(s)
    print(f"profile: {accepted} messages accepted in {seconds:.0f}s "
          f"({accepted / seconds:.0f} msg/s under py-spy), 20 sessions, 1 KiB, delivery held")
    for service, ss in sorted(by_service.items(), key=lambda kv: -sum(c for _, _, c in kv[1])):
        own, total, n = top_frames(ss, 40)
        print(f"\n== {service}: {n} samples ==")
        print("  own%  total%  function")
        totals = dict(total)
        for frame, c in own[:15]:
            print(f"  {c / n * 100:4.1f}  {totals.get(frame, c) / n * 100:5.1f}   {frame}")
        print("  -- by total (Postel frames) --")
        for frame, c in [(f, c) for f, c in total if "postel/" in f
                         and not any(p in f for p in PLUMBING)][:10]:
            print(f"        {c / n * 100:5.1f}   {frame}")
    return 0
