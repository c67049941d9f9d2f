"""scache - Postel shared connection cache server

SYNOPSIS
    scache [generic daemon options]

    master.cf:
        scache    unix  -       -       n       -       1       scache

DESCRIPTION
    Keeps open SMTP connections on behalf of delivery agent processes, as
    Postfix's scache(8): an agent that finishes with a connection hands
    the socket descriptor to scache, and any agent process may later take
    it back, so that a connection outlives the process that opened it.

    Two kinds of entry:
      endpoint   label (e.g. "smtp:192.0.2.1:25") -> open descriptors, each
                 with its properties (e.g. the server's EHLO features)
      destination  label (e.g. "smtp:example.com") -> the endpoint label
                 that last served it, with properties
    A descriptor lives at most $connection_cache_ttl_limit seconds (the
    client's ttl is capped there); an expired one is closed.

    Every message is one attribute list (postel.ipc.attr) sent in a single
    sendmsg(2); a descriptor travels with it as SCM_RIGHTS ancillary data
    (postel.ipc.scache_client).

        request=save_endp  ttl endpoint label properties  + descriptor
            -> status=0
        request=find_endp  label
            -> status=0 properties  + descriptor   (status=-1: none cached)
        request=save_dest  ttl label properties endpoint
            -> status=0
        request=find_dest  label
            -> status=0 properties endpoint_properties + descriptor
               (status=-1: none)

    A descriptor given out is removed from the cache: one connection has
    one user at a time.

CONFIGURATION PARAMETERS
    connection_cache_ttl_limit (2s)            longest time an idle connection is kept
    connection_cache_status_update_time (600s) how often the statistics are logged
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections import defaultdict
from dataclasses import dataclass

from postel import log
from postel.ipc.attr import AttrDecoder, AttrError, encode
from postel.ipc.skeleton import ServiceContext, multi_server_main

MSG_MAX = 65536


@dataclass(slots=True)
class _Endp:
    fd: int
    props: str
    expires: float


class ConnCache:
    """ConnCache - the endpoint and destination tables of one scache process."""

    def __init__(self, ttl_limit: float) -> None:
        self.ttl_limit = ttl_limit
        self.endp: dict[str, list[_Endp]] = defaultdict(list)
        self.dest: dict[str, tuple[str, str, float]] = {}
        self.hits = self.misses = self.saves = 0

    def expire(self, now: float) -> None:
        """expire - close descriptors whose time is up."""
        for label in list(self.endp):
            keep = []
            for e in self.endp[label]:
                if e.expires <= now:
                    os.close(e.fd)
                else:
                    keep.append(e)
            if keep:
                self.endp[label] = keep
            else:
                del self.endp[label]
        for label, (_, _, exp) in list(self.dest.items()):
            if exp <= now:
                del self.dest[label]

    def save_endp(self, label: str, props: str, fd: int, ttl: float, now: float) -> None:
        """save_endp - keep fd (now owned by the cache) under label."""
        self.saves += 1
        self.endp[label].append(_Endp(fd, props, now + min(max(ttl, 0.0), self.ttl_limit)))

    def find_endp(self, label: str, now: float) -> tuple[int, str] | None:
        """find_endp - take the newest descriptor for label, or None."""
        self.expire(now)
        lst = self.endp.get(label)
        if not lst:
            self.misses += 1
            return None
        e = lst.pop()
        if not lst:
            del self.endp[label]
        self.hits += 1
        return e.fd, e.props

    def save_dest(self, label: str, props: str, endp_label: str, ttl: float, now: float) -> None:
        """save_dest - remember which endpoint serves destination label."""
        self.dest[label] = (endp_label, props, now + min(max(ttl, 0.0), self.ttl_limit))

    def find_dest(self, label: str, now: float) -> tuple[int, str, str] | None:
        """find_dest - a descriptor for a destination: (fd, dest props, endpoint props)."""
        self.expire(now)
        d = self.dest.get(label)
        if d is None:
            self.misses += 1
            return None
        found = self.find_endp(d[0], now)
        if found is None:
            return None
        return found[0], d[1], found[1]


def _cache(ctx: ServiceContext) -> ConnCache:
    c = ctx.state.get("scache")
    if c is None:
        try:
            limit = float(ctx.cfg.get_time("connection_cache_ttl_limit"))
        except (KeyError, ValueError):
            limit = 2.0
        c = ctx.state["scache"] = ConnCache(limit)
    return c


async def _recv(sock: socket.socket) -> tuple[bytes, list[int]]:
    """_recv - one message and its descriptors."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            data, fds, _flags, _addr = socket.recv_fds(sock, MSG_MAX, 4)
            return data, fds
        except (BlockingIOError, InterruptedError):
            fut = loop.create_future()
            loop.add_reader(sock.fileno(), lambda f=fut: f.done() or f.set_result(None))
            try:
                await fut
            finally:
                loop.remove_reader(sock.fileno())


def _reply(sock: socket.socket, attrs, fd: int | None = None) -> None:
    """_reply - send one reply list, with a descriptor when given."""
    socket.send_fds(sock, [encode(attrs)], [fd] if fd is not None else [])


def handle(cache: ConnCache, req, fds: list[int], sock: socket.socket) -> None:
    """handle - one request: update the cache and reply."""
    now = time.monotonic()
    what = req.get("request", "")
    ttl = float(req.get("ttl", "0") or 0) if what.startswith("save") else 0.0
    if what == "save_endp" and fds:
        cache.save_endp(req.get("label", ""), req.get("properties", ""), fds.pop(0), ttl, now)
        _reply(sock, {"status": 0})
    elif what == "find_endp":
        found = cache.find_endp(req.get("label", ""), now)
        if found is None:
            _reply(sock, {"status": -1})
        else:
            _reply(sock, {"status": 0, "properties": found[1]}, found[0])
            os.close(found[0])
    elif what == "save_dest":
        cache.save_dest(req.get("label", ""), req.get("properties", ""),
                        req.get("endpoint", ""), ttl, now)
        _reply(sock, {"status": 0})
    elif what == "find_dest":
        found = cache.find_dest(req.get("label", ""), now)
        if found is None:
            _reply(sock, {"status": -1})
        else:
            _reply(sock, {"status": 0, "properties": found[1],
                          "endpoint_properties": found[2]}, found[0])
            os.close(found[0])
    else:
        log.warning("bad request: %s", what or "(none)")
        _reply(sock, {"status": -2})
    for fd in fds:
        os.close(fd)


async def serve_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       ctx: ServiceContext) -> None:
    """serve_client - requests with descriptors on one connection."""
    writer.transport.pause_reading()            # we read with recvmsg ourselves
    cache = _cache(ctx)
    raw = writer.get_extra_info("socket")
    sock = socket.socket(fileno=os.dup(raw.fileno()))
    sock.setblocking(False)
    try:
        while True:
            data, fds = await _recv(sock)
            if not data:
                for fd in fds:
                    os.close(fd)
                return
            try:
                lists = AttrDecoder().feed(data)
            except AttrError as exc:
                log.warning("bad request: %s", exc)
                return
            if len(lists) != 1:
                log.warning("bad request: expected one attribute list per message")
                return
            with contextlib.suppress(BlockingIOError):
                handle(cache, lists[0], fds, sock)
    except OSError as exc:
        log.verbose("client: %s", exc)
    finally:
        sock.close()


def main(argv: list[str]) -> int:
    """main - the scache daemon (one process: master.cf process limit 1)."""
    return multi_server_main("scache", argv, serve_client, idle_exit=False)
