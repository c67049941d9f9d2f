"""status - record the outcome of one recipient: sent, deferred or bounced

SYNOPSIS
    from postel.deliver.status import DeliveryContext, sent, defer, bounce, read_log

    dctx = DeliveryContext(req, queue_dir, qf, cfg)
    dctx.mark_conn_start(); dctx.mark_xfer_start()      # optional (delays c, d)
    sent(dctx, rcpt, "mx.example.com[192.0.2.1]:25", "2.0.0", "250 2.0.0 Ok: queued")
    defer(dctx, rcpt, "none", "4.4.1", "connect to ...: Connection refused")
    bounce(dctx, rcpt, "none", "5.1.1", "host said: 550 5.1.1 no such user",
           diag=("smtp", "550 5.1.1 no such user"), mta=("dns", "mx.example.com"))
    dctx.site_dead = True                               # destination unreachable
    reply = dctx.reply_attrs()
    entries = read_log(queue_dir.path("defer", qid))

DESCRIPTION
    Every delivery agent reports each recipient's outcome through exactly
    one of sent(), defer() and bounce(); they may be called plainly or
    awaited (the work is done at once, the result is a finished awaitable).
    Each one:

      * logs Postfix's line
            QID: to=<rcpt>, orig_to=<orig>, relay=RELAY, delay=D,
            delays=a/b/c/d, dsn=X.Y.Z, status=STATUS (TEXT)
        (orig_to only when it differs).  delay is the time since arrival;
        a: arrival to qmgr's pick-up (active_time), b: qmgr to the agent,
        c: connection set-up, d: transmission.  Values are rounded as
        Postfix does: 2 significant digits, no more decimals than
        $delay_logging_resolution_limit, "0" below that resolution;
      * sent() and bounce() mark the recipient done in the queue file
        (the record is rewritten before the agent replies, without fsync as
        Postfix: a system crash may deliver it once more, never lose it);
      * bounce() and defer() append an entry to the message's bounce/ or
        defer/ log; sent() appends to trace/ when the request has the
        "trace" flag (sendmail -v) or the recipient asked for
        NOTIFY=SUCCESS (RFC 3461 4.1), so that bounce(8) can report it.

    With "verify" in the request flags (sendmail -bv), nothing is
    delivered: sent() logs status=deliverable, bounce() and defer()
    status=undeliverable (defer keeps its 4.X.Y code); all go to the
    trace/ log only and mark the recipient done, so a probe is never
    retried.  With "verify" and "record" (a verify(8) probe) the outcome
    goes to the verify service (postel.ipc.verify_client.verify_append,
    under the original and the rewritten address) instead of the trace
    log: deliverable, undeliverable (temporary) or undeliverable.

    With soft_bounce = yes, bounce() behaves as defer() and a 5.X.Y code
    becomes 4.X.Y, as in Postfix.

    A second outcome for the same recipient is a bug in the agent: it is
    logged as a warning and otherwise ignored.

PER-MESSAGE LOG FORMAT
    bounce/QID, defer/QID (hashed as hash_queue_names says) and trace/QID
    are append-only; each entry is written with one write(2) under
    O_APPEND and fsync-ed.  An entry is lines "name=value" (CR and LF in
    values become spaces) ended by an empty line.  Names, in order:
    recipient, orig_rcpt, offset, dsn_orcpt, dsn_notify, status (X.Y.Z),
    action (failed | delayed | delivered | relayed | expanded |
    deliverable | undeliverable), reason, diag_type, diag_text, mta_type,
    mta_name, when (unix time).  read_log() returns the complete entries
    as dicts and ignores a truncated last one.

CONFIGURATION PARAMETERS
    soft_bounce (no)                    defer instead of bounce
    delay_logging_resolution_limit (2)  decimals in delay= and delays=
"""

from __future__ import annotations

import os
import re
import time

from postel import log
from postel.deliver.request import (
    FLAG_RECORD,
    FLAG_TRACE,
    FLAG_VERIFY,
    RCPT_BOUNCED,
    RCPT_DEFERRED,
    RCPT_SENT,
    DeliverRcpt,
    DeliverRequest,
    encode_reply,
)
from postel.queue.records import DSN_NOTIFY_SUCCESS

__all__ = ["DeliveryContext", "sent", "defer", "bounce", "read_log", "append_log",
           "format_delay", "split_dsn", "LOG_FIELDS"]

# RFC 3463 2: class "." subject "." detail; subject and detail are 1-3 digits.
_DSN_RE = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?:\s+|\Z)")


def split_dsn(default: str, text: str) -> tuple[str, str]:
    """split_dsn - (X.Y.Z, rest) when text starts with an RFC 3463 code, else (default, text)."""
    m = _DSN_RE.match(text.lstrip())
    if not m:
        return default, text.strip()
    return f"{m.group(1)}.{m.group(2)}.{m.group(3)}", text.lstrip()[m.end():].strip()

LOG_FIELDS = ("recipient", "orig_rcpt", "offset", "dsn_orcpt", "dsn_notify", "status",
              "action", "reason", "diag_type", "diag_text", "mta_type", "mta_name", "when")


class _Done:
    """A finished awaitable, so that sent()/defer()/bounce() may be awaited."""

    __slots__ = ()

    def __await__(self):
        return iter(())


_DONE = _Done()


_TINY = tuple(10 ** -r for r in range(7))      # format_delay's "0" thresholds


def format_delay(seconds: float, resolution: int = 2) -> str:
    """format_delay - Postfix's delay rounding: 2 significant digits, bounded decimals."""
    if seconds < (_TINY[resolution] if 0 <= resolution < 7 else 10 ** -resolution):
        return "0"
    if seconds >= 10:
        return str(int(seconds + 0.5))
    decimals = 1 if seconds >= 1 else min(resolution, 1 - _exp10(seconds))
    text = f"{seconds:.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _exp10(x: float) -> int:
    """_exp10 - floor(log10(x)) for 0 < x < 1, without float surprises."""
    e = 0
    while x < 1:
        x *= 10
        e -= 1
    return e


def _clean(value: object) -> str:
    """_clean - a log value on one line."""
    return str(value).replace("\r", " ").replace("\n", " ")


def append_log(path: str, entry: dict[str, object], sync: bool = True) -> None:
    """append_log - append one entry to a per-message log (O_APPEND; fsync unless
    sync is false, when the caller makes the file durable itself)."""
    lines = [f"{name}={_clean(entry.get(name, ''))}\n" for name in LOG_FIELDS]
    data = ("".join(lines) + "\n").encode("utf-8", "surrogateescape")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def read_log(path: str) -> list[dict[str, str]]:
    """read_log - the complete entries of a per-message log; [] when it is absent."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    text = data.decode("utf-8", "surrogateescape")
    entries: list[dict[str, str]] = []
    cur: dict[str, str] = {}
    for line in text.split("\n")[:-1]:      # the last piece has no newline: incomplete
        if line == "":
            if cur:
                entries.append(cur)
            cur = {}
            continue
        name, sep, value = line.partition("=")
        if sep:
            cur[name] = value
    return entries


class DeliveryContext:
    """What the status functions need to know about one delivery request."""

    def __init__(self, req: DeliverRequest, queue_dir, qf=None, cfg=None) -> None:
        self.req = req
        self.queue_dir = queue_dir
        self.qf = qf
        self.cfg = cfg
        self.start = time.time()            # agent start (end of delays "b")
        self.conn_start: float | None = None
        self.xfer_start: float | None = None
        self.site_dead = False
        self.last_defer = ""                # reason of the last defer (site_dead replies)
        self.status: list[str | None] = [None] * len(req.recipients)
        self._index = {id(r): i for i, r in enumerate(req.recipients)}
        last = _CFG_LAST
        if last[0] is not cfg or cfg is None:
            last[:] = [cfg, _cfg_bool(cfg, "soft_bounce", False),
                       _cfg_int(cfg, "delay_logging_resolution_limit", 2)]
        self.soft_bounce = last[1]
        self.resolution = last[2]
        # None: each per-message log append is fsync-ed at once.  A list: the
        # appends are not synced and their paths are collected here; the caller
        # makes them durable together (qmgr's own defers: one syncfs per batch).
        self.unsynced_logs: list[str] | None = None
        self._abc: tuple | None = None      # delay_text's ((a, b, c, res), "a/b/c/")

    def mark_conn_start(self) -> None:
        """mark_conn_start - the connection set-up begins now (delays "c")."""
        self.conn_start = time.time()

    def mark_xfer_start(self) -> None:
        """mark_xfer_start - the transmission begins now (delays "d")."""
        self.xfer_start = time.time()
        if self.conn_start is None:
            self.conn_start = self.xfer_start

    def set_site_dead(self, dead: bool = True) -> None:
        """set_site_dead - report that the destination could not be reached at all."""
        self.site_dead = dead

    def pending(self) -> list[DeliverRcpt]:
        """pending - recipients without an outcome yet."""
        return [r for r, s in zip(self.req.recipients, self.status, strict=True) if s is None]

    def outcome(self, rcpt: DeliverRcpt) -> str | None:
        """outcome - sent, bounced, deferred, or None so far."""
        i = self._find(rcpt)
        return None if i is None else self.status[i]

    def all_done(self) -> bool:
        """all_done - every recipient has an outcome."""
        return all(s is not None for s in self.status)

    def reply_attrs(self) -> list[tuple[str, object]]:
        """reply_attrs - the reply list for qmgr (pending recipients count as deferred)."""
        statuses = [s or RCPT_DEFERRED for s in self.status]
        status = 4 if RCPT_DEFERRED in statuses else 0
        attrs = encode_reply(status, statuses, self.site_dead)
        if self.site_dead and self.last_defer:
            attrs.append(("reason", self.last_defer))   # qmgr's dead-site reason
        return attrs

    def _find(self, rcpt: DeliverRcpt) -> int | None:
        """_find - the index of rcpt in the request (by identity, then by offset)."""
        i = self._index.get(id(rcpt))
        if i is not None:
            return i
        for j, r in enumerate(self.req.recipients):
            if r.offset == rcpt.offset and r.address == rcpt.address:
                return j
        return None

    def delays(self, now: float) -> tuple[float, float, float, float]:
        """delays - Postfix's a/b/c/d."""
        req = self.req
        arrival = req.arrival_time or self.start
        active = req.active_time or self.start
        a = max(0.0, active - arrival)
        b = max(0.0, self.start - active)
        if self.xfer_start is not None:
            c = max(0.0, self.xfer_start - (self.conn_start or self.start))
            d = max(0.0, now - self.xfer_start)
        elif self.conn_start is not None:
            c = max(0.0, now - self.conn_start)
            d = 0.0
        else:
            c = 0.0
            d = max(0.0, now - self.start)
        return a, b, c, d

    def delay_text(self, now: float) -> str:
        """delay_text - "delay=D, delays=a/b/c/d".

        a, b and (once the transmission began) c are the same for every
        recipient of a request: their text is kept with the values it was
        made from and made again only when they differ."""
        arrival = self.req.arrival_time or self.start
        res = self.resolution
        a, b, c, d = self.delays(now)
        key = (a, b, c, res)
        memo = self._abc
        if memo is None or memo[0] != key:
            memo = self._abc = (key, f"{format_delay(a, res)}/{format_delay(b, res)}/"
                                     f"{format_delay(c, res)}/")
        return (f"delay={format_delay(max(0.0, now - arrival), res)}, "
                f"delays={memo[1]}{format_delay(d, res)}")


# (cfg, soft_bounce, delay_logging_resolution_limit) of the last Config seen:
# a Config does not change (reload makes a new one), an agent has one.
_CFG_LAST: list = [None, False, 2]


def _cfg_bool(cfg, name: str, default: bool) -> bool:
    """_cfg_bool - a boolean parameter, default when cfg is absent or bad."""
    if cfg is None:
        return default
    try:
        return bool(cfg.get_bool(name))
    except Exception:
        return default


def _cfg_int(cfg, name: str, default: int) -> int:
    """_cfg_int - an integer parameter, default when cfg is absent or bad."""
    if cfg is None:
        return default
    try:
        return int(cfg.get_int(name))
    except Exception:
        return default


def _log_path(dctx: DeliveryContext, queue: str) -> str:
    """_log_path - the per-message log file of this message in queue (dirs made)."""
    qd, qid = dctx.queue_dir, dctx.req.queue_id
    qd.ensure_dir(queue, qid)
    return qd.path(queue, qid)


def _entry(rcpt: DeliverRcpt, dsn: str, action: str, text: str, diag, mta) -> dict[str, object]:
    """_entry - one per-message log entry."""
    return {"recipient": rcpt.address, "orig_rcpt": rcpt.orig_rcpt, "offset": rcpt.offset,
            "dsn_orcpt": rcpt.dsn_orcpt, "dsn_notify": rcpt.dsn_notify, "status": dsn,
            "action": action, "reason": text,
            "diag_type": diag[0] if diag else "", "diag_text": diag[1] if diag else "",
            "mta_type": mta[0] if mta else "", "mta_name": mta[1] if mta else "",
            "when": f"{time.time():.6f}"}


def _record(dctx: DeliveryContext, rcpt: DeliverRcpt, outcome: str) -> bool:
    """_record - note the outcome; False (with a warning) for a second outcome."""
    i = dctx._find(rcpt)
    if i is None:
        log.warning("%s: status for unknown recipient <%s> ignored",
                    dctx.req.queue_id, rcpt.address)
        return False
    if dctx.status[i] is not None:
        log.warning("%s: second status for <%s> ignored (already %s)",
                    dctx.req.queue_id, rcpt.address, dctx.status[i])
        return False
    dctx.status[i] = outcome
    return True


def _log_line(dctx: DeliveryContext, rcpt: DeliverRcpt, relay: str, dsn: str,
              status: str, text: str) -> None:
    """_log_line - Postfix's to=<...> status line."""
    orig = ""
    if rcpt.orig_rcpt and rcpt.orig_rcpt != rcpt.address:
        orig = f", orig_to=<{rcpt.orig_rcpt}>"
    log.info("%s: to=<%s>%s, relay=%s, %s, dsn=%s, status=%s (%s)",
             dctx.req.queue_id, rcpt.address, orig, relay or "none",
             dctx.delay_text(time.time()), dsn, status, _clean(text))


def _mark_done(dctx: DeliveryContext, rcpt: DeliverRcpt) -> None:
    """_mark_done - rewrite the recipient record as done (R -> D), not synced."""
    if dctx.qf is None or rcpt.offset < 0:
        return
    dctx.qf.mark_done(rcpt.offset)


def _safe(dctx: DeliveryContext, what: str, func, *args) -> bool:
    """_safe - run a file operation; log a warning and return False when it fails."""
    try:
        func(*args)
        return True
    except (OSError, ValueError) as exc:
        log.warning("%s: %s: %s", dctx.req.queue_id, what, exc)
        return False


def sent(dctx: DeliveryContext, rcpt: DeliverRcpt, relay: str, dsn: str = "2.0.0",
         text: str = "delivered", action: str = "delivered") -> _Done:
    """sent - the recipient was delivered (or relayed)."""
    if not _record(dctx, rcpt, RCPT_SENT):
        return _DONE
    flags = dctx.req.flags
    if FLAG_VERIFY in flags:
        _log_line(dctx, rcpt, relay, dsn, "deliverable", text)
        _report_probe(dctx, rcpt, "deliverable", dsn, text, None, None)
        _safe(dctx, "mark recipient done", _mark_done, dctx, rcpt)
        return _DONE
    # Done marker first, then the log line: a crash in between costs a log
    # line, never a second delivery of a delivery that was logged.
    if not _safe(dctx, "mark recipient done", _mark_done, dctx, rcpt):
        pass    # delivered, but may be delivered again after a crash: Postfix does the same
    _log_line(dctx, rcpt, relay, dsn, "sent", text)
    if FLAG_TRACE in flags or rcpt.dsn_notify & DSN_NOTIFY_SUCCESS:
        _safe(dctx, "trace log", _append, dctx, "trace",
              _entry(rcpt, dsn, action, text, None, None))
    return _DONE


def defer(dctx: DeliveryContext, rcpt: DeliverRcpt, relay: str, dsn: str = "4.0.0",
          text: str = "delivery temporarily suspended", diag=None, mta=None) -> _Done:
    """defer - the recipient will be tried again later."""
    if dsn[:1] not in ("4", "5", "2"):
        dsn = "4.0.0"
    if dsn[:1] != "4":
        dsn = "4" + dsn[1:]
    if FLAG_VERIFY in dctx.req.flags:
        # A probe is not retried: a temporary failure is reported as undeliverable
        # (with its 4.X.Y code) and the recipient is done, as Postfix's defer does
        # for user-requested verification.
        if not _record(dctx, rcpt, RCPT_BOUNCED):
            return _DONE
        _log_line(dctx, rcpt, relay, dsn, "undeliverable", text)
        _report_probe(dctx, rcpt, "undeliverable", dsn, text, diag, mta)
        _safe(dctx, "mark recipient done", _mark_done, dctx, rcpt)
        return _DONE
    if not _record(dctx, rcpt, RCPT_DEFERRED):
        return _DONE
    _log_line(dctx, rcpt, relay, dsn, "deferred", text)
    dctx.last_defer = text
    entry = _entry(rcpt, dsn, "delayed", text, diag, mta)
    if not _safe(dctx, "defer log", _append, dctx, "defer", entry):
        pass    # still deferred: the queue file keeps the recipient
    if FLAG_TRACE in dctx.req.flags or FLAG_VERIFY in dctx.req.flags:
        _safe(dctx, "trace log", _append, dctx, "trace", entry)
    return _DONE


def bounce(dctx: DeliveryContext, rcpt: DeliverRcpt, relay: str, dsn: str = "5.0.0",
           text: str = "undeliverable", diag=None, mta=None) -> _Done:
    """bounce - the recipient cannot be delivered; a DSN will be returned."""
    if dctx.soft_bounce:
        return defer(dctx, rcpt, relay, "4" + dsn[1:] if dsn else "4.0.0", text, diag, mta)
    if dsn[:1] != "5":
        dsn = "5" + dsn[1:] if dsn[:1] in ("4", "2") else "5.0.0"
    if FLAG_VERIFY in dctx.req.flags:
        if not _record(dctx, rcpt, RCPT_BOUNCED):
            return _DONE
        _log_line(dctx, rcpt, relay, dsn, "undeliverable", text)
        _report_probe(dctx, rcpt, "undeliverable", dsn, text, diag, mta)
        _safe(dctx, "mark recipient done", _mark_done, dctx, rcpt)
        return _DONE
    entry = _entry(rcpt, dsn, "failed", text, diag, mta)
    # The bounce log entry must exist before the recipient is marked done;
    # when it cannot be written, defer instead so that no DSN is lost.
    if dctx.outcome(rcpt) is None and not _safe(dctx, "bounce log", _append, dctx, "bounce", entry):
        return defer(dctx, rcpt, relay, "4.3.0", f"cannot record bounce: {text}", diag, mta)
    if not _record(dctx, rcpt, RCPT_BOUNCED):
        return _DONE
    _log_line(dctx, rcpt, relay, dsn, "bounced", text)
    if FLAG_TRACE in dctx.req.flags:
        _safe(dctx, "trace log", _append, dctx, "trace", entry)
    _safe(dctx, "mark recipient done", _mark_done, dctx, rcpt)
    return _DONE


def _report_probe(dctx: DeliveryContext, rcpt: DeliverRcpt, action: str, dsn: str,
                  text: str, diag, mta) -> None:
    """_report_probe - a verify outcome: to verify(8) for a probe, else to the trace log."""
    if FLAG_RECORD not in dctx.req.flags:
        _safe(dctx, "trace log", _append, dctx, "trace", _entry(rcpt, dsn, action, text, diag, mta))
        return
    from postel.ipc import verify_client as vc
    status = vc.RCPT_STAT_OK if dsn.startswith("2") else \
        vc.RCPT_STAT_DEFER if dsn.startswith("4") else vc.RCPT_STAT_BOUNCE
    # XXX blocking: verify(8) is local and answers at once; probes are rare.
    if not vc.verify_append(dctx.queue_dir.queue_directory, rcpt.orig_rcpt, rcpt.address, status,
                            f"{dsn} {text}", endpoint=vc.endpoint_of(dctx.cfg)):
        log.warning("%s: cannot record probe result for <%s>", dctx.req.queue_id, rcpt.address)


def _append(dctx: DeliveryContext, queue: str, entry: dict[str, object]) -> None:
    """_append - append entry to this message's log in queue."""
    path = _log_path(dctx, queue)
    if dctx.unsynced_logs is None:
        append_log(path, entry)
    else:
        append_log(path, entry, sync=False)
        dctx.unsynced_logs.append(path)
