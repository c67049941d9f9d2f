"""recycle - reuse the files of delivered messages for new queue files

SYNOPSIS
    from postel.queue.recycle import Recycler
    qd.recycler = Recycler(qd, limit=200, max_size=262144)

    # qmgr, when a message is done (instead of unlink):
    if not qd.recycler.put(qd.path("active", qid)):
        os.unlink(qd.path("active", qid))

    # QueueFileWriter, when it needs a new file (instead of O_CREAT):
    fd, old_size = qd.recycler.take(temp_path, uid)   # (-1, 0): create one

DESCRIPTION
    Creating a file costs the file system an inode allocation and
    deleting one an inode release.  On ext4 without a journal (common on
    virtual machines) the allocator also skips, one by one, every inode
    released in the last minute or more, reading the inode table for
    each: after a few thousand deliveries, creating one queue file costs
    about half a millisecond of kernel CPU, more than the whole of
    Postfix's cleanup per message.

    The recycler keeps the files of delivered messages instead of
    deleting them, in queue_directory/recycle/, and a new queue file is
    such a file renamed into place and overwritten from the start (the
    writer cuts it to its new length before the fsync), so that neither
    the allocation nor the release happens.  A file under recycle/ is
    not a message: no queue manager, mailq or postsuper command looks
    there, and it is named by its inode number, not by a queue ID.

    put() keeps at most `limit` files, each at most `max_size` bytes
    (bigger files are cheaper to delete than to keep); the count is
    qmgr's own, refreshed from the directory at most once a second when
    it reaches the limit.  take() renames the first file of a cached
    listing to the writer's temporary name (a concurrent writer in
    another process may win that name: then the next one is tried) and
    opens it without following links; anything that is not a plain file
    of the expected owner with one link is removed and not used (the
    listing skips what is not a plain file).  A
    listing that came back empty is not repeated for a second.

    Durability is unchanged: the writer fsyncs the file, renames the
    temporary name to the final one and fsyncs the directory, as for a
    new file.  A crash leaves either a file in recycle/ (harmless) or a
    temporary file in incoming/ (removed by postsuper -p as before).

    Privacy: the content of a delivered message stays in recycle/ until
    the file is reused (it is overwritten then), in a directory that only
    mail_owner can read; deleting a file does not erase its blocks
    either.  postsuper -p empties recycle/; queue_file_recycle_limit = 0
    turns recycling off.

CONFIGURATION PARAMETERS
    queue_file_recycle_limit (200)   files kept for reuse; 0: off
    queue_file_recycle_size (262144) bigger files are deleted as before
"""

from __future__ import annotations

import collections
import os
import stat
import threading
import time

RECYCLE = "recycle"
RELIST_DELAY = 1.0               # seconds between listings that found nothing
RECOUNT_DELAY = 1.0              # seconds between re-counts of a full pool


class Recycler:
    """The pool of files kept for reuse in queue_directory/recycle/."""

    def __init__(self, qd, limit: int = 200, max_size: int = 262144) -> None:
        self.dir = os.path.join(qd.queue_directory, RECYCLE)
        self.limit = max(0, limit)
        self.max_size = max(0, max_size)
        self._names: collections.deque[str] = collections.deque()
        self._lock = threading.Lock()
        self._next_list = 0.0
        self._count = -1                 # put(): files in the pool (-1: not counted yet)
        self._next_count = 0.0
        self._uid = os.geteuid()
        self.enabled = self.limit > 0 and os.path.isdir(self.dir)
        self.taken = 0                   # statistics
        self.kept = 0

    # -- the queue manager's side

    def put(self, path: str) -> bool:
        """put - move a finished queue file into the pool; False: delete it instead.

        The file is named by its inode number in hex: a queue ID would make
        it look like a message to anyone searching the queue for one.
        Raises FileNotFoundError when path does not exist (as unlink would)."""
        if not self.enabled:
            return False
        if self._count < 0 or self._count >= self.limit:
            if not self._recount():
                return False
        st = os.lstat(path)
        if st.st_size > self.max_size or not stat.S_ISREG(st.st_mode):
            return False
        try:
            os.rename(path, f"{self.dir}/{st.st_ino:x}")
        except FileNotFoundError:
            if os.path.lexists(path):    # recycle/ itself went away
                self.enabled = False
                return False
            raise
        except OSError:
            return False
        self._count += 1
        self.kept += 1
        return True

    def _recount(self) -> bool:
        """_recount - count the pool again (at most once a second); True if below the limit."""
        now = time.monotonic()
        if self._count >= 0 and now < self._next_count:
            return False
        self._next_count = now + RECOUNT_DELAY
        try:
            with os.scandir(self.dir) as it:
                self._count = sum(1 for _ in it)
        except OSError:
            self.enabled = False
            return False
        return self._count < self.limit

    # -- the writer's side (any thread)

    def take(self, dest: str, uid: int | None = None) -> tuple[int, int]:
        """take - a pool file renamed to dest and opened for writing: (fd, old size).

        uid: the owner a usable file must have (default: this process').
        (-1, 0) when the pool has nothing to give: the caller creates the file."""
        uid = self._uid if uid is None else uid
        if not self.enabled:
            return -1, 0
        for _ in range(8):
            name = self._next_name()
            if name is None:
                return -1, 0
            try:
                os.rename(f"{self.dir}/{name}", dest)
            except FileNotFoundError:
                continue                 # taken by another process
            except OSError:
                return -1, 0
            try:
                fd = os.open(dest, os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
            except OSError:
                self._discard(dest, name)
                continue
            try:
                st = os.fstat(fd)
            except OSError:
                st = None
            if st is None or not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 \
                    or st.st_uid != uid:
                os.close(fd)
                _unlink(dest)
                continue
            if stat.S_IMODE(st.st_mode) != 0o600:
                try:
                    os.fchmod(fd, 0o600)
                except OSError:
                    os.close(fd)
                    _unlink(dest)
                    continue
            self.taken += 1
            return fd, st.st_size
        return -1, 0

    def _next_name(self) -> str | None:
        """_next_name - the next name from the cached listing; list again when empty."""
        names = self._names
        try:
            return names.popleft()
        except IndexError:
            pass
        with self._lock:
            if names:
                return names.popleft()
            now = time.monotonic()
            if now < self._next_list:
                return None
            try:
                # Plain files only (d_type: no stat); a file swapped for
                # something else after this is caught by take()'s checks.
                with os.scandir(self.dir) as it:
                    listing = [e.name for e in it if e.is_file(follow_symlinks=False)]
            except OSError:
                self.enabled = False
                return None
            if not listing:
                self._next_list = now + RELIST_DELAY
                return None
            names.extend(listing)
        try:
            return names.popleft()
        except IndexError:
            return None


    def _discard(self, dest: str, name: str) -> None:
        """_discard - remove what take() could not use (or put it back if it cannot)."""
        try:
            os.unlink(dest)
        except IsADirectoryError:
            try:
                os.rename(dest, f"{self.dir}/{name}")
            except OSError:
                pass
        except OSError:
            pass


def purge(queue_directory: str) -> int:
    """purge - remove every file kept for reuse (postsuper -p); returns the count."""
    top = os.path.join(queue_directory, RECYCLE)
    removed = 0
    try:
        names = os.listdir(top)
    except OSError:
        return 0
    for name in names:
        try:
            os.unlink(os.path.join(top, name))
            removed += 1
        except OSError:
            pass
    return removed


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
