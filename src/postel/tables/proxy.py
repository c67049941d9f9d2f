"""proxy - proxy:TYPE:NAME tables, answered by the proxymap(8) service

SYNOPSIS
    local_recipient_maps = proxy:unix:passwd.byname $alias_maps
    address_verify_map = proxy:lmdb:$data_directory/verify_cache

    table = open_table("proxy:lmdb:/etc/postel/virtual")
    table.lookup("joe@example.com")
    open_table("proxy:lmdb:/var/lib/postel/verify", LookupFlags.FOLD_FIX
               | LookupFlags.OPEN_WRITE).update(key, value)

DESCRIPTION
    The client side of Postfix's dict_proxy: the table TYPE:NAME is opened
    and searched by the proxymap service, not by this process.  That shares
    one open table (one database connection) among all processes and keeps
    a single writer for tables that need one.

    Requests go to $queue_directory/private/$proxymap_service_name; a table
    opened with LookupFlags.OPEN_WRITE, and any table after its first
    update() or delete(), uses $proxywrite_service_name instead (the one
    process that may change tables in $proxy_write_maps).

    Each request is one attribute list (postel.ipc.attr):

        request=open      table= flags=             -> status= fixed=
        request=lookup    table= flags= key=        -> status= value=
        request=update    table= flags= key= value= -> status=
        request=delete    table= flags= key=        -> status=
        request=sequence  table= flags= func=first|next -> status= key= value=

    The status codes are PROXY_STAT_* below.  The key is sent as given: the
    server folds it as the table type requires.

    One connection per service is kept open in the process and reused; a
    connection the service closed while idle is replaced and the request
    sent once more.  When the service cannot be reached or does not answer,
    lookup() raises TableUnavailable (the caller defers), as it does for a
    RETRY reply.  A refused table (not listed in $proxy_read_maps or
    $proxy_write_maps) is a configuration error: TableError, raised by the
    first request (open_table() itself does no I/O: it holds the registry
    lock, which a proxymap service in the same process also needs).

CONFIGURATION PARAMETERS
    queue_directory                 where private/ lives
    proxymap_service_name (proxymap)
    proxywrite_service_name (proxywrite)
    ipc_timeout (3600s)             time limit for one request/reply
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

from postel.ipc.attr import AttrError, AttrList, Attrs
from postel.ipc.client import ServiceUnavailable, SyncConnection
from postel.tables import LookupFlags, Table, TableError, TableUnavailable, table_config

PROXY_STAT_OK = 0       # the request succeeded
PROXY_STAT_NOKEY = 1    # the key was not found
PROXY_STAT_RETRY = 2    # the table cannot answer now; try again later
PROXY_STAT_BAD = 3      # malformed request, or the operation is not supported
PROXY_STAT_DENY = 4     # the table is not approved for this service
PROXY_STAT_CONFIG = 5   # the table cannot be opened (configuration error)

PROXY_PREFIX = "proxy:"
CONNECT_RETRY = 1.0     # seconds to retry connecting to a (re)starting service


def strip_proxy(spec: str) -> str:
    """strip_proxy - TYPE:NAME without any leading "proxy:" prefixes."""
    while spec.startswith(PROXY_PREFIX):
        spec = spec[len(PROXY_PREFIX):]
    return spec


class _Channel:
    """_Channel - one reused blocking connection to a proxymap service."""

    def __init__(self, queue_directory: str, endpoint: str, timeout: float) -> None:
        self.queue_directory = queue_directory
        self.endpoint = endpoint
        self.timeout = timeout
        self.conn: SyncConnection | None = None
        self.lock = threading.Lock()
        self.connects = 0

    def close(self) -> None:
        """close - drop the connection."""
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def request(self, attrs: Attrs) -> AttrList:
        """request - one request/reply; TableUnavailable when the service fails."""
        with self.lock:
            for attempt in (1, 2):
                fresh = self.conn is None
                try:
                    if self.conn is None:
                        self.conn = SyncConnection(self.queue_directory, self.endpoint,
                                                   timeout=self.timeout, retry_for=CONNECT_RETRY)
                        self.connects += 1
                    self.conn.send(attrs)
                    return self.conn.recv()
                except (ServiceUnavailable, EOFError, AttrError) as exc:
                    self.close()
                    if fresh or attempt == 2 or isinstance(exc, AttrError):
                        raise TableUnavailable(f"proxymap service: {exc}") from None
            raise AssertionError("not reached")  # pragma: no cover


_CHANNELS: dict[tuple[str, str], _Channel] = {}
_CHANNELS_LOCK = threading.Lock()


def channel(queue_directory: str, service: str, timeout: float) -> _Channel:
    """channel - the process-wide connection to private/SERVICE."""
    key = (queue_directory, service)
    with _CHANNELS_LOCK:
        ch = _CHANNELS.get(key)
        if ch is None:
            ch = _CHANNELS[key] = _Channel(queue_directory, f"private/{service}", timeout)
        return ch


def close_channels() -> None:
    """close_channels - close every proxymap connection of this process."""
    with _CHANNELS_LOCK:
        for ch in _CHANNELS.values():
            ch.close()
        _CHANNELS.clear()


def _forget_channels() -> None:
    """_forget_channels - a forked child must not share its parent's sockets."""
    _CHANNELS.clear()


os.register_at_fork(after_in_child=_forget_channels)


class ProxyTable(Table):
    """ProxyTable - a table searched by the proxymap service."""

    type_name = "proxy"
    fixed_keys = False      # the server folds, as its table type requires

    def __init__(self, name: str, flags: LookupFlags = LookupFlags.FOLD_FIX) -> None:
        super().__init__(name, flags)
        self.target = strip_proxy(name)
        type_name, sep, rest = self.target.partition(":")
        if not sep or not type_name or not rest:
            raise TableError(f"need dictionary type:name, got \"{PROXY_PREFIX}{name}\"")
        cfg = table_config()
        try:
            self.queue_directory = cfg.get("queue_directory")
            self.read_service = cfg.get("proxymap_service_name")
            self.write_service = cfg.get("proxywrite_service_name")
            self.timeout = cfg.get_time("ipc_timeout")
        except (KeyError, ValueError) as exc:
            raise TableError(f"{self.spec}: {exc}") from None
        self.writing = bool(flags & LookupFlags.OPEN_WRITE)
        self.can_update = self.writing
        self.opened = False     # "open" is sent with the first request, outside open_table()

    def _channel(self) -> _Channel:
        service = self.write_service if self.writing else self.read_service
        return channel(self.queue_directory, service, self.timeout)

    def _call(self, request: str, **attrs: object) -> AttrList:
        """_call - send one request for this table; map refusals to exceptions."""
        reply = self._channel().request({"request": request, "table": self.target,
                                         "flags": int(self.flags), **attrs})
        status = reply.get_int("status", PROXY_STAT_BAD)
        if status == PROXY_STAT_RETRY:
            raise TableUnavailable(f"{self.spec}: {reply.get('reason') or 'table lookup problem'}")
        service = self.write_service if self.writing else self.read_service
        if status == PROXY_STAT_DENY:
            raise TableError(f"{service} service is not configured for table \"{self.target}\"")
        if status == PROXY_STAT_CONFIG:
            raise TableError(f"{service} service: cannot open table \"{self.target}\": "
                             f"{reply.get('reason') or 'configuration error'}")
        if status == PROXY_STAT_BAD:
            raise TableError(f"{service} service: {request} request for table "
                             f"\"{self.target}\" refused: {reply.get('reason') or 'bad request'}")
        return reply

    def _open(self) -> None:
        """_open - have the service open (and approve) the table, once."""
        if not self.opened:
            self._call("open")
            self.opened = True

    def get(self, key: str) -> str | None:
        """get - ask the service; None for NOKEY."""
        self._open()
        reply = self._call("lookup", key=key)
        if reply.get_int("status", PROXY_STAT_BAD) == PROXY_STAT_NOKEY:
            return None
        return reply.get("value") or ""

    def _writer(self) -> None:
        if not self.writing:
            self.writing = True     # from now on proxywrite answers our lookups too
            self.opened = False

    def update(self, key: str, value: str) -> None:
        """update - store key -> value through proxywrite."""
        self._writer()
        self._call("update", key=key, value=value)

    def delete(self, key: str) -> bool:
        """delete - remove key through proxywrite; true when it was present."""
        self._writer()
        reply = self._call("delete", key=key)
        return reply.get_int("status", PROXY_STAT_BAD) == PROXY_STAT_OK

    def sequence(self) -> Iterator[tuple[str, str]]:
        """sequence - every (key, value), as the service's table enumerates them."""
        self._open()
        func = "first"
        while True:
            reply = self._call("sequence", func=func)
            if reply.get_int("status", PROXY_STAT_BAD) != PROXY_STAT_OK:
                return
            yield reply.get("key") or "", reply.get("value") or ""
            func = "next"


def register(register_type) -> None:
    """register - proxy:."""
    register_type("proxy", ProxyTable)
