"""scan - fast read-only queue listing for showq and postqueue

SYNOPSIS
    from postel.queue.scan import scan_entries, read_entry, read_defer_log
    from postel.queue.scan import entry_wire, WireReader

    for entry in scan_entries(qd):               # QueueEntry, as queue.report
        sock.sendall(entry_wire(entry))          # == encode(encode_entry(entry))

    reader = WireReader()                        # client side of public/showq
    for entry in reader.feed(data): ...          # complete entries; reader.done

    items = listing(qd)                          # (queue_name, qid, path), sorted
    text, count, size = text_of(qd, items)       # mailq blocks, each after a LF

DESCRIPTION
    The same listing as postel.queue.report.scan_entries(), with less work
    per message, for large queues (mailq on 100 000 deferred messages):

    *   A queue file is opened read-only, read with one read(2) of up to
        READ_SIZE bytes (the whole file for a small message) and closed; a
        larger file costs one pread(2) for the envelope rest and one for the
        extracted segment.  Only the envelope and extracted segments are
        parsed; the content is never looked at.
    *   The checks are those of QueueFileReader (size record, offsets, file
        size, framing, record order, the envelope CRC, recipient count).
        Whenever a file holds anything this fast parser does not handle
        itself (records other than T S A O o n R D, a check that fails, an
        error other than "no such file"), the message is read again with
        QueueFileReader through queue.report.read_entry(), so that the
        result and any warning are exactly those of the full reader.
    *   The defer log is read with one open and read, and parsed a block at
        a time instead of a line at a time.

    *   Files are opened with O_NOATIME where allowed (no inode update on
        the first read); the queue is listed with one scandir(2) walk.

    entry_wire() builds the showq wire form of an entry directly (one
    attribute list, see queue.report), and WireReader decodes a stream of
    such lists: entries of the usual shape are matched with one regular
    expression, any other list goes through the generic attribute decoder.

    text_of() gives the mailq text of listing items (MailqFormatter's
    blocks, UTF-8): for the usual message (one pending recipient) straight
    from the file's and the defer log's bytes, else through a QueueEntry.

    The order of the listing, the recipient grouping, the treatment of
    corrupt and vanished files are those of queue.report.

CONFIGURATION PARAMETERS
    queue_directory, hash_queue_names, hash_queue_depth (through QueueDir)
"""

from __future__ import annotations

import os
import re
import time
import zlib
from collections.abc import Iterable, Iterator
from operator import itemgetter

from postel.ipc.attr import AttrDecoder, AttrError, Limits
from postel.queue import QueueDir, qid_ok, report
from postel.queue import records as rec
from postel.queue.qid import MAX_HASH_DEPTH
from postel.queue.report import (
    DEFER_LOG_LIMIT,
    EMPTY,
    NULL_SENDER,
    QUEUE_STATUS,
    RCPT_INDENT,
    REASON_END,
    SHOWQ_QUEUES,
    QueueEntry,
    ShowqProtocolError,
    asctime19,
    decode_entry,
    order_recipients,
)

READ_SIZE = 8192                  # first read of a queue file
_TIME_RE = re.compile(rb"(\d{1,12})\.(\d{6})\Z")
_INT_RE = re.compile(rb"\d{1,3}\Z")
_C, _T, _S, _A = rec.REC_TYPE_SIZE, rec.REC_TYPE_TIME, rec.REC_TYPE_FROM, rec.REC_TYPE_ATTR
_R, _D, _X, _E = rec.REC_TYPE_RCPT, rec.REC_TYPE_DONE, rec.REC_TYPE_XTRA, rec.REC_TYPE_END
_O, _OO, _NN = rec.REC_TYPE_ORCP, rec.REC_TYPE_DSN_ORCPT, rec.REC_TYPE_DSN_NOTIFY
_HEAD_LEN = rec.SIZE_RECORD_LEN
_SIZE_LEN_BYTE = rec.SIZE_PAYLOAD_LEN       # < 128: one length byte
_MESG = bytes((rec.REC_TYPE_MESG, 0))
_RDONLY = os.O_RDONLY | os.O_CLOEXEC
_open_flags = _RDONLY | getattr(os, "O_NOATIME", 0)


def _open(path: str) -> int:
    """_open - open(2) read-only, without the access time update where the kernel allows.

    O_NOATIME (the file's owner or CAP_FOWNER) spares the first listing an
    inode update per queue file and defer log (~3 us each); after an EPERM
    the process opens without it."""
    global _open_flags
    try:
        return os.open(path, _open_flags)
    except PermissionError:
        if _open_flags == _RDONLY:
            raise
        _open_flags = _RDONLY
        return os.open(path, _RDONLY)


class _Slow(Exception):
    """The fast parser cannot decide: read the file with QueueFileReader."""


def _segment(data: bytes, fd: int, start: int, end: int) -> bytes:
    """_segment - file bytes [start, end): from the first read or pread(2)."""
    if end <= len(data):
        return data[start:end]
    got = os.pread(fd, end - start, start)
    if len(got) != end - start:
        raise _Slow
    return got


def _records(seg: bytes, pos: int, rcpts: list, done_at: list) -> int:
    """_records - the recipients of seg[pos:] (T/S handled by the caller); returns the A count.

    Appends (address, done) to rcpts and the offsets of D type bytes (for
    the CRC) to done_at.  Anything the fast path does not handle raises
    _Slow (or IndexError at a truncated record)."""
    end = len(seg)
    modifiers = 0                 # bit set of O/o/n seen for the pending recipient
    nattrs = 0
    find = seg.find
    while pos < end:
        t = seg[pos]
        n = seg[pos + 1]
        if n & 0x80:
            raise _Slow
        at = pos + 2
        pos = at + n
        if t == _A:
            # "name=value" with a non-empty name; at most ATTR_COUNT_LIMIT records
            # (so at most that many names, the reader's limit).
            if modifiers or find(b"=", at, pos) <= at:
                raise _Slow
            nattrs += 1
        elif t == _R:
            rcpts.append((seg[at:pos], False))
            modifiers = 0
        elif t == _D:
            rcpts.append((seg[at:pos], True))
            done_at.append(at - 2)
            modifiers = 0
        elif t == _O or t == _OO:
            bit = 1 if t == _O else 2
            if modifiers & bit or n == 0:
                raise _Slow
            modifiers |= bit
        elif t == _NN:
            if modifiers & 4 or _INT_RE.match(seg, at, pos) is None \
                    or not 1 <= int(seg[at:pos]) <= 15:
                raise _Slow
            modifiers |= 4
        else:
            raise _Slow
    if pos != end or modifiers or nattrs > rec.ATTR_COUNT_LIMIT:
        raise _Slow
    return nattrs


def _forced_expire(seg: bytes, pos: int) -> bytes | None:
    """_forced_expire - the value of the last forced_expire attribute (framing checked)."""
    value = None
    end = len(seg)
    while pos < end:
        t, n = seg[pos], seg[pos + 1]
        if t == _A and seg.startswith(b"forced_expire=", pos + 2, pos + 2 + n):
            value = seg[pos + 16:pos + 2 + n]
        pos += 2 + n
    return value


def _crc(seg: bytes, done_at: list, crc: int) -> int:
    """_crc - CRC-32 of a segment with D type bytes counted as R (see records.py)."""
    if not done_at:
        return zlib.crc32(seg, crc)
    buf = bytearray(seg)
    for pos in done_at:
        buf[pos] = _R
    return zlib.crc32(buf, crc)


# The size record, "C", its length, then records._SIZE_FMT: version 01 and
# fields of fixed width (decimal, decimal..., hex, hex) separated by spaces.
# It is checked by its shape: translated (digit -> "0", a-f -> "a", other -> 0xFF),
# the decimal part must equal _SIZE_SHAPE and the hex part hold only 0 and a.
_WIDTHS = (2, 12, 12, 12, 12, 9, 8, 8)
_SPANS = []
_at = 2
for _w in _WIDTHS:
    _SPANS.append((_at, _at + _w))
    _at += _w + 1
assert _at - 1 == _HEAD_LEN, "size record layout"
(_, (_MS0, _MS1), (_CO0, _CO1), (_XO0, _XO1), (_EO0, _EO1), (_RC0, _RC1),
 (_CRC0, _CRC1), _) = _SPANS
_SIZE_PREFIX = bytes((_C, _SIZE_LEN_BYTE)) + b"01 "
_SHAPE_TABLE = bytes(0x30 if 0x30 <= c <= 0x39 else 0x61 if 0x61 <= c <= 0x66 else
                     0x20 if c == 0x20 else 0xFF for c in range(256))
_SIZE_SHAPE = b" ".join(b"0" * w for w in _WIDTHS[:6]) + b" "
_HEX_SHAPE = b"00000000 00000000"


# The envelope's first records: T (length, "seconds.microseconds") and S (length).
_TS_RE = re.compile(rb"T([\x08-\x13])(\d{1,12})\.\d{6}S([\x00-\x7f])")
_XE = b"X\x00E\x00"


def _parse(data: bytes, fd: int) -> tuple[int, bytes, bytes | None, list, int]:
    """_parse - (arrival second, sender, forced_expire value, recipients, size) or _Slow."""
    shape = data[2:_HEAD_LEN].translate(_SHAPE_TABLE)
    if not (shape.startswith(_SIZE_SHAPE) and data.startswith(_SIZE_PREFIX)
            and shape[len(_SIZE_SHAPE):].replace(b"a", b"0") == _HEX_SHAPE):
        raise _Slow
    message_size = int(data[_MS0:_MS1])
    content_off = int(data[_CO0:_CO1])
    extracted_off = int(data[_XO0:_XO1])
    end_off = int(data[_EO0:_EO1])
    rcpt_count = int(data[_RC0:_RC1])
    size = len(data)
    if size >= READ_SIZE:
        size = os.fstat(fd).st_size
    if end_off != size or not _HEAD_LEN <= content_off < extracted_off < end_off:
        raise _Slow
    if end_off <= len(data):
        env = data[_HEAD_LEN:content_off]
        if not data.startswith(_MESG, content_off):
            raise _Slow
        xseg = data[extracted_off:]
    else:
        env = _segment(data, fd, _HEAD_LEN, content_off)
        xseg = _segment(data, fd, extracted_off, end_off)
        if _segment(data, fd, content_off, content_off + 2) != _MESG:
            raise _Slow
    # The envelope opens with T, then S (the writer's order; anything else: slow path).
    tm = _TS_RE.match(env)
    if tm is None or tm.end(2) + 7 != 2 + env[1]:
        raise _Slow
    s_end = tm.end() + tm.group(3)[0]
    if s_end > len(env):
        raise _Slow
    sender = env[tm.end():s_end]
    rcpts: list = []
    done_at: list = []
    nattrs = _records(env, s_end, rcpts, done_at)
    crc = zlib.crc32(env) if not done_at else _crc(env, done_at, 0)
    if xseg == _XE:
        crc = zlib.crc32(xseg, crc)
    elif xseg[:2] != b"X\x00" or xseg[-2:] != b"E\x00" or len(xseg) < 4:
        raise _Slow
    else:
        xdone: list = []
        _records(xseg[:-2], 2, rcpts, xdone)
        crc = _crc(xseg, xdone, crc)
    if crc != int(data[_CRC0:_CRC1], 16) or len(rcpts) != rcpt_count or rcpt_count > rec.RCPT_LIMIT:
        raise _Slow
    forced = _forced_expire(env, s_end) if nattrs and b"forced_expire=" in env else None
    # The callers want whole seconds: int(seconds + microseconds / 10**6) is the
    # seconds unless the float sum rounds up, which needs more than 2**32 seconds.
    when = int(tm.group(2))
    if when >= 1 << 32:
        when = int(when + int(env[tm.end(2) + 1:tm.end(2) + 7]) / 1_000_000)
    return when, sender, forced, rcpts, message_size


def _text(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


_BLOCK_RCPT = re.compile(r"^recipient=(.*)", re.M)
_BLOCK_REASON = re.compile(r"^reason=(.*)", re.M)


def _last_value(text: str, name: str) -> str | None:
    """_last_value - the value of the last line "name=value" of text (None: no such line)."""
    i = text.rfind("\n" + name)
    if i >= 0:
        start = i + 1 + len(name)
    elif text.startswith(name):
        start = len(name)
    else:
        return None
    end = text.find("\n", start)
    return text[start:] if end < 0 else text[start:end]


def parse_defer_log(text: str) -> dict[str, str]:
    """parse_defer_log - recipient -> latest reason (the rules of report.read_defer_log)."""
    blank = text.find("\n\n")
    if blank < 0 or blank == len(text) - 2:
        # One block (the usual log of a one-recipient message).
        rcpt = _last_value(text, "recipient=")
        if not rcpt:
            return {}
        return {rcpt: _last_value(text, "reason=") or ""}
    reasons: dict[str, str] = {}
    for block in text.split("\n\n"):
        if "recipient=" not in block:
            continue
        found = _BLOCK_RCPT.findall(block)
        if not found or not found[-1]:
            continue
        why = _BLOCK_REASON.findall(block)
        reasons[found[-1]] = why[-1] if why else ""
    return reasons


def _defer_data(path: str) -> bytes | None:
    """_defer_data - the bytes of a defer log (b"" if there is none); None if unreadable."""
    try:
        fd = _open(path)
    except (FileNotFoundError, NotADirectoryError):
        return b""
    except OSError:
        return None
    try:
        data = os.read(fd, 4096)
        if len(data) == 4096:
            parts = [data]
            got = len(data)
            while got < DEFER_LOG_LIMIT:
                more = os.read(fd, DEFER_LOG_LIMIT - got)
                if not more:
                    break
                parts.append(more)
                got += len(more)
            data = b"".join(parts)
    except OSError:
        return None
    finally:
        os.close(fd)
    return data


def read_defer_log(path: str) -> dict[str, str]:
    """read_defer_log - as report.read_defer_log, with one open and read for a small log."""
    data = _defer_data(path)
    if data is None:
        return report.read_defer_log(path)      # it logs the warning
    return parse_defer_log(data.decode("utf-8", "surrogateescape")) if data else {}


def _last_bytes(data: bytes, name: bytes, nl_name: bytes) -> bytes | None:
    """_last_bytes - _last_value() on bytes (the same positions: LF is never inside UTF-8);
    nl_name is LF + name."""
    i = data.rfind(nl_name)
    if i >= 0:
        start = i + len(nl_name)
    elif data.startswith(name):
        start = len(name)
    else:
        return None
    end = data.find(b"\n", start)
    return data[start:] if end < 0 else data[start:end]


def defer_reason(data: bytes, addr: bytes) -> bytes:
    """defer_reason - parse_defer_log(data).get(addr, ""), in bytes (UTF-8, surrogateescape).

    The latest block whose (last) recipient is addr gives the reason: the
    blocks are read from the end, a message's log has one per deferral."""
    blank = data.find(b"\n\n")
    blocks = (data,) if blank < 0 or blank == len(data) - 2 else reversed(data.split(b"\n\n"))
    for block in blocks:
        rcpt = _last_bytes(block, b"recipient=", b"\nrecipient=")
        if rcpt and rcpt == addr:
            return _last_bytes(block, b"reason=", b"\nreason=") or b""
    return b""


def _quick_parse(path: str):
    """_quick_parse - _parse() of a queue file's first bytes; None when it cannot say.

    None: the file vanished, or it needs the general path (_Slow, an odd
    record, a read error); the caller then takes the full reader."""
    try:
        fd = _open(path)
    except OSError:
        return None
    try:
        return _parse(os.read(fd, READ_SIZE), fd)
    except Exception:   # _Slow, OSError, anything odd: the general path decides
        return None
    finally:
        os.close(fd)


class _Scanner:
    """Per-listing state: where defer logs live."""

    def __init__(self, qd: QueueDir) -> None:
        self.qd = qd
        self.defer_top = qd.queue_path("defer")
        self.tops: dict[str, str] = {}    # queue -> its top + "/", when hashed like defer
        self.minutes: dict[int, bytes] = {}  # arrival minute -> asctime19 up to the seconds

    def minute(self, minute: int) -> bytes:
        """minute - "Www Mmm dd hh:mm:" of a minute (seconds since the epoch / 60), b"" when
        its local seconds are not the UTC ones (an offset change inside it, an offset
        of odd seconds): asctime19() is then called per message."""
        if len(self.minutes) > 65536:
            self.minutes.clear()
        first, last = time.localtime(minute * 60), time.localtime(minute * 60 + 59)
        ok = first.tm_sec == 0 and last.tm_sec == 59 and first.tm_gmtoff == last.tm_gmtoff
        text = time.asctime(first)[:17].encode() if ok else b""
        self.minutes[minute] = text
        return text

    def defer_path(self, queue_name: str, qid: str, path: str) -> str:
        """defer_path - the defer log of a message (the file's hash directories when equal)."""
        top = self.tops.get(queue_name)
        if top is None:
            same = self.qd.depth(queue_name) == self.qd.depth("defer")
            top = self.tops[queue_name] = self.qd.queue_path(queue_name) + os.sep if same else ""
        if top and path.startswith(top):
            return self.defer_top + path[len(top) - 1:]
        return self.qd.path("defer", qid)

    def reason(self, queue_name: str, qid: str, path: str, addr: bytes) -> bytes:
        """reason - the deferral reason of a recipient from the message's defer log (b"": none)."""
        log_path = self.defer_path(queue_name, qid, path)
        data = _defer_data(log_path)
        if data is None:                  # unreadable: the full reader warns
            reason = report.read_defer_log(log_path).get(_text(addr), "")
            return reason.encode("utf-8", "surrogateescape")
        return defer_reason(data, addr) if data else b""

    def wire(self, queue_name: str, qid: str, path: str) -> tuple[bytes, int]:
        """wire - (entry_wire(entry(...)), 1), or (b"", 0) if the file vanished or is corrupt.

        The usual message (one pending recipient, not in maildrop) goes
        from the file's bytes to the wire bytes without a QueueEntry."""
        parsed = _quick_parse(path)
        if parsed is not None:
            when, sender, forced, rcpts, size = parsed
            if len(rcpts) == 1 and not rcpts[0][1] and queue_name != "maildrop":
                addr = rcpts[0][0]
                rb = self.reason(queue_name, qid, path, addr)
                t = b"%d" % int(when)
                z = b"%d" % size
                return (b"queue_name=%d:%s,queue_id=%d:%s,arrival_time=%d:%s,message_size=%d:%s,"
                        b"forced_expire=1:%s,sender=%d:%s,recipient=%d:%s,reason=%d:%s,\n" % (
                            len(queue_name), queue_name.encode(), len(qid), qid.encode(),
                            len(t), t, len(z), z,
                            b"1" if forced in (b"1", b"yes", b"true") else b"0",
                            len(sender), sender, len(addr), addr, len(rb), rb), 1)
        e = self.entry(queue_name, qid, path)
        return (b"", 0) if e is None else (entry_wire(e), 1)

    def text(self, queue_name: str, qid: str, path: str) -> tuple[bytes, int]:
        """text - (LF + the message's mailq block, its size); (b"", -1) if vanished or corrupt.

        The block is MailqFormatter's, encoded UTF-8 (surrogateescape).  The usual
        message (one pending recipient) goes from the file's bytes to the
        text without a QueueEntry."""
        parsed = _quick_parse(path)
        if parsed is not None:
            when, sender, forced, rcpts, size = parsed
            if len(rcpts) == 1 and not rcpts[0][1]:
                addr = rcpts[0][0]
                reason = b"" if queue_name == "maildrop" else self.reason(queue_name, qid, path, addr)
                minute = self.minutes.get(when // 60)
                if minute is None:
                    minute = self.minute(when // 60)
                if minute:
                    second = when % 60
                else:
                    asc = asctime19(when).encode()
                    minute, second = asc[:17], int(asc[17:19])
                if reason:
                    n = len(reason) if reason.isascii() else len(_text(reason))
                    return (b"\n%-17s %8d %s%02d %s\n%s(%s)\n%s%s\n" % (
                        qid.encode() + _STATUS.get(queue_name, b" "), size, minute, second,
                        sender or _NULL_SENDER, b" " * (REASON_END - n), reason, _INDENT_B,
                        addr), size)
                return (b"\n%-17s %8d %s%02d %s\n%s%s\n" % (
                    qid.encode() + _STATUS.get(queue_name, b" "), size, minute, second,
                    sender or _NULL_SENDER, _INDENT_B, addr), size)
        e = self.entry(queue_name, qid, path)
        if e is None:
            return b"", -1
        return entry_text(e, asctime19(e.arrival_time)), e.message_size

    def entry(self, queue_name: str, qid: str, path: str) -> QueueEntry | None:
        """entry - the listing of one queue file; None if it vanished or is corrupt."""
        try:
            fd = _open(path)
        except FileNotFoundError:
            return None
        except OSError:
            return report.read_entry(self.qd, queue_name, qid, path)
        try:
            when, sender, forced, rcpts, size = _parse(os.read(fd, READ_SIZE), fd)
        except FileNotFoundError:
            return None
        except Exception:   # _Slow, OSError, anything odd: the full reader decides
            return report.read_entry(self.qd, queue_name, qid, path)
        finally:
            os.close(fd)
        if queue_name == "maildrop":
            reasons = {}
        else:
            reasons = read_defer_log(self.defer_path(queue_name, qid, path))
        return make_entry(queue_name, qid, when, size, _text(sender),
                          [_text(a) for a, done in rcpts if not done], reasons,
                          forced in (b"1", b"yes", b"true"))


def make_entry(queue_name: str, qid: str, when: float, size: int, sender: str,
               pending: list[str], reasons: dict[str, str], forced: bool) -> QueueEntry:
    """make_entry - a QueueEntry with Postfix's recipient order (report.order_recipients)."""
    rcpts = order_recipients(pending, reasons)
    return QueueEntry(queue_name, qid, int(when), size, sender, rcpts, forced)


def read_entry(qd: QueueDir, queue_name: str, qid: str, path: str) -> QueueEntry | None:
    """read_entry - report.read_entry() through the fast path."""
    return _Scanner(qd).entry(queue_name, qid, path)


def scan_entries(qd: QueueDir, queues: Iterable[str] = SHOWQ_QUEUES,
                 queue_id: str | None = None) -> Iterator[QueueEntry]:
    """scan_entries - every message in the listed queues (or just queue_id), as report's."""
    scanner = _Scanner(qd)
    for queue_name in queues:
        if queue_id is not None:
            if not qid_ok(queue_id):
                return
            path = qd.path(queue_name, queue_id)
            found = [(queue_id, path)] if os.path.exists(path) else []
        else:
            found = sorted(qd.scan_paths(queue_name))
        entry = scanner.entry
        for qid, path in found:
            e = entry(queue_name, qid, path)
            if e is not None:
                yield e


def listing(qd: QueueDir, queues: Iterable[str] = SHOWQ_QUEUES) -> list[tuple[str, str, str]]:
    """listing - (queue_name, qid, path) of every queue file, in the listing's order.

    The files of QueueDir.scan_paths(), found with one scandir(2) walk and
    no generator per directory (a fifth of the time for 100 000 files)."""
    out: list[tuple[str, str, str]] = []
    for queue_name in queues:
        if queue_name == "flush":       # site names, not queue IDs: the general walk
            found = [(queue_name, qid, path) for qid, path in qd.scan_paths(queue_name)]
        else:
            found = []
            _scan_dir(queue_name, qd.queue_path(queue_name), MAX_HASH_DEPTH, found)
        # By queue ID (a string key sorts several times faster than the tuples);
        # by (queue ID, path) when an ID occurs twice (e.g. after a depth change).
        found.sort(key=_QID_KEY)
        if len({item[1] for item in found}) != len(found):
            found.sort()
        out += found
    return out


_QID_KEY = itemgetter(1)


_HASH_DIGITS = frozenset("0123456789ABCDEF")


def _scan_dir(queue_name: str, top: str, depth: int, out: list) -> None:
    """_scan_dir - qdir's walk (hash subdirectories, queue ID names, regular files) into out."""
    try:
        it = os.scandir(top)
    except FileNotFoundError:
        return
    ok = qid_ok
    with it:
        for entry in it:
            name = entry.name
            if len(name) == 1:
                if depth > 0 and name in _HASH_DIGITS and entry.is_dir(follow_symlinks=False):
                    _scan_dir(queue_name, entry.path, depth - 1, out)
            elif ok(name) and entry.is_file(follow_symlinks=False):
                out.append((queue_name, name, entry.path))


def wire_of(qd: QueueDir, items: Iterable[tuple[str, str, str]]) -> tuple[bytes, int]:
    """wire_of - the showq wire bytes of listing() items and the number of entries."""
    wire = _Scanner(qd).wire
    out = []
    count = 0
    for queue_name, qid, path in items:
        data, n = wire(queue_name, qid, path)
        if n:
            out.append(data)
            count += 1
    return b"".join(out), count


def text_of(qd: QueueDir, items: Iterable[tuple[str, str, str]]) -> tuple[bytes, int, int]:
    """text_of - the mailq text of listing() items (each block after a LF), count, total size."""
    text = _Scanner(qd).text
    out = []
    count = total = 0
    for queue_name, qid, path in items:
        data, size = text(queue_name, qid, path)
        if size >= 0:
            out.append(data)
            count += 1
            total += size
    return b"".join(out), count, total


def find_items(qd: QueueDir, queue_id: str | None = None,
               queues: Iterable[str] = SHOWQ_QUEUES) -> list[tuple[str, str, str]]:
    """find_items - listing(), or the items that scan_entries(queue_id=...) reads."""
    if queue_id is None:
        return listing(qd, queues)
    if not qid_ok(queue_id):
        return []
    out = []
    for queue_name in queues:
        path = qd.path(queue_name, queue_id)
        if os.path.exists(path):
            out.append((queue_name, queue_id, path))
    return out


# ---------------------------------------------------------------- the wire

def _attr(name: bytes, value: bytes) -> bytes:
    return b"%s=%d:%s," % (name, len(value), value)


def entry_wire(e: QueueEntry) -> bytes:
    """entry_wire - encode(encode_entry(e)), built directly."""
    qn = e.queue_name.encode("utf-8", "surrogateescape")
    qid = e.queue_id.encode("utf-8", "surrogateescape")
    when = b"%d" % e.arrival_time
    size = b"%d" % e.message_size
    sender = e.sender.encode("utf-8", "surrogateescape")
    out = [b"queue_name=%d:%s,queue_id=%d:%s,arrival_time=%d:%s,message_size=%d:%s,"
           b"forced_expire=1:%s,sender=%d:%s," % (
               len(qn), qn, len(qid), qid, len(when), when, len(size), size,
               b"1" if e.forced_expire else b"0", len(sender), sender)]
    for addr, reason in e.recipients:
        a = addr.encode("utf-8", "surrogateescape")
        r = reason.encode("utf-8", "surrogateescape")
        out.append(b"recipient=%d:%s,reason=%d:%s," % (len(a), a, len(r), r))
    out.append(b"\n")
    return b"".join(out)


# The head of a usual entry: queue name, ID, time, size and flag are plain
# tokens, so a regular expression finds them; their lengths are checked.
_ENTRY_HEAD = re.compile(
    rb"queue_name=(\d{1,2}):([a-z]{1,16}),queue_id=(\d{1,2}):([0-9A-Za-z]{1,32}),"
    rb"arrival_time=(\d{1,2}):(\d{1,20}),message_size=(\d{1,2}):(\d{1,20}),"
    rb"forced_expire=1:([01]),sender=(0|[1-9]\d{0,9}):")
_VALUE_HEAD = re.compile(rb"(recipient|reason)=(0|[1-9]\d{0,9}):")
LIST_LIMIT = 64 << 20              # bytes of one entry (a million recipients fit)
_LIMITS = Limits(max_count=1 << 30, max_total=LIST_LIMIT)


class _Unusual(Exception):
    """A list that the fast entry parser does not handle: the generic decoder does."""


def _fast_entry(buf: bytes, pos: int, n: int) -> tuple[QueueEntry, int] | None:
    """_fast_entry - (entry, position after it) of a usual entry; None: more data needed."""
    m = _ENTRY_HEAD.match(buf, pos)
    if m is None:
        raise _Unusual
    (lqn, qn, lqid, qid, lt, when, ls, size, forced, lsender) = m.groups()
    if (int(lqn) != len(qn) or int(lqid) != len(qid) or int(lt) != len(when)
            or int(ls) != len(size)):
        raise _Unusual
    at = m.end()
    end = at + int(lsender)
    if end >= n:
        return None
    if buf[end] != 0x2C:
        raise _Unusual
    sender = buf[at:end].decode("utf-8", "surrogateescape")
    at = end + 1
    rcpts = []
    value = _VALUE_HEAD.match
    while True:
        if at >= n:
            return None
        if buf[at] == 0x0A:
            break
        r = value(buf, at)
        if r is None or r.group(1) != b"recipient":
            raise _Unusual
        a0 = r.end()
        a1 = a0 + int(r.group(2))
        if a1 >= n:
            return None
        if buf[a1] != 0x2C:
            raise _Unusual
        r = value(buf, a1 + 1)
        if r is None or r.group(1) != b"reason":
            raise _Unusual
        b0 = r.end()
        b1 = b0 + int(r.group(2))
        if b1 >= n:
            return None
        if buf[b1] != 0x2C:
            raise _Unusual
        rcpts.append((buf[a0:a1].decode("utf-8", "surrogateescape"),
                      buf[b0:b1].decode("utf-8", "surrogateescape")))
        at = b1 + 1
    return (QueueEntry(qn.decode(), qid.decode(), int(when), int(size), sender, rcpts,
                       forced == b"1"), at + 1)


class WireReader:
    """Decodes the showq stream: bytes in, QueueEntry out, until the end list."""

    def __init__(self) -> None:
        self.buf = b""
        self.done = False
        self.count = 0
        self._generic: AttrDecoder | None = None

    def feed(self, data: bytes) -> list[QueueEntry]:
        """feed - the entries that data completes (ShowqProtocolError/AttrError if malformed)."""
        if self.done:
            if data:
                raise ShowqProtocolError("data after the end of the listing")
            return []
        if self._generic is not None:
            return self._feed_generic(data)
        buf = self.buf + data if self.buf else data
        out: list[QueueEntry] = []
        pos, n = 0, len(buf)
        append = out.append
        while pos < n:
            try:
                got = _fast_entry(buf, pos, n)
            except (_Unusual, ValueError):
                if not self._probe(buf, pos):
                    break                 # an unusual list, not complete yet
                self.buf = b""
                self.count += len(out)
                return out + self._feed_generic(buf[pos:])
            if got is None:
                break
            append(got[0])
            pos = got[1]
        self.buf = buf[pos:]
        if len(self.buf) > LIST_LIMIT:
            raise ShowqProtocolError("queue entry too large")
        self.count += len(out)
        return out

    @staticmethod
    def _probe(buf: bytes, pos: int) -> bool:
        """_probe - does buf[pos:] hold a complete (or a malformed) list?"""
        dec = AttrDecoder(_LIMITS)
        dec.append(buf[pos:])
        try:
            return dec.next_list() is not None
        except AttrError:
            return True

    def _feed_generic(self, data: bytes) -> list[QueueEntry]:
        """_feed_generic - lists through AttrDecoder (the end list, unusual entries)."""
        if self._generic is None:
            self._generic = AttrDecoder(_LIMITS)
        dec = self._generic
        out: list[QueueEntry] = []
        dec.append(data)
        while (lst := dec.next_list()) is not None:
            if "end" in lst:
                if lst.get("error"):
                    raise ShowqProtocolError(lst.get("error") or "")
                self.done = True
                if dec.buffered():
                    raise ShowqProtocolError("data after the end of the listing")
                break
            out.append(decode_entry(lst))
        if not self.done and dec.buffered() == 0:
            self._generic = None          # back to the fast path at a list boundary
        self.count += len(out)
        return out

    def eof(self) -> None:
        """eof - the stream ended: AttrError inside a list, ShowqProtocolError before the end."""
        if self.done:
            return
        if self._generic is not None:
            self._generic.eof()
        elif self.buf:
            raise AttrError(f"truncated attribute list: end of stream after {len(self.buf)} "
                            "octets of an unfinished list")
        raise ShowqProtocolError("showq closed the connection early")


# ---------------------------------------------------------------- mailq text

_INDENT = " " * RCPT_INDENT
_INDENT_B = _INDENT.encode()
_STATUS = {name: mark.encode() for name, mark in QUEUE_STATUS.items()}
_NULL_SENDER = NULL_SENDER.encode()


def entry_text(e: QueueEntry, asc: str) -> bytes:
    """entry_text - LF and the mailq block of an entry (MailqFormatter's), UTF-8 bytes."""
    out = [f"\n{e.queue_id + QUEUE_STATUS.get(e.queue_name, ' '):<17} {e.message_size:8d} "
           f"{asc} {e.sender or NULL_SENDER}\n"]
    add = out.append
    last = ""
    for addr, reason in e.recipients:
        if reason and reason != last:
            add(" " * (REASON_END - len(reason)) + f"({reason})\n")
        last = reason
        add(_INDENT + addr + "\n")
    return "".join(out).encode("utf-8", "surrogateescape")


def mailq_trailer(count: int, total_size: int) -> str:
    """mailq_trailer - "-- N Kbytes in M Requests." after a LF, or "Mail queue is empty"."""
    if count == 0:
        return EMPTY
    plural = "" if count == 1 else "s"
    return f"\n-- {total_size // 1024} Kbytes in {count} Request{plural}.\n"
