"""showq - list the Postel mail queue

SYNOPSIS
    showq [generic daemon options]

DESCRIPTION
    The showq(8) daemon reports the mail queue: it is the server behind
    `postel queue -p`, `postel queue -j`, `mailq` and `sendmail -bp`.  It
    listens on public/showq, so that an unprivileged user can list the queue
    without being able to read the queue files.

    Protocol (attribute lists, see postel.ipc.attr): the client sends one
    request, "request=list" (an optional "queue_id" limits the listing to one
    message).  The server answers with one list per message (queue_name,
    queue_id, arrival_time, message_size, forced_expire, sender, then
    recipient/reason pairs; see postel.queue.report) and ends with a list
    holding "end=1" and "count".  The client formats the text itself, as
    Postfix's postqueue(1) does since Postfix 3.1.

    With "format=mailq" in the request (postel queue -p), the answer is the
    mailq text: one list with a "text" attribute per block of messages
    (each message's block after a LF, see postel.queue.scan.text_of), then
    "end=1", "count" and "size" (the sum of the message sizes, for the
    trailer).  The workers format it straight from the queue files, so the
    client only copies bytes (docs/showq.md says why this differs from
    Postfix).

    The queue is read on a worker thread, a batch of messages at a time, so
    that a very large queue is streamed with bounded memory and the event
    loop keeps serving other clients.

    A large queue (PARALLEL_MIN messages or more, on a machine with more
    than one CPU) is read by WORKERS forked processes: the sorted list of
    queue files is cut into blocks of BLOCK messages, worker i encodes blocks
    i, i + WORKERS, ... (attribute lists or text) into its own pipe, and
    showq forwards the blocks in order, so that the listing is the same as
    a serial one.  A worker that
    fails leaves its blocks to showq itself.

SECURITY
    showq takes no input from the client but the request name; it reads
    only envelope information (never message content) and opens queue
    files read-only.

CONFIGURATION PARAMETERS
    queue_directory                  the queue to list
    hash_queue_names (deferred, defer), hash_queue_depth (1)
    ipc_timeout (3600s)              time limit for the request
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import struct
import sys

from postel import log
from postel.ipc.attr import AttrError, encode, read_attrs
from postel.ipc.skeleton import ServiceContext, multi_server_main
from postel.queue import QueueDir
from postel.queue.scan import find_items, text_of, wire_of

BATCH = 256               # messages per write
REQUEST_TIMEOUT = 60.0    # seconds to wait for the client's request
PARALLEL_MIN = 4000       # messages from which the queue is read by worker processes
WORKERS = min(4, os.cpu_count() or 1)
BLOCK = 512               # messages per worker block
PIPE_SIZE = 1 << 20       # pipe buffer asked for (a worker may run this far ahead)
_HEAD = struct.Struct("!IIQ")  # block header: bytes, entries, total message size


def queue_dir(cfg) -> QueueDir:
    """queue_dir - the QueueDir that main.cf describes."""
    return QueueDir(cfg.get("queue_directory"), cfg.get("hash_queue_names"),
                    cfg.get_int("hash_queue_depth"))


def _wire_block(qd: QueueDir, items: list) -> tuple[bytes, int, int]:
    """_wire_block - the wire lists of some listing items, their number, 0."""
    data, count = wire_of(qd, items)
    return data, count, 0


def _text_block(qd: QueueDir, items: list) -> tuple[bytes, int, int]:
    """_text_block - one "text" list holding the mailq text of some items, count, size."""
    data, count, size = text_of(qd, items)
    return (b"text=%d:%s,\n" % (len(data), data) if count else b""), count, size


ENCODERS = {"": _wire_block, "mailq": _text_block}


async def serve_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       ctx: ServiceContext) -> None:
    """serve_client - answer one listing request."""
    try:
        request = await read_attrs(reader, timeout=REQUEST_TIMEOUT)
    except (EOFError, TimeoutError, ConnectionError):
        return
    except AttrError as exc:
        log.warning("malformed request: %s", exc)
        return
    encoder = ENCODERS.get(request.get("format") or "")
    if request.get("request") != "list" or encoder is None:
        what = "format" if encoder is None else "request"
        log.warning("unknown %s: %r", what, request.get(what))
        writer.write(encode({"end": 1, "count": 0, "error": f"unknown {what}"}))
        await writer.drain()
        return
    qd = ctx.state.get("qd") or queue_dir(ctx.cfg)
    ctx.state["qd"] = qd
    items = await asyncio.to_thread(find_items, qd, request.get("queue_id") or None)
    if WORKERS >= 2 and len(items) >= PARALLEL_MIN:
        count, size = await _serve_parallel(writer, qd, items, encoder)
    else:
        count = size = 0
        for i in range(0, len(items), BATCH):
            data, n, z = await asyncio.to_thread(encoder, qd, items[i:i + BATCH])
            count += n
            size += z
            if data:
                writer.write(data)
                await writer.drain()
    end: dict[str, object] = {"end": 1, "count": count}
    if encoder is _text_block:
        end["size"] = size
    writer.write(encode(end))
    await writer.drain()


def _worker(fd: int, qd: QueueDir, blocks: list[list], encoder) -> None:
    """_worker - in a forked process: encode blocks into the pipe, then exit."""
    status = 1
    try:
        with contextlib.suppress(ValueError, OSError):
            signal.set_wakeup_fd(-1)      # the parent's event loop must not hear our signals
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
                signal.signal(sig, signal.SIG_DFL)
        for items in blocks:
            data, count, size = encoder(qd, items)
            view = memoryview(_HEAD.pack(len(data), count, size) + data)
            while view:
                view = view[os.write(fd, view):]
        status = 0
    finally:
        os._exit(status)


class _Workers:
    """Forked block encoders and their pipes (see DESCRIPTION)."""

    def __init__(self, qd: QueueDir, items: list, encoder) -> None:
        self.qd = qd
        self.encoder = encoder
        self.blocks = [items[i:i + BLOCK] for i in range(0, len(items), BLOCK)]
        self.pids: list[int] = []
        self.fds: list[int] = []
        for w in range(WORKERS):
            rfd, wfd = os.pipe()
            with contextlib.suppress(OSError):
                fcntl.fcntl(wfd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
            try:
                pid = os.fork()
            except OSError:
                os.close(rfd)
                os.close(wfd)
                self.fds.append(-1)
                continue
            if pid == 0:
                os.close(rfd)
                _worker(wfd, qd, self.blocks[w::WORKERS], encoder)
            os.close(wfd)
            self.pids.append(pid)
            self.fds.append(rfd)

    def _read(self, fd: int, n: int) -> bytes | None:
        """_read - exactly n bytes from a pipe, None at a premature end."""
        parts = []
        while n:
            data = os.read(fd, min(n, 1 << 20))
            if not data:
                return None
            parts.append(data)
            n -= len(data)
        return b"".join(parts)

    def block(self, i: int) -> tuple[bytes, int, int]:
        """block - block i (bytes, entries, size): from its worker, or encoded here if it failed."""
        w = i % WORKERS
        fd = self.fds[w]
        if fd >= 0:
            try:
                head = self._read(fd, _HEAD.size)
                if head is not None:
                    length, count, size = _HEAD.unpack(head)
                    data = self._read(fd, length)
                    if data is not None:
                        return data, count, size
            except OSError:
                pass
            log.warning("listing worker %d failed: showq reads its part itself", w)
            os.close(fd)
            self.fds[w] = -1
        return self.encoder(self.qd, self.blocks[i])

    def close(self) -> None:
        """close - stop and reap the workers, close the pipes."""
        for fd in self.fds:
            if fd >= 0:
                os.close(fd)
        self.fds = [-1] * len(self.fds)
        for pid in self.pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                os.waitpid(pid, 0)
        self.pids = []


async def _serve_parallel(writer: asyncio.StreamWriter, qd: QueueDir, items: list,
                          encoder) -> tuple[int, int]:
    """_serve_parallel - stream a large listing encoded by forked workers; (count, size)."""
    workers = _Workers(qd, items, encoder)
    count = size = 0
    try:
        for i in range(len(workers.blocks)):
            data, n, z = await asyncio.to_thread(workers.block, i)
            count += n
            size += z
            if data:
                writer.write(data)
                await writer.drain()
    finally:
        await asyncio.to_thread(workers.close)
    return count, size


def main(argv: list[str] | None = None) -> int:
    """main - run showq under master (or standalone with -S)."""
    return multi_server_main("showq", list(argv if argv is not None else sys.argv), serve_client)


if __name__ == "__main__":
    sys.exit(main())
