"""commit - group commit of new queue files

SYNOPSIS
    from postel.queue import Committer
    committer = Committer(fsync_workers=4, max_batch=256)
    path = await committer.commit(writer)     # durable when this returns
    committer.close()

DESCRIPTION
    Making one new queue file durable costs an fsync of the file and an
    fsync of its directory (after the rename).  A receiving service that
    handles many sessions at once would pay both for every message in turn.
    The committer shares that cost between messages that finish at about
    the same time:

    1.  commit(w) completes the file (w.finish(): end record, final size
        record) in the caller, queues the writer and waits.
    2.  One flusher task per committer takes everything queued so far as a
        batch (at most max_batch files).  It fsyncs the files of the batch
        in parallel on a small thread pool (the kernel merges concurrent
        journal commits), then renames each file to its final name, then
        fsyncs each directory involved once, for the whole batch.
    3.  Only then are the waiting commit() calls resumed, with the final
        path, in the order of the batch.  While one batch is being synced,
        new arrivals queue up for the next one, so under load each fsync of
        a directory covers many messages, and with one message at a time
        the latency is that of commit_sync().

    The order of operations for every file is the same as commit_sync():
    fsync(file) < rename(temp, final) < fsync(directory) < commit returns.
    A failure is reported to the writer it concerns: ENOSPC/EDQUOT as
    QueueFull, other errors as OSError; its temporary file is removed.  If
    a directory fsync fails, every file of the batch in that directory is
    removed again and each commit() raises.

    A commit() that is cancelled while waiting does not stop the file from
    being committed (the message may then be delivered even though the
    client was not told so; Postfix has the same window after "250").

    The event loop thread never blocks on fsync.
"""

from __future__ import annotations

import asyncio
import errno
from concurrent.futures import ThreadPoolExecutor

from postel.queue.errors import QueueFull
from postel.queue.file import QueueFileWriter, fsync_dir

_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


class Committer:
    """Batches the fsyncs of concurrently finishing queue files."""

    def __init__(self, *, fsync_workers: int = 4, max_batch: int = 256) -> None:
        self.max_batch = max(1, max_batch)
        self._pool = ThreadPoolExecutor(max_workers=max(1, fsync_workers),
                                        thread_name_prefix="postel-commit")
        self._pending: list[tuple[QueueFileWriter, asyncio.Future]] = []
        self._task: asyncio.Task | None = None
        self.batches = 0                 # statistics: batches synced
        self.files = 0                   # statistics: files committed

    async def commit(self, writer: QueueFileWriter) -> str:
        """commit - return the final path once the file and its name are durable."""
        writer.finish()
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
        synced = await asyncio.gather(
            *(loop.run_in_executor(self._pool, w.sync_file) for w in writers),
            return_exceptions=True)
        return await loop.run_in_executor(self._pool, _publish_batch, writers, synced)

    def close(self) -> None:
        """close - stop the thread pool (after the last commit)."""
        self._pool.shutdown(wait=True)

    async def __aenter__(self) -> Committer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


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
