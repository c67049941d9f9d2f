"""postqueue - Postel queue control for everyone

SYNOPSIS
    postel queue [-v] [-c config_dir] -f
    postel queue [-v] [-c config_dir] -i queue_id
    postel queue [-v] [-c config_dir] -j
    postel queue [-v] [-c config_dir] -p
    postel queue [-v] [-c config_dir] -s site
    mailq, sendmail -bp        (the same as postel queue -p)
    postel flush               (the same as postel queue -f)

DESCRIPTION
    postqueue(1) is the unprivileged user interface to the queue, as in
    Postfix.

    -p  List the queue in Sendmail mailq format (see docs/postqueue.md for
        the exact layout): queue ID, "*" (active) or "!" (on hold), size,
        arrival time, sender; the recipients below, each deferral reason in
        parentheses above the recipients it applies to; a "-- N Kbytes in M
        Requests." trailer, or "Mail queue is empty".
    -j  List the queue as JSON, one object per message and line, with
        Postfix's field names.
    -f  Flush the queue: ask qmgr to retry all deferred mail now (trigger
        "FADI" on public/qmgr) and wake up pickup.
    -s site
        Flush the mail for one destination through the flush service
        (fast_flush_domains), as the SMTP ETRN command does.
    -i queue_id
        Schedule immediate delivery of one deferred message (flush service).

    The listing comes from the showq service over public/showq, so that the
    user needs no access to the queue files.  When showq cannot be reached
    (the mail system is down), the superuser, mail_owner or the owner of
    the queue directory gets the listing by reading the queue directly, as
    Postfix runs showq stand-alone for the superuser; anybody else gets
    "postqueue: fatal: Queue report unavailable - mail system is down".

    For -p, showq sends the mailq text itself (request "format=mailq",
    see docs/showq.md) and postqueue copies it to standard output as bytes;
    that path imports nothing under postel.queue, so that a command start
    stays small.  -j decodes showq's attribute lists and formats here.

DIAGNOSTICS
    Exit status 0 on success, 64 for a usage error, 69 when the mail system
    is down, 1 for other errors.

CONFIGURATION PARAMETERS
    queue_directory, hash_queue_names, hash_queue_depth
    syslog_name, maillog_file
"""

from __future__ import annotations

import itertools
import os
import re
import sys
from collections.abc import Iterator

from postel.commands._qadmin import (
    EX_UNAVAILABLE,
    EX_USAGE,
    Fatal,
    fatal,
    load,
    privileged,
    queue_dir,
)
from postel.ipc.attr import AttrDecoder, AttrError
from postel.ipc.client import ServiceUnavailable, SyncConnection, service_path

# postqueue -p through showq imports nothing from postel.queue (its package
# pulls in the queue file reader and writer): the other paths import
# queue.report and queue.scan where they need them.
TYPE_CHECKING = False      # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from postel.queue.report import QueueEntry
    from postel.queue.scan import WireReader

PROG = "postqueue"
USAGE = "usage: postqueue -f | postqueue -i queue_id | postqueue -j | postqueue -p | postqueue -s site"
SHOWQ_ENDPOINT = "public/showq"
SHOWQ_TIMEOUT = 3600.0
RECV_SIZE = 1 << 18
DOWN = "Queue report unavailable - mail system is down"
FLUSH_DOWN = "Cannot flush mail queue - mail system is down"
# queue.report's HEADER and trailer (a test checks that they agree).
HEADER_B = b"----Queue ID----- --Size-- ---Arrival Time---- --Sender/Recipient------\n"
EMPTY_B = b"Mail queue is empty\n"


class ShowqError(Exception):
    """The showq stream of postqueue -p is malformed."""


def mailq_trailer(count: int, total_size: int) -> bytes:
    """mailq_trailer - "-- N Kbytes in M Requests." after a LF, or "Mail queue is empty"."""
    if count == 0:
        return EMPTY_B
    return b"\n-- %d Kbytes in %d Request%s.\n" % (total_size // 1024, count,
                                                   b"" if count == 1 else b"s")


def _parse(argv: list[str]) -> tuple[str, str, str | None]:
    """_parse - (mode, argument, config_dir); Fatal(EX_USAGE) on bad usage."""
    mode, arg, config_dir = "", "", None
    i = 0
    while i < len(argv):
        opt = argv[i]
        if not opt.startswith("-") or opt == "-":
            raise Fatal(USAGE, EX_USAGE)
        j = 1
        while j < len(opt):
            c = opt[j]
            if c in "cis":
                value = opt[j + 1:] or (argv[i + 1] if i + 1 < len(argv) else None)
                if value is None:
                    raise Fatal(f"option -{c} requires an argument\n{USAGE}", EX_USAGE)
                if not opt[j + 1:]:
                    i += 1
                if c == "c":
                    config_dir = value
                else:
                    mode, arg = _set_mode(mode, c, value)
                break
            if c in "fjp":
                mode, arg = _set_mode(mode, c, "")
            elif c != "v":
                raise Fatal(f"invalid option -- '{c}'\n{USAGE}", EX_USAGE)
            j += 1
        i += 1
    if not mode:
        raise Fatal(USAGE, EX_USAGE)
    return mode, arg, config_dir


def _set_mode(current: str, mode: str, arg: str) -> tuple[str, str]:
    """_set_mode - only one of -f -i -j -p -s may be given."""
    if current and current != mode:
        raise Fatal("specify only one of -f, -i, -j, -p or -s", EX_USAGE)
    return mode, arg


def showq_entries(queue_directory: str, queue_id: str | None = None,
                  retry_for: float = 5.0) -> Iterator[QueueEntry]:
    """showq_entries - the listing from public/showq (ServiceUnavailable if down).

    Connects before returning, so that a caller can fall back at once."""
    return _read_entries(_showq_connect(queue_directory, queue_id, retry_for))


def _showq_connect(queue_directory: str, queue_id: str | None = None,
                   retry_for: float = 5.0, fmt: str = "") -> SyncConnection:
    """_showq_connect - a connection to public/showq with the request sent."""
    if not os.path.exists(service_path(queue_directory, SHOWQ_ENDPOINT)):
        raise ServiceUnavailable(SHOWQ_ENDPOINT, "no such socket")
    conn = SyncConnection(queue_directory, SHOWQ_ENDPOINT, timeout=SHOWQ_TIMEOUT,
                          retry_for=retry_for)
    try:
        request = {"request": "list"}
        if queue_id:
            request["queue_id"] = queue_id
        if fmt:
            request["format"] = fmt
        conn.send(request)
    except BaseException:
        conn.close()
        raise
    return conn


def _read_entries(conn: SyncConnection) -> Iterator[QueueEntry]:
    """_read_entries - the entries of _read_batches one by one."""
    for batch in _read_batches(conn):
        yield from batch


def _read_batches(conn: SyncConnection, reader: WireReader | None = None,
                  first: bytes = b"") -> Iterator[list[QueueEntry]]:
    """_read_batches - decode entries as they arrive (a list per read), until the end marker.

    first: bytes already read from the connection."""
    if reader is None:
        from postel.queue.scan import WireReader
        reader = WireReader()
    sock = conn.sock
    try:
        sock.settimeout(conn.timeout)
        if first:
            batch = reader.feed(first)
            if batch:
                yield batch
        while not reader.done:
            try:
                data = sock.recv(RECV_SIZE)
            except TimeoutError:
                raise ServiceUnavailable(conn.endpoint,
                                         f"no reply within {conn.timeout:g}s") from None
            except OSError as exc:
                raise ServiceUnavailable(conn.endpoint,
                                         f"read: {exc.strerror or exc}") from None
            if not data:
                reader.eof()
            batch = reader.feed(data)
            if batch:
                yield batch
    finally:
        conn.close()


def _batches(cfg) -> Iterator[list[QueueEntry]]:
    """_batches - lists of entries from showq, or directly from the queue for privileged users."""
    from postel.queue.scan import scan_entries
    qd = queue_dir(cfg)
    try:
        conn = _showq_connect(qd.queue_directory)
    except ServiceUnavailable:
        _check_direct(cfg, qd)
        return _chunks(scan_entries(qd))
    return _read_batches(conn)


def _check_direct(cfg, qd) -> None:
    """_check_direct - may this user read the queue itself? (Fatal if not)."""
    if not privileged(cfg):
        raise Fatal(DOWN, EX_UNAVAILABLE) from None
    if not os.path.isdir(qd.queue_directory):
        raise Fatal(f"{qd.queue_directory}: no such queue directory", 1) from None


def _chunks(entries: Iterator[QueueEntry], size: int = 256) -> Iterator[list[QueueEntry]]:
    """_chunks - entries in lists of up to size."""
    while batch := list(itertools.islice(entries, size)):
        yield batch


def _byte_writer(out):
    """_byte_writer - a function writing bytes to out (its buffer, or decoded for a text-only out)."""
    buf = getattr(out, "buffer", None)
    if buf is not None:
        out.flush()
        return buf.write
    return lambda data: out.write(data.decode("utf-8", "surrogateescape"))


def list_queue(cfg, json_mode: bool, out=None) -> int:
    """list_queue - postqueue -p / -j onto out (stdout)."""
    out = out or sys.stdout
    if not json_mode:
        return _list_text(cfg, out)
    from postel.queue.report import ShowqProtocolError, json_line
    write = out.write
    try:
        for batch in _batches(cfg):
            write("".join(map(json_line, batch)))
    except (ServiceUnavailable, ShowqProtocolError, AttrError) as exc:
        out.flush()
        raise Fatal(f"showq service: {exc}", EX_UNAVAILABLE) from None
    out.flush()
    return 0


def _list_text(cfg, out) -> int:
    """_list_text - postqueue -p: showq's mailq text (format=mailq), or the queue read here."""
    write = _byte_writer(out)
    sink = _TextSink(write)
    try:
        try:
            queue_directory = os.path.abspath(cfg.get("queue_directory"))
            conn = _showq_connect(queue_directory, fmt="mailq")
        except ServiceUnavailable:
            _list_direct(cfg, sink)
        else:
            _read_text(conn, sink)
    except (ServiceUnavailable, ShowqError, AttrError) as exc:
        raise Fatal(f"showq service: {exc}", EX_UNAVAILABLE) from None
    finally:
        out.flush()
    write(mailq_trailer(sink.count, sink.size))
    out.flush()
    return 0


def _list_direct(cfg, sink: _TextSink) -> None:
    """_list_direct - the mailq text of the queue read here (privileged users only)."""
    from postel.queue.scan import find_items, text_of
    qd = queue_dir(cfg)
    _check_direct(cfg, qd)
    items = find_items(qd)
    for i in range(0, len(items), 512):
        sink.text(*text_of(qd, items[i:i + 512]))


class _TextSink:
    """Writes mailq text blocks (each after a LF), the header before the first; counts."""

    def __init__(self, write) -> None:
        self.write = write
        self.started = False
        self.count = 0
        self.size = 0

    def blocks(self, data: bytes) -> None:
        """blocks - write message blocks, each after a LF."""
        if not data:
            return
        if not self.started:
            self.started = True
            data = HEADER_B + data[1:]
        self.write(data)

    def text(self, data: bytes, count: int, size: int) -> None:
        """text - write the blocks of count messages (size bytes in all)."""
        self.blocks(data)
        self.count += count
        self.size += size

    def entries(self, batch: list[QueueEntry]) -> None:
        """entries - write entries (from a showq that sent the wire form)."""
        from postel.queue.report import asctime19
        from postel.queue.scan import entry_text
        self.text(b"".join(entry_text(e, asctime19(e.arrival_time)) for e in batch),
                  len(batch), sum(e.message_size for e in batch))

    def finish(self, count: int, size: int) -> None:
        """finish - the totals of showq's end list (checked against what was written)."""
        if (count > 0) != self.started:
            raise ShowqError("message count does not match the listing")
        self.count, self.size = count, size


_TEXT_HEAD = re.compile(rb"text=(0|[1-9]\d{0,9}):")


def _read_text(conn: SyncConnection, sink: _TextSink) -> None:
    """_read_text - copy showq's mailq text lists to sink, until the end list.

    A showq that answers with the wire form (one list per message) is
    decoded and formatted here."""
    sock = conn.sock
    buf = bytearray()
    try:
        sock.settimeout(conn.timeout)
        while True:
            data = _recv(conn, sock)
            if not data:
                if buf:
                    raise AttrError(f"truncated attribute list: end of stream after {len(buf)} "
                                    "octets of an unfinished list")
                raise ShowqError("showq closed the connection early")
            buf += data
            pos = 0
            while pos < len(buf):
                m = _TEXT_HEAD.match(buf, pos)
                if m is None:
                    if buf.startswith(b"end=", pos):
                        _text_end(conn, sock, buf[pos:], sink)
                        return
                    head = bytes(buf[pos:pos + 16])
                    if len(head) < 16 and (b"text=".startswith(head[:5])
                                           or b"end=".startswith(head)):
                        break             # the head of a list, not complete yet
                    _read_wire(conn, sink, bytes(buf[pos:]))
                    return
                end = m.end() + int(m.group(1))
                if end + 2 > len(buf):
                    break
                if buf[end:end + 2] != b",\n":
                    raise ShowqError("malformed text list")
                sink.blocks(bytes(buf[m.end():end]))
                pos = end + 2
            del buf[:pos]
    finally:
        conn.close()


def _read_wire(conn: SyncConnection, sink: _TextSink, first: bytes) -> None:
    """_read_wire - a showq that sent the wire form: decode and format its entries here."""
    from postel.queue.report import ShowqProtocolError
    try:
        for batch in _read_batches(conn, None, first):
            sink.entries(batch)
    except ShowqProtocolError as exc:
        raise ShowqError(str(exc)) from None


def _recv(conn: SyncConnection, sock) -> bytes:
    """_recv - the next bytes from showq (ServiceUnavailable on a timeout or error)."""
    try:
        return sock.recv(RECV_SIZE)
    except TimeoutError:
        raise ServiceUnavailable(conn.endpoint, f"no reply within {conn.timeout:g}s") from None
    except OSError as exc:
        raise ServiceUnavailable(conn.endpoint, f"read: {exc.strerror or exc}") from None


def _text_end(conn: SyncConnection, sock, data: bytes, sink: _TextSink) -> None:
    """_text_end - read and check the end list (count, size) that follows the text lists."""
    dec = AttrDecoder()
    dec.append(data)
    while (lst := dec.next_list()) is None:
        more = _recv(conn, sock)
        if not more:
            dec.eof()
            raise ShowqError("showq closed the connection early")
        dec.append(more)
    if dec.buffered():
        raise ShowqError("data after the end of the listing")
    if lst.get("error"):
        raise ShowqError(lst.get("error") or "")
    try:
        count, size = int(lst.get("count") or 0), int(lst.get("size") or 0)
    except ValueError:
        raise ShowqError("malformed end of listing") from None
    sink.finish(count, size)


def flush_queue(cfg) -> int:
    """flush_queue - postqueue -f: qmgr retries deferred mail, pickup looks."""
    from postel.ipc.trigger import QMGR_FLUSH_QUEUE, TRIGGER_WAKEUP, send_trigger
    qd = queue_dir(cfg)
    if not send_trigger(qd.queue_directory, "public/qmgr", QMGR_FLUSH_QUEUE):
        raise Fatal(FLUSH_DOWN, EX_UNAVAILABLE)
    send_trigger(qd.queue_directory, "public/pickup", TRIGGER_WAKEUP)
    return 0


def _flush_status(status: int, what: str) -> int:
    """_flush_status - map a flush service status to an exit status."""
    from postel.ipc import flush_client
    if status == flush_client.FLUSH_STAT_OK:
        return 0
    if status == flush_client.FLUSH_STAT_BAD:
        raise Fatal(f"invalid request: {what}", EX_USAGE)
    if status == flush_client.FLUSH_STAT_DENY:
        raise Fatal(f"flush service is not configured for destination \"{what}\"", EX_UNAVAILABLE)
    raise Fatal(FLUSH_DOWN, EX_UNAVAILABLE)


def flush_site(cfg, site: str) -> int:
    """flush_site - postqueue -s site."""
    if not site or any(c.isspace() for c in site):
        raise Fatal(f"invalid request: \"{site}\"", EX_USAGE)
    from postel.ipc import flush_client
    qd = queue_dir(cfg)
    return _flush_status(flush_client.flush_send_site(qd.queue_directory, site), site)


def flush_file(cfg, qid: str) -> int:
    """flush_file - postqueue -i queue_id."""
    from postel.queue import qid_ok
    if not qid_ok(qid):
        raise Fatal(f"invalid queue ID: \"{qid}\"", EX_USAGE)
    from postel.ipc import flush_client
    qd = queue_dir(cfg)
    return _flush_status(flush_client.flush_send_file(qd.queue_directory, qid), qid)


def main(argv: list[str], config_dir: str | None) -> int:
    """main - postel queue."""
    try:
        mode, arg, opt_dir = _parse(argv)
        cfg = load(PROG, opt_dir or config_dir)
        if mode == "p":
            return list_queue(cfg, json_mode=False)
        if mode == "j":
            return list_queue(cfg, json_mode=True)
        if mode == "f":
            return flush_queue(cfg)
        if mode == "s":
            return flush_site(cfg, arg)
        return flush_file(cfg, arg)
    except Fatal as exc:
        return fatal(PROG, exc)
    except BrokenPipeError:
        _quiet_stdout()
        return 0


def _quiet_stdout() -> None:
    """_quiet_stdout - after EPIPE (mailq | head), avoid a second error at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def flush_main(argv: list[str], config_dir: str | None) -> int:
    """flush_main - postel flush: the same as postel queue -f."""
    return main(["-f", *argv], config_dir)
