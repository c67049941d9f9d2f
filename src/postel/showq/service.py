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

    The queue is read on a worker thread, a batch of messages at a time, so
    that a very large queue is streamed with bounded memory and the event
    loop keeps serving other clients.

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
import sys
from collections.abc import Iterator

from postel import log
from postel.ipc.attr import AttrError, encode, read_attrs
from postel.ipc.skeleton import ServiceContext, multi_server_main
from postel.queue import QueueDir
from postel.queue.report import QueueEntry
from postel.queue.scan import entry_wire, scan_entries

BATCH = 256               # messages per write
REQUEST_TIMEOUT = 60.0    # seconds to wait for the client's request


def queue_dir(cfg) -> QueueDir:
    """queue_dir - the QueueDir that main.cf describes."""
    return QueueDir(cfg.get("queue_directory"), cfg.get("hash_queue_names"),
                    cfg.get_int("hash_queue_depth"))


def _next_batch(it: Iterator[QueueEntry], counter: list[int]) -> bytes:
    """_next_batch - the wire bytes of up to BATCH entries (b"" at the end)."""
    out = []
    for entry in it:
        out.append(entry_wire(entry))
        counter[0] += 1
        if len(out) >= BATCH:
            break
    return b"".join(out)


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
    if request.get("request") != "list":
        log.warning("unknown request: %r", request.get("request"))
        writer.write(encode({"end": 1, "count": 0, "error": "unknown request"}))
        await writer.drain()
        return
    qd = ctx.state.get("qd") or queue_dir(ctx.cfg)
    ctx.state["qd"] = qd
    it = scan_entries(qd, queue_id=request.get("queue_id") or None)
    counter = [0]
    while True:
        batch = await asyncio.to_thread(_next_batch, it, counter)
        if not batch:
            break
        writer.write(batch)
        await writer.drain()
    writer.write(encode({"end": 1, "count": counter[0]}))
    await writer.drain()


def main(argv: list[str] | None = None) -> int:
    """main - run showq under master (or standalone with -S)."""
    return multi_server_main("showq", list(argv if argv is not None else sys.argv), serve_client)


if __name__ == "__main__":
    sys.exit(main())
