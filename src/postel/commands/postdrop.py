"""postdrop - Postel mail posting utility

SYNOPSIS
    postel [-c config_dir] drop [-v]
    sendmail ... (uses write_maildrop() or runs `postel drop`)

DESCRIPTION
    postdrop puts one message into the maildrop queue and wakes up
    pickup(8).  It reads a complete queue file (the format of
    docs/queue.md, as sendmail(1) writes it) on standard input, checks that
    it is well-formed and complete (size record final, file size, record
    grammar, envelope and content checksums), and only then makes it
    visible:

        maildrop/QID.tmp   created with O_EXCL, written, fsync'ed, checked
        maildrop/QID       rename(2), then fsync of the maildrop directory

    A truncated, damaged or oversized stream leaves nothing behind and
    makes postdrop exit with a non-zero status.  pickup(8) never sees a
    partial file: it ignores names with a dot.

    Installed as root, postdrop is the only privileged submission path: the
    maildrop directory is mode 1730, owned by mail_owner, group
    setgid_group, and `postel set-permissions` makes postdrop set-group-ID
    setgid_group (as Postfix).  A file written by postdrop belongs to the
    submitting user, which is how pickup(8) learns the user's uid.  Run as
    an ordinary user (an instance made by `postel init`), the queue belongs
    to that user and sendmail(1) writes maildrop files itself, through the
    same write_maildrop() function.

    Library use (sendmail):

        write_maildrop(qd, envelope, chunks, size_limit) -> qid
        check_maildrop_file(path, size_limit)    # DropError when bad
        wake_pickup(queue_directory) -> bool

SECURITY
    postdrop trusts nothing in its input: the stream is checked as a whole
    by the queue file reader, and pickup(8) passes on only the envelope
    attributes that a local user may set.

DIAGNOSTICS
    "postdrop: fatal: ..." on standard error and in the mail log, with
    exit status 65 (EX_DATAERR) for malformed input, 75 (EX_TEMPFAIL) for
    a queue that cannot be written, 64 (EX_USAGE) for bad usage.  A pickup
    service that does not listen is reported as a warning; the message is
    safe in the maildrop queue and pickup finds it on its next wakeup.

CONFIGURATION PARAMETERS
    queue_directory                 where the maildrop queue is
    message_size_limit (10240000)   largest message content, in bytes
    setgid_group (postdrop)         group of the maildrop directory
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable
from typing import BinaryIO

from postel.commands._qadmin import (
    EX_TEMPFAIL,
    EX_USAGE,
    Fatal,
    fatal,
    load,
    queue_dir,
    warn,
)
from postel.queue import Envelope, QueueDir, QueueFileCorrupt, QueueFileReader, QueueFileWriter
from postel.queue.file import fsync_dir
from postel.queue.qid import new_qid

PROG = "postdrop"
EX_DATAERR = 65
USAGE = "usage: postel drop [-v] < queue-file-stream"
MAILDROP = "maildrop"
PICKUP_ENDPOINT = "public/pickup"
READ_CHUNK = 64 * 1024
# Envelope, extracted segment and record framing on top of the content.
STREAM_OVERHEAD = 16 * 1024 * 1024
# Maildrop files are readable by the setgid group (Postfix: 0600 | S_IRGRP).
MAILDROP_MODE = 0o640


class DropError(Exception):
    """DropError - the message could not be dropped: message and exit status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def check_maildrop_file(path: str, size_limit: int = 0) -> QueueFileReader:
    """check_maildrop_file - read a whole maildrop file once; DropError when bad."""
    try:
        reader = QueueFileReader(path, writable=False)
    except QueueFileCorrupt as exc:
        raise DropError(f"malformed input: offset {exc.offset}: {exc.reason}",
                        EX_DATAERR) from None
    except OSError as exc:
        raise DropError(f"{path}: {exc.strerror}", EX_TEMPFAIL) from None
    try:
        for _line in reader.iter_lines():
            pass
    except QueueFileCorrupt as exc:
        reader.close()
        raise DropError(f"malformed input: offset {exc.offset}: {exc.reason}",
                        EX_DATAERR) from None
    if size_limit and reader.message_size > size_limit:
        reader.close()
        raise DropError(f"message file too big ({reader.message_size} > {size_limit} bytes)",
                        EX_DATAERR)
    return reader


def _publish(qd: QueueDir, qid: str, temp_path: str) -> str:
    """_publish - fsync'ed temp file to its final name, then fsync the directory."""
    path = qd.path(MAILDROP, qid)
    os.rename(temp_path, path)
    try:
        fsync_dir(os.path.dirname(path))
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    return path


def drop_stream(qd: QueueDir, stream: BinaryIO, size_limit: int = 0) -> str:
    """drop_stream - copy a queue-file stream into maildrop/; returns the queue ID."""
    qid = new_qid()
    temp_path = qd.path(MAILDROP, qid) + ".tmp"
    limit = size_limit + STREAM_OVERHEAD if size_limit else 0
    try:
        fd = os.open(temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise DropError(f"create file {MAILDROP}/{qid}: {exc.strerror}", EX_TEMPFAIL) from None
    published = False
    try:
        total = 0
        try:
            while True:
                chunk = stream.read(READ_CHUNK)
                if not chunk:
                    break
                total += len(chunk)
                if limit and total > limit:
                    raise DropError("message file too big", EX_DATAERR)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
            os.fchmod(fd, MAILDROP_MODE)
            os.fsync(fd)
        except OSError as exc:
            raise DropError(f"{MAILDROP}/{qid}: write: {exc.strerror}", EX_TEMPFAIL) from None
        finally:
            os.close(fd)
        if total == 0:
            raise DropError("malformed input: empty input", EX_DATAERR)
        check_maildrop_file(temp_path, size_limit).close()
        try:
            _publish(qd, qid, temp_path)
        except OSError as exc:
            raise DropError(f"{MAILDROP}/{qid}: {exc.strerror}", EX_TEMPFAIL) from None
        published = True
        return qid
    finally:
        if not published:
            with contextlib.suppress(OSError):
                os.unlink(temp_path)


def write_maildrop(qd: QueueDir, env: Envelope, chunks: Iterable[bytes],
                   size_limit: int = 0) -> str:
    """write_maildrop - write one maildrop file directly; returns the queue ID."""
    try:
        writer = QueueFileWriter(qd, MAILDROP)
    except OSError as exc:
        raise DropError(f"create file {MAILDROP}: {exc.strerror}", EX_TEMPFAIL) from None
    try:
        with writer:
            write_queue_stream(writer, env, chunks, size_limit)
            os.chmod(writer.temp_path, MAILDROP_MODE)
            writer.commit_sync()
    except OSError as exc:
        raise DropError(f"{MAILDROP}/{writer.qid}: {exc.strerror}", EX_TEMPFAIL) from None
    return writer.qid


def write_queue_stream(writer: QueueFileWriter, env: Envelope, chunks: Iterable[bytes],
                       size_limit: int = 0) -> None:
    """write_queue_stream - envelope and content into an open writer (DropError: too big)."""
    writer.write_envelope(env)
    for chunk in chunks:
        writer.write_content(chunk)
        if size_limit and writer.message_size > size_limit:
            raise DropError("message file too big", EX_DATAERR)
    writer.finish()


def wake_pickup(queue_directory: str) -> bool:
    """wake_pickup - send pickup a wakeup trigger; False when it does not listen."""
    from postel.ipc.trigger import TRIGGER_WAKEUP, send_trigger
    return send_trigger(queue_directory, PICKUP_ENDPOINT, TRIGGER_WAKEUP)


def _parse(argv: list[str]) -> None:
    """_parse - postdrop takes only -v (and -c, handled by the dispatcher); -r is accepted."""
    for arg in argv:
        if arg in ("-v", "-r"):
            continue
        raise Fatal(f"invalid option: {arg}\n{USAGE}", EX_USAGE)


def main(argv: list[str], config_dir: str | None) -> int:
    """main - postel drop: stdin to maildrop/, then wake up pickup."""
    try:
        _parse(argv)
        cfg = load(PROG, config_dir)
        qd = queue_dir(cfg)
        size_limit = cfg.get_size("message_size_limit")
        try:
            stdin = sys.stdin.buffer
            qid = drop_stream(qd, stdin, size_limit)
        except DropError as exc:
            raise Fatal(f"uid={os.getuid()}: {exc.message}", exc.status) from None
        if not wake_pickup(qd.queue_directory):
            warn(PROG, f"unable to look up {PICKUP_ENDPOINT}: pickup is not running; "
                       f"{qid} waits in the maildrop queue")
        return 0
    except Fatal as exc:
        return fatal(PROG, exc)
