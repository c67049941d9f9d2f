"""service - bounce(8), defer(8), trace(8): delivery status notifications

SYNOPSIS
    bounce [generic daemon options]       (master.cf: bounce, defer, trace)

DESCRIPTION
    Sends the delivery status notifications (DSNs) of RFC 3464 that qmgr(8)
    asks for, built from the per-message logs that the delivery agents
    write (bounce/QID: permanent failures, defer/QID: temporary failures,
    trace/QID: successes for NOTIFY=SUCCESS, sendmail -v and -bv), and
    from the queue file (sender, arrival time, the returned message).  A
    notification is submitted through cleanup(8) (public/cleanup) with
    cleanup flags "map_ok" (canonical and virtual mapping apply, as for
    Postfix's internal mail); the log is removed only after cleanup has
    queued the notification durably.  If that fails the reply is status=4
    and the log stays, so qmgr retries later.

    Who gets a notification:
      * a failure (request=flush) goes to the envelope sender, from the
        null sender <>, for the recipients whose DSN NOTIFY is unset or
        has FAILURE (NOTIFY=NEVER recipients are left out; when none
        remain, no sender notice is sent);
      * a message whose sender is <> (a bounce that bounced: a double
        bounce) is reported to $2bounce_notice_recipient, from
        $double_bounce_sender, when notify_classes has 2bounce, and
        otherwise dropped; a message from $double_bounce_sender is never
        reported again (no triple bounces);
      * notify_classes "bounce": a postmaster copy (headers only) of every
        failure notice to $bounce_notice_recipient; "delay": of every delay
        warning to $delay_notice_recipient;
      * delay warnings (request=warn) go to the sender for the recipients
        whose NOTIFY is unset or has DELAY; the defer log is kept;
      * success notices (request=trace) go to the sender for the
        recipients with NOTIFY=SUCCESS; with flags verify or trace
        (sendmail -bv, sendmail -v) every recipient is reported with the
        verify template ("Mail Delivery Status Report").
    A null sender never gets a notification.  Several entries for the same
    recipient (one per delivery attempt) are reported once, the latest.

    Logged, as Postfix does:
        QID: sender non-delivery notification: NEWQID
        QID: postmaster non-delivery notification: NEWQID
        QID: sender delay notification: NEWQID
        QID: sender delivery status notification: NEWQID

PROTOCOL
    Requests are attribute lists (postel.ipc.attr) on private/bounce,
    private/defer and private/trace; each gets a reply {status=0|4}.  Any
    service answers any request; qmgr sends flush to bounce, warn and
    expiry to defer, trace to trace, as Postfix does.

      request=flush  queue_name, queue_id, sender, dsn_envid, dsn_ret
                     (0|1 FULL|2 HDRS), encoding, smtputf8 (0|1),
                     log (comma list of bounce, defer; default "bounce":
                     "bounce,defer" turns an expired message's defer log
                     into failures, status 4.X.Y reported as 5.X.Y)
                     -> non-delivery notification; removes the logs.
      request=warn   same attributes -> delay warning from the defer log
                     (Will-Retry-Until = arrival + $maximal_queue_lifetime).
      request=trace  same attributes plus flags (verify, trace) -> success
                     notice or sendmail -bv/-v report; removes the trace log.
      request=append log (bounce|defer|trace; default: the service name),
                     queue_id, and the log entry's fields (recipient,
                     orig_rcpt, offset, dsn_orcpt, dsn_notify, status,
                     action, reason, diag_type, diag_text, mta_type,
                     mta_name, when) -> appends one entry.
    A missing log means there is nothing to report: status=0.  A bad
    request gets status=4 and a warning in the log.

STANDARDS
    RFC 3461, RFC 3464, RFC 6522, RFC 3834 (see postel.mail.dsn)

CONFIGURATION PARAMETERS
    myhostname, myorigin, mail_name          Reporting-MTA, From:
    notify_classes (resource, software)      bounce, 2bounce, delay copies
    bounce_notice_recipient (postmaster)     postmaster copy of failures
    2bounce_notice_recipient (postmaster)    undeliverable bounces
    delay_notice_recipient (postmaster)      postmaster copy of delay warnings
    double_bounce_sender (double-bounce)     sender of postmaster notices
    bounce_size_limit (50000)                larger messages return headers only
    maximal_queue_lifetime (5d)              Will-Retry-Until
    bounce_template_file (empty)             bounce(5) templates
    hash_queue_names, hash_queue_depth       log file paths
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time

from postel import log
from postel.bounce.logfile import LOG_FIELDS, append_entry, read_log
from postel.ipc.attr import AttrError, AttrList, encode, read_attrs
from postel.ipc.cleanup_client import CleanupClient, CleanupRefused
from postel.ipc.client import ServiceUnavailable
from postel.mail import dsn as dsnmod
from postel.mail.bounce_templates import Template, load_templates
from postel.queue import QueueDir
from postel.queue.qid import qid_ok
from postel.queue.records import DSN_NOTIFY_DELAY, DSN_NOTIFY_FAILURE, DSN_NOTIFY_SUCCESS

LOG_QUEUES = ("bounce", "defer", "trace")
CLEANUP_FLAGS = "map_ok"
IDLE_TIMEOUT = 300.0
CLEANUP_RETRY_FOR = 10.0       # how long to wait for cleanup(8) to come back


class BadRequest(Exception):
    """A request with missing or malformed attributes."""


def _cfg(cfg, kind: str, name: str, default):
    """_cfg - a typed parameter, or default when it is not declared or bad."""
    try:
        return getattr(cfg, "get" if kind == "str" else f"get_{kind}")(name)
    except (KeyError, ValueError):
        return default


def _notify(entry: dict[str, str]) -> int:
    """_notify - the DSN NOTIFY mask of a log entry (0: not specified)."""
    try:
        return int(entry.get("dsn_notify", "0") or 0)
    except ValueError:
        return 0


def wants(entry: dict[str, str], bit: int) -> bool:
    """wants - NOTIFY unset, or has bit (RFC 3461 4.1; NEVER excludes all)."""
    mask = _notify(entry)
    return mask == 0 or bool(mask & bit)


def latest_per_recipient(entries: list[dict[str, str]]) -> list[dict[str, str]]:
    """latest_per_recipient - one entry per (recipient, offset), the last one, in order."""
    last: dict[tuple[str, str], dict[str, str]] = {}
    for e in entries:
        key = (e.get("recipient", ""), e.get("offset", ""))
        last.pop(key, None)
        last[key] = e
    return list(last.values())


def as_failed(entry: dict[str, str]) -> dict[str, str]:
    """as_failed - a defer log entry turned into a failure (4.X.Y becomes 5.X.Y)."""
    e = dict(entry)
    status = e.get("status", "")
    if status.startswith("4."):
        e["status"] = "5." + status[2:]
    elif not status:
        e["status"] = "5.0.0"
    e["action"] = "failed"
    return e


class BounceService:
    """BounceService - per-process state: configuration, templates, cleanup client."""

    def __init__(self, cfg, queue_directory: str, *, cleanup_endpoint: str = "public/cleanup",
                 service_name: str = "bounce", cleanup_retry_for: float = CLEANUP_RETRY_FOR) -> None:
        self.cfg = cfg
        self.service_name = service_name if service_name in LOG_QUEUES else "bounce"
        self.qd = QueueDir(queue_directory,
                           _cfg(cfg, "str", "hash_queue_names", "deferred, defer"),
                           _cfg(cfg, "int", "hash_queue_depth", 1))
        self.templates = load_templates(cfg)
        self.cleanup = CleanupClient(queue_directory, cleanup_endpoint,
                                     retry_for=cleanup_retry_for)
        self.myhostname = _cfg(cfg, "str", "myhostname", "localhost")
        self.myorigin = _cfg(cfg, "str", "myorigin", "") or self.myhostname
        self.mydomain = _cfg(cfg, "str", "mydomain", "")
        self.notify_classes = {c.lower() for c in _cfg(cfg, "list", "notify_classes", [])}
        self.bounce_rcpt = _cfg(cfg, "str", "bounce_notice_recipient", "postmaster")
        self.bounce2_rcpt = _cfg(cfg, "str", "2bounce_notice_recipient", "postmaster")
        self.delay_rcpt = _cfg(cfg, "str", "delay_notice_recipient", "postmaster")
        self.double_bounce = _cfg(cfg, "str", "double_bounce_sender", "double-bounce")
        self.size_limit = _cfg(cfg, "size", "bounce_size_limit", 50000)
        self.max_queue_time = _cfg(cfg, "time", "maximal_queue_lifetime", 5 * 86400.0)

    # -- addresses

    def double_bounce_addr(self) -> str:
        """double_bounce_addr - $double_bounce_sender, qualified with $myorigin."""
        db = self.double_bounce
        return db if "@" in db else f"{db}@{self.myorigin}"

    def is_double_bounce(self, sender: str) -> bool:
        """is_double_bounce - the sender is our own postmaster-notice sender."""
        if not sender:
            return False
        local, at, domain = sender.rpartition("@")
        if not at:
            local, domain = sender, ""
        db_local, _, db_domain = self.double_bounce.partition("@")
        if local.lower() != db_local.lower():
            return False
        ours = {d.lower() for d in (db_domain, self.myorigin, self.myhostname, self.mydomain) if d}
        return not domain or domain.lower() in ours

    # -- requests

    async def handle(self, req: AttrList) -> dict:
        """handle - one request, one reply."""
        name = req.get("request", "")
        try:
            if name == "flush":
                status = await self.flush(req)
            elif name == "warn":
                status = await self.warn(req)
            elif name == "trace":
                status = await self.trace(req)
            elif name == "append":
                status = await asyncio.to_thread(self.append, req)
            else:
                raise BadRequest(f"unknown request {name!r}")
        except BadRequest as exc:
            log.warning("%s request: %s", self.service_name, exc)
            return {"status": 4, "reason": str(exc)}
        return {"status": status}

    def _message_args(self, req: AttrList) -> tuple[str, str]:
        """_message_args - queue_name and queue_id of a request, checked."""
        queue_name = req.get("queue_name", "") or "active"
        queue_id = req.get("queue_id", "")
        if not qid_ok(queue_id):
            raise BadRequest(f"bad queue_id {queue_id!r}")
        if queue_name not in ("incoming", "active", "deferred", "hold", "maildrop", "corrupt"):
            raise BadRequest(f"bad queue_name {queue_name!r}")
        return queue_name, queue_id

    def append(self, req: AttrList) -> int:
        """append - add one entry to a per-message log."""
        which = req.get("log", "") or self.service_name
        if which not in LOG_QUEUES:
            raise BadRequest(f"bad log name {which!r}")
        queue_id = req.get("queue_id", "")
        if not qid_ok(queue_id):
            raise BadRequest(f"bad queue_id {queue_id!r}")
        entry = {n: req.get(n) for n in LOG_FIELDS if req.get(n) is not None}
        if not entry.get("recipient") and "recipient" not in entry:
            raise BadRequest("append without recipient")
        entry.setdefault("when", f"{time.time():.6f}")
        try:
            append_entry(self.qd.path(which, queue_id), entry)
        except OSError as exc:
            log.warning("%s: append to %s log: %s", queue_id, which, exc)
            return 4
        return 0

    def _read_logs(self, queue_id: str, names: list[str]) -> list[tuple[str, list[dict]]] | None:
        """_read_logs - (log name, entries) for the logs that exist; None if none do."""
        found = []
        for name in names:
            try:
                found.append((name, read_log(self.qd.path(name, queue_id))))
            except FileNotFoundError:
                continue
            except OSError as exc:
                log.warning("%s: read %s log: %s", queue_id, name, exc)
                found.append((name, []))
        return found or None

    def _remove_logs(self, queue_id: str, names: list[str]) -> None:
        """_remove_logs - delete the logs once their notice is queued."""
        for name in names:
            try:
                os.unlink(self.qd.path(name, queue_id))
            except FileNotFoundError:
                continue
            except OSError as exc:
                log.warning("%s: remove %s log: %s", queue_id, name, exc)

    def _common(self, req: AttrList) -> tuple[str, str, str, str, int]:
        """_common - queue_name, queue_id, sender, envid, ret of a notify request."""
        queue_name, queue_id = self._message_args(req)
        try:
            ret = req.get_int("dsn_ret", 0) or 0
        except AttrError:
            ret = 0
        return queue_name, queue_id, req.get("sender", "") or "", req.get("dsn_envid", "") or "", ret

    async def flush(self, req: AttrList) -> int:
        """flush - a non-delivery notification from the bounce (and defer) log."""
        queue_name, queue_id, sender, envid, ret = self._common(req)
        names = [n.strip() for n in (req.get("log", "") or "bounce").split(",") if n.strip()]
        if any(n not in ("bounce", "defer") for n in names):
            raise BadRequest(f"bad log list {req.get('log')!r}")
        logs = await asyncio.to_thread(self._read_logs, queue_id, names)
        if logs is None:
            return 0
        entries = []
        for name, found in logs:
            entries += [as_failed(e) if name == "defer" else e for e in found]
        entries = latest_per_recipient(entries)
        tpl = self.templates.failure
        status = 0
        if self.is_double_bounce(sender):
            log.warning("%s: undeliverable postmaster notification discarded", queue_id)
        elif not sender:
            if "2bounce" in self.notify_classes:
                status = await self._send(tpl, "failure", queue_name, queue_id, sender,
                                          envid, ret, entries, self.bounce2_rcpt,
                                          postmaster=True, what="postmaster non-delivery")
            else:
                log.info("%s: undeliverable bounce discarded (no 2bounce in notify_classes)",
                         queue_id)
        else:
            mine = [e for e in entries if wants(e, DSN_NOTIFY_FAILURE)]
            if mine:
                status = await self._send(tpl, "failure", queue_name, queue_id, sender,
                                          envid, ret, mine, sender, what="sender non-delivery")
            if status == 0 and "bounce" in self.notify_classes and entries:
                await self._send(tpl, "failure", queue_name, queue_id, sender, envid, ret,
                                 entries, self.bounce_rcpt, postmaster=True,
                                 what="postmaster non-delivery")
        if status == 0:
            await asyncio.to_thread(self._remove_logs, queue_id, names)
        return status

    async def warn(self, req: AttrList) -> int:
        """warn - a delay warning from the defer log (the log is kept)."""
        queue_name, queue_id, sender, envid, ret = self._common(req)
        logs = await asyncio.to_thread(self._read_logs, queue_id, ["defer"])
        if logs is None:
            return 0
        entries = latest_per_recipient(logs[0][1])
        tpl = self.templates.delay
        status = 0
        if sender and not self.is_double_bounce(sender):
            mine = [e for e in entries if wants(e, DSN_NOTIFY_DELAY)]
            if mine:
                status = await self._send(tpl, "delay", queue_name, queue_id, sender, envid,
                                          ret, mine, sender, what="sender delay")
        if status == 0 and "delay" in self.notify_classes and entries:
            await self._send(tpl, "delay", queue_name, queue_id, sender, envid, ret, entries,
                             self.delay_rcpt, postmaster=True, what="postmaster delay")
        return status

    async def trace(self, req: AttrList) -> int:
        """trace - a success notice or a sendmail -bv/-v report from the trace log."""
        queue_name, queue_id, sender, envid, ret = self._common(req)
        flags = {f.strip() for f in (req.get("flags", "") or "").split(",") if f.strip()}
        logs = await asyncio.to_thread(self._read_logs, queue_id, ["trace"])
        if logs is None:
            return 0
        entries = latest_per_recipient(logs[0][1])
        status = 0
        if not sender or self.is_double_bounce(sender):
            log.info("%s: delivery status report for <%s> not sent", queue_id, sender)
        else:
            if flags & {"verify", "trace"}:
                tpl, kind, mine = self.templates.verify, "verify", entries
            else:
                tpl, kind = self.templates.success, "success"
                mine = [e for e in entries if _notify(e) & DSN_NOTIFY_SUCCESS]
            if mine:
                status = await self._send(tpl, kind, queue_name, queue_id, sender, envid,
                                          ret, mine, sender, what="sender delivery status")
        if status == 0:
            await asyncio.to_thread(self._remove_logs, queue_id, ["trace"])
        return status

    # -- sending

    async def _send(self, tpl: Template, kind: str, queue_name: str, queue_id: str,
                    sender: str, envid: str, ret: int, entries: list[dict], rcpt: str, *,
                    postmaster: bool = False, what: str) -> int:
        """_send - build one notification and queue it through cleanup; 0 or 4."""
        notice_from = self.double_bounce_addr() if postmaster else ""
        report = dsnmod.Report(kind=kind, queue_id=queue_id, notice_qid="", to=rcpt,
                               sender=sender, entries=entries, dsn_envid=envid,
                               postmaster=postmaster, now=time.time())
        headers_only = dsnmod.returned_headers_only(report, ret)
        path = self.qd.path(queue_name, queue_id)
        try:
            msg = await self.cleanup.open(CLEANUP_FLAGS)
        except (CleanupRefused, ServiceUnavailable, OSError) as exc:
            log.warning("%s: %s notification: cannot queue: %s", queue_id, what, exc)
            return 4
        report.notice_qid = msg.queue_id
        try:
            orig = await asyncio.to_thread(dsnmod.read_original, path, headers_only,
                                           self.size_limit)
            if kind == "delay" and orig.arrival > 0:
                report.will_retry_until = orig.arrival + self.max_queue_time
            data = dsnmod.build_notice(report, tpl, self.cfg, orig)
            attrs = {"rewrite_context": "local"}
            if not data.isascii():
                attrs["encoding"] = "8bitmime"
            await msg.envelope(notice_from, [(rcpt, "", 0)], attrs)
            await msg.write(data)
            result = await msg.close()
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.shield(msg.abort())
            raise
        if not result.ok:
            log.warning("%s: %s notification: cleanup said %s %s %s", queue_id, what,
                        result.status, result.dsn, result.reason)
            return 4
        log.info("%s: %s notification: %s", queue_id, what, result.queue_id or msg.queue_id)
        return 0


async def serve_client(reader, writer, ctx) -> None:
    """serve_client - answer requests on one connection until EOF, idle or shutdown."""
    svc: BounceService = ctx.state["bounce"]
    stopping = ctx.stopping
    while True:
        read = asyncio.ensure_future(read_attrs(reader, timeout=IDLE_TIMEOUT))
        waits = {read}
        stop = None
        if stopping is not None:
            stop = asyncio.ensure_future(stopping.wait())
            waits.add(stop)
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if stop is not None:
                stop.cancel()
        if not read.done():             # shutting down between requests
            read.cancel()
            with contextlib.suppress(BaseException):
                await read
            return
        try:
            req = read.result()
        except (EOFError, TimeoutError, ConnectionError):
            return
        except AttrError as exc:
            log.warning("%s: malformed request: %s", ctx.service_name, exc)
            return
        reply = await svc.handle(req)
        writer.write(encode(reply))
        await writer.drain()


def post_init(ctx) -> None:
    """post_init - the per-process service state."""
    ctx.state["bounce"] = BounceService(ctx.cfg, ctx.queue_directory,
                                        service_name=ctx.service_name,
                                        cleanup_retry_for=CLEANUP_RETRY_FOR)


def main(argv: list[str] | None = None) -> int:
    """main - the bounce, defer and trace services."""
    from postel.ipc.skeleton import multi_server_main
    argv = list(sys.argv if argv is None else argv)
    name = os.path.basename(argv[0]) if argv else "bounce"
    if name not in LOG_QUEUES:
        name = "bounce"
    return multi_server_main(name, argv, serve_client, post_init=post_init)


if __name__ == "__main__":
    raise SystemExit(main())
