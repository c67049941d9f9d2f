"""trivial-rewrite - Postel address rewriting and resolving daemon

SYNOPSIS
    trivial-rewrite [generic daemon options]

DESCRIPTION
    Serves address rewriting and resolving requests on private/rewrite,
    for cleanup(8), smtpd(8), qmgr(8) and the verify service, as Postfix's
    trivial-rewrite(8) does.  A client keeps its connection open and sends
    one attribute list per request; the daemon answers each with one list.

    Requests:
      request=rewrite rule=local|remote address=EXTERNAL
          reply: flags=0 address=EXTERNAL (rewrite.py)
      request=resolve sender=INTERNAL address=INTERNAL
          reply: flags transport nexthop recipient (resolve.py)
      request=verify  sender=INTERNAL address=INTERNAL
          as resolve, with the address_verify_* overrides
    An unknown request or rewrite rule is logged and answered with
    flags=FLAG_FAIL (the client defers).  A lookup table that cannot answer
    makes flags include FLAG_FAIL, and the client defers the recipient.

    Resolve answers are cached (bounded LRU).  The daemon checks at most
    once a second whether a lookup table file changed on disk; it then
    reopens its tables and forgets the cache, so that a "postel map" of
    transport_maps takes effect without a reload.

STANDARDS
    RFC 5321 (envelope addresses), RFC 5322 (addr-spec)

CONFIGURATION PARAMETERS
    See rewrite.py and resolve.py; all are read at process start and after
    "postel reload" (master restarts the process).
"""

from __future__ import annotations

import asyncio
import time

from postel import log
from postel.ipc.attr import AttrError, AttrList, serve_requests
from postel.ipc.skeleton import ServiceContext, multi_server_main
from postel.mail.resolve_types import FLAG_FAIL
from postel.trivial_rewrite.resolve import Resolver
from postel.trivial_rewrite.rewrite import Rewriter, UnknownRule

ENDPOINT = "private/rewrite"
TABLE_CHECK_INTERVAL = 1.0


class RewriteState:
    """The per-process rewrite and resolve engines."""

    def __init__(self, cfg, open_table=None, own_addrs=None):
        self.cfg = cfg
        self._open_table = open_table
        self._own_addrs = own_addrs
        self.rewriter = Rewriter.from_config(cfg)
        self._build()
        self.last_check = time.monotonic()

    def _build(self) -> None:
        """_build - (re)open the tables behind the resolvers."""
        self.resolver = Resolver.from_config(self.cfg, open_table=self._open_table,
                                             own_addrs=self._own_addrs)
        if self._own_addrs is None:
            self._own_addrs = self.resolver.own_addrs
        self.verifier = Resolver.from_config(self.cfg, verify=True, open_table=self._open_table,
                                             own_addrs=self._own_addrs)

    def check_tables(self, now: float | None = None) -> None:
        """check_tables - reopen tables (and drop caches) after a table file changed."""
        now = time.monotonic() if now is None else now
        if now - self.last_check < TABLE_CHECK_INTERVAL:
            return
        self.last_check = now
        if self.resolver.tables_changed() or self.verifier.tables_changed():
            log.info("lookup table has changed -- reopening")
            self._build()

    def handle(self, req: AttrList) -> dict[str, object]:
        """handle - answer one request list."""
        kind = req.get("request", "")
        addr = req.get("address", "") or ""
        if kind == "rewrite":
            rule = req.get("rule", "") or ""
            try:
                return {"flags": 0, "address": self.rewriter.rewrite(rule, addr)}
            except UnknownRule:
                log.warning("unknown rewrite rule \"%s\" for address %s", rule, addr)
                return {"flags": FLAG_FAIL, "address": addr}
        if kind in ("resolve", "verify"):
            self.check_tables()
            engine = self.resolver if kind == "resolve" else self.verifier
            r = engine.resolve(addr, req.get("sender", "") or "")
            if r.flags & FLAG_FAIL:
                log.warning("%s: table lookup failure; deferring", addr or "<>")
            return {"flags": r.flags, "transport": r.transport, "nexthop": r.nexthop,
                    "recipient": r.recipient}
        log.warning("unrecognized request: \"%s\"", kind)
        return {"flags": FLAG_FAIL}


def post_init(ctx: ServiceContext) -> None:
    """post_init - build the engines once, before serving."""
    ctx.state["rewrite"] = RewriteState(ctx.cfg)


async def serve_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       ctx: ServiceContext) -> None:
    """serve_client - answer one client's requests until it hangs up."""
    state: RewriteState = ctx.state["rewrite"]

    async def _one(req: AttrList) -> dict[str, object]:
        return state.handle(req)

    try:
        await serve_requests(reader, writer, _one)
    except AttrError as exc:
        log.warning("malformed request from client: %s", exc)


def main(argv: list[str] | None = None) -> int:
    """main - run as a master child (or standalone with -S)."""
    import sys
    return multi_server_main("trivial-rewrite", list(sys.argv if argv is None else argv),
                             serve_client, post_init=post_init)


if __name__ == "__main__":
    raise SystemExit(main())
