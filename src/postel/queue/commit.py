"""commit - group commit of new queue files

SYNOPSIS
    from postel.queue import Committer
    committer = Committer(fsync_workers=4, max_batch=256, method="syncfs")
    path = await committer.commit(writer)     # durable when this returns
    committer.close()

DESCRIPTION
    Making one new queue file durable costs an fsync of the file and an
    fsync of its directory (after the rename).  A receiving service that
    handles many sessions at once would pay both for every message in turn.
    The committer shares that cost between messages that finish at about
    the same time:

    1.  commit(w) queues the writer and waits.
    2.  One flusher task per committer takes everything queued so far as a
        batch (at most max_batch files), completes each file on a small
        thread pool (w.finish(): end record, final size record; a lazy
        writer creates its file only now) and makes the batch durable, with
        one of two methods:

        fsync   fsync each file of the batch in parallel (the kernel merges
                concurrent journal commits), rename each to its final name,
                then fsync each directory involved once.
        syncfs  one syncfs(2) on the queue file system (it writes back every
                dirty page and inode of that file system and commits its
                journal: the content of every file of the batch), then
                rename each file to its final name, then a second syncfs(2)
                for the new directory entries.  Two journal commits per
                batch, however many files it holds.  Linux >= 5.8 only (before that,
                syncfs(2) did not report writeback errors); elsewhere the
                committer falls back to fsync and says why in
                fallback_reason.

    A caller that knows no other message is in progress may ask for an
    inline commit (commit(w, inline=True)): when nothing is queued or being
    synced, the file is committed in the calling thread, as a batch of one
    (cleanup does so when it has one client: a single SMTP session saves the
    thread hand-off on every message).

    3.  Only then are the waiting commit() calls resumed, with the final
        path, in the order of the batch.  While one batch is being synced,
        new arrivals queue up for the next one, so under load each sync
        covers many messages, and with one message at a time the latency
        is that of commit_sync().  A batch of one file is always committed
        as with fsync: fsync(file), rename, fsync(directory) cost one small
        journal commit each, where syncfs would write back the whole file
        system twice.

    Either way commit() returns only after the file's content and its
    directory entry are durable.  With fsync the order is that of
    commit_sync(): fsync(file) < rename(temp, final) < fsync(directory) <
    commit returns.  With syncfs it is syncfs < rename < syncfs < commit
    returns: a file under its final name is always complete on disk.

    Errors.  A failure is reported to the writer it concerns: ENOSPC/EDQUOT
    as QueueFull, other errors as OSError; its temporary file is removed.
    If a directory fsync fails, every file of the batch in that directory
    is removed again and each commit() raises; the same for every file of
    the batch when syncfs(2) fails.  syncfs(2) reports a writeback error
    that happened anywhere on the file system since the committer's
    descriptor was opened, so an error elsewhere fails (at most) one batch:
    the clients are told 451 and retry.

    A commit() that is cancelled while waiting does not stop the file from
    being committed (the message may then be delivered even though the
    client was not told so; Postfix has the same window after "250").

    The event loop thread never blocks on fsync or syncfs.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import errno
import os
import re
import sys
from concurrent.futures import ThreadPoolExecutor

from postel.queue.errors import QueueFull
from postel.queue.file import QueueFileWriter, fsync_dir

_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
COMMIT_METHODS = ("fsync", "syncfs")
SYNCFS_MIN_KERNEL = (5, 8)        # syncfs(2) reports writeback errors since Linux 5.8


def _kernel_version(release: str) -> tuple[int, int]:
    """_kernel_version - (major, minor) from a uname release string ("6.1.0-18-amd64")."""
    m = re.match(r"(\d+)\.(\d+)", release)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def _load_syncfs():
    """_load_syncfs - the C library's syncfs(2), or a reason why it cannot be used."""
    if not sys.platform.startswith("linux"):
        return None, f"syncfs(2) is Linux-only (this is {sys.platform})"
    release = os.uname().release
    if _kernel_version(release) < SYNCFS_MIN_KERNEL:
        return None, (f"kernel {release} is older than 5.8, where syncfs(2) does not "
                      "report writeback errors")
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        func = libc.syncfs
    except (OSError, AttributeError) as exc:
        return None, f"the C library has no syncfs(2): {exc}"
    func.argtypes = [ctypes.c_int]
    func.restype = ctypes.c_int
    return func, ""


_SYNCFS = None
_SYNCFS_WHY = ""


def syncfs_unavailable() -> str:
    """syncfs_unavailable - why the syncfs method cannot be used here ("" when it can)."""
    global _SYNCFS, _SYNCFS_WHY
    if _SYNCFS is None and not _SYNCFS_WHY:
        _SYNCFS, _SYNCFS_WHY = _load_syncfs()
    return _SYNCFS_WHY


def syncfs(fd: int) -> None:
    """syncfs - write back and commit the whole file system that holds fd; OSError on failure."""
    if syncfs_unavailable():
        raise OSError(errno.ENOSYS, _SYNCFS_WHY)
    if _SYNCFS(fd) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _as_error(exc: OSError, path: str, what: str) -> OSError:
    """_as_error - QueueFull for ENOSPC/EDQUOT, else an OSError naming path."""
    if exc.errno in _SPACE_ERRNOS:
        return QueueFull(path, exc.errno, f"{what}: {exc.strerror}")
    return OSError(exc.errno, f"{what}: {exc.strerror}", path)


class Committer:
    """Batches the fsyncs of concurrently finishing queue files."""

    def __init__(self, *, fsync_workers: int = 4, max_batch: int = 256,
                 method: str = "fsync") -> None:
        if method not in COMMIT_METHODS:
            raise ValueError(f"queue commit method must be one of {', '.join(COMMIT_METHODS)}: "
                             f"{method!r}")
        self.fallback_reason = ""
        if method == "syncfs" and syncfs_unavailable():
            self.fallback_reason = syncfs_unavailable()
            method = "fsync"
        self.method = method
        self._fs_fds: dict[str, int] = {}   # queue_directory -> fd for syncfs(2)
        self.max_batch = max(1, max_batch)
        self._pool = ThreadPoolExecutor(max_workers=max(1, fsync_workers),
                                        thread_name_prefix="postel-commit")
        self._pending: list[tuple[QueueFileWriter, asyncio.Future]] = []
        self._task: asyncio.Task | None = None
        self.batches = 0                 # statistics: batches synced
        self.files = 0                   # statistics: files committed
        self.inline = 0                  # statistics: of which committed inline

    async def commit(self, writer: QueueFileWriter, *, inline: bool = False) -> str:
        """commit - return the final path once the file and its name are durable.

        inline=True: the caller knows no other message is in progress (one
        client at a time).  If no batch is being synced either, the file is
        committed right here, as a batch of one would be, without the hand-off
        to a pool thread and back (two context switches and a futex wake per
        message); the event loop waits for the disk meanwhile."""
        if inline and not self._pending and (self._task is None or self._task.done()):
            result = _commit_one(writer)
            self.batches += 1
            if isinstance(result, BaseException):
                raise result
            self.files += 1
            self.inline += 1
            return result
        loop = asyncio.get_running_loop()
        fut: asyncio.Future = loop.create_future()
        self._pending.append((writer, fut))
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._flusher())
        return await fut

    async def _flusher(self) -> None:
        """_flusher - sync batches until nothing is queued."""
        loop = asyncio.get_running_loop()
        while self._pending:
            batch = self._pending[:self.max_batch]
            del self._pending[:self.max_batch]
            writers = [w for w, _ in batch]
            try:
                results = await self._sync_batch(loop, writers)
            except Exception as exc:  # defensive: never leave a waiter hanging
                for w in writers:
                    w.abort()
                results = [exc] * len(batch)
            self.batches += 1
            for (_, fut), result in zip(batch, results, strict=True):
                if fut.done():
                    continue
                if isinstance(result, BaseException):
                    fut.set_exception(result)
                else:
                    self.files += 1
                    fut.set_result(result)

    async def _sync_batch(self, loop: asyncio.AbstractEventLoop,
                          writers: list[QueueFileWriter]) -> list[str | BaseException]:
        """_sync_batch - fsync files in parallel, then rename all, then fsync dirs."""
        if len(writers) == 1:
            # A lone file: fsync(file), rename, fsync(directory) in one hand-off
            # to the pool (cheaper than two syncfs(2) of the whole file system).
            return [await loop.run_in_executor(self._pool, _commit_one, writers[0])]
        if self.method == "syncfs":
            return await loop.run_in_executor(self._pool, self._syncfs_batch, writers)
        synced = await asyncio.gather(
            *(loop.run_in_executor(self._pool, _finish_and_sync, w) for w in writers),
            return_exceptions=True)
        return await loop.run_in_executor(self._pool, _publish_batch, writers, synced)

    def _fs_fd(self, queue_directory: str) -> int:
        """_fs_fd - a descriptor on the queue file system, kept open for syncfs(2).

        syncfs(2) reports a writeback error that happened since the
        descriptor was opened (or since the last syncfs on it that reported
        one), so one long-lived descriptor sees every error."""
        fd = self._fs_fds.get(queue_directory)
        if fd is None:
            fd = os.open(queue_directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            self._fs_fds[queue_directory] = fd
        return fd

    def _syncfs_batch(self, writers: list[QueueFileWriter]) -> list[str | BaseException]:
        """_syncfs_batch - syncfs(2), rename every file, syncfs(2) again (docs/queue.md).

        The first syncfs makes the content durable before any file appears under
        its final name (a visible queue file is always complete, even after a
        system crash); the second makes the new names durable before commit()
        returns.  Two journal commits per batch, whatever its size.
        """
        groups: dict[str, list[int]] = {}
        for i, w in enumerate(writers):
            groups.setdefault(w.qd.queue_directory, []).append(i)
        results: list[str | BaseException] = [""] * len(writers)
        for queue_directory, members in groups.items():
            written = []
            for i in members:
                w = writers[i]
                try:
                    w.finish()
                    w.sync_file(fsync=False)           # close only
                    written.append(i)
                except Exception as exc:
                    w.abort()
                    results[i] = exc
            if not written:
                continue
            fs_fd = self._fs_fd(queue_directory)
            try:
                syncfs(fs_fd)                          # content and inodes durable
            except OSError as exc:
                for i in written:
                    writers[i].abort()
                    results[i] = _as_error(exc, writers[i].path, "syncfs")
                continue
            published = []
            for i in written:
                try:
                    results[i] = writers[i].publish()
                    published.append(i)
                except Exception as exc:
                    writers[i].abort()
                    results[i] = exc
            if not published:
                continue
            try:
                syncfs(fs_fd)                          # the new names durable
            except OSError as exc:
                for i in published:
                    writers[i].unpublish()
                    results[i] = _as_error(exc, writers[i].path, "syncfs")
        return results

    def close(self) -> None:
        """close - stop the thread pool (after the last commit)."""
        self._pool.shutdown(wait=True)
        for fd in self._fs_fds.values():
            try:
                os.close(fd)
            except OSError:
                pass
        self._fs_fds.clear()

    async def __aenter__(self) -> Committer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


def _commit_one(w: QueueFileWriter) -> str | BaseException:
    """_commit_one - finish, fsync, rename and fsync the directory of one file."""
    try:
        _finish_and_sync(w)
    except Exception as exc:
        w.abort()
        return exc
    return _publish_batch([w], [None])[0]


def _finish_and_sync(w: QueueFileWriter) -> None:
    """_finish_and_sync - complete the file (end and size records), then fsync it."""
    w.finish()
    w.sync_file()


def _publish_batch(writers: list[QueueFileWriter],
                   synced: list[object]) -> list[str | BaseException]:
    """_publish_batch - rename every synced file, then fsync each directory once."""
    results: list[str | BaseException] = []
    for w, status in zip(writers, synced, strict=True):
        if isinstance(status, BaseException):
            results.append(status)
            continue
        try:
            results.append(w.publish())
        except Exception as exc:
            results.append(exc)
    dirs: dict[str, list[int]] = {}
    for i, (w, result) in enumerate(zip(writers, results, strict=True)):
        if isinstance(result, str):
            dirs.setdefault(w.dir_path, []).append(i)
    for dir_path, members in dirs.items():
        try:
            fsync_dir(dir_path)
        except OSError as exc:
            for i in members:
                writers[i].unpublish()
                if exc.errno in _SPACE_ERRNOS:
                    results[i] = QueueFull(writers[i].path, exc.errno, f"fsync: {exc.strerror}")
                else:
                    results[i] = OSError(exc.errno, exc.strerror, dir_path)
    return results
