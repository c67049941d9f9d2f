"""cache - per-process SMTP connection cache of the smtp(8)/lmtp(8) client

SYNOPSIS
    from postel.smtp.cache import ConnectionCache
    cache = ConnectionCache(idle_limit=2.0, reuse_limit=300.0, count_limit=0)
    sess = cache.take("smtp:example.com") or cache.take("127.0.0.1:25")
    cache.put(["smtp:example.com", "127.0.0.1:25"], sess)

DESCRIPTION
    Postfix keeps idle SMTP connections in scache(8) so that the next
    delivery to the same destination skips the connection set-up.  A Postel
    delivery agent process serves many delivery requests at once, so it
    keeps its idle connections itself.  A connection is stored under its
    destination (transport and nexthop) and under its server endpoint
    (address and port), and taken by either.  A connection that has been
    idle for smtp_connection_cache_time_limit is closed (with QUIT); one
    older than smtp_connection_reuse_time_limit, or used
    smtp_connection_reuse_count_limit times (0: no limit), is not stored.
    The next delivery says RSET before its MAIL FROM.

CONFIGURATION PARAMETERS
    smtp_connection_cache_time_limit (2s)     idle time in the cache
    smtp_connection_reuse_time_limit (300s)   total age limit for reuse
    smtp_connection_reuse_count_limit (0)     uses per connection (0: any)
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from postel.smtp.session import Session


@dataclass(slots=True, eq=False)
class _Entry:
    # eq=False: entries are found and removed by identity; the generated __eq__
    # compared keys (the same for every connection to one relayhost), then
    # whole Sessions field by field, for each entry scanned.
    keys: tuple[str, ...]
    sess: Session
    timer: asyncio.TimerHandle | None


class ConnectionCache:
    """ConnectionCache - idle sessions, by destination and by endpoint."""

    def __init__(self, idle_limit: float = 2.0, reuse_limit: float = 300.0,
                 count_limit: int = 0) -> None:
        self.idle_limit = idle_limit
        self.reuse_limit = reuse_limit
        self.count_limit = count_limit
        self._entries: list[_Entry] = []
        self.stored = 0          # statistics, for tests and logs
        self.reused = 0

    def __len__(self) -> int:
        return len(self._entries)

    def reusable(self, sess: Session) -> bool:
        """reusable - may this session go back to the cache?"""
        if not sess.alive():
            return False
        if self.reuse_limit > 0 and time.monotonic() - sess.created >= self.reuse_limit:
            return False
        return not (self.count_limit > 0 and sess.uses >= self.count_limit)

    def put(self, keys: list[str], sess: Session) -> bool:
        """put - store an idle session; False (and the caller closes it) if it cannot be."""
        if not self.reusable(sess):
            return False
        entry = _Entry(tuple(keys), sess, None)
        try:
            loop = asyncio.get_running_loop()
            entry.timer = loop.call_later(self.idle_limit, self._expire, entry)
        except RuntimeError:
            return False
        self._entries.append(entry)
        self.stored += 1
        return True

    def take(self, key: str) -> Session | None:
        """take - a live idle session stored under key, removed from the cache."""
        for entry in list(self._entries):
            if key not in entry.keys:
                continue
            self._remove(entry)
            if entry.sess.alive():
                self.reused += 1
                return entry.sess
            entry.sess.close()
        return None

    def _remove(self, entry: _Entry) -> None:
        """_remove - forget an entry and its timer."""
        if entry in self._entries:
            self._entries.remove(entry)
        if entry.timer is not None:
            entry.timer.cancel()

    def _expire(self, entry: _Entry) -> None:
        """_expire - the idle time is over: QUIT and close."""
        if entry in self._entries:
            self._entries.remove(entry)
            asyncio.ensure_future(entry.sess.quit(2.0))

    async def close_all(self) -> None:
        """close_all - QUIT every cached session (process shutdown)."""
        entries, self._entries = self._entries, []
        for entry in entries:
            if entry.timer is not None:
                entry.timer.cancel()
        await asyncio.gather(*(e.sess.quit(2.0) for e in entries), return_exceptions=True)
