"""logs - per-destination fast flush logs

SYNOPSIS
    from postel.flush.logs import FlushLogs
    logs = FlushLogs(qd, refresh_time=43200, purge_time=604800)
    logs.add("example.com", qid); logs.send_site("example.com") -> number made eligible
    logs.send_file(qid); logs.refresh(); logs.purge()

DESCRIPTION
    One log file per destination, $queue_directory/flush/<site>, holds the
    queue IDs of messages that have mail deferred for that destination, one
    per line, appended under an exclusive fcntl lock.  The site name is the
    lower-cased domain (or [address]).

    "Sending" a message means making it eligible for immediate delivery:
    a deferred queue file's modification time is the time of its next
    delivery attempt (Postfix's convention, which qmgr follows), so it is
    set to now.  Messages that are no longer in the deferred queue are
    skipped.  After send_site() the log is emptied: a delivery that defers
    again adds the message again.

    refresh() sends every non-empty log that has not been touched for
    refresh_time seconds, and removes empty logs untouched for purge_time
    seconds.  purge() sends every non-empty log at once.

    Which sites may have a log ($fast_flush_domains) is decided by the
    service with postel.mail.domain_list.DomainList (names, .subdomains,
    /file and type:table patterns, !negation).
"""

from __future__ import annotations

import fcntl
import os
import time

from postel import log
from postel.queue import QueueDir, qid_ok


class FlushLogs:
    """The flush directory of one queue."""

    def __init__(self, qd: QueueDir, refresh_time: float = 43200.0,
                 purge_time: float = 604800.0) -> None:
        self.qd = qd
        self.refresh_time = refresh_time
        self.purge_time = purge_time

    def path(self, site: str) -> str:
        """path - the log file of a site (ValueError for a bad name)."""
        return self.qd.path("flush", site.lower())

    def add(self, site: str, qid: str) -> None:
        """add - append a queue ID to a site's log."""
        if not qid_ok(qid):
            raise ValueError(f"bad queue ID: {qid!r}")
        self.qd.ensure_dir("flush", site.lower())
        fd = os.open(self.path(site), os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX)
            os.write(fd, qid.encode("ascii") + b"\n")
        finally:
            os.close(fd)

    def send_site(self, site: str) -> int:
        """send_site - make a site's deferred messages eligible; empty the log."""
        try:
            fd = os.open(self.path(site), os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            return 0
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX)
            data = b""
            while chunk := os.read(fd, 65536):
                data += chunk
            count = 0
            seen: set[str] = set()
            for word in data.decode("ascii", "replace").split():
                if word in seen or not qid_ok(word):
                    continue
                seen.add(word)
                count += self.send_file(word)
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)
        log.info("site %s: %d queued messages made eligible for delivery", site, count)
        return count

    def send_file(self, qid: str) -> int:
        """send_file - make one deferred message eligible now; 1 if it was there."""
        try:
            os.utime(self.qd.path("deferred", qid))
        except (FileNotFoundError, ValueError):
            return 0
        return 1

    def sites(self) -> list[tuple[str, os.stat_result]]:
        """sites - (site, stat) of every log."""
        out = []
        top = self.qd.queue_path("flush")
        for dirpath, _dirs, files in os.walk(top):
            for name in files:
                if name.startswith(".") or name.endswith(".tmp"):
                    continue
                try:
                    out.append((name, os.stat(os.path.join(dirpath, name))))
                except FileNotFoundError:
                    continue
        return out

    def refresh(self, now: float | None = None) -> int:
        """refresh - send stale non-empty logs, delete old empty ones; returns sends."""
        now = time.time() if now is None else now
        sent = 0
        for site, st in self.sites():
            age = now - st.st_mtime
            if st.st_size == 0:
                if age > self.purge_time:
                    try:
                        os.unlink(self.path(site))
                        log.info("site %s: removed unused fast flush log", site)
                    except (FileNotFoundError, ValueError):
                        pass
            elif age > self.refresh_time:
                self.send_site(site)
                sent += 1
        return sent

    def purge(self) -> int:
        """purge - send every non-empty log now; returns sends."""
        sent = 0
        for site, st in self.sites():
            if st.st_size:
                self.send_site(site)
                sent += 1
        return sent
