"""proxymap - Postel lookup table proxy server

SYNOPSIS
    proxymap [generic daemon options]

    master.cf:
        proxymap   unix  -  -  n  -  -  proxymap
        proxywrite unix  -  -  n  -  1  proxymap

DESCRIPTION
    Opens and searches lookup tables for other Postel processes, which name
    them proxy:TYPE:NAME (postel.tables.proxy).  One open table, and one
    database connection, then serves every process; the proxywrite service
    is the single writer of caches such as $address_verify_map.

    The service runs as "proxymap" (read-only) unless its master.cf service
    name is $proxywrite_service_name: then it may also change tables, and
    opens them for update (created when missing).

    Requests (attribute lists, postel.ipc.attr; see postel.tables.proxy for
    the status codes):

        open      table flags         the table exists and may be used
        lookup    table flags key     -> value
        update    table flags key value   (proxywrite only)
        delete    table flags key         (proxywrite only)
        sequence  table flags func    func is "first" or "next" -> key value

    A table name is TYPE:NAME; leading "proxy:" prefixes are removed.  The
    read service only serves tables listed in $proxy_read_maps, the write
    service only those in $proxy_write_maps (the TYPE:NAME words of those
    parameters, with or without "proxy:").  Any other table is refused with
    status DENY and a warning in the log.  Update and delete requests to
    the read-only service are refused too.

    Tables are opened through the table registry and kept open; a table
    whose file changed on disk is opened again on its next request.  Table
    code runs on one worker thread, so a slow database never stalls the
    service's other connections, and table objects are never used by two
    threads at once.  A sequence walk is kept per client connection.

SECURITY
    The approval lists keep a client from making the service open files
    that the administrator did not name in main.cf.

DIAGNOSTICS
    warning: request for unapproved table: "TYPE:NAME"
    warning: to approve this table for read-only access, list
             proxy:TYPE:NAME in main.cf:proxy_read_maps
    warning: TYPE:NAME: lookup problem: ...       (status RETRY)

CONFIGURATION PARAMETERS
    proxy_read_maps (see postel conf -d)    tables the proxymap service serves
    proxy_write_maps (see postel conf -d)   tables the proxywrite service serves
    proxymap_service_name (proxymap)
    proxywrite_service_name (proxywrite)
    ipc_idle (5s)           close a client connection idle this long
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sys
from collections.abc import Iterator

from postel import log
from postel.ipc.attr import AttrError, AttrList, serve_requests
from postel.ipc.skeleton import ServiceContext, multi_server_main
from postel.tables import LookupFlags, Table, TableError, TableUnavailable, open_table
from postel.tables.proxy import (
    PROXY_STAT_BAD,
    PROXY_STAT_CONFIG,
    PROXY_STAT_DENY,
    PROXY_STAT_NOKEY,
    PROXY_STAT_OK,
    PROXY_STAT_RETRY,
    strip_proxy,
)

# Flags a client may pass on to the table it names (no OPEN_WRITE, no BULK).
CLIENT_FLAGS = (LookupFlags.FOLD_FIX | LookupFlags.DUP_WARN | LookupFlags.DUP_IGNORE
                | LookupFlags.DUP_REPLACE | LookupFlags.TRY1NULL | LookupFlags.TRY0NULL)


def approved_tables(cfg, param: str) -> frozenset[str]:
    """approved_tables - the TYPE:NAME words of proxy_read_maps or proxy_write_maps."""
    out = set()
    for word in cfg.get_list(param):
        name = strip_proxy(word)
        type_name, sep, rest = name.partition(":")
        if sep and type_name and rest and type_name.replace("_", "").isalnum():
            out.add(name)
    return frozenset(out)


class ProxyState:
    """ProxyState - what one proxymap process knows: its role and approved tables."""

    def __init__(self, cfg, service_name: str) -> None:
        self.cfg = cfg
        self.writer = service_name == cfg.get("proxywrite_service_name")
        self.param = "proxy_write_maps" if self.writer else "proxy_read_maps"
        self.approved = approved_tables(cfg, self.param)
        self.idle = cfg.get_time("ipc_idle")
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=1,
                                                          thread_name_prefix="proxymap")

    def find(self, name: str, flags: int) -> tuple[int, Table | None, str]:
        """find - (status, table, reason) for a requested TYPE:NAME."""
        name = strip_proxy(name)
        type_name, sep, rest = name.partition(":")
        if not sep or not type_name or not rest:
            return PROXY_STAT_BAD, None, f"bad table name \"{name}\""
        if name not in self.approved:
            log.warning('request for unapproved table: "%s"', name)
            access = "read-write" if self.writer else "read-only"
            log.warning("to approve this table for %s access, list proxy:%s in main.cf:%s",
                        access, name, self.param)
            return PROXY_STAT_DENY, None, f"table \"{name}\" is not approved in {self.param}"
        open_flags = LookupFlags(flags & CLIENT_FLAGS)
        if self.writer:
            open_flags |= LookupFlags.OPEN_WRITE
        try:
            return PROXY_STAT_OK, open_table(name, open_flags, self.cfg), ""
        except TableUnavailable as exc:
            log.warning("%s", exc)
            return PROXY_STAT_RETRY, None, str(exc)
        except TableError as exc:
            log.warning("%s", exc)
            return PROXY_STAT_CONFIG, None, str(exc)


class Session:
    """Session - the requests of one client connection (sequence walks live here)."""

    def __init__(self, state: ProxyState) -> None:
        self.state = state
        self.walks: dict[tuple[str, int], Iterator[tuple[str, str]]] = {}

    def handle(self, req: AttrList) -> dict[str, object]:
        """handle - one request -> its reply (runs on the table thread)."""
        request = req.get("request") or ""
        handler = HANDLERS.get(request)
        if handler is None:
            log.warning("unrecognized request: \"%s\"", request)
            return {"status": PROXY_STAT_BAD, "reason": f"unknown request \"{request}\""}
        flags = req.get_int("flags", int(LookupFlags.FOLD_FIX)) or 0
        if request in ("update", "delete") and not self.state.writer:
            log.warning('refusing %s request for table "%s": read-only service',
                        request, req.get("table") or "")
            return {"status": PROXY_STAT_DENY, "reason": "read-only service"}
        status, table, reason = self.state.find(req.get("table") or "", flags)
        if table is None:
            return {"status": status, "reason": reason}
        try:
            return handler(self, table, req)
        except TableUnavailable as exc:
            log.warning("%s: lookup problem: %s", table.spec, exc)
            return {"status": PROXY_STAT_RETRY, "reason": str(exc)}
        except TableError as exc:
            return {"status": PROXY_STAT_BAD, "reason": str(exc)}


def _open(session: Session, table: Table, req: AttrList) -> dict[str, object]:
    """_open - the table exists and is approved."""
    return {"status": PROXY_STAT_OK, "fixed": int(table.fixed_keys)}


def _lookup(session: Session, table: Table, req: AttrList) -> dict[str, object]:
    """_lookup - search the table for key."""
    key = req.get("key")
    if key is None:
        return {"status": PROXY_STAT_BAD, "reason": "missing key"}
    value = table.lookup(key)
    if value is None:
        return {"status": PROXY_STAT_NOKEY, "value": ""}
    return {"status": PROXY_STAT_OK, "value": value}


def _update(session: Session, table: Table, req: AttrList) -> dict[str, object]:
    """_update - store key -> value."""
    key, value = req.get("key"), req.get("value")
    if key is None or value is None:
        return {"status": PROXY_STAT_BAD, "reason": "missing key or value"}
    table.update(key, value)
    return {"status": PROXY_STAT_OK}


def _delete(session: Session, table: Table, req: AttrList) -> dict[str, object]:
    """_delete - remove key."""
    key = req.get("key")
    if key is None:
        return {"status": PROXY_STAT_BAD, "reason": "missing key"}
    return {"status": PROXY_STAT_OK if table.delete(key) else PROXY_STAT_NOKEY}


def _sequence(session: Session, table: Table, req: AttrList) -> dict[str, object]:
    """_sequence - the first or next entry of a walk over the table."""
    func = req.get("func") or ""
    slot = (table.spec, int(table.flags))
    if func == "first":
        session.walks[slot] = iter(list(table.sequence()))
    elif func != "next" or slot not in session.walks:
        return {"status": PROXY_STAT_BAD, "reason": f"bad sequence function \"{func}\""}
    item = next(session.walks[slot], None)
    if item is None:
        session.walks.pop(slot, None)
        return {"status": PROXY_STAT_NOKEY}
    return {"status": PROXY_STAT_OK, "key": item[0], "value": item[1]}


HANDLERS = {"open": _open, "lookup": _lookup, "update": _update, "delete": _delete,
            "sequence": _sequence}


def post_init(ctx: ServiceContext) -> None:
    """post_init - read the approval lists once per process."""
    ctx.state["proxy"] = ProxyState(ctx.cfg, ctx.service_name)


async def serve_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       ctx: ServiceContext) -> None:
    """serve_client - answer one client's requests until it closes or goes idle."""
    state: ProxyState = ctx.state.get("proxy") or ProxyState(ctx.cfg, ctx.service_name)
    ctx.state["proxy"] = state
    session = Session(state)
    loop = asyncio.get_running_loop()

    async def handler(req: AttrList) -> dict[str, object]:
        return await loop.run_in_executor(state.pool, session.handle, req)
    try:
        await serve_requests(reader, writer, handler, idle_timeout=state.idle)
    except AttrError as exc:
        log.warning("malformed request: %s", exc)
    except ConnectionError:
        pass


def main(argv: list[str] | None = None) -> int:
    """main - run proxymap (or proxywrite) under master, or standalone with -S."""
    return multi_server_main("proxymap", list(argv if argv is not None else sys.argv),
                             serve_client, post_init=post_init)


if __name__ == "__main__":
    sys.exit(main())
