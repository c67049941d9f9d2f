"""errors - exceptions of the queue library

SYNOPSIS
    from postel.queue import QueueFileCorrupt, QueueFull

DESCRIPTION
    QueueFileCorrupt(path, offset, reason)
        A queue file is incomplete or damaged.  The reader raises nothing
        else for bad file contents (I/O errors stay OSError, a file that
        vanished stays FileNotFoundError).  The usual response is
        quarantine(path, str(exc)).

    QueueFull(path, errno, reason)
        The queue file system is out of space or quota (ENOSPC, EDQUOT), or
        check_space() found less than queue_minfree.  The file being written
        has already been removed.  An SMTP server answers
        "452 4.3.1 Insufficient system storage".
"""

from __future__ import annotations


class QueueFileCorrupt(Exception):
    """A queue file is incomplete or damaged."""

    def __init__(self, path: str, offset: int, reason: str) -> None:
        super().__init__(path, offset, reason)
        self.path = path
        self.offset = offset
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.path}: offset {self.offset}: {self.reason}"


class QueueFull(Exception):
    """No room in the queue file system; the partial file was removed."""

    def __init__(self, path: str, errno: int, reason: str) -> None:
        super().__init__(path, errno, reason)
        self.path = path
        self.errno = errno
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"
