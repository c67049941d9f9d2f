"""indexed - lmdb:, hash: and btree: indexed tables

SYNOPSIS
    table = open_table("lmdb:/etc/postel/virtual")      # reads /etc/postel/virtual.lmdb
    build_indexed("lmdb", "/etc/postel/virtual", entries, flags)

DESCRIPTION
    An indexed table is the file NAME.lmdb: an OpenLDAP LMDB database in a
    single file (MDB_NOSUBDIR), written in the same layout as Postfix's
    lmdb: tables, so that Postfix's "postmap -q KEY lmdb:NAME" can read a
    file built by Postel and the other way round.  Keys and values are
    stored with a terminating null byte by default (postmap -N behaviour,
    Postfix's default here); -n stores them without.  A lookup tries the
    key with and without the null, as Postfix does.

    hash: and btree: are accepted as names of the very same format and file
    (NAME.lmdb).  Python has no Berkeley DB, and one format for all three
    avoids a second code path; a Postfix on the same host will not read
    Postel's hash: files as NAME.db.  This is documented in docs/tables.md.

    Building is atomic: the new database is written to NAME.lmdb.tmp, synced,
    and renamed over NAME.lmdb.  A reader has the old or the new file open,
    never a half-built one.  Updates of an existing table (postmap -i, -d)
    copy the file, change the copy and rename it in the same way; an
    exclusive fcntl lock on NAME.lmdb.lock serialises writers.

    Readers open the file read-only without the LMDB lock file, so a
    reader never needs write access next to the table.

    A table opened with LookupFlags.OPEN_WRITE (a cache behind proxywrite:
    address_verify_map, postscreen_cache_map) is opened in place, created
    when missing, with LMDB's own lock file (NAME.lmdb-lock); update() and
    delete() commit one transaction each.  Such a table is meant to have one
    writer process (proxywrite runs one process) and to be read through it.

CONFIGURATION PARAMETERS
    lmdb_map_size (16777216)   initial database size limit; doubled as needed
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Iterable, Iterator

import lmdb

from postel.tables import LookupFlags, Table, TableError, TableUnavailable

SUFFIX = ".lmdb"
DEFAULT_MAP_SIZE = 16 * 1024 * 1024


def db_path(name: str) -> str:
    """db_path - the database file of table NAME."""
    return name + SUFFIX


def _decode(data: bytes) -> str:
    if data.endswith(b"\0"):
        data = data[:-1]
    return data.decode("utf-8", "surrogateescape")


def _encode(text: str, null: bool) -> bytes:
    data = text.encode("utf-8", "surrogateescape")
    return data + b"\0" if null else data


class IndexedTable(Table):
    """IndexedTable - a read-only view of NAME.lmdb."""

    type_name = "lmdb"

    def __init__(self, name: str, flags: LookupFlags = LookupFlags.FOLD_FIX) -> None:
        super().__init__(name, flags)
        self.path = db_path(name)
        self.can_update = bool(flags & LookupFlags.OPEN_WRITE)
        self.null = not flags & LookupFlags.TRY0NULL
        self.map_size = max(DEFAULT_MAP_SIZE, _size(self.path) * 2)
        try:
            if self.can_update:
                self.env = lmdb.open(self.path, subdir=False, lock=True, max_dbs=0,
                                     map_size=self.map_size, readahead=False)
            else:
                self.env = lmdb.open(self.path, subdir=False, readonly=True, lock=False,
                                     max_dbs=0, readahead=False)
        except lmdb.Error as exc:
            raise TableError(f"open database {self.path}: {_reason(exc)}") from None
        if not self.can_update:
            self.watch(self.path)       # our own updates must not look like a rebuild

    def get(self, key: str) -> str | None:
        """get - the value of key (tries with and without a terminating null)."""
        raw = key.encode("utf-8", "surrogateescape")
        with self.env.begin(buffers=False) as txn:
            value = txn.get(raw + b"\0")
            if value is None:
                value = txn.get(raw)
        return None if value is None else _decode(value)

    def sequence(self) -> Iterator[tuple[str, str]]:
        """sequence - every entry in key order."""
        with self.env.begin() as txn:
            for k, v in txn.cursor():
                yield _decode(k), _decode(v)

    def _write(self, fn):
        """_write - run fn(txn) in one write transaction, growing the map as needed."""
        if not self.can_update:
            raise TableError(f"{self.spec}: table is not open for update")
        while True:
            try:
                with self.env.begin(write=True) as txn:
                    return fn(txn)
            except lmdb.MapFullError:
                self.map_size *= 2
                self.env.set_mapsize(self.map_size)
            except lmdb.Error as exc:
                raise TableUnavailable(f"{self.spec}: update failed: {_reason(exc)}") from None

    def update(self, key: str, value: str) -> None:
        """update - store key -> value in place (OPEN_WRITE tables)."""
        k = self.fold(key)

        def fn(txn):
            txn.delete(_encode(k, not self.null))
            txn.put(_encode(k, self.null), _encode(value, self.null))
        self._write(fn)

    def delete(self, key: str) -> bool:
        """delete - remove key in place (OPEN_WRITE tables); true when present."""
        k = self.fold(key)

        def fn(txn):
            a = txn.delete(_encode(k, True))
            b = txn.delete(_encode(k, False))
            return a or b
        return self._write(fn)

    def close(self) -> None:
        """close - close the LMDB environment."""
        self.env.close()


def _reason(exc: Exception) -> str:
    text = str(exc)
    return text.split(": ", 1)[-1] if ": " in text else text


class _Writer:
    """_Writer - build or change NAME.lmdb through NAME.lmdb.tmp and rename."""

    def __init__(self, name: str, flags: LookupFlags, *, incremental: bool, mode: int | None):
        self.name = name
        self.path = db_path(name)
        self.tmp = self.path + ".tmp"
        self.flags = flags
        self.null = not flags & LookupFlags.TRY0NULL
        self.lockf = open(self.path + ".lock", "a")  # noqa: SIM115 - held until commit
        fcntl.flock(self.lockf, fcntl.LOCK_EX)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp)
        if incremental and os.path.exists(self.path):
            shutil.copyfile(self.path, self.tmp)
        self.map_size = max(DEFAULT_MAP_SIZE, _size(self.path) * 2)
        self.env = lmdb.open(self.tmp, subdir=False, lock=False, map_size=self.map_size,
                             sync=False, metasync=False)
        if mode is not None:
            os.chmod(self.tmp, mode)

    def _write(self, fn):
        while True:
            try:
                with self.env.begin(write=True) as txn:
                    return fn(txn)
            except lmdb.MapFullError:
                self.map_size *= 2
                self.env.set_mapsize(self.map_size)

    def put_all(self, entries: Iterable[tuple[str, str]], warn) -> None:
        """put_all - store entries, resolving duplicates by the flags."""
        batch = list(entries)

        def fn(txn):
            for key, value in batch:
                k = _encode(key, self.null)
                old = txn.get(k) or txn.get(_encode(key, not self.null))
                if old is not None:
                    if self.flags & LookupFlags.DUP_REPLACE:
                        txn.delete(_encode(key, not self.null))
                    elif self.flags & LookupFlags.DUP_IGNORE:
                        continue
                    else:
                        warn(f'duplicate entry: "{key}"')
                        continue
                txn.put(k, _encode(value, self.null))
        self._write(fn)

    def delete(self, key: str) -> bool:
        """delete - remove key (either null convention); true when found."""
        def fn(txn):
            a = txn.delete(_encode(key, True))
            b = txn.delete(_encode(key, False))
            return a or b
        return self._write(fn)

    def commit(self) -> None:
        """commit - sync the new file and rename it into place."""
        self.env.sync(True)
        self.env.close()
        os.rename(self.tmp, self.path)
        self._unlock()

    def abort(self) -> None:
        """abort - drop the new file."""
        with contextlib.suppress(lmdb.Error):
            self.env.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp)
        self._unlock()

    def _unlock(self) -> None:
        fcntl.flock(self.lockf, fcntl.LOCK_UN)
        self.lockf.close()


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def open_writer(name: str, flags: LookupFlags, *, incremental: bool = False,
                mode: int | None = None) -> _Writer:
    """open_writer - start building (or, incremental, changing) table NAME."""
    try:
        return _Writer(name, flags, incremental=incremental, mode=mode)
    except (OSError, lmdb.Error) as exc:
        raise TableError(f"open database {db_path(name)}: {_reason(exc)}") from None


def register(register_type) -> None:
    """register - lmdb:, hash: and btree: are one format."""
    for type_name in ("lmdb", "hash", "btree"):
        cls = type(f"{type_name.title()}Table", (IndexedTable,), {"type_name": type_name})
        register_type(type_name, cls)
