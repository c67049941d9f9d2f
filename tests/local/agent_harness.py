"""agent_harness - run a delivery agent's deliver() on a real queue file, without a socket

Used by tests/local, tests/virtual and tests/pipe:

    h = Harness(tmp_path, {"home_mailbox": "Maildir/"})
    res = h.deliver(local_deliver, "sender@example.com", ["anyone@localhost"], b"Subject: x\\n\\nbody\\n")
    res.status("anyone@localhost") -> "sent"; res.log -> log text; res.bounce_log() ...
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass

from postel import log
from postel.config import load_config
from postel.deliver.agent import handle_request
from postel.deliver.request import DeliverRcpt, DeliverRequest
from postel.deliver.status import DeliveryContext, read_log
from postel.ipc.skeleton import ServiceContext
from postel.queue import QueueDir, QueueFileWriter
from postel.queue.envelope import Envelope, Recipient


def _run(coro):
    """_run - run a coroutine on the loop the daemons use (uvloop when installed)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


@dataclass
class Result:
    """What one delivery request produced."""

    dctx: DeliveryContext
    req: DeliverRequest
    harness: Harness

    def status(self, address: str) -> str | None:
        """status - sent/bounced/deferred for a recipient."""
        for r in self.req.recipients:
            if r.address == address:
                return self.dctx.outcome(r)
        raise KeyError(address)

    @property
    def log(self) -> str:
        """log - the maillog so far."""
        with open(self.harness.log_path, encoding="utf-8") as f:
            return f.read()

    def entries(self, queue: str) -> list[dict[str, str]]:
        """entries - the bounce/defer/trace log entries of this message."""
        return read_log(self.harness.qd.path(queue, self.req.queue_id))


class Harness:
    """A config directory and a queue, for calling an agent's deliver()."""

    def __init__(self, tmp_path, main: dict[str, str] | None = None) -> None:
        self.dir = str(tmp_path)
        self.log_path = os.path.join(self.dir, "maillog")
        settings = {
            "config_directory": self.dir,
            "queue_directory": "$config_directory/queue",
            "maillog_file": self.log_path,
            "mail_spool_directory": "$config_directory/mail/",
            "alias_maps": "",
            "mydestination": "localhost",
            "myhostname": "mail.example.com",
        }
        settings.update(main or {})
        with open(os.path.join(self.dir, "main.cf"), "w") as f:
            for k, v in settings.items():
                f.write(f"{k} = {v}\n")
        self.cfg = load_config(self.dir)
        self.qd = QueueDir(self.cfg.get("queue_directory"))
        self.qd.create_dirs()
        log.init("test", maillog_file=self.log_path, use_syslog=False)

    def queue(self, sender: str, rcpts: list[str], content: bytes) -> tuple[str, list[Recipient]]:
        """queue - write a queue file into active/; returns qid and recipients with offsets."""
        w = QueueFileWriter(self.qd, "active")
        env = Envelope(sender, [Recipient(r, orig_rcpt=r) for r in rcpts], time=time.time())
        w.write_envelope(env)
        w.write_content(content)
        w.commit_sync()
        from postel.queue import QueueFileReader
        with QueueFileReader(w.path) as r:
            return w.qid, list(r.recipients)

    def deliver(self, deliver, sender: str, rcpts: list[str], content: bytes, *,
                args: list[str] | None = None, nexthop: str = "localhost",
                transport: str = "local", **req_fields) -> Result:
        """deliver - queue a message and run deliver() for all its recipients."""
        qid, recipients = self.queue(sender, rcpts, content)
        req = DeliverRequest("active", qid, nexthop, sender,
                             [DeliverRcpt(r.address, r.orig_rcpt, r.offset) for r in recipients],
                             transport=transport, arrival_time=time.time(),
                             active_time=time.time(), **req_fields)
        ctx = ServiceContext(cfg=self.cfg, service_name=transport, process_name=transport,
                             config_dir=self.dir, queue_directory=self.cfg.get("queue_directory"),
                             args=list(args or []))
        dctx = _run(handle_request(req, deliver, ctx))
        return Result(dctx, req, self)
