"""dnsblog - Postel DNS allow/denylist logger

SYNOPSIS
    dnsblog [generic daemon options]

    master.cf:  dnsblog  unix  -  -  n  -  0  dnsblog

DESCRIPTION
    Answers postscreen(8)'s DNSBL/DNSWL questions: for one client address
    and one list domain it looks up the reversed address under the domain
    (RFC 5782 2.1: 192.0.2.1 becomes 1.2.0.192.DOMAIN; IPv6 by nibbles)
    through postel.dns, and replies with the A records found.  Every
    listing is logged.  The DNS, not dnsblog, decides the answer; weights,
    reply filters and the decision are postscreen's.

    Request and reply (attribute lists on one stream, many per stream):

      rbl_domain=zen.example address=192.0.2.1 id=7
      -> rbl_domain=zen.example address=192.0.2.1 id=7 result=127.0.0.2,127.0.0.4

    "result" is empty when the address is not listed or the lookup failed.
    A bad address or domain gets an empty result and a warning.

DIAGNOSTICS
    addr 192.0.2.1 listed by domain zen.example as 127.0.0.2

SEE ALSO
    postscreen(8), docs/dnsblog.md

CONFIGURATION PARAMETERS
    dnsblog_reply_delay (0s)   delay each reply (for testing)
    dns_nameservers (empty)    Postel: name servers to query (postel.dns)
"""

from __future__ import annotations

import asyncio
import ipaddress

from postel import log
from postel.dns import Dns
from postel.ipc.attr import AttrError, AttrList, serve_requests
from postel.ipc.skeleton import ServiceContext, multi_server_main


def query_name(addr: str, domain: str) -> str | None:
    """query_name - the DNSBL name for addr under domain (RFC 5782 2.1, 2.4)."""
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return None
    domain = domain.strip().strip(".")
    if not domain or " " in domain:
        return None
    rev = ip.reverse_pointer.rsplit(".", 2)[0]          # drop in-addr.arpa / ip6.arpa
    return f"{rev}.{domain}"


async def lookup(dns: Dns, addr: str, domain: str) -> list[str]:
    """lookup - the A records listing addr in domain ([] when not listed)."""
    name = query_name(addr, domain)
    if name is None:
        log.warning("dnsblog: bad query: address %r domain %r", addr, domain)
        return []
    found, _txt = await dns.rbl_lookup(name)
    for rr in found:
        log.info("addr %s listed by domain %s as %s", addr, domain, rr)
    return found


def post_init(ctx: ServiceContext) -> None:
    """post_init - one resolver per process."""
    ctx.state["dns"] = Dns.from_config(ctx.cfg)
    ctx.state["delay"] = ctx.cfg.get_time("dnsblog_reply_delay")


async def serve_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       ctx: ServiceContext) -> None:
    """serve_client - answer lookups until the client closes."""
    dns = ctx.state.get("dns") or ctx.state.setdefault("dns", Dns.from_config(ctx.cfg))
    delay = ctx.state.get("delay", 0.0)

    async def handler(req: AttrList) -> dict[str, str]:
        domain, addr = req.get("rbl_domain", ""), req.get("address", "")
        found = await lookup(dns, addr, domain)
        if delay:
            await asyncio.sleep(delay)
        return {"rbl_domain": domain, "address": addr, "id": req.get("id", "0"),
                "result": ",".join(found)}

    try:
        await serve_requests(reader, writer, handler)
    except AttrError as exc:
        log.warning("dnsblog: malformed request: %s", exc)
    except ConnectionError:
        pass                            # postscreen stopped waiting: not an error


def main(argv: list[str]) -> int:
    """main - the dnsblog daemon."""
    return multi_server_main("dnsblog", argv, serve_client, post_init=post_init)
