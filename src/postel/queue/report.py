"""report - read the mail queue and format it as mailq(1) and postqueue -j do

SYNOPSIS
    from postel.queue.report import scan_entries, MailqFormatter, json_line
    fmt = MailqFormatter()
    for entry in scan_entries(qd):
        sys.stdout.write(fmt.entry(entry))
    sys.stdout.write(fmt.finish())

DESCRIPTION
    scan_entries() walks the queues that a queue listing shows, in Postfix's
    order (maildrop, incoming, active, deferred, hold), each queue sorted by
    queue ID (= arrival order), and yields one QueueEntry per message.  It
    reads only the envelope part of each queue file (the size record, the
    envelope and extracted segments; never the content), with the file
    opened read-only.  A file that disappears while it is being read
    (delivered, deleted) is skipped silently; a corrupt file is skipped with
    a warning, as Postfix's showq does.

    Recipients that are marked done are not listed.  A recipient that occurs
    more than once is listed once.  As in Postfix, recipients with a deferral
    reason come first (grouped by reason, so that each reason is printed
    once), then the recipients without one.

    Deferral reasons come from the message's defer log,
    $queue_directory/defer/<hash>/<queue_id>, which the delivery agents
    (through the defer service) append to.  Its format is Postfix's
    bounce-log form: one block per recipient, one "name=value" line per
    attribute, a block ending in an empty line:

        recipient=user@example.com
        orig_rcpt=user@example.com
        offset=123
        status=4.4.1
        action=delayed
        reason=connect to mx.example.com[192.0.2.1]:25: Connection refused

    Only "recipient" and "reason" are used here; other names are ignored, a
    line without "=" is skipped, and a later block for the same recipient
    replaces an earlier one.  A log larger than DEFER_LOG_LIMIT bytes is
    read up to that limit.

    MailqFormatter produces Sendmail-compatible mailq output byte for byte in
    Postfix's layout:

        ----Queue ID----- --Size-- ---Arrival Time---- --Sender/Recipient------
        QUEUEID*              SIZE Www Mmm dd hh:mm:ss sender
                      (deferral reason, right-aligned to column 78)
                                                       recipient

    This is Postfix's layout for long queue IDs (enable_long_queue_ids =
    yes), the only kind Postel has: "%-17s %8s %-19s %s" with the status
    character appended to the queue ID, recipients indented to column 47.

        -- N Kbytes in M Requests.

    The character after the queue ID is "*" for the active queue, "!" for
    the hold queue, and a space otherwise.  The null sender is shown as
    MAILER-DAEMON.  A reason is printed only when it differs from the
    previous recipient's.  An empty queue is "Mail queue is empty".

    json_line() gives the postqueue -j form: one JSON object per message,
    with Postfix's field names (queue_name, queue_id, arrival_time,
    message_size, forced_expire, sender, recipients: [{address,
    delay_reason}]); delay_reason is present only when there is one.

    The showq wire encoding (encode_entry, decode_entry) is one attribute
    list per message: queue_name, queue_id, arrival_time, message_size,
    forced_expire, sender, then for each recipient a "recipient" attribute
    followed by its "reason" (possibly empty).  The stream ends with a list
    holding "end" and "count".

CONFIGURATION PARAMETERS
    queue_directory, hash_queue_names, hash_queue_depth (through QueueDir)
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from postel import log
from postel.queue import QueueDir, QueueFileCorrupt, QueueFileReader, qid_ok

# Queues a listing shows, in Postfix's order.
SHOWQ_QUEUES = ("maildrop", "incoming", "active", "deferred", "hold")
QUEUE_STATUS = {"active": "*", "hold": "!"}
DEFER_LOG_LIMIT = 1 << 20
HEADER = "----Queue ID----- --Size-- ---Arrival Time---- --Sender/Recipient------\n"
EMPTY = "Mail queue is empty\n"
RCPT_INDENT = 47          # column of the recipients (long queue ID layout)
REASON_END = 76           # a reason's text ends here; "(" and ")" surround it
NULL_SENDER = "MAILER-DAEMON"


@dataclass(slots=True)
class QueueEntry:
    """One message as a queue listing shows it."""

    queue_name: str
    queue_id: str
    arrival_time: int
    message_size: int
    sender: str
    recipients: list[tuple[str, str]] = field(default_factory=list)  # (address, delay_reason)
    forced_expire: bool = False


def read_defer_log(path: str) -> dict[str, str]:
    """read_defer_log - recipient -> latest deferral reason from a defer log."""
    try:
        with open(path, "rb") as f:
            data = f.read(DEFER_LOG_LIMIT)
    except (FileNotFoundError, NotADirectoryError):
        return {}
    except OSError as exc:
        log.warning("%s: cannot read defer log: %s", path, exc.strerror or exc)
        return {}
    reasons: dict[str, str] = {}
    rcpt = reason = ""
    for raw in data.decode("utf-8", "surrogateescape").split("\n"):
        if not raw:
            if rcpt:
                reasons[rcpt] = reason
            rcpt = reason = ""
            continue
        name, sep, value = raw.partition("=")
        if not sep:
            continue
        if name == "recipient":
            rcpt = value
        elif name == "reason":
            reason = value
    if rcpt:
        reasons[rcpt] = reason
    return reasons


def read_entry(qd: QueueDir, queue_name: str, qid: str, path: str) -> QueueEntry | None:
    """read_entry - the listing of one queue file; None if it vanished or is corrupt."""
    try:
        with QueueFileReader(path, writable=False) as r:
            env = r.envelope
            pending = [rc.address for rc in r.recipients if not rc.done]
            size = r.message_size
    except FileNotFoundError:
        return None
    except QueueFileCorrupt as exc:
        log.warning("%s: skipping corrupt queue file: %s", qid, exc.reason)
        return None
    except OSError as exc:
        log.warning("%s: cannot read queue file: %s", qid, exc.strerror or exc)
        return None
    reasons = read_defer_log(qd.path("defer", qid)) if queue_name != "maildrop" else {}
    return QueueEntry(queue_name, qid, int(env.time), size, env.sender,
                      order_recipients(pending, reasons),
                      env.attrs.get("forced_expire", "") in ("1", "yes", "true"))


def order_recipients(pending: list[str], reasons: dict[str, str]) -> list[tuple[str, str]]:
    """order_recipients - (address, reason) pairs in Postfix's mailq order: recipients
    with a deferral reason first, grouped by reason, then the others; each address once."""
    if len(pending) == 1:
        return [(pending[0], reasons.get(pending[0], ""))]
    groups: dict[str, list[tuple[str, str]]] = {}
    seen: set[str] = set()
    for addr in pending:
        if addr in seen:
            continue
        seen.add(addr)
        reason = reasons.get(addr, "")
        groups.setdefault(reason, []).append((addr, reason))
    plain = groups.pop("", [])
    return [item for group in groups.values() for item in group] + plain


def scan_entries(qd: QueueDir, queues: Iterable[str] = SHOWQ_QUEUES,
                 queue_id: str | None = None) -> Iterator[QueueEntry]:
    """scan_entries - every message in the listed queues (or just queue_id)."""
    for queue_name in queues:
        if queue_id is not None:
            if not qid_ok(queue_id):
                return
            path = qd.path(queue_name, queue_id)
            found = [(queue_id, path)] if os.path.exists(path) else []
        else:
            found = sorted(qd.scan_paths(queue_name))
        for qid, path in found:
            entry = read_entry(qd, queue_name, qid, path)
            if entry is not None:
                yield entry


def asctime19(when: float) -> str:
    """asctime19 - the first 19 characters of asctime(3): "Fri Jul  3 17:32:11"."""
    return time.asctime(time.localtime(when))[:19]


class MailqFormatter:
    """Turns entries into mailq text, one piece per entry plus a trailer."""

    def __init__(self) -> None:
        self.count = 0
        self.total_size = 0

    def entry(self, e: QueueEntry) -> str:
        """entry - the text block of one message (header or separator included)."""
        out = [HEADER if self.count == 0 else "\n"]
        self.count += 1
        self.total_size += e.message_size
        status = QUEUE_STATUS.get(e.queue_name, " ")
        out.append(f"{e.queue_id + status:<17} {e.message_size:8d} {asctime19(e.arrival_time)} "
                   f"{e.sender or NULL_SENDER}\n")
        last_reason = ""
        for addr, reason in e.recipients:
            if reason and reason != last_reason:
                out.append(" " * max(0, REASON_END - len(reason)) + f"({reason})\n")
            last_reason = reason
            out.append(" " * RCPT_INDENT + addr + "\n")
        return "".join(out)

    def finish(self) -> str:
        """finish - the trailer, or "Mail queue is empty"."""
        if self.count == 0:
            return EMPTY
        plural = "" if self.count == 1 else "s"
        return f"\n-- {self.total_size // 1024} Kbytes in {self.count} Request{plural}.\n"


def json_line(e: QueueEntry) -> str:
    """json_line - one message as postqueue -j prints it (newline included)."""
    rcpts = []
    for addr, reason in e.recipients:
        item = {"address": addr}
        if reason:
            item["delay_reason"] = reason
        rcpts.append(item)
    obj = {"queue_name": e.queue_name, "queue_id": e.queue_id,
           "arrival_time": e.arrival_time, "message_size": e.message_size,
           "forced_expire": e.forced_expire, "sender": e.sender or NULL_SENDER,
           "recipients": rcpts}  # Postfix 3.7's postqueue -j shows <> as MAILER-DAEMON too
    return json.dumps(obj, ensure_ascii=False) + "\n"


def encode_entry(e: QueueEntry) -> list[tuple[str, object]]:
    """encode_entry - the showq wire form of one entry (attribute pairs)."""
    pairs: list[tuple[str, object]] = [
        ("queue_name", e.queue_name), ("queue_id", e.queue_id),
        ("arrival_time", e.arrival_time), ("message_size", e.message_size),
        ("forced_expire", int(e.forced_expire)), ("sender", e.sender)]
    for addr, reason in e.recipients:
        pairs.append(("recipient", addr))
        pairs.append(("reason", reason))
    return pairs


class ShowqProtocolError(Exception):
    """The showq stream is malformed."""


def decode_entry(items: Iterable[tuple[str, bytes]]) -> QueueEntry:
    """decode_entry - the inverse of encode_entry (ShowqProtocolError if malformed)."""
    vals: dict[str, str] = {}
    rcpts: list[tuple[str, str]] = []
    addr: str | None = None
    for name, raw in items:
        value = raw.decode("utf-8", "surrogateescape")
        if name == "recipient":
            if addr is not None:
                rcpts.append((addr, ""))
            addr = value
        elif name == "reason":
            if addr is None:
                raise ShowqProtocolError("reason without recipient")
            rcpts.append((addr, value))
            addr = None
        else:
            vals[name] = value
    if addr is not None:
        rcpts.append((addr, ""))
    try:
        return QueueEntry(vals["queue_name"], vals["queue_id"], int(vals["arrival_time"]),
                          int(vals["message_size"]), vals.get("sender", ""), rcpts,
                          vals.get("forced_expire", "0") == "1")
    except (KeyError, ValueError) as exc:
        raise ShowqProtocolError(f"malformed queue entry: {exc}") from None
