"""tables - Postel lookup table registry

SYNOPSIS
    from postel.tables import open_table, Table, TableError, TableUnavailable, LookupFlags

    table = open_table("regexp:/etc/postel/header_checks")
    result = table.lookup("Subject: hello")      # str or None

DESCRIPTION
    Every Postel service reaches its lookup tables through this module, as
    Postfix programs do through dict_open(3).  A table is named "type:name";
    open_table() finds the type in one registry, opens the table, and caches
    the open table per process by (type:name, flags).

    Table.lookup(key) returns the result string, or None when the key is not
    found.  It raises TableUnavailable when the backend cannot answer now
    (a database or server is down): the caller then defers the work, with
    "451 4.3.0" for an SMTP client.  Configuration and syntax problems with
    the table itself raise TableError when the table is opened.

    Case folding follows Postfix: with LookupFlags.FOLD_FIX (the default) a
    table whose keys are fixed strings (lmdb, hash, btree, texthash, inline,
    sqlite, ...) folds the lookup key to lower case; pattern tables (regexp,
    pcre, cidr) receive the key unchanged and decide case themselves.

    Table.needs_reopen() is true when the file behind the table changed on
    disk (new inode, size or mtime).  A long-running service should then
    stop using the table; open_table() itself hands out a fresh instance in
    place of a cached one that needs reopening.

    Types (see docs/tables.md for the details of each):
        lmdb hash btree        indexed file NAME.lmdb built by "postel map"
        texthash               postmap(1) source file read into memory
        inline static fail environ
        regexp pcre cidr       pattern tables
        unionmap pipemap       tables of tables
        sqlite                 SQLite database (sqlite_table(5))
        pgsql                  PostgreSQL database (pgsql_table(5))
        socketmap tcp          network lookup servers
        unix                   passwd.byname, group.byname
        proxy                  proxy:TYPE:NAME through the proxymap(8) service

    A table type that needs main.cf (proxy: needs $queue_directory) asks
    table_config(): the Config last given to open_table(..., cfg=...) or
    set_table_config(), else main.cf from $MAIL_CONFIG (or /etc/postel).

    register_type(name, cls) adds a type; cls(name, flags) must build a Table.

DIAGNOSTICS
    Syntax problems in table files are reported as Postfix does, with
    log.warning("TYPE map FILE, line N: ..."), and the bad rule is skipped.
"""

from __future__ import annotations

import enum
import os
import threading
from collections.abc import Callable, Iterator


class TableError(Exception):
    """A table cannot be opened or used (bad name, bad file, bad type)."""


class TableUnavailable(TableError):
    """The backend cannot answer now; the caller should try again later."""


class LookupFlags(enum.IntFlag):
    """Open flags, after Postfix's DICT_FLAG_* values."""

    NONE = 0
    FOLD_FIX = 1        # fold keys to lower case for fixed-string tables
    DUP_WARN = 2        # on update, warn about a duplicate and keep the old entry
    DUP_IGNORE = 4      # on update, keep the old entry silently (postmap -w)
    DUP_REPLACE = 8     # on update, replace the old entry silently (postmap -r)
    TRY1NULL = 16       # store keys and values with a terminating null (postmap -N)
    TRY0NULL = 32       # store keys and values without a null (postmap -n)
    BULK = 64           # building a new table from scratch
    OPEN_WRITE = 128    # open for update/delete (proxy: then uses proxywrite)


DEFAULT_FLAGS = LookupFlags.FOLD_FIX


class Table:
    """Table - one open lookup table; subclasses implement get()."""

    type_name = "?"
    fixed_keys = True       # keys are fixed strings: FOLD_FIX applies
    can_update = False

    def __init__(self, name: str, flags: LookupFlags = DEFAULT_FLAGS) -> None:
        self.name = name
        self.flags = LookupFlags(flags)
        self.paths: list[str] = []
        self._stamps: list[tuple[int, int, int, int] | None] = []

    @property
    def spec(self) -> str:
        """spec - the "type:name" of this table."""
        return f"{self.type_name}:{self.name}"

    def fold(self, key: str) -> str:
        """fold - the key as the backend sees it (lower case for fixed-key tables)."""
        if self.fixed_keys and self.flags & LookupFlags.FOLD_FIX:
            return key.lower()
        return key

    def lookup(self, key: str) -> str | None:
        """lookup - the result for key, or None; TableUnavailable on backend failure."""
        return self.get(self.fold(key))

    def get(self, key: str) -> str | None:
        """get - backend lookup of an already folded key."""
        raise NotImplementedError

    def update(self, key: str, value: str) -> None:
        """update - store key -> value (only for updatable tables)."""
        raise TableError(f"{self.spec}: table does not support updates")

    def delete(self, key: str) -> bool:
        """delete - remove key; true when it was present."""
        raise TableError(f"{self.spec}: table does not support deletion")

    def sequence(self) -> Iterator[tuple[str, str]]:
        """sequence - every (key, value), in database order (postmap -s)."""
        raise TableError(f"{self.spec}: table does not support sequential access")

    def close(self) -> None:
        """close - release resources."""

    def watch(self, *paths: str) -> None:
        """watch - remember the state of files whose change means reopen."""
        for path in paths:
            self.paths.append(path)
            self._stamps.append(_stamp(path))

    def needs_reopen(self) -> bool:
        """needs_reopen - true when a file behind this table changed on disk."""
        return any(_stamp(p) != s for p, s in zip(self.paths, self._stamps, strict=True))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.spec}>"


def _stamp(path: str) -> tuple[int, int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


TableFactory = Callable[[str, LookupFlags], Table]

_REGISTRY: dict[str, TableFactory] = {}
_CACHE: dict[tuple[str, int], Table] = {}
_LOCK = threading.RLock()   # re-entrant: unionmap/pipemap open their members inside open_table()


def register_type(type_name: str, factory: TableFactory) -> None:
    """register_type - make "type_name:..." tables available."""
    _REGISTRY[type_name] = factory


def table_types() -> list[str]:
    """table_types - the registered type names (postconf -m)."""
    _load_builtin()
    return sorted(_REGISTRY)


def split_spec(spec: str) -> tuple[str, str]:
    """split_spec - "type:name" -> (type, name); TableError without a type."""
    type_name, sep, name = spec.partition(":")
    if not sep or not type_name or not name:
        raise TableError(f"need dictionary type:name, got \"{spec}\"")
    return type_name, name


_CONFIG: object | None = None


def set_table_config(cfg: object | None) -> None:
    """set_table_config - the main.cf that table types needing parameters read."""
    global _CONFIG
    _CONFIG = cfg


def table_config() -> object:
    """table_config - the Config for table types (set, else loaded from $MAIL_CONFIG)."""
    global _CONFIG
    if _CONFIG is None:
        from postel.config import ConfigError, load_config
        try:
            _CONFIG = load_config()
        except (ConfigError, OSError) as exc:
            raise TableError(f"cannot read main.cf: {exc}") from None
    return _CONFIG


def open_table(spec: str, flags: LookupFlags = DEFAULT_FLAGS, cfg: object | None = None,
               *, cache: bool = True) -> Table:
    """open_table - open (or reuse) the table named "type:name"."""
    _load_builtin()
    if cfg is not None:
        set_table_config(cfg)
    type_name, name = split_spec(spec.strip())
    key = (f"{type_name}:{name}", int(flags))
    with _LOCK:
        table = _CACHE.get(key) if cache else None
        if table is not None and not table.needs_reopen():
            return table
        if table is not None:
            table.close()
        factory = _REGISTRY.get(type_name)
        if factory is None:
            raise TableError(f"unsupported dictionary type: {type_name}")
        table = factory(name, LookupFlags(flags))
        if cache:
            _CACHE[key] = table
        return table


def close_all() -> None:
    """close_all - close and forget every cached table (after fork, in tests)."""
    with _LOCK:
        for table in _CACHE.values():
            table.close()
        _CACHE.clear()


_loaded = False


def _load_builtin() -> None:
    """_load_builtin - register the built-in types; one broken module spares the others."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    import importlib
    for name in ("indexed", "simple", "regexp", "cidr", "sqlite", "netmap", "unix", "proxy",
                 "pgsql"):
        try:
            mod = importlib.import_module(f"postel.tables.{name}")
        except ImportError as exc:
            from postel import log
            log.warning("lookup table module %s not available: %s", name, exc)
            continue
        mod.register(register_type)


__all__ = [
    "DEFAULT_FLAGS", "LookupFlags", "Table", "TableError", "TableUnavailable",
    "close_all", "open_table", "register_type", "set_table_config", "split_spec",
    "table_config", "table_types",
]
