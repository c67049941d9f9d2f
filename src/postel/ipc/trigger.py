"""trigger - wake up a service with a one-shot request

SYNOPSIS
    from postel.ipc.trigger import send_trigger, send_trigger_async, TRIGGER_WAKEUP

    send_trigger(queue_directory, "public/pickup")                  # "W"
    send_trigger(queue_directory, "public/qmgr", QMGR_FLUSH_QUEUE)  # postqueue -f
    await send_trigger_async(queue_directory, "public/qmgr", b"I")

DESCRIPTION
    A trigger is a few bytes written to a service's endpoint and nothing
    read back: "there is work, look now".  It is how postdrop wakes pickup,
    how cleanup tells qmgr that a message arrived in the incoming queue,
    and how master runs a service's wakeup timer.  A lost trigger is never
    fatal: every trigger service also scans on its own timer.

    The endpoint is a FIFO (master.cf type "fifo") or a UNIX stream socket
    (type "unix"); send_trigger() looks at what the path is:

      FIFO          open(O_WRONLY|O_NONBLOCK), write, close.  Opening fails
                    with ENXIO when no process has the FIFO open for reading:
                    that is "nobody listens".  A full pipe (EAGAIN) means
                    triggers are already pending: counted as delivered.
      UNIX socket   connect, write, close (within timeout).

    The result is True when the bytes were handed over, False when nobody
    listens (no such path, no reader, connection refused, timeout).  Neither
    function raises for those, and neither logs: the caller decides whether
    a missed wake-up is worth a line.

    Trigger codes (one byte each; a request may carry several):

      code  name                 meaning
      W     TRIGGER_WAKEUP       wake up and look for work (any service)
      I     QMGR_SCAN_INCOMING   qmgr: scan the incoming queue
      D     QMGR_SCAN_DEFERRED   qmgr: scan the deferred queue
      A     QMGR_SCAN_ALL        qmgr: ignore deferred time stamps on the next scan
      F     QMGR_FLUSH_DEAD      qmgr: forget "dead destination" state

    QMGR_FLUSH_QUEUE = b"FADI" is what "postqueue -f" sends to qmgr: forget
    dead destinations, ignore time stamps, scan deferred and incoming.
    A service ignores codes it does not know.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat

from postel import lazy_import
from postel.ipc.client import service_path

# Only the async sender needs asyncio; sendmail's pickup wake-up and postqueue -f
# use the blocking one and should not pay for importing it (docs/startup.md).
asyncio = lazy_import("asyncio", globals())

__all__ = [
    "send_trigger", "send_trigger_async", "TRIGGER_WAKEUP", "QMGR_SCAN_INCOMING",
    "QMGR_SCAN_DEFERRED", "QMGR_SCAN_ALL", "QMGR_FLUSH_DEAD", "QMGR_FLUSH_QUEUE",
]

TRIGGER_WAKEUP = b"W"
QMGR_SCAN_INCOMING = b"I"
QMGR_SCAN_DEFERRED = b"D"
QMGR_SCAN_ALL = b"A"
QMGR_FLUSH_DEAD = b"F"
QMGR_FLUSH_QUEUE = QMGR_FLUSH_DEAD + QMGR_SCAN_ALL + QMGR_SCAN_DEFERRED + QMGR_SCAN_INCOMING


def _kind(path: str) -> str | None:
    """_kind - "fifo", "socket", or None for anything else or nothing."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISSOCK(mode):
        return "socket"
    return None


def _fifo_trigger(path: str, data: bytes) -> bool:
    """_fifo_trigger - write data to a FIFO without ever blocking."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False                        # ENXIO: no reader; ENOENT: gone
    try:
        os.write(fd, data)
        return True
    except OSError as exc:
        return exc.errno == errno.EAGAIN    # pipe full: wake-ups already pending
    finally:
        os.close(fd)


def send_trigger(queue_directory: str, endpoint: str, data: bytes = TRIGGER_WAKEUP,
                 timeout: float = 10.0) -> bool:
    """send_trigger - write a trigger to a FIFO or UNIX socket; False if nobody listens."""
    path = service_path(queue_directory, endpoint)
    kind = _kind(path)
    if kind == "fifo":
        return _fifo_trigger(path, data)
    if kind != "socket":
        return False
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(data)
        return True
    except OSError:
        return False
    finally:
        sock.close()


async def send_trigger_async(queue_directory: str, endpoint: str,
                             data: bytes = TRIGGER_WAKEUP, timeout: float = 10.0) -> bool:
    """send_trigger_async - send_trigger for event-loop code (never blocks the loop)."""
    path = service_path(queue_directory, endpoint)
    kind = _kind(path)
    if kind == "fifo":
        return _fifo_trigger(path, data)    # non-blocking already
    if kind != "socket":
        return False
    writer = None
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_unix_connection(path)
            writer.write(data)
            await writer.drain()
        return True
    except (OSError, TimeoutError):
        return False
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(timeout):
                    await writer.wait_closed()
