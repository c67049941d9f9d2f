"""queue_write - micro-benchmark of queue file write + commit

SYNOPSIS
    .venv/bin/python bench/queue_write.py [-n messages] [-c concurrency] [-d dir]

DESCRIPTION
    Writes 1 KiB messages (envelope with two recipients, 20 content lines)
    into a fresh queue directory and reports messages per second for:

      sync     one message at a time, QueueFileWriter.commit_sync()
      group    c concurrent asyncio tasks sharing one Committer
      read     QueueFileReader + read_content() of every file
      scan     QueueDir.scan("incoming")

    Not a test: the numbers depend on the disk.  Use -d to put the queue on
    the file system you care about (the default is a temp dir).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time

from postel.queue import Committer, Envelope, QueueDir, QueueFileReader, QueueFileWriter, Recipient

LINE = b"x" * 49 + b"\r\n"
BODY = b"Subject: bench\r\nFrom: a@example.com\r\n\r\n" + LINE * 19


def _writer(qd: QueueDir, i: int) -> QueueFileWriter:
    w = QueueFileWriter(qd)
    w.write_envelope(Envelope("sender@example.com",
                              recipients=[Recipient(f"r{i}@example.org"), Recipient("b@example.net")],
                              attrs={"client_name": "localhost", "protocol": "ESMTP"}))
    w.write_content(BODY)
    return w


def bench_sync(qd: QueueDir, n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        _writer(qd, i).commit_sync()
    return n / (time.perf_counter() - start)


def bench_group(qd: QueueDir, n: int, concurrency: int) -> tuple[float, int]:
    async def worker(committer: Committer, count: int, base: int) -> None:
        for i in range(count):
            await committer.commit(_writer(qd, base + i))

    async def main() -> int:
        async with Committer() as committer:
            per = n // concurrency
            await asyncio.gather(*(worker(committer, per, k * per) for k in range(concurrency)))
            return committer.batches

    start = time.perf_counter()
    batches = asyncio.run(main())
    return (n // concurrency) * concurrency / (time.perf_counter() - start), batches


def bench_read(qd: QueueDir) -> tuple[float, float]:
    start = time.perf_counter()
    qids = list(qd.scan("incoming"))
    scan_rate = len(qids) / (time.perf_counter() - start)
    start = time.perf_counter()
    for qid in qids:
        with QueueFileReader(qd.path("incoming", qid)) as r:
            r.read_content()
    return len(qids) / (time.perf_counter() - start), scan_rate


def main() -> None:
    ap = argparse.ArgumentParser(description="queue file write+commit benchmark")
    ap.add_argument("-n", type=int, default=2000, help="messages per mode")
    ap.add_argument("-c", type=int, default=50, help="concurrent writers in group mode")
    ap.add_argument("-d", default=None, help="parent directory for the test queue")
    args = ap.parse_args()
    top = tempfile.mkdtemp(prefix="postel-bench-", dir=args.d)
    try:
        qd = QueueDir(top)
        qd.create_dirs()
        rate = bench_sync(qd, args.n)
        print(f"sync   write+commit_sync: {rate:8.0f} msg/s ({len(BODY)} byte messages)")
        rate, batches = bench_group(qd, args.n, args.c)
        print(f"group  write+commit x{args.c}: {rate:8.0f} msg/s ({batches} batches)")
        read_rate, scan_rate = bench_read(qd)
        print(f"read   open+check+content: {read_rate:8.0f} msg/s")
        print(f"scan   incoming:           {scan_rate:8.0f} qids/s")
    finally:
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    main()
