"""file - write and read Postel queue files

SYNOPSIS
    from postel.queue import QueueFileWriter, QueueFileReader

    w = QueueFileWriter(qd, "incoming")          # w.qid is reserved
    w.write_envelope(Envelope(sender, recipients=[Recipient(rcpt)], attrs=...))
    w.write_content(b"Subject: hi\\r\\n\\r\\nbody\\r\\n")   # any number of chunks
    w.add_recipient(Recipient(...))              # after content: extracted segment
    path = w.commit_sync()                       # or: await committer.commit(w)

    r = QueueFileReader(path)                    # raises QueueFileCorrupt
    r.envelope, r.extracted, r.recipients, r.message_size
    for line in r.iter_lines(): ...              # lines without terminator
    for chunk in r.iter_content(eol=b"\\r\\n"): ...
    r.mark_done(r.recipients[0])                 # R -> D in place (no fsync)
    r.close()

DESCRIPTION
    The record format is described in records.py.

    Writing.  The writer creates "<qid>.tmp" with O_EXCL, mode 0600, in the
    directory where the file will live, and writes the C record with zeros.
    With lazy=True the file is created only when the first 64 KiB are
    written or at finish(), so a small message costs no file system call
    until it is committed (cleanup: the committer's thread then creates,
    writes and publishes it, and the event loop never waits for the disk).
    Records are buffered and written with write(2) in 64 KiB pieces.
    Content is stored line by line like Postfix does: write_content() takes
    raw message bytes with LF or CRLF line ends (chunks may split lines
    anywhere), strips the terminator (LF, and a CR right before it) and
    stores each line as N records (L pieces for lines longer than
    line_length_limit).  A bare CR inside a line is kept.  A last line
    without terminator is stored as a complete line, so reading gives it a
    terminator; all other bytes come back unchanged.

    Committing.  finish() completes the file (X and E records, the final C
    record rewritten at offset 0).  commit_sync() then does, in this order:
    fsync(file), rename(temp, final), fsync(directory).  Only when it
    returns is the message safe, and only then may a server answer 250.
    The Committer (commit.py) does the same for many files at once.

    Errors.  ENOSPC or EDQUOT from any write, fsync or rename removes the
    temporary file and raises QueueFull.  Other OSErrors also remove the
    file and propagate.  Calling methods out of order is a programming
    error (RuntimeError); bad arguments raise ValueError.

    Fault injection.  When the environment variable
    POSTEL_FAULT_ENOSPC_AFTER=N is set when this module is imported (or a
    test calls set_fault_enospc_after(N)), the process' queue file writes
    fail with ENOSPC once N bytes in total have been written.

    Reading.  The reader checks the C record against the file size, parses
    and checks the envelope and extracted segments (structure, limits,
    CRC) and the start of the content segment.  The content is checked
    (CRC first, then structure) when iter_lines()/iter_content() reads it.
    Any inconsistency raises QueueFileCorrupt(path, offset, reason) and
    nothing else.  The reader keeps the file open (read-write when
    permitted) for mark_done() and set_warn_time().
"""

from __future__ import annotations

import errno
import os
import re
import time
import zlib
from collections.abc import Iterable, Iterator

from postel.queue import records as rec
from postel.queue.envelope import Envelope, Extracted, Recipient
from postel.queue.errors import QueueFileCorrupt, QueueFull
from postel.queue.qdir import TEMP_SUFFIX, QueueDir
from postel.queue.qid import new_qid

FAULT_ENV = "POSTEL_FAULT_ENOSPC_AFTER"
FLUSH_SIZE = 1 << 16
LINE_LENGTH_LIMIT = 2048          # longer content lines become L pieces
_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_N = rec.REC_TYPE_NORM
_NORM_HEAD = [bytes((_N, n)) for n in range(128)]       # N record type and length < 128
_L = rec.REC_TYPE_CONT
_WARN_ZERO = b"0" * rec.WARN_WIDTH
_SIZE_ZERO = rec.encode(rec.REC_TYPE_SIZE, rec.format_size(0, 0, 0, 0, 0, 0, 0))
_R = bytes((rec.REC_TYPE_RCPT,))
_TIME_RE = re.compile(rb"(\d{1,12})\.(\d{6})\Z")
_INT_RE = re.compile(rb"\d{1,3}\Z")
_WARN_RE = re.compile(rb"\d{12}\Z")


class _Fault:
    budget: int | None = None


_fault = _Fault()


def set_fault_enospc_after(nbytes: int | None) -> None:
    """set_fault_enospc_after - fail queue writes with ENOSPC after nbytes (None: never)."""
    _fault.budget = nbytes


def _init_fault_from_env() -> None:
    """_init_fault_from_env - read POSTEL_FAULT_ENOSPC_AFTER."""
    value = os.environ.get(FAULT_ENV)
    if value is not None:
        try:
            _fault.budget = max(0, int(value))
        except ValueError:
            _fault.budget = None


_init_fault_from_env()


def _charge(nbytes: int) -> int:
    """_charge - how many of nbytes the fault budget allows (all when no fault is set)."""
    if _fault.budget is None:
        return nbytes
    allowed = min(nbytes, _fault.budget)
    _fault.budget -= allowed
    return allowed


def _enospc() -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _write_all(fd: int, data: bytes | bytearray) -> None:
    """_write_all - write(2) all of data, honouring the fault hook."""
    view = memoryview(data)
    allowed = _charge(len(view))
    while allowed:
        n = os.write(fd, view[:allowed])
        view = view[n:]
        allowed -= n
    if len(view):
        raise _enospc()


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    """_pwrite_all - pwrite(2) all of data at offset, honouring the fault hook."""
    if _charge(len(data)) < len(data):
        raise _enospc()
    view = memoryview(data)
    while len(view):
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n


def _put(parts: list[bytes], rec_type: int, payload: bytes) -> int:
    """_put - append one encoded record to parts; returns its length."""
    n = len(payload)
    record = bytes((rec_type, n)) + payload if n < 128 else rec.encode(rec_type, payload)
    parts.append(record)
    return len(record)


def fsync_dir(path: str) -> None:
    """fsync_dir - make a directory's entries (a rename) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# Writer states.
_NEW, _ENVELOPE, _CONTENT, _EXTRACTED, _FINISHED, _SYNCED, _DONE, _ABORTED = range(8)


class QueueFileWriter:
    """Writes one new queue file under a temporary name; commit makes it visible."""

    def __init__(self, qd: QueueDir, queue_name: str = "incoming", *, qid: str | None = None,
                 line_length_limit: int = LINE_LENGTH_LIMIT, mode: int = 0o600,
                 lazy: bool = False) -> None:
        self.qd = qd
        self.queue_name = queue_name
        self.qid = qid = qid or new_qid()
        self.dir_path = dir_path = qd.dir_path(queue_name, qid)
        self.path = path = f"{dir_path}/{qid}"
        self.temp_path = path + TEMP_SUFFIX
        self.line_length_limit = max(1, line_length_limit)
        self._state = _NEW
        self._fd = -1
        self._buf = bytearray()
        self._offset = 0                 # file offset of the end of _buf
        self._crc_mark = 0               # start of not yet CRC'ed content in _buf
        self._meta_crc = 0
        self._content_crc = 0
        self._content_offset = 0
        self._extracted_offset = 0
        self._rcpt_count = 0
        self._attr_count = 0
        self._pending = b""              # incomplete last line of write_content
        self._old_size = 0               # size of a recycled file before it was reused
        self.message_size = 0
        if not lazy:
            self._open()
        self._buf += _SIZE_ZERO
        self._offset = len(_SIZE_ZERO)

    def _open(self) -> None:
        """_open - create the temporary file (and a missing hashed subdirectory).

        With a recycler on the queue directory (recycle.py), a kept file of a
        delivered message is renamed into place instead, when there is one."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        try:
            owner = self.qd.root_owner_fix(self.queue_name)
            recycler = self.qd.recycler
            if recycler is not None and self.queue_name != "maildrop":
                fd, self._old_size = recycler.take(self.temp_path,
                                                   owner[0] if owner is not None else None)
                if fd >= 0:
                    self._fd = fd
                    return
            try:
                self._fd = os.open(self.temp_path, flags, 0o600)
            except FileNotFoundError:
                self.qd.ensure_dir(self.queue_name, self.qid)
                self._fd = os.open(self.temp_path, flags, 0o600)
            if owner is not None:
                os.fchown(self._fd, *owner)
        except OSError as exc:
            self._state = _ABORTED
            if exc.errno in _SPACE_ERRNOS:
                raise QueueFull(self.temp_path, exc.errno, f"create: {exc.strerror}") from exc
            raise

    # -- context manager: an exception aborts an uncommitted file -------------

    def __enter__(self) -> QueueFileWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._state not in (_DONE, _ABORTED) and exc_type is not None:
            self.abort()

    # -- low level --------------------------------------------------------------

    def _require(self, *states: int) -> None:
        """_require - a call in the wrong state is a programming error."""
        if self._state not in states:
            raise RuntimeError(f"{self.qid}: queue file writer call out of order (state {self._state})")

    def _io_error(self, exc: OSError, what: str) -> None:
        """_io_error - remove the file and raise QueueFull or the original error."""
        self.abort()
        if exc.errno in _SPACE_ERRNOS:
            raise QueueFull(self.temp_path, exc.errno, f"{what}: {exc.strerror}") from exc
        raise exc

    def _flush(self) -> None:
        """_flush - write the buffer (CRC'ing pending content first)."""
        if self._state == _CONTENT:
            self._content_crc = zlib.crc32(memoryview(self._buf)[self._crc_mark:], self._content_crc)
        self._crc_mark = 0
        if self._fd < 0:
            self._open()
        try:
            _write_all(self._fd, self._buf)
        except OSError as exc:
            self._io_error(exc, "write")
        self._buf.clear()

    def _meta(self, rec_type: int, payload: bytes) -> int:
        """_meta - append an envelope/extracted record; returns its file offset."""
        record = rec.encode(rec_type, payload)
        offset = self._offset
        self._buf += record
        self._offset += len(record)
        # The CRC sees mutable bytes in normalised form (see records.py).
        if rec_type in rec.RCPT_TYPES:
            record = bytes((rec.REC_TYPE_RCPT,)) + record[1:]
        elif rec_type == rec.REC_TYPE_WARN:
            record = record[:-rec.WARN_WIDTH] + _WARN_ZERO
        self._meta_crc = zlib.crc32(record, self._meta_crc)
        if len(self._buf) >= FLUSH_SIZE:
            self._flush()
        return offset

    def _put_meta(self, parts: list[bytes], normal: dict[int, bytes]) -> None:
        """_put_meta - append encoded envelope/extracted records in one piece.

        normal maps an index in parts to the form the CRC sees (see _meta)."""
        blob = b"".join(parts)
        self._buf += blob
        self._offset += len(blob)
        if normal:
            parts = list(parts)
            for i, record in normal.items():
                parts[i] = record
            blob = b"".join(parts)
        self._meta_crc = zlib.crc32(blob, self._meta_crc)
        if len(self._buf) >= FLUSH_SIZE:
            self._flush()

    def _rcpt_parts(self, rcpt: Recipient, parts: list[bytes], normal: dict[int, bytes],
                    pos: int) -> int:
        """_rcpt_parts - encode one recipient group (modifiers, then R or D) at file offset
        pos into parts; returns the offset after it."""
        if not isinstance(rcpt.address, str):
            raise ValueError(f"recipient address must be str: {rcpt.address!r}")
        if self._rcpt_count >= rec.RCPT_LIMIT:
            raise ValueError(f"more than {rec.RCPT_LIMIT} recipients")
        if not 0 <= rcpt.dsn_notify <= 15:
            raise ValueError(f"bad DSN NOTIFY mask: {rcpt.dsn_notify}")
        if rcpt.orig_rcpt:
            pos += _put(parts, rec.REC_TYPE_ORCP, rcpt.orig_rcpt.encode("utf-8", "surrogateescape"))
        if rcpt.dsn_orcpt:
            pos += _put(parts, rec.REC_TYPE_DSN_ORCPT,
                        rcpt.dsn_orcpt.encode("utf-8", "surrogateescape"))
        if rcpt.dsn_notify:
            pos += _put(parts, rec.REC_TYPE_DSN_NOTIFY, str(rcpt.dsn_notify).encode())
        rcpt.offset = pos
        if rcpt.done:
            pos += _put(parts, rec.REC_TYPE_DONE, rcpt.address.encode("utf-8", "surrogateescape"))
            normal[len(parts) - 1] = _R + parts[-1][1:]
        else:
            pos += _put(parts, rec.REC_TYPE_RCPT, rcpt.address.encode("utf-8", "surrogateescape"))
        self._rcpt_count += 1
        return pos

    def _rcpt(self, rcpt: Recipient) -> None:
        """_rcpt - append one recipient group (modifiers, then R or D)."""
        parts: list[bytes] = []
        normal: dict[int, bytes] = {}
        self._rcpt_parts(rcpt, parts, normal, self._offset)
        self._put_meta(parts, normal)

    def _attr_part(self, name: str, value: str, parts: list[bytes]) -> int:
        """_attr_part - encode one named attribute into parts; returns its length."""
        if not name or "=" in name:
            raise ValueError(f"bad attribute name: {name!r}")
        if self._attr_count >= rec.ATTR_COUNT_LIMIT:
            raise ValueError(f"more than {rec.ATTR_COUNT_LIMIT} attributes")
        self._attr_count += 1
        return _put(parts, rec.REC_TYPE_ATTR, f"{name}={value}".encode("utf-8", "surrogateescape"))

    def _attr(self, name: str, value: str) -> None:
        """_attr - append one named attribute."""
        parts: list[bytes] = []
        self._attr_part(name, value, parts)
        self._put_meta(parts, {})

    def _line(self, line: bytes) -> None:
        """_line - append one content line as N (or L... N) records."""
        buf = self._buf
        n = len(line)
        self.message_size += n + 1
        limit = self.line_length_limit
        while n > limit:
            buf.append(_L)
            buf += rec.encode_length(limit)
            buf += line[:limit]
            line = line[limit:]
            n -= limit
            self._offset += 1 + len(rec.encode_length(limit)) + limit
        if n < 128:
            buf.append(_N)
            buf.append(n)
            buf += line
            self._offset += 2 + n
        else:
            length = rec.encode_length(n)
            buf.append(_N)
            buf += length
            buf += line
            self._offset += 1 + len(length) + n
        if len(buf) >= FLUSH_SIZE:
            self._flush()

    def _start_content(self) -> None:
        """_start_content - end the envelope, begin the content segment."""
        self._content_offset = self._offset
        self._state = _CONTENT
        self._crc_mark = len(self._buf)
        self._buf += rec.encode(rec.REC_TYPE_MESG, b"")
        self._offset += 2

    def _start_extracted(self) -> None:
        """_start_extracted - end the content, begin the extracted segment."""
        if self._state == _ENVELOPE:
            self._start_content()
        if self._pending:
            pending, self._pending = self._pending, b""
            self._line(pending[:-1] if pending.endswith(b"\r") else pending)
        self._content_crc = zlib.crc32(memoryview(self._buf)[self._crc_mark:], self._content_crc)
        self._crc_mark = 0
        self._state = _EXTRACTED
        self._extracted_offset = self._offset
        self._meta(rec.REC_TYPE_XTRA, b"")

    # -- public -------------------------------------------------------------------

    def write_envelope(self, env: Envelope) -> None:
        """write_envelope - the envelope segment: time, sender, attributes, recipients."""
        self._require(_NEW)
        if not isinstance(env.sender, str):
            raise ValueError(f"sender must be str: {env.sender!r}")
        if env.dsn_ret not in (0, rec.DSN_RET_FULL, rec.DSN_RET_HDRS):
            raise ValueError(f"bad DSN RET value: {env.dsn_ret}")
        self._state = _ENVELOPE
        arrival = env.time if env.time > 0 else time.time()
        usec_total = int(round(arrival * 1_000_000))
        sec, usec = divmod(usec_total, 1_000_000)
        # The whole segment is encoded into parts and appended (and CRC'ed) at once.
        parts: list[bytes] = []
        normal: dict[int, bytes] = {}
        pos = self._offset
        pos += _put(parts, rec.REC_TYPE_TIME, f"{sec}.{usec:06d}".encode())
        if env.full_name:
            pos += _put(parts, rec.REC_TYPE_FULL, rec.text(env.full_name))
        if env.warn_time:
            self._warn_offset = pos
            pos += _put(parts, rec.REC_TYPE_WARN, f"{int(env.warn_time):012d}".encode())
            normal[len(parts) - 1] = parts[-1][:-rec.WARN_WIDTH] + _WARN_ZERO
        pos += _put(parts, rec.REC_TYPE_FROM, rec.text(env.sender))
        if env.content_filter:
            pos += _put(parts, rec.REC_TYPE_FILT, rec.text(env.content_filter))
        if env.dsn_envid:
            pos += _put(parts, rec.REC_TYPE_DSN_ENVID, rec.text(env.dsn_envid))
        if env.dsn_ret:
            pos += _put(parts, rec.REC_TYPE_DSN_RET, str(env.dsn_ret).encode())
        # Named attributes inline (as _attr_part, without a call per attribute).
        count = self._attr_count
        attr_type = rec.REC_TYPE_ATTR
        for name, value in env.attrs.items():
            if not name or "=" in name:
                self._attr_count = count
                raise ValueError(f"bad attribute name: {name!r}")
            if count >= rec.ATTR_COUNT_LIMIT:
                self._attr_count = count
                raise ValueError(f"more than {rec.ATTR_COUNT_LIMIT} attributes")
            count += 1
            payload = f"{name}={value}".encode("utf-8", "surrogateescape")
            n = len(payload)
            record = bytes((attr_type, n)) + payload if n < 128 else rec.encode(attr_type, payload)
            parts.append(record)
            pos += len(record)
        self._attr_count = count
        for rcpt in env.recipients:
            pos = self._rcpt_parts(rcpt, parts, normal, pos)
        self._put_meta(parts, normal)

    def add_recipient(self, rcpt: Recipient) -> None:
        """add_recipient - one more recipient (extracted segment once content began)."""
        self._require(_ENVELOPE, _CONTENT, _EXTRACTED)
        if self._state == _CONTENT:
            self._start_extracted()
        self._rcpt(rcpt)

    def add_attr(self, name: str, value: str) -> None:
        """add_attr - one more named attribute (extracted segment once content began)."""
        self._require(_ENVELOPE, _CONTENT, _EXTRACTED)
        if self._state == _CONTENT:
            self._start_extracted()
        self._attr(name, value)

    def write_extracted(self, recipients: Iterable[Recipient] = (),
                        attrs: dict[str, str] | None = None) -> None:
        """write_extracted - information learned from the content (cleanup -t)."""
        self._require(_ENVELOPE, _CONTENT, _EXTRACTED)
        if self._state != _EXTRACTED:
            self._start_extracted()
        for name, value in (attrs or {}).items():
            self._attr(name, value)
        for rcpt in recipients:
            self._rcpt(rcpt)

    def write_content(self, chunk: bytes) -> None:
        """write_content - message bytes (header and body, LF or CRLF line ends)."""
        self._require(_ENVELOPE, _CONTENT)
        if self._state == _ENVELOPE:
            self._start_content()
        if not chunk:
            return
        data = self._pending + chunk if self._pending else bytes(chunk)
        lines = data.split(b"\n")
        self._pending = lines.pop()
        self._put_lines(lines, strip_cr=True)

    def write_line(self, line: bytes) -> None:
        """write_line - one complete content line, without its terminator."""
        self._require(_ENVELOPE, _CONTENT)
        if self._state == _ENVELOPE:
            self._start_content()
        if self._pending:
            raise RuntimeError(f"{self.qid}: write_line after an unfinished write_content line")
        self._line(bytes(line))

    def write_lines(self, lines: list[bytes]) -> None:
        """write_lines - complete content lines, without terminators (write_line in bulk)."""
        self._require(_ENVELOPE, _CONTENT)
        if self._state == _ENVELOPE:
            self._start_content()
        if self._pending:
            raise RuntimeError(f"{self.qid}: write_lines after an unfinished write_content line")
        self._put_lines(lines, strip_cr=False)

    def _put_lines(self, lines: Iterable[bytes], strip_cr: bool) -> None:
        """_put_lines - N records for complete lines; short ones (the common case) inline."""
        short = min(127, self.line_length_limit)
        if not strip_cr and type(lines) is list and lines:
            lens = list(map(len, lines))
            if max(lens) <= short:
                # All short (a body of text): one join of record heads and lines.
                parts = [b""] * (2 * len(lens))
                parts[::2] = map(_NORM_HEAD.__getitem__, lens)
                parts[1::2] = lines
                recs = b"".join(parts)
                self._buf += recs
                self._offset += len(recs)
                self.message_size += len(recs) - len(lens)
                if len(self._buf) >= FLUSH_SIZE:
                    self._flush()
                return
        count = nbytes = 0               # short lines not yet in _offset/message_size
        for line in lines:
            if strip_cr and line[-1:] == b"\r":
                line = line[:-1]
            n = len(line)
            if n <= short:
                buf = self._buf          # _line() may flush; re-read the buffer
                buf.append(_N)
                buf.append(n)
                buf += line
                count += 1
                nbytes += n
            else:
                self._offset += 2 * count + nbytes
                self.message_size += count + nbytes
                count = nbytes = 0
                self._line(bytes(line))
        self._offset += 2 * count + nbytes
        self.message_size += count + nbytes
        if len(self._buf) >= FLUSH_SIZE:
            self._flush()

    def finish(self) -> None:
        """finish - complete the file (end record, final size record); no fsync yet."""
        if self._state == _FINISHED:
            return
        self._require(_ENVELOPE, _CONTENT, _EXTRACTED)
        if self._state != _EXTRACTED:
            self._start_extracted()
        self._meta(rec.REC_TYPE_END, b"")
        size = rec.format_size(self.message_size, self._content_offset, self._extracted_offset,
                               self._offset, self._rcpt_count, self._meta_crc, self._content_crc)
        if self._fd < 0:
            # Nothing written yet (a lazy writer's small file): the final size
            # record goes in place in the buffer, and one write(2) does it all.
            self._buf[:rec.SIZE_RECORD_LEN] = rec.encode(rec.REC_TYPE_SIZE, size)
            self._flush()
        else:
            self._flush()
            try:
                _pwrite_all(self._fd, rec.encode(rec.REC_TYPE_SIZE, size), 0)
            except OSError as exc:
                self._io_error(exc, "write")
        if self._old_size > self._offset:
            # A recycled file was longer: cut the old tail (before the fsync).
            try:
                os.ftruncate(self._fd, self._offset)
            except OSError as exc:
                self._io_error(exc, "truncate")
        self._state = _FINISHED

    def sync_file(self, *, fsync: bool = True) -> None:
        """sync_file - fsync and close the finished temporary file.

        fsync=False only closes it: for a caller that makes the file durable
        by other means before publish() (the committer's syncfs method)."""
        self._require(_FINISHED)
        if fsync:
            try:
                os.fsync(self._fd)
            except OSError as exc:
                self._io_error(exc, "fsync")
        os.close(self._fd)
        self._fd = -1
        self._state = _SYNCED

    def publish(self) -> str:
        """publish - rename the synced file to its final name (dir fsync is the caller's)."""
        self._require(_SYNCED)
        try:
            os.rename(self.temp_path, self.path)
        except OSError as exc:
            self._io_error(exc, "rename")
        self._state = _DONE
        return self.path

    def commit_sync(self) -> str:
        """commit_sync - finish, fsync, rename, fsync the directory; returns the path."""
        self.finish()
        self.sync_file()
        path = self.publish()
        try:
            fsync_dir(self.dir_path)
        except OSError as exc:
            self.unpublish()
            if exc.errno in _SPACE_ERRNOS:
                raise QueueFull(self.path, exc.errno, f"fsync: {exc.strerror}") from exc
            raise
        return path

    def unpublish(self) -> None:
        """unpublish - remove a renamed file whose directory fsync failed."""
        try:
            os.unlink(self.path)
        except OSError:
            pass
        self._state = _ABORTED

    def abort(self) -> None:
        """abort - close and remove the temporary file (no-op once committed)."""
        if self._state in (_DONE, _ABORTED):
            return
        self._state = _ABORTED
        if self._fd >= 0:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = -1
        try:
            os.unlink(self.temp_path)
        except OSError:
            pass

    @property
    def committed(self) -> bool:
        """committed - True once the file is under its final name."""
        return self._state == _DONE

    def __del__(self) -> None:
        if getattr(self, "_fd", -1) >= 0:
            try:
                os.close(self._fd)
            except OSError:
                pass


def iter_raw_records(data: bytes, base: int = 0, path: str = "") -> Iterator[tuple[int, int, bytes]]:
    """iter_raw_records - (offset, type, payload) of each record; no semantic checks.

    For postcat: raises QueueFileCorrupt only where the framing itself breaks."""
    pos = 0
    end = len(data)
    while pos < end:
        rec_type = data[pos]
        try:
            length, start = rec.decode_length(data, pos + 1)
        except ValueError as exc:
            raise QueueFileCorrupt(path, base + pos, str(exc)) from None
        if start + length > end:
            raise QueueFileCorrupt(path, base + pos, "record extends past end of data")
        yield base + pos, rec_type, data[start:start + length]
        pos = start + length


# QueueFileReader reads a file up to this size with one pread.
_WHOLE_READ = 65536
_MESG_HEAD = bytes((rec.REC_TYPE_MESG, 0))


class QueueFileReader:
    """Reads and checks one complete queue file; marks recipients done."""

    def __init__(self, path: str, *, max_recipients: int = rec.RCPT_LIMIT,
                 max_attrs: int = rec.ATTR_COUNT_LIMIT, writable: bool = True) -> None:
        self.path = path
        self.qid = os.path.basename(path)
        self.max_recipients = max_recipients
        self.max_attrs = max_attrs
        self._fd = -1
        self._writable = False
        if writable:
            try:
                self._fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
                self._writable = True
            except PermissionError:
                pass
        if self._fd < 0:
            self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self.envelope = Envelope(sender="")
        self.extracted = Extracted()
        self.recipients: list[Recipient] = []
        self.warn_offset = -1
        self._by_offset: dict[int, Recipient] | None = None
        self._whole: bytes | None = None    # the whole file when small (one pread)
        try:
            self._load()
        except QueueFileCorrupt:
            self.close()
            raise
        except OSError:
            self.close()
            raise
        except Exception as exc:  # a bug in a check must still report corruption
            self.close()
            raise QueueFileCorrupt(path, 0, f"unexpected error: {exc!r}") from exc

    def __enter__(self) -> QueueFileReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """close - release the file descriptor."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def fileno(self) -> int:
        """fileno - the open descriptor (a delivery agent flocks it)."""
        return self._fd

    def __del__(self) -> None:
        self.close()

    def _corrupt(self, offset: int, reason: str) -> QueueFileCorrupt:
        return QueueFileCorrupt(self.path, offset, reason)

    def _pread(self, length: int, offset: int) -> bytes:
        """_pread - exactly length bytes at offset (short read: corrupt)."""
        chunks = []
        got = 0
        while got < length:
            data = os.pread(self._fd, length - got, offset + got)
            if not data:
                raise self._corrupt(offset + got, "unexpected end of file")
            chunks.append(data)
            got += len(data)
        return b"".join(chunks)

    def _load(self) -> None:
        """_load - check the size record and parse envelope and extracted segments."""
        file_size = os.fstat(self._fd).st_size
        if file_size < rec.SIZE_RECORD_LEN:
            raise self._corrupt(file_size, f"file too short ({file_size} bytes) for a size record")
        # A small file is read with one pread (slices below); a short read
        # (truncated meanwhile) takes the record-by-record path and its errors.
        whole = None
        if file_size <= _WHOLE_READ:
            whole = os.pread(self._fd, file_size, 0)
            if len(whole) != file_size:
                whole = None
        self._whole = whole
        head = self._pread(rec.SIZE_RECORD_LEN, 0) if whole is None \
            else whole[:rec.SIZE_RECORD_LEN]
        if head[0] != rec.REC_TYPE_SIZE:
            raise self._corrupt(0, "first record is not a size record")
        try:
            length, start = rec.decode_length(head, 1)
            if length != rec.SIZE_PAYLOAD_LEN or start + length != rec.SIZE_RECORD_LEN:
                raise ValueError("size record has the wrong length")
            (self.message_size, content_off, extracted_off, end_off, rcpt_count,
             meta_crc, self._content_crc) = rec.parse_size(head[start:])
        except ValueError as exc:
            raise self._corrupt(0, str(exc)) from None
        if end_off == 0:
            raise self._corrupt(0, "incomplete queue file (size record not final)")
        if end_off != file_size:
            raise self._corrupt(min(end_off, file_size),
                                f"file size {file_size} differs from size record {end_off}")
        if not rec.SIZE_RECORD_LEN <= content_off < extracted_off < end_off:
            raise self._corrupt(0, "inconsistent segment offsets in size record")
        self.content_offset = content_off
        self.extracted_offset = extracted_off
        self.end_offset = end_off
        if whole is None:
            mesg = self._pread(2, content_off)
        else:
            mesg = whole[content_off:content_off + 2]
        if mesg != _MESG_HEAD:
            raise self._corrupt(content_off, "content segment does not start with a content record")
        if whole is None:
            envelope = self._pread(content_off - rec.SIZE_RECORD_LEN, rec.SIZE_RECORD_LEN)
            extracted = self._pread(end_off - extracted_off, extracted_off)
        else:
            envelope = whole[rec.SIZE_RECORD_LEN:content_off]
            extracted = whole[extracted_off:end_off]
        crc = self._parse_envelope(envelope, rec.SIZE_RECORD_LEN)
        crc = self._parse_extracted(extracted, extracted_off, crc)
        if crc != meta_crc:
            raise self._corrupt(0, "envelope checksum mismatch")
        if len(self.recipients) != rcpt_count:
            raise self._corrupt(0, f"recipient count {len(self.recipients)} differs from "
                                   f"size record {rcpt_count}")

    def _records(self, data: bytes, base: int) -> Iterator[tuple[int, int, bytes]]:
        """_records - framing with the reader's path in errors (as iter_raw_records)."""
        pos, end = 0, len(data)
        while pos < end:
            # One length byte (under 128) is the common case; decode_length
            # does the rest and the checks of bad encodings.
            if pos + 1 < end and data[pos + 1] < 0x80:
                length, start = data[pos + 1], pos + 2
            else:
                try:
                    length, start = rec.decode_length(data, pos + 1)
                except ValueError as exc:
                    raise QueueFileCorrupt(self.path, base + pos, str(exc)) from None
            nxt = start + length
            if nxt > end:
                raise QueueFileCorrupt(self.path, base + pos, "record extends past end of data")
            yield base + pos, data[pos], data[start:nxt]
            pos = nxt

    def _normalised_crc(self, data: bytes, base: int, mutable: list[tuple[int, int]],
                        crc: int) -> int:
        """_normalised_crc - CRC of a segment with R/D bytes and W payloads normalised."""
        if not mutable:
            return zlib.crc32(data, crc)
        buf = bytearray(data)
        for offset, width in mutable:
            pos = offset - base
            buf[pos:pos + width] = b"R" if width == 1 else _WARN_ZERO
        return zlib.crc32(buf, crc)

    def _parse_envelope(self, data: bytes, base: int) -> int:
        """_parse_envelope - the envelope segment; returns the running CRC."""
        env = self.envelope
        seen: set[int] = set()
        mutable: list[tuple[int, int]] = []
        pending = Recipient("")
        have_pending = False
        for offset, rec_type, payload in self._records(data, base):
            if rec_type in rec.ENVELOPE_ONCE:
                if rec_type in seen:
                    raise self._corrupt(offset, f"duplicate {rec.type_name(rec_type)} record")
                seen.add(rec_type)
            if rec_type == rec.REC_TYPE_TIME:
                m = _TIME_RE.match(payload)
                if m is None:
                    raise self._corrupt(offset, "malformed arrival time")
                env.time = int(m.group(1)) + int(m.group(2)) / 1_000_000
            elif rec_type == rec.REC_TYPE_FULL:
                env.full_name = rec.untext(payload)
            elif rec_type == rec.REC_TYPE_WARN:
                if _WARN_RE.match(payload) is None:
                    raise self._corrupt(offset, "malformed delay warning time")
                env.warn_time = int(payload)
                self.warn_offset = offset + 2  # after type byte and 1-byte length
                mutable.append((self.warn_offset, rec.WARN_WIDTH))
            elif rec_type == rec.REC_TYPE_FROM:
                env.sender = rec.untext(payload)
            elif rec_type == rec.REC_TYPE_FILT:
                env.content_filter = rec.untext(payload)
            elif rec_type == rec.REC_TYPE_DSN_ENVID:
                env.dsn_envid = rec.untext(payload)
            elif rec_type == rec.REC_TYPE_DSN_RET:
                env.dsn_ret = self._small_int(offset, payload, (0, 1, 2))
            else:
                have_pending = self._common(offset, rec_type, payload, pending, have_pending,
                                            mutable, env.attrs, env.recipients)
                if rec_type in rec.RCPT_TYPES:
                    pending = Recipient("")
                continue
            if have_pending:
                raise self._corrupt(offset, "recipient modifier not followed by a recipient")
        if have_pending:
            raise self._corrupt(base + len(data), "recipient modifier at end of envelope")
        if rec.REC_TYPE_TIME not in seen:
            raise self._corrupt(base, "missing arrival time record")
        if rec.REC_TYPE_FROM not in seen:
            raise self._corrupt(base, "missing sender record")
        return self._normalised_crc(data, base, mutable, 0)

    def _parse_extracted(self, data: bytes, base: int, crc: int) -> int:
        """_parse_extracted - the extracted segment and end record; returns the CRC."""
        mutable: list[tuple[int, int]] = []
        pending = Recipient("")
        have_pending = False
        first = True
        ended = False
        for offset, rec_type, payload in self._records(data, base):
            if ended:
                raise self._corrupt(offset, "data after end record")
            if first:
                if rec_type != rec.REC_TYPE_XTRA or payload:
                    raise self._corrupt(offset, "extracted segment does not start with X record")
                first = False
                continue
            if rec_type == rec.REC_TYPE_END:
                if payload or have_pending:
                    raise self._corrupt(offset, "malformed end of file")
                ended = True
                continue
            if rec_type in (rec.REC_TYPE_XTRA, rec.REC_TYPE_MESG) or rec_type in rec.ENVELOPE_ONCE:
                raise self._corrupt(offset, f"{rec.type_name(rec_type)} record in extracted segment")
            have_pending = self._common(offset, rec_type, payload, pending, have_pending,
                                        mutable, self.extracted.attrs, self.extracted.recipients)
            if rec_type in rec.RCPT_TYPES:
                pending = Recipient("")
        if not ended:
            raise self._corrupt(base + len(data), "missing end record")
        return self._normalised_crc(data, base, mutable, crc)

    def _common(self, offset: int, rec_type: int, payload: bytes, pending: Recipient,
                have_pending: bool, mutable: list[tuple[int, int]], attrs: dict[str, str],
                rcpts: list[Recipient]) -> bool:
        """_common - records allowed in envelope and extracted segments."""
        if rec_type in rec.RCPT_TYPES:
            if len(self.recipients) >= self.max_recipients:
                raise self._corrupt(offset, f"more than {self.max_recipients} recipients")
            pending.address = rec.untext(payload)
            pending.done = rec_type == rec.REC_TYPE_DONE
            pending.offset = offset
            rcpts.append(pending)
            self.recipients.append(pending)
            mutable.append((offset, 1))
            return False
        if rec_type == rec.REC_TYPE_ORCP:
            pending.orig_rcpt = self._once(offset, pending.orig_rcpt, payload)
        elif rec_type == rec.REC_TYPE_DSN_ORCPT:
            pending.dsn_orcpt = self._once(offset, pending.dsn_orcpt, payload)
        elif rec_type == rec.REC_TYPE_DSN_NOTIFY:
            if pending.dsn_notify:
                raise self._corrupt(offset, "duplicate DSN notify record")
            pending.dsn_notify = self._small_int(offset, payload, range(1, 16))
        elif rec_type == rec.REC_TYPE_ATTR:
            if have_pending:
                raise self._corrupt(offset, "recipient modifier not followed by a recipient")
            name, sep, value = rec.untext(payload).partition("=")
            if not sep or not name:
                raise self._corrupt(offset, "malformed named attribute")
            if len(attrs) >= self.max_attrs and name not in attrs:
                raise self._corrupt(offset, f"more than {self.max_attrs} named attributes")
            attrs[name] = value
            return False
        elif rec_type in rec.KNOWN_TYPES or not rec.is_printable(rec_type):
            raise self._corrupt(offset, f"{rec.type_name(rec_type)} record out of place")
        else:
            return have_pending  # unknown printable type: skipped
        return True

    def _once(self, offset: int, current: str, payload: bytes) -> str:
        """_once - a recipient modifier value, which may appear only once."""
        if current:
            raise self._corrupt(offset, "duplicate recipient modifier")
        value = rec.untext(payload)
        if not value:
            raise self._corrupt(offset, "empty recipient modifier")
        return value

    def _small_int(self, offset: int, payload: bytes, allowed) -> int:
        """_small_int - a small decimal record value from an allowed set."""
        if _INT_RE.match(payload) is None or int(payload) not in allowed:
            raise self._corrupt(offset, f"bad numeric value {payload[:16]!r}")
        return int(payload)

    # -- content -------------------------------------------------------------------

    def iter_lines(self) -> Iterator[bytes]:
        """iter_lines - each content line without terminator (checked first)."""
        yield from self._content_lines()

    def _content_lines(self) -> list[bytes]:
        """_content_lines - all content lines, CRC, framing and size checked."""
        start = self.content_offset
        whole = self._whole                 # the content segment never changes
        if whole is not None:
            data = whole[start:self.extracted_offset]
        else:
            data = self._pread(self.extracted_offset - start, start)
        if zlib.crc32(data) != self._content_crc:
            raise self._corrupt(start, "content checksum mismatch")
        lines: list[bytes] = []
        parts: list[bytes] = []
        pos, end, first = 0, len(data), True
        while pos < end:
            rec_type = data[pos]
            # One length byte (under 128) is the common case; decode_length
            # does the rest and the checks of bad encodings.
            if pos + 1 < end and data[pos + 1] < 0x80:
                length, at = data[pos + 1], pos + 2
            else:
                try:
                    length, at = rec.decode_length(data, pos + 1)
                except ValueError as exc:
                    raise QueueFileCorrupt(self.path, start + pos, str(exc)) from None
            nxt = at + length
            if nxt > end:
                raise QueueFileCorrupt(self.path, start + pos, "record extends past end of data")
            if first:
                first = False            # the M record, checked at open
            elif rec_type == _N:
                if parts:
                    parts.append(data[at:nxt])
                    lines.append(b"".join(parts))
                    parts = []
                else:
                    lines.append(data[at:nxt])
            elif rec_type == _L:
                parts.append(data[at:nxt])
            else:
                raise self._corrupt(start + pos, f"{rec.type_name(rec_type)} record in content")
            pos = nxt
        if parts:
            raise self._corrupt(self.extracted_offset, "partial line at end of content")
        size = sum(map(len, lines)) + len(lines)
        if size != self.message_size:
            raise self._corrupt(0, f"content size {size} differs from size record "
                                   f"{self.message_size}")
        return lines

    def iter_content(self, eol: bytes = b"\n", chunk_size: int = FLUSH_SIZE) -> Iterator[bytes]:
        """iter_content - the message as byte chunks of whole lines, each ending in eol."""
        lines = self._content_lines()
        if not lines:
            return
        lines.append(b"")
        whole = eol.join(lines)
        del lines
        # Each chunk ends with the line that brings it to chunk_size or more.
        pos, end, last = 0, len(whole), eol[-1:] or b"\n"
        while pos < end:
            j = whole.find(last, pos + max(chunk_size, 1) - 1)
            cut = end if j < 0 else j + 1
            yield whole[pos:cut]
            pos = cut

    def read_content(self, eol: bytes = b"\n") -> bytes:
        """read_content - the whole message as bytes (small messages, tests)."""
        return b"".join(self.iter_content(eol))

    # -- in-place updates ------------------------------------------------------------

    def mark_done(self, rcpt: Recipient | int, *, sync: bool = False) -> None:
        """mark_done - rewrite a recipient's R to D in place (fsync only when sync).

        As Postfix's deliver_completed(): the byte is written, not synced.  A
        system crash may lose it, and the recipient is then delivered again
        (a duplicate, never a loss); the delivery itself (mailbox fsync, the
        remote 250) has happened before."""
        offset = rcpt.offset if isinstance(rcpt, Recipient) else rcpt
        if self._by_offset is None:
            self._by_offset = {r.offset: r for r in self.recipients}
        target = self._by_offset.get(offset)
        if target is None:
            raise ValueError(f"{self.qid}: no recipient record at offset {offset}")
        if self._fd < 0 or not self._writable:
            raise PermissionError(errno.EACCES, "queue file not open for writing", self.path)
        current = os.pread(self._fd, 1, offset)
        if current == b"R":
            os.pwrite(self._fd, b"D", offset)
            if sync:
                os.fsync(self._fd)
        elif current != b"D":
            raise self._corrupt(offset, "recipient record changed under us")
        target.done = True
        if isinstance(rcpt, Recipient):
            rcpt.done = True

    def set_warn_time(self, when: int) -> None:
        """set_warn_time - rewrite the delay warning time in place (needs a W record)."""
        if self.warn_offset < 0:
            raise ValueError(f"{self.qid}: queue file has no delay warning record")
        if not self._writable:
            raise PermissionError(errno.EACCES, "queue file not open for writing", self.path)
        os.pwrite(self._fd, f"{int(when):012d}".encode(), self.warn_offset)
        os.fsync(self._fd)
        self.envelope.warn_time = int(when)


def mark_done(path: str, rcpt_offset: int) -> None:
    """mark_done - mark the recipient at rcpt_offset done in the file at path."""
    with QueueFileReader(path) as r:
        r.mark_done(rcpt_offset)
