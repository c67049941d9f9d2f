"""mailq - time `postel queue -p` / `-j` on a large queue, and Postfix's postqueue -p

SYNOPSIS
    .venv/bin/python bench/mailq.py [-n 100000] [--keep DIR] [--no-postfix]

DESCRIPTION
    Creates a Postel instance in a temporary directory (postel init), fills
    its deferred, active and hold queues with N queue files written with
    the queue library (one recipient each, 1 KiB content, a defer log for
    every tenth message), and times:

      * postel queue -p, reading the queue directly (no master running);
      * postel queue -p and -j through the showq service (master running);

    and, when Postfix is installed and this runs as root, Postfix's
    `postqueue -p` on n deferred messages: a private Postfix instance
    (bench/harness/mta.py) whose relayhost is a closed port is filled with
    smtp-source, then its qmgr is removed from master.cf so that no retry
    disturbs the timing.  Filling takes about 5 minutes for 100 000
    messages on a 2-core machine; with --no-postfix, or without root or
    postfix, that side is skipped with a message.

    Output: one line per measurement, seconds and messages per second.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from postel.queue import Envelope, QueueDir, QueueFileWriter, Recipient, new_qid

POSTEL = str(Path(sys.executable).with_name("postel"))
CONTENT = b"Subject: bench\n\n" + (b"x" * 70 + b"\n") * 14


def fill(qd: QueueDir, n: int) -> None:
    """fill - n queue files spread over deferred (80%), active and hold."""
    base = time.time() - 86400
    for i in range(n):
        queue = "deferred" if i % 10 < 8 else ("active" if i % 10 == 8 else "hold")
        w = QueueFileWriter(qd, queue, qid=new_qid(now=base + i * 0.001))
        w.write_envelope(Envelope(sender=f"sender{i}@example.com", time=base + i,
                                  recipients=[Recipient(f"rcpt{i}@example.org")]))
        w.write_content(CONTENT)
        w.commit_sync()
        if i % 10 == 0 and queue == "deferred":
            qd.ensure_dir("defer", w.qid)
            with open(qd.path("defer", w.qid), "w") as f:
                f.write(f"recipient=rcpt{i}@example.org\nstatus=4.4.1\n"
                        "reason=connect to mx.example.org[192.0.2.1]:25: Connection refused\n\n")


def timed(label: str, argv: list[str], n: int) -> None:
    """timed - run a command with stdout to /dev/null and report."""
    t0 = time.perf_counter()
    with open(os.devnull, "w") as null:
        cp = subprocess.run(argv, stdout=null, stderr=subprocess.PIPE, text=True)
    dt = time.perf_counter() - t0
    status = "" if cp.returncode == 0 else f"  (exit {cp.returncode}: {cp.stderr.strip()[:100]})"
    print(f"{label:<40} {dt:8.2f} s  {n / dt:10.0f} msg/s{status}", flush=True)


def postfix_side(n: int, top: str) -> None:
    """postfix_side - Postfix's postqueue -p on n deferred messages, or a skip message.

    A private Postfix (bench/harness/mta.py) with a closed relayhost port is
    filled with smtp-source; once all n messages are deferred, qmgr is
    removed from its master.cf (so that no retry disturbs the timing)."""
    if os.geteuid() != 0 or not shutil.which("postqueue") or not shutil.which("smtp-source"):
        print("postfix: skipped (needs root, postfix and smtp-source)")
        return
    sys.path.insert(0, str(Path(__file__).parent))
    from harness.mta import PostfixMTA, count_files, free_port
    mta = PostfixMTA(top, "deferred", {"relayhost": f"[127.0.0.1]:{free_port()}"})
    mta.start()
    try:
        t0 = time.perf_counter()
        subprocess.run([shutil.which("smtp-source"), "-s", "20", "-m", str(n), "-l", "1024",
                        "-f", "bench@example.org", "-t", "rcpt@example.net",
                        f"127.0.0.1:{mta.smtp_port}"], capture_output=True, timeout=120 + n / 20)
        deferred = os.path.join(mta.queue_dir, "deferred")
        while count_files(deferred) < n and time.perf_counter() - t0 < 120 + n / 20:
            time.sleep(1)
        print(f"{'postfix fill (smtp-source)':<40} {time.perf_counter() - t0:8.2f} s", flush=True)
        master_cf = os.path.join(mta.etc, "master.cf")
        with open(master_cf) as f:
            lines = ["#" + ln if ln.startswith("qmgr ") else ln for ln in f.read().splitlines()]
        with open(master_cf, "w") as f:
            f.write("\n".join(lines) + "\n")
        mta.postfix("reload")
        time.sleep(1)
        have = count_files(deferred)
        for _ in range(2):
            timed("postfix postqueue -p", ["postqueue", "-c", mta.etc, "-p"], have)
    finally:
        mta.stop()


def main() -> int:
    """main - parse options, build the queue, time the listings."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=100000)
    ap.add_argument("--keep", default="")
    ap.add_argument("--no-postfix", action="store_true")
    args = ap.parse_args()
    top = args.keep or tempfile.mkdtemp(prefix="mailq-bench-")
    inst = os.path.join(top, "inst")
    if not os.path.exists(os.path.join(inst, "main.cf")):
        import socket
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        subprocess.run([POSTEL, "init", "--port", str(port), inst], check=True,
                       capture_output=True)
    qd = QueueDir(os.path.join(inst, "queue"))
    have = sum(1 for q in ("deferred", "active", "hold") for _ in qd.scan(q))
    if have < args.n:
        t0 = time.perf_counter()
        fill(qd, args.n - have)
        print(f"{'fill (queue library)':<40} {time.perf_counter() - t0:8.2f} s", flush=True)
    n = max(have, args.n)
    timed("postel queue -p (direct)", [POSTEL, "-c", inst, "queue", "-p"], n)
    timed("postel queue -j (direct)", [POSTEL, "-c", inst, "queue", "-j"], n)
    started = subprocess.run([POSTEL, "-c", inst, "start"], capture_output=True)
    if started.returncode == 0:
        try:
            time.sleep(1)
            timed("postel queue -p (showq service)", [POSTEL, "-c", inst, "queue", "-p"], n)
            timed("postel queue -j (showq service)", [POSTEL, "-c", inst, "queue", "-j"], n)
        finally:
            subprocess.run([POSTEL, "-c", inst, "stop"], capture_output=True)
    else:
        print(f"showq service: skipped (postel start failed: {started.stderr.strip()[:200]})")
    if not args.no_postfix:
        postfix_side(n, os.path.join(top, "postfix"))
    if not args.keep:
        shutil.rmtree(top, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
