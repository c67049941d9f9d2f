"""qmgr - Postel queue manager

SYNOPSIS
    qmgr [generic daemon options]

DESCRIPTION
    The queue manager moves mail from the incoming and deferred queues into
    the active queue, asks trivial-rewrite(8) where each recipient goes,
    and hands delivery requests to the delivery agents (private/TRANSPORT),
    as Postfix's qmgr(8) does.  It is a trigger server on public/qmgr that
    runs its own scheduling loop: triggers only wake it up.

    Triggers (one byte each, any combination):
        I  scan the incoming queue      D  scan the deferred queue
        A  ignore deferred time stamps on the next scan
        F  forget dead destinations     W  wake up
    The incoming queue is also scanned about once a second, the deferred
    queue every $queue_run_delay.

    A deferred queue file's modification time is its next delivery time.
    Files are moved to active/ while there are fewer than
    $qmgr_message_active_limit messages there.  A message is logged as
        QID: from=<sender>, size=N, nrcpt=N (queue active)
    Recipients already marked done are skipped, so a message that was
    partly delivered when qmgr (or the system) stopped is never delivered
    twice to the same recipient.  Before each delivery attempt the old
    defer log is removed.

    When every recipient has an outcome:
      * nothing deferred: bounce(8) is asked to return a DSN for the
        entries of the bounce log (and trace(8) for the trace log), then
        the queue file is removed ("QID: removed");
      * some deferred, queue lifetime ($maximal_queue_lifetime, or
        $bounce_queue_lifetime for a null sender) exceeded: bounce(8)
        turns the defer log into a bounce, then the file is removed;
      * some deferred: a delay warning is asked for when the message's
        warning time has passed, then the file goes to deferred/ with the
        next attempt at now + its age, bounded by $minimal_backoff_time and
        $maximal_backoff_time.
    If bounce(8) cannot be reached, the message is deferred and tried
    again later (nothing is removed before its DSN exists).

    At start-up, files left in active/ by a previous qmgr are moved back
    to incoming/.  Corrupt queue files go to corrupt/.  hold/ is left
    alone.  Scheduling (concurrency windows, feedback, dead destinations,
    rate delays, round robin) is described in postel.qmgr.sched.

    Recipients are read in slices: at most $qmgr_message_recipient_limit
    recipients of all active messages are held in memory (each message
    gets at least $qmgr_message_recipient_minimum); a message's next slice
    is read from its queue file when the previous one has its outcomes,
    and no new message is activated while the limit is reached.

CONFIGURATION PARAMETERS
    qmgr_message_active_limit (20000)     messages in the active queue
    qmgr_message_recipient_limit (20000)  recipients of active messages in memory
    qmgr_message_recipient_minimum (10)   recipients read per message at least
    queue_run_delay (300s)                deferred queue scan interval
    minimal_backoff_time (300s)           shortest retry interval; dead sites
    maximal_backoff_time (4000s)          longest retry interval
    maximal_queue_lifetime (5d)           then deferred mail is bounced
    bounce_queue_lifetime (5d)            the same for null-sender mail
    transport_retry_time (60s)            a failing delivery agent is left alone
    qmgr_ipc_timeout (60s)                (connect timeout to the agents)
    initial_destination_concurrency (5)   and per transport:
    TRANSPORT_destination_concurrency_limit ($default_destination_concurrency_limit: 20)
    TRANSPORT_destination_recipient_limit ($default_destination_recipient_limit: 50)
    TRANSPORT_initial_destination_concurrency ($initial_destination_concurrency)
    TRANSPORT_destination_concurrency_positive_feedback (1)
    TRANSPORT_destination_concurrency_negative_feedback (1)
    TRANSPORT_destination_concurrency_failed_cohort_limit (1)
    TRANSPORT_destination_rate_delay (0s)
    the master.cf process limit of the transport's service bounds its
    requests in flight.

SEE ALSO
    postel.qmgr.sched, postel.deliver, bounce(8), docs/qmgr.md
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import time
from dataclasses import dataclass, field

from postel import log
from postel.deliver.request import (
    DeliverRcpt,
    DeliverRequest,
    RequestError,
    decode_reply,
    encode_request,
)
from postel.deliver.status import DeliveryContext, bounce, defer
from postel.ipc.client import ServiceClient, ServiceUnavailable
from postel.ipc.skeleton import ServiceContext, trigger_server_main
from postel.qmgr.sched import Job, Msg, Scheduler, TransportParams
from postel.queue import QueueDir, QueueFileCorrupt, QueueFileReader
from postel.queue.commit import syncfs, syncfs_unavailable
from postel.queue.qid import qid_hash
from postel.queue.recycle import Recycler

INCOMING_POLL = 1.0          # seconds between incoming scans without triggers


def _being_delivered(path: str) -> bool:
    """_being_delivered - does a delivery agent hold its shared lock on this file?

    Agents lock a queue file (flock, shared) while they deliver from it.  After
    a qmgr restart, a file moved back from active/ may still be in the hands of
    an agent that the killed qmgr started; reading its recipients now would
    deliver again what that agent is delivering.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
    return False


@dataclass(slots=True)
class _ScanPass:
    """_ScanPass - one pass of qmgr over a queue: the names still to look at."""

    todo: list[str]             # reversed listing: the next name is todo[-1]
    all: bool = False           # a flush: ignore the deferred files' retry times
    dfxp: bool = False          # a flush: deferred transports deliver too


@dataclass(slots=True)
class MsgData:
    """What qmgr keeps about an active message."""

    qid: str
    sender: str
    arrival: float
    active_time: float
    size: int
    attrs: dict
    dsn_envid: str = ""
    dsn_ret: int = 0
    warn_time: int = 0
    dfxp: bool = False              # activated by a flush: defer_transports do not apply
    rcpts: list[DeliverRcpt] = field(default_factory=list)   # the slice in memory
    next_rcpt: int = 0              # index of the first recipient not read yet
    total_rcpts: int = 0            # recipient records in the queue file


def _wake_expire(waiter: asyncio.Future) -> None:
    """_wake_expire - the loop's sleep is over."""
    if not waiter.done():
        waiter.set_result(None)


class _Wake:
    """_Wake - the loop's wake-up flag (an Event whose timed wait needs no Task)."""

    __slots__ = ("_set", "_waiter")

    def __init__(self) -> None:
        self._set = False
        self._waiter: asyncio.Future | None = None

    def set(self) -> None:
        """set - wake the loop now (or at its next wait)."""
        self._set = True
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def clear(self) -> None:
        """clear - forget earlier wake-ups."""
        self._set = False

    def is_set(self) -> bool:
        """is_set - was set() called since clear()?"""
        return self._set

    async def wait(self, timeout: float) -> None:
        """wait - until set() or timeout seconds have passed."""
        if self._set:
            return
        loop = asyncio.get_running_loop()
        w = self._waiter = loop.create_future()
        timer = loop.call_later(timeout, _wake_expire, w)
        try:
            await w
        finally:
            timer.cancel()
            self._waiter = None


def _param(cfg, name: str, kind: str, default):
    """_param - a typed parameter, default when unknown or bad."""
    try:
        if kind == "int":
            return cfg.get_int(name)
        if kind == "time":
            return cfg.get_time(name)
        if kind == "list":
            return cfg.get_list(name)
        return cfg.get(name)
    except Exception:
        return default


def transport_params(cfg, name: str, process_limit: int) -> TransportParams:
    """transport_params - the scheduling parameters of transport name."""
    return TransportParams(
        name=name,
        dest_concurrency_limit=_param(cfg, f"{name}_destination_concurrency_limit", "int",
                                      _param(cfg, "default_destination_concurrency_limit",
                                             "int", 20)),
        initial_concurrency=_param(cfg, f"{name}_initial_destination_concurrency", "int",
                                   _param(cfg, "initial_destination_concurrency", "int", 5)),
        recipient_limit=_param(cfg, f"{name}_destination_recipient_limit", "int",
                               _param(cfg, "default_destination_recipient_limit", "int", 50)),
        positive_feedback=_param(cfg, f"{name}_destination_concurrency_positive_feedback",
                                 "str", "1"),
        negative_feedback=_param(cfg, f"{name}_destination_concurrency_negative_feedback",
                                 "str", "1"),
        failed_cohort_limit=_param(cfg, f"{name}_destination_concurrency_failed_cohort_limit",
                                   "int", 1),
        rate_delay=_param(cfg, f"{name}_destination_rate_delay", "time", 0.0),
        process_limit=process_limit,
        min_backoff=_param(cfg, "minimal_backoff_time", "time", 300.0),
        retry_time=_param(cfg, "transport_retry_time", "time", 60.0),
    )


def backoff_time(now: float, arrival: float, min_backoff: float, max_backoff: float) -> float:
    """backoff_time - the next attempt of a deferred message: now + age, bounded."""
    age = max(0.0, now - arrival)
    return now + min(max(age, min_backoff), max_backoff)


class Qmgr:
    """The queue manager's I/O shell around the Scheduler."""

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        cfg = self.cfg = ctx.cfg
        self.qd = QueueDir(cfg.get("queue_directory"), cfg.get("hash_queue_names"),
                           int(cfg.get("hash_queue_depth") or 1))
        recycle_limit = _param(cfg, "queue_file_recycle_limit", "int", 200)
        if recycle_limit > 0:
            size = _param(cfg, "queue_file_recycle_size", "int", 262144)
            self.qd.recycler = Recycler(self.qd, recycle_limit, size)
        self.active_limit = _param(cfg, "qmgr_message_active_limit", "int", 20000)
        self.run_delay = _param(cfg, "queue_run_delay", "time", 300.0)
        self.min_backoff = _param(cfg, "minimal_backoff_time", "time", 300.0)
        self.max_backoff = _param(cfg, "maximal_backoff_time", "time", 4000.0)
        self.max_life = _param(cfg, "maximal_queue_lifetime", "time", 5 * 86400.0)
        self.bounce_life = _param(cfg, "bounce_queue_lifetime", "time", 5 * 86400.0)
        self.connect_timeout = _param(cfg, "qmgr_ipc_timeout", "time", 60.0)
        self.rcpt_limit = max(1, _param(cfg, "qmgr_message_recipient_limit", "int", 20000))
        self.rcpt_minimum = max(1, _param(cfg, "qmgr_message_recipient_minimum", "int", 10))
        self.rcpts_in_core = 0          # recipients of active messages held in memory
        self.proc_limits = self._process_limits()
        self.sched = Scheduler(lambda n: transport_params(cfg, n, self.proc_limits.get(
            n, _param(cfg, "default_process_limit", "int", 100))))
        self.active: dict[str, Msg] = {}
        self.agents: dict[str, ServiceClient] = {}
        self.rewrite = None
        self.wake = _Wake()
        self.scan_incoming = True
        self.scan_deferred = True
        self.scan_all = False
        # defer_transports: mail for these transports waits until someone
        # flushes the queue (postqueue -f, sendmail -q: the trigger has "F").
        self.defer_transports = set(_param(cfg, "defer_transports", "list", []))
        self.flush_dfxp = False
        self.tasks: set[asyncio.Task] = set()
        self.delivered_requests = 0
        # Files recover() moved back from active/: only these can still be in
        # the hands of an agent of a killed qmgr (see _being_delivered).
        self.recovered: set[str] = set()
        self._fs_fd: int | None = None      # the queue file system, for syncfs(2)
        self._passes: dict[str, _ScanPass] = {}     # queue -> the scan in progress
        # Top directories of the queues that are not hashed: a file's path is
        # then one concatenation (qids come from QueueDir scans, valid).
        self._tops = {q: self.qd.queue_path(q) + "/" for q in
                      ("incoming", "active", "deferred", "bounce", "trace", "defer")
                      if self.qd.depth(q) == 0}
        # The hashed ones (defer/ and deferred/ by default): top and depth.
        self._htops = {q: (self.qd.queue_path(q) + "/", self.qd.depth(q)) for q in
                       ("incoming", "active", "deferred", "bounce", "trace", "defer")
                       if self.qd.depth(q) > 0}
        # Messages whose defer log could not be removed at activation (not ENOENT).
        self._defer_log_left: set[str] = set()

    def _path(self, queue: str, qid: str) -> str:
        """_path - the path of a queue file (QueueDir.path, precomputed where not hashed)."""
        top = self._tops.get(queue)
        if top is not None:
            return top + qid
        hashed = self._htops.get(queue)
        if hashed is None:
            return self.qd.path(queue, qid)
        # Same string as QueueDir.path (tests compare); ValueError on a bad qid.
        return hashed[0] + "/".join(qid_hash(qid, hashed[1])) + "/" + qid

    def _move(self, qid: str, from_queue: str, to_queue: str) -> None:
        """_move - rename a queue file into another queue (QueueDir.move when that fails)."""
        try:
            os.rename(self._path(from_queue, qid), self._path(to_queue, qid))
        except FileNotFoundError:
            self.qd.move(qid, from_queue, to_queue)     # makes a missing hashed dir, or raises

    def _process_limits(self) -> dict[str, int]:
        """_process_limits - master.cf process limit per service name."""
        try:
            return {e.service: (e.maxproc or 100) for e in self.cfg.master_entries()}
        except Exception:
            return {}

    # -- triggers

    def trigger(self, data: bytes) -> None:
        """trigger - note what a trigger asks for and wake the loop."""
        if b"I" in data or b"W" in data:
            self.scan_incoming = True
        if b"D" in data or b"W" in data:
            self.scan_deferred = True
        if b"A" in data:
            self.scan_all = True
            self.scan_deferred = True
        if b"F" in data:
            self.sched.flush_dead()
            self.flush_dfxp = True
        self.wake.set()

    # -- start-up

    def recover(self) -> None:
        """recover - move files left in active/ back to incoming/ (as Postfix does)."""
        for qid in list(self.qd.scan("active")):
            with contextlib.suppress(OSError):
                self.qd.move(qid, "active", "incoming")
                self.recovered.add(qid)

    # -- queue scans

    async def scan(self, queue: str, now: float) -> None:
        """scan - move eligible files of queue to active/ and schedule them.

        A scan is a pass over a snapshot of the queue's file names.  When the
        in-core limits stop it, the next call goes on where it stopped (as
        Postfix's queue scans do) instead of listing the queue again: a flush
        of a deferred queue larger than qmgr_message_active_limit must reach
        every message once, not the first ones over and over (they are back
        in deferred/ by then, and a flush ignores their retry times)."""
        pss = self._passes.get(queue)
        if pss is None or not pss.todo or (queue == "deferred" and self.scan_all and not pss.all):
            todo = list(self.qd.scan(queue))
            todo.reverse()                  # taken from the end, in listing order
            pss = self._passes[queue] = _ScanPass(todo, self.scan_all and queue == "deferred",
                                                  self.flush_dfxp)
            if queue == "deferred":
                self.scan_all = False
                self.flush_dfxp = False     # the flush has gone over both queues
        todo = pss.todo
        while todo:
            if len(self.active) >= self.active_limit or self.rcpts_in_core >= self.rcpt_limit:
                return
            qid = todo.pop()
            if qid in self.active:
                continue
            if queue == "deferred" and not pss.all:
                try:
                    if os.stat(self.qd.path(queue, qid)).st_mtime > now:
                        continue
                except OSError:
                    continue
            if qid in self.recovered:
                if _being_delivered(self.qd.path(queue, qid)):
                    continue        # an agent of a killed qmgr is still at it: later
                self.recovered.discard(qid)
            try:
                self._move(qid, queue, "active")
            except OSError:
                continue            # gone (postsuper) or moved meanwhile
            await self.activate(qid, now, pss.dfxp)

    def _scan_pending(self, queue: str) -> bool:
        """_scan_pending - a pass over queue stopped at the in-core limits, which now have room."""
        pss = self._passes.get(queue)
        return bool(pss is not None and pss.todo) and len(self.active) < self.active_limit \
            and self.rcpts_in_core < self.rcpt_limit

    def _read(self, qid: str) -> QueueFileReader | None:
        """_read - open an active queue file; quarantine a corrupt one."""
        try:
            return QueueFileReader(self._path("active", qid))
        except QueueFileCorrupt as exc:
            self.qd.quarantine(qid, "active", str(exc))
        except OSError as exc:
            log.warning("%s: cannot open queue file: %s", qid, exc)
        return None

    async def activate(self, qid: str, now: float, dfxp: bool = False) -> None:
        """activate - read a message now in active/ and give it to the scheduler."""
        qf = self._read(qid)
        if qf is None:
            return
        try:
            env = qf.envelope
            data = MsgData(qid, env.sender, env.time or now, now, qf.message_size,
                           dict(env.attrs), env.dsn_envid, env.dsn_ret, env.warn_time,
                           dfxp=dfxp)
            log.info("%s: from=<%s>, size=%d, nrcpt=%d (queue active)", qid, env.sender,
                     qf.message_size, len(qf.recipients))
            # A fresh attempt: empty the defer log.  Truncated rather than
            # deleted: a message deferred again appends to the same file, so
            # no inode is released and allocated again for every retry (see
            # "Recycling queue files" in docs/queue.md); finish() deletes it
            # when the message leaves the queue.
            try:
                os.truncate(self._path("defer", qid), 0)
            except FileNotFoundError:
                pass
            except OSError:
                self._defer_log_left.add(qid)           # finish() tries again
            else:
                self._defer_log_left.add(qid)
            msg = Msg(qid, data=data)
            self.active[qid] = msg
            await self._schedule_slice(msg, qf, now)
        finally:
            qf.close()

    def _read_slice(self, data: MsgData, qf) -> None:
        """_read_slice - the next recipients not done, as many as the in-core limit allows.

        As Postfix's qmgr: qmgr_message_recipient_limit bounds the recipients of all
        active messages held in memory; a message gets at least
        qmgr_message_recipient_minimum; the rest are read when this slice is finished.
        """
        room = max(self.rcpt_minimum, self.rcpt_limit - self.rcpts_in_core)
        recipients = qf.recipients
        i, out = data.next_rcpt, []
        while i < len(recipients) and len(out) < room:
            r = recipients[i]
            i += 1
            if not r.done:
                out.append(DeliverRcpt(r.address, r.orig_rcpt, r.offset, r.dsn_orcpt,
                                       r.dsn_notify))
        data.rcpts, data.next_rcpt, data.total_rcpts = out, i, len(recipients)
        self.rcpts_in_core += len(out)

    async def _schedule_slice(self, msg: Msg, qf, now: float) -> None:
        """_schedule_slice - read, resolve and queue the next slice of msg's recipients."""
        data: MsgData = msg.data
        self._read_slice(data, qf)
        routes, outcomes = [], []
        resolved = await self._resolve_slice(data.rcpts, qf.envelope.sender)
        for i, rcpt in enumerate(data.rcpts):
            route = await self.route(qf.envelope, rcpt, data, qf,
                                     resolved[i] if resolved is not None else None)
            if isinstance(route, str):
                outcomes.append(route)
            else:
                routes.append(route)
        self.sched.add(msg, routes, now, outcomes=outcomes)

    async def _more_recipients(self, msg: Msg, now: float) -> bool:
        """_more_recipients - schedule msg's next slice; False when every one was read."""
        data: MsgData = msg.data
        self.rcpts_in_core -= len(data.rcpts)
        data.rcpts = []
        if data.next_rcpt >= data.total_rcpts:
            return False                    # the common case: one slice was enough
        qf = self._read(msg.qid)
        if qf is None:
            return False
        try:
            if data.next_rcpt >= len(qf.recipients):
                return False
            await self._schedule_slice(msg, qf, now)
            return True
        finally:
            qf.close()

    async def _resolve_slice(self, rcpts: list[DeliverRcpt], sender: str) -> list | None:
        """_resolve_slice - trivial-rewrite's answers for a slice, asked in one pipelined exchange.

        None when the slice has one recipient or the exchange failed: route()
        then asks for each recipient itself (and handles a failure per
        recipient, as before)."""
        if len(rcpts) < 2:
            return None
        if self.rewrite is None:
            from postel.ipc.rewrite_client import RewriteClient
            self.rewrite = RewriteClient(self.qd.queue_directory, cache_size=10000,
                                         cache_ttl=60.0)
        try:
            return await self.rewrite.resolve_many([r.address for r in rcpts], sender)
        except Exception:       # noqa: BLE001 - the one-by-one path reports it
            return None

    async def route(self, env, rcpt: DeliverRcpt, data: MsgData, qf,
                    resolved=None) -> tuple | str:
        """route - (transport, nexthop, rcpt), or "deferred"/"bounced" when handled here.

        resolved: trivial-rewrite's answer when already asked (_resolve_slice)."""
        filt = env.content_filter
        try:
            r = resolved if resolved is not None else await self._resolve(rcpt.address,
                                                                           env.sender)
        except (ServiceUnavailable, OSError, RequestError) as exc:
            return self._immediate(data, rcpt, "defer", "4.3.0",
                                   f"address resolver failure: {exc}", qf)
        from postel.mail.resolve_types import FLAG_ERROR, FLAG_FAIL
        if r.flags & FLAG_FAIL:
            return self._immediate(data, rcpt, "defer", "4.3.0", "address resolver failure", qf)
        if r.flags & FLAG_ERROR and not filt:
            return self._immediate(data, rcpt, "bounce", "5.1.3", "bad address syntax", qf)
        transport, nexthop = r.transport, r.nexthop
        if filt:
            ft, _, fn = filt.partition(":")
            transport, nexthop = ft or transport, fn or nexthop
        if transport in self.defer_transports and not data.dfxp:
            return self._immediate(data, rcpt, "defer", "4.3.2", "deferred transport", qf)
        return transport, nexthop, rcpt

    async def _resolve(self, addr: str, sender: str):
        """_resolve - trivial-rewrite's answer (cached by RewriteClient)."""
        if self.rewrite is None:
            from postel.ipc.rewrite_client import RewriteClient
            self.rewrite = RewriteClient(self.qd.queue_directory, cache_size=10000,
                                         cache_ttl=60.0)
        return await self.rewrite.resolve(addr, sender)

    def _request(self, data: MsgData, transport: str, nexthop: str, rcpts: list) -> DeliverRequest:
        """_request - the delivery request for some recipients of a message."""
        a = data.attrs
        # trace_flags: comma-separated request flag names ("trace", "verify")
        # recorded by the submission path for sendmail -v / -bv; "verify,record"
        # marks a verify(8) probe.
        flags = {f.strip() for f in a.get("trace_flags", "").split(",")
                 if f.strip() in ("trace", "verify", "record")}
        return DeliverRequest(
            "active", data.qid, nexthop, data.sender, list(rcpts), transport=transport,
            encoding=a.get("encoding", ""), smtputf8=a.get("smtputf8", "") in ("1", "yes"),
            dsn_envid=data.dsn_envid, dsn_ret=data.dsn_ret, arrival_time=data.arrival,
            active_time=data.active_time, client_name=a.get("client_name", ""),
            client_address=a.get("client_address", ""),
            client_protocol=a.get("protocol", a.get("client_protocol", "")),
            client_helo=a.get("helo_name", a.get("client_helo", "")),
            sasl_username=a.get("sasl_username", ""),
            rewrite_context=a.get("rewrite_context", "remote"), flags=frozenset(flags))

    def _immediate(self, data: MsgData, rcpt: DeliverRcpt, what: str, dsn: str, text: str,
                   qf) -> str:
        """_immediate - qmgr bounces or defers one recipient itself; returns the outcome."""
        req = self._request(data, "", "", [rcpt])
        dctx = DeliveryContext(req, self.qd, qf, self.cfg)
        (bounce if what == "bounce" else defer)(dctx, rcpt, "none", dsn, text)
        return dctx.status[0] or "deferred"

    # -- delivery

    def agent(self, transport: str) -> ServiceClient:
        """agent - the connection pool to one transport's delivery agent."""
        client = self.agents.get(transport)
        if client is None:
            limit = max(1, self.sched.transport(transport).params.process_limit)
            client = ServiceClient(self.qd.queue_directory, f"private/{transport}",
                                   timeout=_param(self.cfg, "qmgr_daemon_timeout", "time",
                                                  1000.0) * 4,
                                   connect_timeout=self.connect_timeout, retry_for=2.0,
                                   pool_size=limit, max_idle=60.0)
            self.agents[transport] = client
        return client

    async def deliver(self, job: Job) -> None:
        """deliver - send one request and feed the reply back to the scheduler."""
        data: MsgData = job.msg.data
        req = self._request(data, job.transport.name, job.nexthop, job.rcpts)
        try:
            # resend=False: an agent that died after delivering must not get the request twice
            reply = await self.agent(job.transport.name).request(encode_request(req), resend=False)
            result = decode_reply(reply, len(job.rcpts))
        except (ServiceUnavailable, RequestError, OSError) as exc:
            log.warning("%s: %s delivery agent: %s", data.qid, job.transport.name, exc)
            self.sched.done(job, None, reason=f"unknown mail transport error: {exc}"[:200],
                            now=time.time())
        except Exception as exc:   # an attribute error etc.: never lose the job
            log.warning("%s: %s delivery agent: %s: %s", data.qid, job.transport.name,
                        type(exc).__name__, exc)
            self.sched.done(job, None, reason="unknown mail transport error", now=time.time())
        else:
            self.delivered_requests += 1
            self.sched.done(job, result.rcpt_status, result.site_dead,
                            reply.get("reason") or "", time.time())
        self.wake.set()

    def write_defers(self) -> None:
        """write_defers - log and record recipients the scheduler deferred itself.

        A dead destination defers every waiting message at once (a flush of a
        big deferred queue: thousands).  Their defer log appends are written
        without fsync and made durable together by one syncfs(2) (or an fsync
        of each file where syncfs is missing) before any of these messages is
        moved back to deferred/: one journal commit per batch instead of one
        per message."""
        unsynced: list[str] = []
        for d in self.sched.take_defers():
            data: MsgData = d.msg.data
            req = self._request(data, d.transport, d.nexthop, d.rcpts)
            dctx = DeliveryContext(req, self.qd, None, self.cfg)
            dctx.unsynced_logs = unsynced
            for rcpt in d.rcpts:
                defer(dctx, rcpt, "none", d.dsn, d.reason)
        if unsynced:
            self._sync_logs(unsynced)

    def _sync_logs(self, paths: list[str]) -> None:
        """_sync_logs - make the per-message logs just appended durable."""
        if not syncfs_unavailable():
            try:
                if self._fs_fd is None:
                    self._fs_fd = os.open(self.qd.queue_directory,
                                          os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                syncfs(self._fs_fd)
                return
            except OSError as exc:
                log.warning("syncfs %s: %s", self.qd.queue_directory, exc)
        for path in dict.fromkeys(paths):
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                log.warning("fsync %s: %s", path, exc)

    # -- finished messages

    async def finish(self, msg: Msg, now: float) -> None:
        """finish - remove, bounce or defer a message whose recipients all have an outcome."""
        data: MsgData = msg.data
        qid = msg.qid
        if await self._more_recipients(msg, now):
            return
        self.active.pop(qid, None)
        left = False
        if self._defer_log_left:
            left = qid in self._defer_log_left
            self._defer_log_left.discard(qid)
        if msg.deferred:
            life = self.bounce_life if data.sender == "" else self.max_life
            if now - data.arrival > life:
                if await self._bounce_call("bounce_expire", data):
                    self._remove(qid)
                    return
            elif data.warn_time and now >= data.warn_time:
                if await self._bounce_call("bounce_warn", data):
                    self._clear_warn(qid)
            self._to_deferred(data, now)
            return
        if os.path.exists(self._path("bounce", qid)) and \
                not await self._bounce_call("bounce_flush", data):
            self._to_deferred(data, now)
            return
        if os.path.exists(self._path("trace", qid)):
            await self._bounce_call("trace_flush", data)
        # No recipient was deferred since activation emptied the defer log:
        # it exists only if the message had one before (left).
        self._remove(qid, defer_log=left)

    def _remove(self, qid: str, defer_log: bool = True) -> None:
        """_remove - delete the queue file and its defer log; log "removed"."""
        if defer_log:
            with contextlib.suppress(OSError):
                os.unlink(self._path("defer", qid))
        path = self._path("active", qid)
        recycler = self.qd.recycler
        try:
            if recycler is None or not recycler.put(path):
                os.unlink(path)
        except FileNotFoundError:
            return
        log.info("%s: removed", qid)

    def _clear_warn(self, qid: str) -> None:
        """_clear_warn - no second delay warning."""
        try:
            with QueueFileReader(self.qd.path("active", qid)) as qf:
                if qf.warn_offset >= 0:
                    qf.set_warn_time(0)
        except (OSError, QueueFileCorrupt, ValueError) as exc:
            log.warning("%s: cannot clear delay warning time: %s", qid, exc)

    def _to_deferred(self, data: MsgData, now: float) -> None:
        """_to_deferred - move to deferred/ with the next attempt as mtime."""
        when = backoff_time(now, data.arrival, self.min_backoff, self.max_backoff)
        try:
            path = self.qd.move(data.qid, "active", "deferred")
            os.utime(path, (now, when))
        except OSError as exc:
            log.warning("%s: cannot move to deferred queue: %s", data.qid, exc)

    async def _bounce_call(self, name: str, data: MsgData) -> bool:
        """_bounce_call - one request to bounce(8) through postel.ipc.bounce_client."""
        try:
            from postel.ipc import bounce_client
            func = getattr(bounce_client, name)
        except (ImportError, AttributeError):
            log.warning("%s: bounce service client unavailable (%s): %s log kept",
                        data.qid, name, "defer" if name == "bounce_expire" else "bounce")
            return name in ("bounce_flush", "trace_flush", "bounce_warn")
        kwargs = {"encoding": data.attrs.get("encoding", ""),
                  "smtputf8": data.attrs.get("smtputf8", "") in ("1", "yes")}
        if name == "trace_flush":
            kwargs["flags"] = data.attrs.get("trace_flags", "")
        try:
            status = await func(self.qd.queue_directory, data.qid, "active", data.sender,
                                data.dsn_envid, data.dsn_ret, **kwargs)
        except Exception as exc:
            log.warning("%s: %s: %s", data.qid, name, exc)
            return False
        return status in (0, None, True)

    # -- main loop

    async def run(self) -> None:
        """run - the scheduling loop: scan, send, collect, finish, sleep."""
        stopping = self.ctx.stopping
        self.recover()
        next_incoming = next_deferred = 0.0
        while stopping is None or not stopping.is_set():
            self.wake.clear()
            now = time.time()
            if self.scan_incoming or now >= next_incoming or self._scan_pending("incoming"):
                self.scan_incoming = False
                await self.scan("incoming", now)
                next_incoming = now + INCOMING_POLL
            if self.scan_deferred or now >= next_deferred or self._scan_pending("deferred"):
                self.scan_deferred = False
                await self.scan("deferred", now)
                next_deferred = now + self.run_delay
            self.sched.expire_dead(now)
            for job in self.sched.jobs(now):
                task = asyncio.get_running_loop().create_task(self.deliver(job))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
            self.write_defers()
            for msg in self.sched.take_finished():
                await self.finish(msg, time.time())
            if self.sched.backlog() or self._scan_pending("incoming") or \
                    self._scan_pending("deferred"):
                continue
            wait = min(next_incoming, next_deferred) - time.time()
            ev = self.sched.next_event(time.time())
            if ev is not None:
                wait = min(wait, ev - time.time())
            if wait > 0:
                await self.wake.wait(wait)


def _start(ctx: ServiceContext) -> Qmgr:
    """_start - the Qmgr of this process, its loop started on first call."""
    q = ctx.state.get("qmgr")
    if q is None:
        q = ctx.state["qmgr"] = Qmgr(ctx)
        task = asyncio.get_running_loop().create_task(q.run())
        ctx.state["qmgr_task"] = task

        def _died(t: asyncio.Task) -> None:
            if not t.cancelled() and t.exception() is not None:
                log.error("qmgr loop failed: %s: %s", type(t.exception()).__name__,
                          t.exception())
                if ctx.stopping is not None:
                    ctx.stopping.set()

        task.add_done_callback(_died)
    return q


async def on_trigger(data: bytes, ctx: ServiceContext) -> None:
    """on_trigger - wake the scheduling loop."""
    _start(ctx).trigger(data)


async def on_wakeup(ctx: ServiceContext) -> None:
    """on_wakeup - make sure the loop runs (the first call starts it)."""
    _start(ctx)


def post_init(ctx: ServiceContext) -> None:
    """post_init - qmgr runs for good: max_use does not apply."""
    with contextlib.suppress(Exception):
        ctx.cfg = ctx.cfg.derive({"max_use": "1000000000"})


def main(argv: list[str]) -> int:
    """main - run the queue manager."""
    return trigger_server_main("qmgr", argv, on_trigger, post_init=post_init,
                               wakeup_hook=on_wakeup, wakeup_interval=0.2, idle_exit=False)
