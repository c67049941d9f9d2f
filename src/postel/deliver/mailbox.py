"""mailbox - append a message to an mbox file or a Maildir

SYNOPSIS
    from postel.deliver.mailbox import (CopyFlags, MailboxError, Message,
        delivery_headers, deliver_mbox, deliver_maildir, as_user)

    msg = Message(sender, lines, orig_rcpt="a@x", delivered="b@y")
    deliver_mbox("/var/mail/b", msg, locks=["fcntl", "dotlock"], size_limit=51200000)
    path = deliver_maildir("/home/b/Maildir/", msg)

DESCRIPTION
    The one place where Postel writes a message into a user's mail store,
    shared by local(8) and virtual(8) (Postfix keeps the same code in
    global/mail_copy.c, mbox_open.c, dot_lockfile.c and deliver_flock.c).

    Prepended lines, in this order, as Postfix's mail_copy() writes them:

        From SENDER  Www Mmm dd hh:mm:ss yyyy     mbox only (asctime, local time;
                                                  MAILER-DAEMON for the null sender)
        Return-Path: <SENDER>                     mbox and Maildir
        X-Original-To: ORIG_RCPT                  when the original recipient is known
        Delivered-To: DELIVERED                   lower case; loop detection
                                                  (prepend_delivered_header)

    Addresses are written in external form (RFC 5322 quoting of the local
    part).  In an mbox, every line that starts with "From " gets a ">"
    (the mboxrd convention that Postfix applies to the message), and an
    empty line follows the message so that the next From_ line starts a
    new message.

    Maildir delivery follows the Maildir specification: the file is
    written under tmp/ with a unique name "TIME.MmicrosecondsPpid.HOST"
    (plus ",S=SIZE"), fsynced, then linked into new/ and the tmp/ name is
    removed.  tmp/, new/ and cur/ are created when missing.

    Locking an mbox (mailbox_delivery_lock, virtual_mailbox_lock): any of
    "fcntl" (POSIX record lock on the open file), "flock" and "dotlock"
    (FILE.lock created with O_EXCL, stale locks older than 500 seconds are
    removed, as Postfix).  A lock that cannot be had within a few tries is
    a temporary error.  On a write error the mbox is truncated back to its
    old size, so that a partial message never stays in a mailbox.

    Privileges: as_user(uid, gid) switches the effective uid/gid of the
    process for the duration of a with-block (only when running as root),
    as Postfix's set_eugid(); deliveries are synchronous, so no other
    delivery runs meanwhile.

DIAGNOSTICS
    MailboxError(dsn, text) with dsn 4.x.y (try again) or 5.x.y (give up).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import pwd
import socket
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from postel.mail.address import quote_local

STALE_DOTLOCK = 500          # seconds, Postfix's stale_lock_time default
LOCK_TRIES = 5
LOCK_DELAY = 1.0
FILE_MODE = 0o600


class MailboxError(Exception):
    """A delivery to a mailbox or file failed; dsn says whether to try again."""

    def __init__(self, dsn: str, text: str) -> None:
        super().__init__(text)
        self.dsn = dsn
        self.text = text

    @property
    def temporary(self) -> bool:
        """temporary - a 4.x.y error."""
        return self.dsn.startswith("4")


@dataclass(slots=True)
class Message:
    """What a mailbox writer needs: envelope sender, content lines and header values."""

    sender: str
    lines: Iterable[bytes]               # content lines without line terminator
    orig_rcpt: str = ""                  # X-Original-To value ("" = none)
    delivered: str = ""                  # Delivered-To value ("" = none)
    return_path: bool = True             # prepend Return-Path
    arrival: float = field(default_factory=time.time)


def _external(addr: str) -> str:
    """_external - an address in RFC 5322 form for a header."""
    return quote_local(addr)


def from_line(sender: str, when: float | None = None) -> bytes:
    """from_line - the mbox "From sender  asctime" separator line."""
    who = _external(sender) if sender else "MAILER-DAEMON"
    stamp = time.asctime(time.localtime(when))
    return f"From {who}  {stamp}".encode("utf-8", "surrogateescape")


def delivery_headers(msg: Message) -> list[bytes]:
    """delivery_headers - Return-Path, X-Original-To and Delivered-To lines to prepend."""
    out: list[bytes] = []
    if msg.return_path:
        out.append(f"Return-Path: <{_external(msg.sender)}>".encode("utf-8", "surrogateescape"))
    if msg.orig_rcpt:
        out.append(f"X-Original-To: {_external(msg.orig_rcpt)}".encode("utf-8", "surrogateescape"))
    if msg.delivered:
        out.append(f"Delivered-To: {_external(msg.delivered).lower()}"
                   .encode("utf-8", "surrogateescape"))
    return out


def mbox_bytes(msg: Message, when: float | None = None) -> Iterator[bytes]:
    """mbox_bytes - the message as mbox text: From_ line, headers, >From quoting, blank line."""
    yield from_line(msg.sender, when) + b"\n"
    for line in delivery_headers(msg):
        yield line + b"\n"
    buf: list[bytes] = []
    for line in msg.lines:
        if line.startswith(b"From "):
            line = b">" + line
        buf.append(line)
        if len(buf) >= 512:
            yield b"\n".join(buf) + b"\n"
            buf = []
    if buf:
        yield b"\n".join(buf) + b"\n"
    yield b"\n"


def joined_lines(lines: Iterable[bytes], eol: bytes = b"\n", batch: int = 512) -> Iterator[bytes]:
    """joined_lines - lines with eol after each, in chunks of up to batch lines."""
    buf: list[bytes] = []
    for line in lines:
        buf.append(line)
        if len(buf) >= batch:
            yield eol.join(buf) + eol
            buf = []
    if buf:
        yield eol.join(buf) + eol


def file_bytes(msg: Message) -> Iterator[bytes]:
    """file_bytes - the message with headers prepended, no From_ line (Maildir)."""
    yield from joined_lines(delivery_headers(msg))
    yield from joined_lines(msg.lines)


# -- privileges

@contextlib.contextmanager
def as_user(uid: int | None, gid: int | None) -> Iterator[None]:
    """as_user - run the with-block with effective uid/gid (root only; else a no-op)."""
    if uid is None or os.geteuid() != 0 or (uid == 0 and (gid or 0) == 0):
        yield
        return
    saved_groups = os.getgroups()
    os.setgroups([gid if gid is not None else 0])
    os.setegid(gid if gid is not None else 0)
    os.seteuid(uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)
        os.setgroups(saved_groups)


# -- locks

def _dotlock_acquire(path: str) -> str:
    """_dotlock_acquire - create PATH.lock exclusively; remove a stale one."""
    lock = path + ".lock"
    for attempt in range(LOCK_TRIES):
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.close(fd)
            return lock
        except FileExistsError:
            with contextlib.suppress(OSError):
                if time.time() - os.stat(lock).st_mtime > STALE_DOTLOCK:
                    os.unlink(lock)
                    continue
        except OSError as exc:
            raise MailboxError("4.2.0", f"cannot create lock file {lock}: {exc.strerror}") from None
        if attempt + 1 < LOCK_TRIES:
            time.sleep(LOCK_DELAY)
    raise MailboxError("4.2.0", f"unable to lock for exclusive access: {lock}: file exists")


def _kernel_lock(fd: int, kind: str, path: str) -> None:
    """_kernel_lock - take an fcntl or flock lock on fd, a few tries."""
    for attempt in range(LOCK_TRIES):
        try:
            if kind == "flock":
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            else:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise MailboxError("4.2.0", f"cannot lock {path}: {exc.strerror}") from None
        if attempt + 1 < LOCK_TRIES:
            time.sleep(LOCK_DELAY)
    raise MailboxError("4.2.0", f"unable to lock for exclusive access: {path}: "
                                "resource temporarily unavailable")


def parse_locks(value: str | Iterable[str]) -> list[str]:
    """parse_locks - mailbox_delivery_lock words, checked ("fcntl", "flock", "dotlock")."""
    words = value.replace(",", " ").split() if isinstance(value, str) else list(value)
    for word in words:
        if word not in ("fcntl", "flock", "dotlock"):
            raise ValueError(f"unknown mailbox lock method: {word}")
    return words


# -- mbox

def deliver_mbox(path: str, msg: Message, *, locks: Iterable[str] = ("fcntl", "dotlock"),
                 size_limit: int = 0, owner: tuple[int, int] | None = None) -> None:
    """deliver_mbox - append msg to the mbox file path, locked; MailboxError on failure.

    owner: (uid, gid) given to a newly created file (root delivering to a spool).
    """
    locks = list(locks)
    dotlock = None
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, FILE_MODE)
    except OSError as exc:
        dsn = "5.2.0" if exc.errno in (errno.ELOOP, errno.EISDIR) else "4.2.0"
        raise MailboxError(dsn, f"cannot open file {path}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not _regular(st):
            raise MailboxError("5.2.0", f"cannot deliver to file {path}: not a regular file")
        if owner is not None and st.st_size == 0 and os.geteuid() == 0:
            os.fchown(fd, owner[0], owner[1])
        if "dotlock" in locks:
            try:
                dotlock = _dotlock_acquire(path)
            except MailboxError:
                if os.access(os.path.dirname(path) or ".", os.W_OK):
                    raise
                dotlock = None   # as Postfix: no write access to the directory, no dotlock
        for kind in locks:
            if kind in ("fcntl", "flock"):
                _kernel_lock(fd, kind, path)
        start = os.lseek(fd, 0, os.SEEK_END)
        _write_all(fd, path, mbox_bytes(msg), start, size_limit)
    finally:
        if dotlock:
            with contextlib.suppress(OSError):
                os.unlink(dotlock)
        os.close(fd)


def _regular(st: os.stat_result) -> bool:
    """_regular - a plain file with one link (Postfix refuses hard-linked mailboxes)."""
    import stat as _stat
    return _stat.S_ISREG(st.st_mode) and st.st_nlink <= 1


def _write_all(fd: int, path: str, chunks: Iterable[bytes], start: int, size_limit: int) -> None:
    """_write_all - write chunks, fsync; on error truncate back to start and raise."""
    written = 0
    try:
        for chunk in chunks:
            if size_limit and start + written + len(chunk) > size_limit:
                raise MailboxError("5.2.2", f"cannot update mailbox {path} for user: "
                                   "message or mailbox exceeds size limit")
            view = memoryview(chunk)
            while view:
                n = os.write(fd, view)
                view = view[n:]
                written += n
        os.fsync(fd)
    except MailboxError:
        _truncate(fd, start)
        raise
    except OSError as exc:
        _truncate(fd, start)
        dsn = "5.2.2" if exc.errno in (errno.EFBIG, errno.EDQUOT) else "4.3.0"
        raise MailboxError(dsn, f"cannot update mailbox {path}: {exc.strerror}") from None


def _truncate(fd: int, size: int) -> None:
    """_truncate - undo a partial append."""
    with contextlib.suppress(OSError):
        os.ftruncate(fd, size)


# -- Maildir

_seq = [0]
_host: list[str] = []        # the host name part, computed once per process


def _unique_name(size: int) -> str:
    """_unique_name - Maildir unique name: TIME.MusecPpidQseq.HOST,S=size."""
    now = time.time()
    secs = int(now)
    usec = int((now - secs) * 1_000_000)
    _seq[0] += 1
    if not _host:
        _host.append(socket.gethostname().replace("/", "\\057").replace(":", "\\072"))
    return f"{secs}.M{usec}P{os.getpid()}Q{_seq[0]}.{_host[0]}"


def make_maildir(path: str, owner: tuple[int, int] | None = None) -> None:
    """make_maildir - create path/{tmp,new,cur} as needed (mode 0700)."""
    for sub in ("", "tmp", "new", "cur"):
        d = os.path.join(path, sub)
        try:
            if sub:
                os.mkdir(d, 0o700)
            else:
                os.makedirs(d, 0o700)   # as Postfix's make_dirs: missing parents too
        except FileExistsError:
            continue
        except OSError as exc:
            dsn = "5.2.0" if exc.errno in (errno.ENOTDIR,) else "4.2.0"
            raise MailboxError(dsn, f"create maildir file {d}: {exc.strerror}") from None
        if owner is not None and os.geteuid() == 0:
            os.chown(d, owner[0], owner[1])


def deliver_maildir(path: str, msg: Message, *, size_limit: int = 0,
                    owner: tuple[int, int] | None = None) -> str:
    """deliver_maildir - write msg into the Maildir path; returns the new/ file name."""
    base = _unique_name(0)
    tmp = os.path.join(path, "tmp", base)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    try:
        try:
            fd = os.open(tmp, flags, FILE_MODE)
        except (FileNotFoundError, NotADirectoryError):
            make_maildir(path, owner)       # no Maildir (or no tmp/) yet: as Postfix, make it
            fd = os.open(tmp, flags, FILE_MODE)
    except OSError as exc:
        raise MailboxError("4.2.0", f"create maildir file {tmp}: {exc.strerror}") from None
    try:
        if owner is not None and os.geteuid() == 0:
            os.fchown(fd, owner[0], owner[1])
        _write_all(fd, tmp, file_bytes(msg), 0, size_limit)
        size = os.fstat(fd).st_size
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    os.close(fd)
    final = os.path.join(path, "new", f"{base},S={size}")
    try:
        try:
            os.link(tmp, final)
        except FileNotFoundError:
            if not os.path.exists(tmp):
                raise
            make_maildir(path, owner)       # new/ is missing: make it, link again
            os.link(tmp, final)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise MailboxError("4.2.0", f"link to maildir file {final}: {exc.strerror}") from None
    with contextlib.suppress(OSError):
        os.unlink(tmp)
    return final


def is_self_contained(mail_owner: str) -> bool:
    """is_self_contained - not root, or mail_owner is ourselves (`postel init` instance)."""
    euid = os.geteuid()
    if euid != 0:
        return True
    try:
        return pwd.getpwnam(mail_owner).pw_uid == euid
    except KeyError:
        return False


def delivered_to_headers(lines: list[bytes]) -> set[str]:
    """delivered_to_headers - lower-case Delivered-To: values in the message header."""
    found: set[str] = set()
    for line in lines:
        if not line:
            break
        if line[:13].lower() == b"delivered-to:":
            found.add(line[13:].strip().decode("utf-8", "replace").lower())
    return found
