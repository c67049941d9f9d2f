"""cache - postscreen's temporary allowlist (postscreen_cache_map)

SYNOPSIS
    from postel.postscreen.cache import PassCache
    cache = PassCache.open("btree:/var/lib/postel/postscreen_cache")
    cache.add("192.0.2.1", expires=now + 86400)
    cache.valid("192.0.2.1", now)        # True until it expires
    cache.cleanup(now, retention=7 * 86400)

DESCRIPTION
    A client that passed the tests is remembered with the time its pass
    expires.  Postfix keeps this in a btree/lmdb table; Postel keeps it in
    an SQLite file (the Python standard library's, one writer: postscreen
    runs as one process) at the path of the map name plus ".sqlite", so
    "btree:$data_directory/postscreen_cache" becomes
    $data_directory/postscreen_cache.sqlite.  The type prefix (btree, hash,
    lmdb, sqlite) is accepted and ignored.  An empty map name keeps the
    cache in memory only.  A cache file that cannot be opened is a warning,
    and postscreen works with an in-memory cache.
"""

from __future__ import annotations

import os
import sqlite3

from postel import log


class PassCache:
    """PassCache - address -> expiry time of its last pass."""

    def __init__(self, path: str = "") -> None:
        self.path = path
        self.db: sqlite3.Connection | None = None
        self.memory: dict[str, float] = {}
        if path:
            try:
                os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
                self.db = sqlite3.connect(path, isolation_level=None)
                self.db.execute("CREATE TABLE IF NOT EXISTS pass"
                                " (addr TEXT PRIMARY KEY, expires REAL NOT NULL)")
            except (OSError, sqlite3.Error) as exc:
                log.warning("postscreen_cache_map %s: %s; using an in-memory cache", path, exc)
                self.db = None

    @classmethod
    def open(cls, spec: str) -> PassCache:
        """open - the cache named by postscreen_cache_map ("type:path" or "")."""
        spec = spec.strip()
        if not spec:
            return cls("")
        _kind, sep, path = spec.partition(":")
        return cls((path if sep else spec) + ".sqlite")

    def add(self, addr: str, expires: float) -> None:
        """add - remember a pass until expires."""
        self.memory[addr] = expires
        if self.db is not None:
            try:
                self.db.execute("INSERT OR REPLACE INTO pass VALUES (?, ?)", (addr, expires))
            except sqlite3.Error as exc:
                log.warning("postscreen cache update: %s", exc)

    def expiry(self, addr: str) -> float | None:
        """expiry - when addr's pass expires, None when unknown."""
        if addr in self.memory:
            return self.memory[addr]
        if self.db is not None:
            try:
                row = self.db.execute("SELECT expires FROM pass WHERE addr = ?", (addr,)).fetchone()
            except sqlite3.Error as exc:
                log.warning("postscreen cache lookup: %s", exc)
                return None
            if row is not None:
                self.memory[addr] = float(row[0])
                return float(row[0])
        return None

    def valid(self, addr: str, now: float) -> bool:
        """valid - has addr a pass that has not expired?"""
        exp = self.expiry(addr)
        return exp is not None and exp > now

    def cleanup(self, now: float, retention: float) -> int:
        """cleanup - drop entries expired longer than retention ago; how many."""
        cutoff = now - retention
        gone = [a for a, e in self.memory.items() if e < cutoff]
        for a in gone:
            del self.memory[a]
        if self.db is not None:
            try:
                cur = self.db.execute("DELETE FROM pass WHERE expires < ?", (cutoff,))
                return max(cur.rowcount, len(gone))
            except sqlite3.Error as exc:
                log.warning("postscreen cache cleanup: %s", exc)
        return len(gone)
