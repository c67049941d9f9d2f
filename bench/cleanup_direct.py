"""cleanup_direct - messages/s through CleanupClient -> cleanup -> queue

SYNOPSIS
    .venv/bin/python bench/cleanup_direct.py [--messages N] [--clients C] [--size BYTES]

DESCRIPTION
    Starts cleanup standalone on a UNIX socket in a temporary instance
    (trivial-rewrite replaced by an in-process stand-in, so that only
    cleanup and the queue are measured), then submits N messages of SIZE
    bytes from C concurrent clients and prints messages/s.  Every message
    is durable (fsync) before its reply, as in production.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import shutil
import sys
import tempfile
import time

from postel.cleanup import service as cleanup_service
from postel.ipc.cleanup_client import CleanupClient
from postel.ipc.skeleton import run_standalone
from postel.queue import QueueDir


class _Rewrite:
    async def rewrite_internal(self, rule: str, addr: str) -> str:
        return addr if "@" in addr else addr + "@example.com"


def _message(size: int) -> bytes:
    head = (b"Received: from client.example.org by mx.example.com; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
            b"From: a@example.org\r\nTo: b@example.com\r\nSubject: bench\r\n"
            b"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <x@example.org>\r\n\r\n")
    line = b"x" * 70 + b"\r\n"
    body = line * max(1, (size - len(head)) // len(line))
    return head + body


async def _run(qdir: str, n: int, clients: int, content: bytes) -> float:
    cc = CleanupClient(qdir)
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            r = await cc.submit(f"s{i}@example.org", [f"r{i}@example.com"], content)
            if not r.ok:
                raise SystemExit(f"submission failed: {r}")
    t0 = time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(clients)])
    elapsed = time.perf_counter() - t0
    await cc.close()
    return elapsed


def _client_main(qdir: str, n: int, clients: int, size: int) -> float:
    """_client_main - the submitting side, in its own process."""
    return asyncio.run(_run(qdir, n, clients, _message(size)))


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--messages", type=int, default=2000)
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--size", type=int, default=1024)
    a = p.parse_args()
    top = tempfile.mkdtemp(prefix="postel-bench-")
    try:
        qdir = os.path.join(top, "queue")
        conf = os.path.join(top, "conf")
        os.makedirs(conf)
        with open(os.path.join(conf, "main.cf"), "w") as f:
            f.write(f"queue_directory = {qdir}\nmyhostname = mx.example.com\n")
        QueueDir(qdir).create_dirs()

        def post_init(ctx) -> None:
            ctx.state["cleanup"] = cleanup_service.CleanupService(
                ctx.cfg, ctx.queue_directory, rewrite_client=_Rewrite())
        srv = run_standalone("cleanup", [f"unix:{qdir}/private/cleanup"],
                             handler=cleanup_service.serve_client, config_dir=conf,
                             post_init=post_init)
        try:
            # The clients run in another process, as smtpd does.
            ctx = multiprocessing.get_context("spawn")
            with ctx.Pool(1) as pool:
                elapsed = pool.apply(_client_main, (qdir, a.messages, a.clients, a.size))
        finally:
            srv.stop()
        n = len(list(QueueDir(qdir).scan("incoming")))
        print(f"cleanup_direct: {a.messages} messages of {a.size} bytes, {a.clients} clients: "
              f"{a.messages / elapsed:.0f} messages/s ({n} queue files)")
        return 0 if n == a.messages else 1
    finally:
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
