"""qdir - Postel queue directories

SYNOPSIS
    from postel.queue import QueueDir
    qd = QueueDir("/var/spool/postel", hash_queue_names=("deferred", "defer"),
                  hash_queue_depth=1)
    qd.create_dirs(owner_uid=None, gid=None)
    qd.path("deferred", qid)            # .../deferred/7/<qid>
    qd.move(qid, "incoming", "active")
    for qid in qd.scan("incoming"): ...
    qd.check_space(size_estimate, queue_minfree=0, message_size_limit=10240000)
    qd.purge_temp(max_age=7200)         # postsuper -p
    qd.quarantine(qid, "active", reason)

DESCRIPTION
    queue_directory holds one subdirectory per queue, with Postfix's names:

        maildrop  local submissions (postdrop), mode 0730, group setgid_group
        incoming  new mail written by cleanup
        active    mail that qmgr is delivering
        deferred  mail that will be tried again later
        hold      mail put on hold (postsuper -h, HOLD action)
        corrupt   damaged queue files (quarantine)
        bounce defer trace   per-message delivery status logs (by queue ID)
        flush     per-destination logs for fast flush
        saved     mail saved by postsuper -r with the saved option
        public    client-accessible service sockets, mode 0710
        private   internal service sockets
        pid       master.pid and friends, mode 0755
        recycle   files of delivered messages kept for reuse (recycle.py;
                  a Postel extension)

    All others have mode 0700.  The queues listed in hash_queue_names are
    split into hash_queue_depth levels of subdirectories named 0-F (see
    qid_hash in qid.py for the hash); those are created on demand.

    A queue file becomes visible only under its final name; writers use a
    temporary name "<qid>.tmp" in the same directory (see file.py).  scan()
    skips every name with a dot in it, and purge_temp() removes such files
    once they are older than max_age seconds, as postsuper -p does for the
    left-overs of a crash.

    Moving a message between queues is one rename(2); a missing hashed
    subdirectory is created and the rename retried.

    check_space() implements queue_minfree as Postfix's SMTP server does: it
    refuses (QueueFull) unless the file system has at least
    max(queue_minfree, 1.5 * max(message_size_limit, size_estimate)) bytes
    free (size_estimate: the client's SIZE= value, if any;
    message_size_limit 0 means no limit).  A busy writer (cleanup) sets
    space_cache to reuse one statvfs(2) answer for that many seconds.

CONFIGURATION PARAMETERS
    queue_directory            where the queues live
    hash_queue_names (deferred, defer)   queues split into subdirectories
    hash_queue_depth (1)       number of subdirectory levels
    queue_minfree (0)          free space (bytes) that must remain
    message_size_limit (10240000)  used for the free-space estimate

DIAGNOSTICS
    quarantine() logs, like Postfix's queue manager,
        warning: QID: corrupt queue file: REASON
        warning: saving corrupt file "QID" from queue "active" to queue "corrupt"
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import time
import zlib
from collections.abc import Iterable, Iterator, Mapping

from postel import log
from postel.queue.errors import QueueFull
from postel.queue.qid import MAX_HASH_DEPTH, qid_hash, qid_ok

# Queue name -> (mode, group is setgid_group?)
QUEUE_MODES: dict[str, tuple[int, bool]] = {
    "maildrop": (0o730, True),
    "incoming": (0o700, False),
    "active": (0o700, False),
    "deferred": (0o700, False),
    "hold": (0o700, False),
    "corrupt": (0o700, False),
    "bounce": (0o700, False),
    "defer": (0o700, False),
    "trace": (0o700, False),
    "flush": (0o700, False),
    "saved": (0o700, False),
    "public": (0o710, True),
    "private": (0o700, False),
    "pid": (0o755, False),
    "recycle": (0o700, False),
}
QUEUE_NAMES = tuple(QUEUE_MODES)
# Queues whose files are named by queue ID.
MESSAGE_QUEUES = ("maildrop", "incoming", "active", "deferred", "hold", "corrupt", "saved")
LOG_QUEUES = ("bounce", "defer", "trace")
# Queues that may hold files and therefore temp files / hashing.
FILE_QUEUES = MESSAGE_QUEUES + LOG_QUEUES + ("flush",)
TEMP_SUFFIX = ".tmp"
DEFAULT_TEMP_AGE = 2 * 3600      # postsuper -p: older temp files are crash left-overs
_SAFE_NAME = re.compile(r"[A-Za-z0-9_@+=:,%-][A-Za-z0-9_@+=:,%.\[\]-]*\Z")
_HEX = frozenset("0123456789ABCDEF")


def _name_ok(queue_name: str, name: str) -> bool:
    """_name_ok - may this be a file name in this queue?"""
    if queue_name == "flush":
        return bool(_SAFE_NAME.match(name)) and "." not in name[:1] and len(name) <= 255
    return qid_ok(name)


def hash_dirs(name: str, depth: int) -> list[str]:
    """hash_dirs - hashed subdirectory names for a queue ID (or a flush site name)."""
    if depth <= 0:
        return []
    if qid_ok(name):
        return qid_hash(name, depth)
    crc = zlib.crc32(name.encode("utf-8", "surrogateescape"))
    return [f"{(crc >> (4 * level)) & 0xF:X}" for level in range(depth)]


def parse_name_list(value: str | Iterable[str]) -> tuple[str, ...]:
    """parse_name_list - "deferred, defer" or a sequence, as a tuple of names."""
    if isinstance(value, str):
        return tuple(v for v in re.split(r"[\s,]+", value) if v)
    return tuple(value)


class QueueDir:
    """The queue directory: paths, moves, scans and space checks."""

    def __init__(self, queue_directory: str,
                 hash_queue_names: str | Iterable[str] = ("deferred", "defer"),
                 hash_queue_depth: int = 1) -> None:
        self.queue_directory = os.path.abspath(queue_directory)
        self.hash_queue_names = frozenset(parse_name_list(hash_queue_names))
        for name in self.hash_queue_names:
            if name not in QUEUE_MODES:
                raise ValueError(f"hash_queue_names: unknown queue name: {name!r}")
        if not 1 <= int(hash_queue_depth) <= MAX_HASH_DEPTH:
            raise ValueError(f"hash_queue_depth: must be 1..{MAX_HASH_DEPTH}, not {hash_queue_depth}")
        self.hash_queue_depth = int(hash_queue_depth)
        self.space_cache = 0.0           # seconds a free_space() answer may be reused
        self._owners: dict[str, tuple[int, int]] = {}
        self._space: tuple[float, int] | None = None
        self._tops: dict[str, str] = {}  # queue name -> its top directory
        self.recycler = None             # recycle.Recycler: files kept for reuse

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> QueueDir:
        """from_params - a QueueDir from main.cf values (raw strings)."""
        return cls(params["queue_directory"],
                   params.get("hash_queue_names", "deferred, defer"),
                   int(params.get("hash_queue_depth", "1")))

    def depth(self, queue_name: str) -> int:
        """depth - number of hashed subdirectory levels of a queue."""
        return self.hash_queue_depth if queue_name in self.hash_queue_names else 0

    def queue_path(self, queue_name: str) -> str:
        """queue_path - the top directory of one queue."""
        if queue_name not in QUEUE_MODES:
            raise ValueError(f"unknown queue name: {queue_name!r}")
        return os.path.join(self.queue_directory, queue_name)

    def dir_path(self, queue_name: str, qid: str) -> str:
        """dir_path - the (hashed) directory that holds a queue file."""
        if not _name_ok(queue_name, qid):
            raise ValueError(f"bad queue file name: {qid!r}")
        top = self._tops.get(queue_name)
        if top is None:
            top = self._tops[queue_name] = self.queue_path(queue_name)
        if queue_name not in self.hash_queue_names:
            return top
        return os.path.join(top, *hash_dirs(qid, self.hash_queue_depth))

    def path(self, queue_name: str, qid: str) -> str:
        """path - the full path of a queue file, hashed where configured."""
        return os.path.join(self.dir_path(queue_name, qid), qid)

    def create_dirs(self, owner_uid: int | None = None, gid: int | None = None) -> None:
        """create_dirs - create every queue directory with its mode (and owner)."""
        os.makedirs(self.queue_directory, mode=0o755, exist_ok=True)
        for name, (mode, setgid_group) in QUEUE_MODES.items():
            path = os.path.join(self.queue_directory, name)
            try:
                os.mkdir(path, mode)
            except FileExistsError:
                pass
            if owner_uid is not None or (gid is not None and setgid_group):
                uid = -1 if owner_uid is None or name == "pid" else owner_uid
                os.chown(path, uid, gid if (gid is not None and setgid_group) else -1)
            os.chmod(path, mode)

    def ensure_dir(self, queue_name: str, qid: str) -> str:
        """ensure_dir - create the hashed subdirectory for qid if missing."""
        d = self.dir_path(queue_name, qid)
        if not os.path.isdir(d):
            top = self.queue_path(queue_name)
            if not os.path.isdir(top):
                raise FileNotFoundError(errno.ENOENT, "queue directory does not exist", top)
            os.makedirs(d, mode=0o700, exist_ok=True)
            owner = self.root_owner_fix(queue_name)
            if owner is not None:
                with contextlib.suppress(OSError):
                    os.chown(d, *owner)
        return d

    def root_owner_fix(self, queue_name: str) -> tuple[int, int] | None:
        """root_owner_fix - (uid, gid) to give new files and directories when running as root.

        A command run by root (postsuper, a test, sendmail) must not leave root-owned
        files where the daemons, running as mail_owner, need to read and rename them:
        they take the owner of the queue's top directory, as Postfix's files are
        owned by mail_owner.  None when not root or nothing to change.
        """
        if os.geteuid() != 0 or queue_name == "maildrop":
            return None     # maildrop files keep their submitter's uid: pickup logs it
        cached = self._owners.get(queue_name)
        if cached is None:
            try:
                st = os.stat(self.queue_path(queue_name))
            except OSError:
                return None
            cached = self._owners[queue_name] = (st.st_uid, st.st_gid)
        return None if cached[0] == 0 else cached

    def move(self, qid: str, from_queue: str, to_queue: str) -> str:
        """move - rename a queue file into another queue; returns the new path."""
        src = self.path(from_queue, qid)
        dst = self.path(to_queue, qid)
        try:
            os.rename(src, dst)
        except FileNotFoundError:
            if not os.path.exists(src):
                raise
            self.ensure_dir(to_queue, qid)
            os.rename(src, dst)
        return dst

    def remove(self, queue_name: str, qid: str) -> bool:
        """remove - delete a queue file; False if it did not exist."""
        try:
            os.unlink(self.path(queue_name, qid))
        except FileNotFoundError:
            return False
        return True

    def exists(self, queue_name: str, qid: str) -> bool:
        """exists - is there a queue file for qid in this queue?"""
        return os.path.exists(self.path(queue_name, qid))

    def find(self, qid: str, queues: Iterable[str] = MESSAGE_QUEUES) -> tuple[str, str] | None:
        """find - (queue_name, path) of the queue file for qid, or None."""
        for queue_name in queues:
            path = self.path(queue_name, qid)
            if os.path.exists(path):
                return queue_name, path
        return None

    def scan_paths(self, queue_name: str) -> Iterator[tuple[str, str]]:
        """scan_paths - (qid, path) of every complete file in a queue, any order."""
        top = self.queue_path(queue_name)
        yield from _scan_tree(queue_name, top, MAX_HASH_DEPTH)

    def scan(self, queue_name: str) -> Iterator[str]:
        """scan - the queue IDs of every complete file in a queue, any order."""
        for qid, _ in self.scan_paths(queue_name):
            yield qid

    def purge_temp(self, max_age: float = DEFAULT_TEMP_AGE, now: float | None = None,
                   queues: Iterable[str] = FILE_QUEUES) -> list[str]:
        """purge_temp - remove temp files older than max_age seconds (postsuper -p)."""
        now = time.time() if now is None else now
        removed: list[str] = []
        for queue_name in queues:
            top = os.path.join(self.queue_directory, queue_name)
            for path in _scan_temp(top, MAX_HASH_DEPTH):
                try:
                    if os.lstat(path).st_mtime > now - max_age:
                        continue
                    os.unlink(path)
                except FileNotFoundError:
                    continue
                log.info("%s: removed old temporary file %s",
                         os.path.basename(path)[:-len(TEMP_SUFFIX)], path)
                removed.append(path)
        return removed

    def free_space(self) -> int:
        """free_space - bytes available to unprivileged writers in queue_directory."""
        if self.space_cache > 0:
            now = time.monotonic()
            if self._space is not None and now - self._space[0] < self.space_cache:
                return self._space[1]
        st = os.statvfs(self.queue_directory)
        free = st.f_bavail * st.f_frsize
        if self.space_cache > 0:
            self._space = (now, free)
        return free

    def space_ok(self, size_estimate: int | None = None, queue_minfree: int = 0,
                 message_size_limit: int = 10240000) -> bool:
        """space_ok - is there room for a message of this size (see check_space)?"""
        largest = max(message_size_limit, size_estimate or 0, 0)
        need = max(queue_minfree, int(1.5 * largest))
        return self.free_space() >= need

    def check_space(self, size_estimate: int | None = None, queue_minfree: int = 0,
                    message_size_limit: int = 10240000) -> None:
        """check_space - raise QueueFull unless space_ok()."""
        if not self.space_ok(size_estimate, queue_minfree, message_size_limit):
            raise QueueFull(self.queue_directory, errno.ENOSPC,
                            "not enough free space in the queue file system")

    def quarantine(self, qid: str, queue_name: str, reason: str = "") -> str | None:
        """quarantine - move a damaged queue file to corrupt/ and log it."""
        if reason:
            log.warning("%s: corrupt queue file: %s", qid, reason)
        try:
            dst = self.move(qid, queue_name, "corrupt")
        except FileNotFoundError:
            return None
        log.warning('saving corrupt file "%s" from queue "%s" to queue "%s"',
                    qid, queue_name, "corrupt")
        return dst


def _scan_tree(queue_name: str, top: str, depth: int) -> Iterator[tuple[str, str]]:
    """_scan_tree - walk a queue directory and its one-hex-digit subdirectories."""
    try:
        it = os.scandir(top)
    except FileNotFoundError:
        return
    with it:
        for entry in it:
            name = entry.name
            if len(name) == 1 and name in _HEX and depth > 0:
                if entry.is_dir(follow_symlinks=False):
                    yield from _scan_tree(queue_name, entry.path, depth - 1)
                continue
            if "." in name or not _name_ok(queue_name, name):
                continue
            if entry.is_file(follow_symlinks=False):
                yield name, entry.path


def _scan_temp(top: str, depth: int) -> Iterator[str]:
    """_scan_temp - paths of temp files under a queue directory."""
    try:
        it = os.scandir(top)
    except FileNotFoundError:
        return
    with it:
        for entry in it:
            if len(entry.name) == 1 and entry.name in _HEX and depth > 0:
                if entry.is_dir(follow_symlinks=False):
                    yield from _scan_temp(entry.path, depth - 1)
            elif entry.name.endswith(TEMP_SUFFIX) and stat.S_ISREG(
                    entry.stat(follow_symlinks=False).st_mode):
                yield entry.path


def quarantine(path: str, reason: str = "") -> str | None:
    """quarantine - move the queue file at path to corrupt/ (queue found from the path)."""
    qid = os.path.basename(path)
    d = os.path.dirname(os.path.abspath(path))
    for _ in range(MAX_HASH_DEPTH + 1):
        if os.path.basename(d) in MESSAGE_QUEUES:
            queue_name = os.path.basename(d)
            qdir = os.path.dirname(d)
            break
        d = os.path.dirname(d)
    else:
        raise ValueError(f"not a path in a queue directory: {path}")
    if reason:
        log.warning("%s: corrupt queue file: %s", qid, reason)
    dst = os.path.join(qdir, "corrupt", qid)
    try:
        os.rename(path, dst)
    except FileNotFoundError:
        if not os.path.exists(path):
            return None
        os.makedirs(os.path.dirname(dst), mode=0o700, exist_ok=True)
        os.rename(path, dst)
    log.warning('saving corrupt file "%s" from queue "%s" to queue "%s"',
                qid, queue_name, "corrupt")
    return dst
