"""smtp_harness - shared helpers for the smtp/lmtp delivery agent tests

Queue a message in a temporary queue, build the DeliverRequest qmgr would
send, run postel.smtp.client against real peers (smtp-sink, Dovecot LMTP,
unbound) or small in-process servers, and read what arrived.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from postel import log
from postel.config import load_config
from postel.deliver.request import DeliverRcpt, DeliverRequest
from postel.deliver.status import DeliveryContext
from postel.queue import QueueDir, QueueFileReader, QueueFileWriter
from postel.queue.envelope import Envelope, Recipient
from postel.smtp.client import SmtpClient


def free_port() -> int:
    """free_port - an unused TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 10.0) -> None:
    """wait_port - until something accepts connections on 127.0.0.1:port."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def public_tmpdir() -> str:
    """public_tmpdir - a world-writable temp dir (peers drop to nobody)."""
    d = tempfile.mkdtemp(prefix="postel-smtp-", dir="/tmp")
    os.chmod(d, 0o777)
    return d


class Env:
    """Env - a main.cf, a queue directory and a log file in a temp dir."""

    def __init__(self, tmp: Path, main: dict[str, str] | None = None):
        self.dir = tmp
        self.log_path = tmp / "maillog"
        settings = {"queue_directory": str(tmp / "queue"), "maillog_file": str(self.log_path),
                    "myhostname": "client.test.example", "smtp_connect_timeout": "5s",
                    "smtp_helo_timeout": "10s", "smtp_mail_timeout": "10s",
                    "smtp_rcpt_timeout": "10s", "smtp_data_init_timeout": "10s",
                    "smtp_data_xfer_timeout": "10s", "smtp_data_done_timeout": "10s",
                    "smtp_quit_timeout": "5s", "dns_nameservers": "127.0.0.1:1"}
        settings.update(main or {})
        (tmp / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in settings.items()))
        self.cfg = load_config(str(tmp))
        self.qd = QueueDir(str(tmp / "queue"))
        self.qd.create_dirs()
        log.init("smtp", maillog_file=str(self.log_path))

    def queue(self, content: bytes, rcpts: list[str | Recipient], sender: str = "sender@example.org",
              **env) -> str:
        """queue - write a message into active/; returns its queue ID."""
        recips = [r if isinstance(r, Recipient) else Recipient(r, orig_rcpt=r) for r in rcpts]
        w = QueueFileWriter(self.qd, "active")
        w.write_envelope(Envelope(sender, recipients=recips, **env))
        w.write_content(content)
        w.commit_sync()
        return w.qid

    def request(self, qid: str, nexthop: str, **kw) -> DeliverRequest:
        """request - the DeliverRequest qmgr would send for every open recipient."""
        qf = QueueFileReader(self.qd.path("active", qid))
        env = qf.envelope
        rcpts = [DeliverRcpt(r.address, r.orig_rcpt, r.offset, r.dsn_orcpt, r.dsn_notify)
                 for r in qf.recipients if not r.done]
        qf.close()
        now = time.time()
        base = dict(sender=env.sender, dsn_envid=env.dsn_envid, dsn_ret=env.dsn_ret,
                    arrival_time=now, active_time=now, transport="smtp")
        base.update(kw)
        return DeliverRequest("active", qid, nexthop, recipients=rcpts, **base)

    def client(self, lmtp: bool = False) -> SmtpClient:
        """client - an SmtpClient configured from this main.cf."""
        return SmtpClient.from_config(self.cfg, lmtp=lmtp, service="lmtp" if lmtp else "smtp")

    async def adeliver(self, client: SmtpClient, req: DeliverRequest) -> DeliveryContext:
        """adeliver - one delivery inside a running loop."""
        qf = QueueFileReader(self.qd.path("active", req.queue_id))
        dctx = DeliveryContext(req, self.qd, qf, self.cfg)
        try:
            await client.deliver(req, dctx)
        finally:
            qf.close()
        return dctx

    def deliver(self, req: DeliverRequest, lmtp: bool = False) -> DeliveryContext:
        """deliver - one delivery with a fresh client and event loop."""
        async def run() -> DeliveryContext:
            client = self.client(lmtp)
            try:
                return await self.adeliver(client, req)
            finally:
                await client.cache.close_all()
        return asyncio.run(run())

    def log_text(self) -> str:
        """log_text - everything logged so far."""
        return self.log_path.read_text() if self.log_path.exists() else ""

    def done(self, qid: str) -> list[bool]:
        """done - the done marks of the queue file's recipients."""
        qf = QueueFileReader(self.qd.path("active", qid))
        try:
            return [r.done for r in qf.recipients]
        finally:
            qf.close()


class Sink:
    """Sink - Postfix's smtp-sink on a free port, dumping messages into a directory."""

    def __init__(self, path: str, *options: str, port: int | None = None):
        self.port = port or free_port()
        self.dump = public_tmpdir()
        self.proc = subprocess.Popen(
            [path, "-u", "nobody", "-d", f"{self.dump}/%H%M%S.", *options,
             f"127.0.0.1:{self.port}", "100"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        wait_port(self.port)

    def messages(self, count: int = 1, timeout: float = 10.0) -> list[bytes]:
        """messages - the dumped transactions (waits for count of them)."""
        end = time.monotonic() + timeout
        while True:
            files = sorted(Path(self.dump).iterdir())
            if len(files) >= count or time.monotonic() > end:
                break
            time.sleep(0.05)
        time.sleep(0.1)      # let smtp-sink finish writing
        return [f.read_bytes() for f in sorted(Path(self.dump).iterdir())]

    def stop(self) -> str:
        """stop - end smtp-sink; returns its output."""
        self.proc.terminate()
        try:
            out, _ = self.proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        shutil.rmtree(self.dump, ignore_errors=True)
        return out.decode("utf-8", "replace")


def split_dump(dump: bytes) -> tuple[dict[str, list[str]], bytes]:
    """split_dump - smtp-sink's X- headers and the message as received."""
    lines = dump.split(b"\n")
    meta: dict[str, list[str]] = {}
    i = 0
    while not lines[i].startswith(b"Received: "):
        name, _, value = lines[i].decode().partition(": ")
        meta.setdefault(name, []).append(value)
        i += 1
    body = b"\n".join(lines[i + 3:])
    assert body.endswith(b"\n\n") or body == b"\n"
    return meta, body[:-1]
