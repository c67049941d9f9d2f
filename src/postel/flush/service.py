"""flush - Postel fast flush server

SYNOPSIS
    flush [generic daemon options]

DESCRIPTION
    The flush(8) server keeps a log per destination of the messages that
    have mail deferred for it, so that "ETRN example.com" and
    `postel queue -s example.com` can deliver that mail without a scan of
    the whole deferred queue.  It listens on public/flush.

    Requests (attribute lists; see postel.ipc.flush_client for the client API):

      request=add site=S queue_id=Q   append Q to S's log (delivery agents)
      request=send_site site=S        make S's deferred mail eligible now,
                                      then wake qmgr
      request=send_file queue_id=Q    the same for one message
      request=refresh                 send logs idle longer than
                                      $fast_flush_refresh_time; remove empty
                                      logs idle longer than $fast_flush_purge_time
      request=purge                   send every log now

    Reply: status=0 (ok), 1 (failed), 3 (bad request), 4 (site not in
    $fast_flush_domains).  After sending, qmgr is triggered on public/qmgr
    with "FD" (forget dead destinations, scan the deferred queue).

    A connection that starts with the wakeup trigger "W" (master's wakeup
    timer, the flush entry's wakeup column "1000?") runs a refresh, as in
    Postfix.

CONFIGURATION PARAMETERS
    fast_flush_domains ($relay_domains)     sites that may have a log: names,
                                            .subdomains, /file, type:table, !not
    fast_flush_refresh_time (12h)           refresh a log idle this long
    fast_flush_purge_time (7d)              remove an empty log idle this long
    parent_domain_matches_subdomains        "fast_flush_domains" in it: a
                                            domain also matches its subdomains
    queue_directory, hash_queue_names, hash_queue_depth
"""

from __future__ import annotations

import asyncio
import sys

from postel import log
from postel.flush.logs import FlushLogs
from postel.ipc import attr as attr_mod
from postel.ipc.attr import DEFAULT_LIMITS, AttrError, AttrList, serve_requests
from postel.ipc.flush_client import FLUSH_STAT_BAD, FLUSH_STAT_DENY, FLUSH_STAT_FAIL, FLUSH_STAT_OK
from postel.ipc.skeleton import ServiceContext, multi_server_main
from postel.ipc.trigger import (
    QMGR_FLUSH_DEAD,
    QMGR_SCAN_DEFERRED,
    TRIGGER_WAKEUP,
    send_trigger_async,
)
from postel.mail.domain_list import DomainList
from postel.queue import QueueDir, qid_ok
from postel.tables import TableError, TableUnavailable, open_table

QMGR_TRIGGER = QMGR_FLUSH_DEAD + QMGR_SCAN_DEFERRED
IDLE_TIMEOUT = 5.0


def setup(ctx: ServiceContext) -> None:
    """setup - read the parameters once per process."""
    cfg = ctx.cfg
    qd = QueueDir(cfg.get("queue_directory"), cfg.get("hash_queue_names"),
                  cfg.get_int("hash_queue_depth"))
    ctx.state["logs"] = FlushLogs(qd, cfg.get_time("fast_flush_refresh_time"),
                                  cfg.get_time("fast_flush_purge_time"))
    ctx.state["sites"] = site_list(cfg)


def site_list(cfg) -> DomainList | None:
    """site_list - $fast_flush_domains as a DomainList; None when it cannot be built."""
    parent = "fast_flush_domains" in cfg.get_list("parent_domain_matches_subdomains")
    try:
        return DomainList("fast_flush_domains", cfg.get_list("fast_flush_domains"),
                          parent_matches=parent,
                          open_table=lambda spec: open_table(spec, cfg=cfg))
    except (TableError, OSError, ValueError) as exc:
        log.warning("fast_flush_domains: %s; every site request fails until reload", exc)
        return None


def _site_status(sites: DomainList | None, site: str) -> int:
    """_site_status - FLUSH_STAT_OK when site may have a log, else DENY or FAIL."""
    if sites is None:
        return FLUSH_STAT_FAIL
    try:
        return FLUSH_STAT_OK if sites.match(site) else FLUSH_STAT_DENY
    except TableUnavailable as exc:
        log.warning("fast_flush_domains: %s: %s", site, exc)
        return FLUSH_STAT_FAIL


def _site_ok(site: str) -> bool:
    """_site_ok - a plausible destination name (no path tricks, no spaces)."""
    return bool(site) and len(site) <= 255 and "/" not in site and not site.startswith(".") \
        and not any(c.isspace() or ord(c) < 32 for c in site)


def handle(request: AttrList, ctx: ServiceContext) -> tuple[int, bool]:
    """handle - (status, wake qmgr?) for one request."""
    logs: FlushLogs = ctx.state["logs"]
    sites: DomainList | None = ctx.state["sites"]
    kind = request.get("request")
    site = (request.get("site") or "").lower()
    qid = request.get("queue_id") or ""
    try:
        if kind == "add":
            if not _site_ok(site) or not qid_ok(qid):
                return FLUSH_STAT_BAD, False
            if (allowed := _site_status(sites, site)) != FLUSH_STAT_OK:
                return allowed, False
            logs.add(site, qid)
            return FLUSH_STAT_OK, False
        if kind == "send_site":
            if not _site_ok(site):
                return FLUSH_STAT_BAD, False
            if (allowed := _site_status(sites, site)) != FLUSH_STAT_OK:
                return allowed, False
            return FLUSH_STAT_OK, logs.send_site(site) > 0
        if kind == "send_file":
            if not qid_ok(qid):
                return FLUSH_STAT_BAD, False
            return FLUSH_STAT_OK, logs.send_file(qid) > 0
        if kind == "refresh":
            return FLUSH_STAT_OK, logs.refresh() > 0
        if kind == "purge":
            return FLUSH_STAT_OK, logs.purge() > 0
    except ValueError:
        return FLUSH_STAT_BAD, False
    except OSError as exc:
        log.warning("%s %s: %s", kind, site or qid, exc)
        return FLUSH_STAT_FAIL, False
    log.warning("unknown request: %r", kind)
    return FLUSH_STAT_BAD, False


async def serve_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       ctx: ServiceContext) -> None:
    """serve_client - answer flush requests on one connection."""
    if "logs" not in ctx.state:
        setup(ctx)

    async def one(request: AttrList) -> dict[str, int]:
        status, wake = handle(request, ctx)
        if wake:
            await send_trigger_async(ctx.queue_directory, "public/qmgr", QMGR_TRIGGER)
        return {"status": status}

    try:
        first = await asyncio.wait_for(reader.read(1), IDLE_TIMEOUT)
    except (TimeoutError, ConnectionError):
        return
    if not first:
        return
    if first == TRIGGER_WAKEUP:
        ctx.state["logs"].refresh()
        return
    # Not a trigger: the byte starts an attribute list; hand it to the decoder
    # that read_attrs() uses for this stream.  XXX wants a public peek in ipc.attr.
    attr_mod._decoder_for(reader, DEFAULT_LIMITS).append(first)
    try:
        await serve_requests(reader, writer, one, idle_timeout=IDLE_TIMEOUT)
    except AttrError as exc:
        log.warning("malformed request: %s", exc)


def main(argv: list[str] | None = None) -> int:
    """main - run flush under master (or standalone with -S)."""
    return multi_server_main("flush", list(argv if argv is not None else sys.argv), serve_client,
                             post_init=setup)


if __name__ == "__main__":
    sys.exit(main())
