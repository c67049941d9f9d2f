"""agent - the skeleton shared by every Postel delivery agent

SYNOPSIS
    from postel.deliver.agent import delivery_agent_main, handle_request

    def main(argv: list[str]) -> int:
        return delivery_agent_main("smtp", argv, deliver, post_init=setup)

    async def deliver(req: DeliverRequest, dctx: DeliveryContext,
                      ctx: ServiceContext) -> None:
        for rcpt in req.recipients:
            sent(dctx, rcpt, "local", "2.0.0", "delivered to mailbox")

DESCRIPTION
    A delivery agent is a multi_server(3) service on private/TRANSPORT.
    qmgr(8) keeps connections open and sends delivery requests on them
    (see request.py), one at a time per connection; the agent process
    serves many connections at once.

    For each request the skeleton:

      1. decodes it (a malformed request is logged and the connection
         closed: qmgr then defers the recipients);
      2. opens the queue file read-write; when it is missing or corrupt,
         every recipient is deferred with a log line ("4.3.0 queue file
         ...") and status=4 is returned: qmgr deals with the file;
      3. runs deliver(req, dctx, ctx), which must call sent(), defer() or
         bounce() (postel.deliver.status) once for each recipient;
      4. defers every recipient left without an outcome, with "4.3.0
         delivery agent gave no status", or, when deliver() raised, with
         "4.3.0 internal error" (the exception is logged as a warning;
         the process goes on);
      5. writes the reply: status, rcpt_status per recipient, site_dead.

    Requests are handled by handle_request(), which tests may call
    directly without a socket.

CONFIGURATION PARAMETERS
    queue_directory          where the queue lives
    hash_queue_names, hash_queue_depth   hashed queue layout
    ipc_idle (5s)            close a connection from qmgr idle this long
                             (0: never)
    plus what postel.deliver.status reads.
"""

from __future__ import annotations

import asyncio
import dataclasses
import fcntl
import os
import time
import traceback
from collections.abc import Awaitable, Callable

from postel import log
from postel.deliver.qfcache import CachingReader
from postel.deliver.request import (
    FLAG_VERIFY,
    RCPT_SENT,
    DeliverRequest,
    RequestError,
    decode_request,
)
from postel.deliver.status import DeliveryContext, _record, defer, sent
from postel.ipc.attr import AttrError, AttrList, read_attrs, write_attrs
from postel.ipc.skeleton import DEFAULT_CONCURRENCY, ServiceContext, multi_server_main
from postel.queue import QueueDir, QueueFileCorrupt, QueueFileReader

__all__ = ["delivery_agent_main", "agent_handler", "handle_request", "queue_dir_of", "DeliverFunc"]

DeliverFunc = Callable[[DeliverRequest, DeliveryContext, ServiceContext], Awaitable[None]]

LOCK_WAIT = 60.0        # seconds to wait for another delivery of the same file to finish
LOCK_POLL = 0.05


def queue_dir_of(ctx: ServiceContext) -> QueueDir:
    """queue_dir_of - the QueueDir of this service (cached in ctx.state)."""
    qd = ctx.state.get("queue_dir")
    if qd is None:
        cfg = ctx.cfg
        qd = QueueDir(cfg.get("queue_directory"), cfg.get("hash_queue_names"),
                      int(cfg.get("hash_queue_depth") or 1))
        ctx.state["queue_dir"] = qd
    return qd


def _open_queue_file(path: str) -> tuple[QueueFileReader | None, str]:
    """_open_queue_file - the reader, or None and the reason it cannot be read."""
    try:
        return CachingReader(path), ""
    except FileNotFoundError:
        return None, "queue file is missing"
    except QueueFileCorrupt as exc:
        return None, f"corrupt queue file: {exc}"
    except (OSError, ValueError) as exc:
        return None, f"cannot open queue file: {exc}"


def _try_lock(fd: int) -> bool:
    """_try_lock - the shared flock at once, or False (then _lock_queue_file waits)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


async def _lock_queue_file(path: str, wait: float = LOCK_WAIT) -> tuple[int | None, str]:
    """_lock_queue_file - a shared flock on the queue file for the whole delivery.

    Agents share the lock, so several deliveries of one message run at once.
    qmgr tests for it (an exclusive lock it cannot get) before it activates a
    file: after a qmgr restart, a file that an agent of the killed qmgr is
    still delivering is left alone until that agent has marked its
    recipients done.  The agent also skips recipients already marked done
    when it has the lock.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None, "queue file is missing"
    except OSError as exc:
        return None, f"cannot open queue file: {exc.strerror}"
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return fd, ""
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                return None, "queue file is locked"
            await asyncio.sleep(LOCK_POLL)
        except OSError as exc:
            os.close(fd)
            return None, f"cannot lock queue file: {exc.strerror}"


def _skip_done(req: DeliverRequest, qf: QueueFileReader, dctx: DeliveryContext) -> DeliverRequest:
    """_skip_done - recipients another delivery finished meanwhile count as sent, silently."""
    done = {r.offset for r in qf.recipients if r.done}
    if not done:
        return req
    for rcpt in req.recipients:
        if rcpt.offset in done:
            _record(dctx, rcpt, RCPT_SENT)
    return dataclasses.replace(req, recipients=[r for r in req.recipients if r.offset not in done])


async def handle_request(req: DeliverRequest, deliver: DeliverFunc, ctx: ServiceContext
                         ) -> DeliveryContext:
    """handle_request - run deliver() for one request; every recipient gets an outcome."""
    qd = queue_dir_of(ctx)
    path = qd.path(req.queue_name, req.queue_id)
    lock_fd = None
    # The usual case: one descriptor, read and locked (shared) at once; the
    # lock goes with qf.close().  When qmgr holds its test lock, wait for the
    # lock on a descriptor of its own, then read.
    qf, why = _open_queue_file(path)
    if qf is not None and not _try_lock(qf.fileno()):
        qf.close()
        qf = None
        lock_fd, why = await _lock_queue_file(path)
        if lock_fd is not None:
            qf, why = _open_queue_file(path)
    dctx = DeliveryContext(req, qd, qf, ctx.cfg)
    try:
        if qf is None:
            log.warning("%s: %s", req.queue_id, why)
            for rcpt in req.recipients:
                defer(dctx, rcpt, "none", "4.3.0", f"mail system error: {why}")
            return dctx
        try:
            todo = _skip_done(req, qf, dctx)
            if not todo.recipients:
                pass
            elif FLAG_VERIFY in req.flags and not getattr(deliver, "handles_verify", False):
                verify_only(todo, dctx)
            else:
                await deliver(todo, dctx, ctx)
        except asyncio.CancelledError:
            for rcpt in dctx.pending():
                defer(dctx, rcpt, "none", "4.3.0", "delivery agent was stopped")
            raise
        except Exception as exc:
            log.warning("%s: internal error in %s agent: %s: %s", req.queue_id,
                        ctx.service_name, type(exc).__name__, exc)
            if ctx.verbose:
                log.warning("%s", traceback.format_exc().replace("\n", " | "))
            for rcpt in dctx.pending():
                defer(dctx, rcpt, "none", "4.3.0", "internal error")
        for rcpt in dctx.pending():
            defer(dctx, rcpt, "none", "4.3.0", "delivery agent gave no status")
    finally:
        if qf is not None:
            qf.close()
        if lock_fd is not None:
            os.close(lock_fd)       # releases the flock
    return dctx


def verify_only(req: DeliverRequest, dctx: DeliveryContext) -> None:
    """verify_only - sendmail -bv for an agent without a probe of its own: report, never deliver.

    An agent that can probe (e.g. an SMTP RCPT check) sets deliver.handles_verify = True
    and reports each recipient itself.
    """
    where = f"{req.transport}:{req.nexthop}" if req.nexthop else req.transport
    for rcpt in dctx.pending():
        sent(dctx, rcpt, "none", "2.0.0", f"delivery via {where}")


def _idle_timeout(ctx: ServiceContext) -> float | None:
    """_idle_timeout - how long a qmgr connection may sit idle (None: forever)."""
    try:
        idle = float(ctx.cfg.get_time("ipc_idle"))
    except Exception:
        idle = 0.0
    # qmgr keeps its connections for longer than a client's ipc_idle; the
    # agent must not be the one to cut them, so allow a generous margin.
    return None if idle <= 0 else max(idle * 60, 300.0)


def agent_handler(deliver: DeliverFunc):
    """agent_handler - the per-connection loop for multi_server_main (and run_standalone)."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    ctx: ServiceContext) -> None:
        idle = _idle_timeout(ctx)
        while True:
            try:
                attrs: AttrList = await read_attrs(reader, timeout=idle)
            except (EOFError, TimeoutError, ConnectionError):
                return
            except AttrError as exc:
                log.warning("%s: bad request from qmgr: %s", ctx.service_name, exc)
                return
            try:
                req = decode_request(attrs)
            except RequestError as exc:
                log.warning("%s: bad delivery request: %s", ctx.service_name, exc)
                return
            dctx = await handle_request(req, deliver, ctx)
            try:
                await write_attrs(writer, dctx.reply_attrs())
            except ConnectionError:
                return

    return serve


def delivery_agent_main(process_name: str, argv: list[str], deliver: DeliverFunc, *,
                        pre_init=None, post_init=None,
                        concurrency: int = DEFAULT_CONCURRENCY) -> int:
    """delivery_agent_main - run a delivery agent service; returns the exit status."""
    return multi_server_main(process_name, argv, agent_handler(deliver), pre_init=pre_init,
                             post_init=post_init, concurrency=concurrency)
