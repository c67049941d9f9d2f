"""nexthop - smtp(8)/lmtp(8) destinations and their server addresses

SYNOPSIS
    from postel.smtp.nexthop import parse_nexthop, find_servers, DnsTrouble
    hop = parse_nexthop("[mx.example]:2525", lmtp=False, default_port=25)
    servers = await find_servers(hop, dns, policy)       # list[Server]

DESCRIPTION
    The queue manager hands the delivery agent a nexthop that
    trivial-rewrite(8) already chose (the domain, $relayhost, or a
    transport(5) nexthop).  Its forms, as in Postfix:

        domain              MX lookup; the domain's own A/AAAA records
                            when it has no MX records (RFC 5321 5.1)
        domain:port         the same, on another port
        [host], [host]:port no MX lookup: the host's addresses, or the
                            IP address literal itself
        inet:..., unix:/path
                            LMTP forms (lmtp(8)); "inet:" is also
                            accepted for SMTP.  LMTP never looks up MX
                            records, as Postfix's LMTP client.

    A port may be a number or a services(5) name.

    find_servers() turns a nexthop into Server values (host name, address,
    port, MX preference) in the order in which to try them: MX records by
    preference, equal preferences shuffled (smtp_randomize_addresses),
    each host's addresses in the order of inet_protocols and
    smtp_address_preference, at most smtp_mx_address_limit addresses.
    Failures raise DnsTrouble with Postfix's texts:

        Host or domain name not found. Name service error for
        name=example.com type=MX: Host not found[, try again]

    A null MX (RFC 7505: "MX 0 .") bounces with 5.1.10.

CONFIGURATION PARAMETERS
    smtp_host_lookup (dns)          dns, native, or both: how to find host
                                    addresses; native uses getaddrinfo(3)
    disable_dns_lookups (no)        no MX lookups, native host lookups
    inet_protocols (all)            ipv4, ipv6 or all
    smtp_address_preference (any)   ipv4, ipv6 or any
    smtp_mx_address_limit (5)       most addresses to try per delivery
    smtp_randomize_addresses (yes)  shuffle equal-preference MX hosts
    smtp_tcp_port (smtp), lmtp_tcp_port (24)
                                    the default server port
    (lmtp_* for the lmtp service)

STANDARDS
    RFC 5321 5.1 (locating the target host), RFC 7505 (null MX)
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import socket
from dataclasses import dataclass

import dns.exception
import dns.resolver

TEMPFAIL, NOTFOUND = 4, 5


class NexthopError(ValueError):
    """NexthopError - a nexthop that cannot be parsed."""


class DnsTrouble(Exception):
    """DnsTrouble - the destination's servers could not be found."""

    def __init__(self, status: int, dsn: str, text: str):
        super().__init__(text)
        self.status = status      # 4: try again later, 5: give up
        self.dsn = dsn
        self.text = text


@dataclass(slots=True, frozen=True)
class Nexthop:
    """Nexthop - one parsed destination."""

    kind: str        # "inet" or "unix"
    host: str        # domain or host name or IP literal; the path for unix
    port: int
    mx: bool         # look up MX records
    text: str        # as given, for logs and cache keys


@dataclass(slots=True, frozen=True)
class Server:
    """Server - one address to connect to."""

    host: str        # the name to log: mx.example (the path for unix)
    addr: str        # the IP address (the path for unix)
    port: int
    pref: int = 0
    kind: str = "inet"

    @property
    def namaddr(self) -> str:
        """Postfix's host[addr]."""
        return f"{self.host}[{self.addr}]"

    @property
    def namaddrport(self) -> str:
        """Postfix's relay= value host[addr]:port (host[path] for unix)."""
        return self.namaddr if self.kind == "unix" else f"{self.host}[{self.addr}]:{self.port}"


@dataclass(slots=True)
class LookupPolicy:
    """LookupPolicy - the parameters that shape find_servers()."""

    use_dns: bool = True           # MX lookups and DNS host lookups
    native: bool = False           # getaddrinfo host lookups
    families: tuple[str, ...] = ("A", "AAAA")
    prefer: str = "any"
    address_limit: int = 5
    randomize: bool = True


def port_number(text: str, default: int) -> int:
    """port_number - a numeric port or a services(5) name."""
    if not text:
        return default
    if text.isdigit():
        port = int(text)
        if not 0 < port < 65536:
            raise NexthopError(f"bad port number: {text}")
        return port
    try:
        return socket.getservbyname(text, "tcp")
    except OSError:
        raise NexthopError(f"unknown service name: {text}") from None


def parse_nexthop(text: str, *, lmtp: bool = False, default_port: int = 25) -> Nexthop:
    """parse_nexthop - one nexthop string as a Nexthop (NexthopError if bad)."""
    spec = text.strip()
    if not spec:
        raise NexthopError("empty nexthop")
    kind = "inet"
    low = spec.lower()
    if low.startswith("unix:"):
        path = spec[5:]
        if not path:
            raise NexthopError(f"{text}: empty UNIX-domain socket path")
        return Nexthop("unix", path, 0, False, text)
    if low.startswith("inet:"):
        spec = spec[5:]
    if spec.startswith("["):
        host, sep, rest = spec[1:].partition("]")
        if not sep or not host:
            raise NexthopError(f"{text}: missing ']'")
        if rest and not rest.startswith(":"):
            raise NexthopError(f"{text}: garbage after ']'")
        if host.lower().startswith("ipv6:"):
            host = host[5:]
        return Nexthop(kind, host, port_number(rest[1:], default_port), False, text)
    host, sep, port = spec.rpartition(":")
    if not sep:
        host, port = spec, ""
    elif ":" in host:
        raise NexthopError(f"{text}: an IPv6 address must be written as [address]")
    if not host or any(c.isspace() or c in "/@<>" for c in host):
        raise NexthopError(f"{text}: bad host name")
    return Nexthop(kind, host.rstrip("."), port_number(port, default_port), not lmtp, text)


def split_nexthops(text: str) -> list[str]:
    """split_nexthops - a list of nexthops separated by commas or white space."""
    return [w for w in text.replace(",", " ").split() if w]


def _is_ip(host: str) -> bool:
    """True for an IPv4 or IPv6 address literal."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def _ns_error(name: str, rdtype: str, status: int, nodata: bool = False) -> DnsTrouble:
    """_ns_error - Postfix's "Host or domain name not found" text."""
    if status == TEMPFAIL:
        why = "Host not found, try again"
    elif nodata:
        why = "Host found but no data record of requested type"
    else:
        why = "Host not found"
    return DnsTrouble(status, "4.4.3" if status == TEMPFAIL else "5.4.4",
                      f"Host or domain name not found. Name service error "
                      f"for name={name} type={rdtype}: {why}")


async def _query(dns_obj, name: str, rdtype: str):
    """_query - an answer; raise (status, nodata) as LookupError args."""
    try:
        return await dns_obj.resolver.resolve(name, rdtype, search=False)
    except dns.resolver.NXDOMAIN:
        raise LookupError(NOTFOUND, False) from None
    except dns.resolver.NoAnswer:
        raise LookupError(NOTFOUND, True) from None
    except (dns.exception.DNSException, OSError):
        raise LookupError(TEMPFAIL, False) from None


async def host_addresses(host: str, dns_obj, policy: LookupPolicy) -> list[str]:
    """host_addresses - the addresses of a host, or raise DnsTrouble."""
    if _is_ip(host):
        return [host]
    out: list[str] = []
    trouble: DnsTrouble | None = None
    if policy.use_dns:
        for rdtype in policy.families:
            try:
                ans = await _query(dns_obj, host, rdtype)
                out.extend(r.address for r in ans)
            except LookupError as exc:
                status, nodata = exc.args
                if trouble is None or status == TEMPFAIL:
                    trouble = _ns_error(host, rdtype, status, nodata)
    if not out and policy.native:
        out = await _native_addresses(host, policy.families)
        if out:
            trouble = None
        elif trouble is None:
            trouble = _ns_error(host, "A", NOTFOUND)
    if not out:
        raise trouble or _ns_error(host, "A", NOTFOUND)
    return _order(out, policy.prefer)


async def _native_addresses(host: str, families: tuple[str, ...]) -> list[str]:
    """_native_addresses - getaddrinfo(3) answers (the system's host lookup)."""
    family = socket.AF_UNSPEC
    if families == ("A",):
        family = socket.AF_INET
    elif families == ("AAAA",):
        family = socket.AF_INET6
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, None, family=family, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    out: list[str] = []
    for info in infos:
        addr = str(info[4][0])
        if addr not in out:
            out.append(addr)
    return out


def _order(addrs: list[str], prefer: str) -> list[str]:
    """_order - IPv4 or IPv6 first as smtp_address_preference says."""
    if prefer == "ipv4":
        return sorted(addrs, key=lambda a: ":" in a)
    if prefer == "ipv6":
        return sorted(addrs, key=lambda a: ":" not in a)
    return addrs


def _sort_mx(records: list[tuple[int, str]], randomize: bool) -> list[tuple[int, str]]:
    """_sort_mx - by preference; equal preferences in random order."""
    records = list(records)
    if randomize:
        random.shuffle(records)
    return sorted(records, key=lambda r: r[0])   # sorted() is stable


async def mx_records(domain: str, dns_obj) -> list[tuple[int, str]] | None:
    """mx_records - (pref, host) pairs; None when the domain has no MX records."""
    try:
        ans = await _query(dns_obj, domain, "MX")
    except LookupError as exc:
        status, nodata = exc.args
        if status == NOTFOUND and nodata:
            return None
        raise _ns_error(domain, "MX", status) from None
    return [(r.preference, r.exchange.to_text(omit_final_dot=True)) for r in ans]


async def find_servers(hop: Nexthop, dns_obj, policy: LookupPolicy,
                       myhostname: str = "") -> list[Server]:
    """find_servers - the servers for a nexthop, in the order to try them."""
    if hop.kind == "unix":
        return [Server(myhostname or "localhost", hop.host, 0, 0, "unix")]
    if not (hop.mx and policy.use_dns) or _is_ip(hop.host):
        addrs = await host_addresses(hop.host, dns_obj, policy)
        return [Server(hop.host, a, hop.port) for a in addrs[:max(1, policy.address_limit)]]
    records = await mx_records(hop.host, dns_obj)
    if records is None:                       # RFC 5321 5.1: implicit MX
        addrs = await host_addresses(hop.host, dns_obj, policy)
        return [Server(hop.host, a, hop.port) for a in addrs[:max(1, policy.address_limit)]]
    if len(records) == 1 and records[0][1] in ("", "."):
        raise DnsTrouble(NOTFOUND, "5.1.10", f"Domain {hop.host} does not accept mail (nullMX)")
    records = _sort_mx(records, policy.randomize)
    if myhostname:
        # Postfix: drop MX hosts at or above our own preference (mail loops).
        mine = [p for p, h in records if h.lower() == myhostname.lower()]
        if mine:
            records = [(p, h) for p, h in records if p < min(mine)]
            if not records:
                raise DnsTrouble(NOTFOUND, "5.4.6",
                                 f"mail for {hop.host} loops back to myself")
    servers: list[Server] = []
    trouble: DnsTrouble | None = None
    for pref, host in records:
        try:
            addrs = await host_addresses(host, dns_obj, policy)
        except DnsTrouble as exc:
            if trouble is None or exc.status == TEMPFAIL:
                trouble = exc
            continue
        servers.extend(Server(host, a, hop.port, pref) for a in addrs)
        if len(servers) >= policy.address_limit > 0:
            break
    if not servers:
        if trouble is not None and trouble.status == TEMPFAIL:
            raise trouble
        raise DnsTrouble(NOTFOUND, "5.4.4",
                         f"no MX host for {hop.host} has a valid address record")
    if policy.address_limit > 0:
        servers = servers[:policy.address_limit]
    return servers
