"""postlock - lock a mail folder and run a command

SYNOPSIS
    postel lock [-c config_dir] [-l lock_style] [-v] file command...

DESCRIPTION
    postlock(1) locks file for exclusive access and runs command while it
    holds the lock, with the locking protocol that local delivery uses, so
    that a script can change a mailbox without racing with deliveries.

    The lock styles ($mailbox_delivery_lock, or -l) are a list of:
      fcntl    a POSIX record lock on the whole file (lockf)
      flock    a BSD flock(2) lock
      dotlock  file.lock, created with O_EXCL; a lock file older than
               $stale_lock_time is removed as stale
    Each lock is tried $deliver_lock_attempts times, $deliver_lock_delay
    seconds apart.  The file must exist.  The command runs with the
    environment and standard streams of postlock; its exit status is
    postlock's.

DIAGNOSTICS
    Exit status 75 (EX_TEMPFAIL) when the file cannot be locked, 1 when it
    cannot be opened or the command cannot be run, 64 for bad usage.

CONFIGURATION PARAMETERS
    mailbox_delivery_lock (fcntl, dotlock)   default lock styles
    deliver_lock_attempts (20)               attempts per lock
    deliver_lock_delay (1s)                  pause between attempts
    stale_lock_time (500s)                   a dot-lock older is stale
"""

from __future__ import annotations

import errno
import fcntl
import os
import subprocess
import time

from postel.commands._qadmin import EX_TEMPFAIL, EX_USAGE, Fatal, fatal, load

PROG = "postlock"
USAGE = "usage: postlock [-c config_dir] [-l lock_style] [-v] file command..."
STYLES = ("fcntl", "flock", "dotlock")


def _kernel_lock(fd: int, style: str, attempts: int, delay: float) -> bool:
    """_kernel_lock - fcntl or flock, non-blocking with retries."""
    for i in range(max(1, attempts)):
        try:
            if style == "fcntl":
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            else:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
        if i + 1 < attempts:
            time.sleep(delay)
    return False


def dot_lock(path: str, attempts: int, delay: float, stale: float) -> bool:
    """dot_lock - create path.lock exclusively; remove a stale one."""
    lock = path + ".lock"
    for i in range(max(1, attempts)):
        try:
            os.close(os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            return True
        except FileExistsError:
            try:
                if time.time() - os.stat(lock).st_mtime > stale:
                    os.unlink(lock)
                    continue
            except FileNotFoundError:
                continue
        if i + 1 < attempts:
            time.sleep(delay)
    return False


def main(argv: list[str], config_dir: str | None) -> int:
    """main - postel lock."""
    dotlocked = ""
    try:
        style_opt = None
        i = 0
        while i < len(argv) and argv[i].startswith("-"):
            if argv[i] in ("-c", "-l") and i + 1 < len(argv):
                if argv[i] == "-c":
                    config_dir = argv[i + 1]
                else:
                    style_opt = argv[i + 1]
                i += 2
            elif argv[i] == "-v":
                i += 1
            else:
                raise Fatal(f"invalid option: {argv[i]}\n{USAGE}", EX_USAGE)
        rest = argv[i:]
        if len(rest) < 2:
            raise Fatal(USAGE, EX_USAGE)
        path, command = rest[0], rest[1:]
        cfg = load(PROG, config_dir)
        styles = [s for s in (style_opt or cfg.get("mailbox_delivery_lock")).replace(",", " ").split()]
        for s in styles:
            if s not in STYLES:
                raise Fatal(f"unknown lock style: {s}", EX_USAGE)
        attempts = cfg.get_int("deliver_lock_attempts")
        delay = cfg.get_time("deliver_lock_delay")
        try:
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
        except OSError as exc:
            raise Fatal(f"open {path}: {exc.strerror}", 1) from None
        try:
            for style in styles:
                if style == "dotlock":
                    if not dot_lock(path, attempts, delay, cfg.get_time("stale_lock_time")):
                        raise Fatal(f"{path}: cannot create dot lock {path}.lock", EX_TEMPFAIL)
                    dotlocked = path + ".lock"
                elif not _kernel_lock(fd, style, attempts, delay):
                    raise Fatal(f"{path}: cannot obtain {style} lock: resource busy", EX_TEMPFAIL)
            try:
                return subprocess.call(command)
            except OSError as exc:
                raise Fatal(f"{command[0]}: {exc.strerror}", 1) from None
        finally:
            os.close(fd)
    except Fatal as exc:
        return fatal(PROG, exc)
    finally:
        if dotlocked:
            try:
                os.unlink(dotlocked)
            except OSError:
                pass
