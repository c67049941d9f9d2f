"""dns - DNS look-ups for Postel services, through dnspython

SYNOPSIS
    from postel.dns import Dns
    dns = Dns.from_config(cfg)
    status = await dns.domain_status("example.com", mx=True)
    addrs, txt = await dns.rbl_lookup("2.0.0.127.zen.example")
    mxs = await dns.mx_hosts("example.com")

DESCRIPTION
    One place that builds dnspython's asynchronous resolver for every
    service.  By default it reads /etc/resolv.conf.  The Postel parameter
    dns_nameservers (a list of "ip" or "ip:port" or "[ipv6]:port") replaces
    the system's name servers; the tests use it to point Postel at an unbound
    on 127.0.0.1.

    Status values follow Postfix's habit: 2 found, 4 temporary failure (the
    caller defers), 5 the name or record does not exist.

CONFIGURATION PARAMETERS
    dns_nameservers (empty)      Postel extension: name servers to query
    smtp_dns_support_level       (not yet used here)
"""

from __future__ import annotations

import dns.asyncresolver
import dns.exception
import dns.rdatatype
import dns.resolver

FOUND, TEMPFAIL, NOTFOUND = 2, 4, 5


def parse_nameservers(items: list[str]) -> list[tuple[str, int]]:
    """parse_nameservers - "1.2.3.4", "1.2.3.4:5353", "[::1]:53" -> (ip, port)."""
    out = []
    for item in items:
        item = item.strip()
        if not item:
            continue
        if item.startswith("["):
            host, _, rest = item[1:].partition("]")
            port = int(rest[1:]) if rest.startswith(":") else 53
        elif item.count(":") == 1:
            host, _, p = item.partition(":")
            port = int(p)
        else:
            host, port = item, 53
        out.append((host, port))
    return out


class Dns:
    """Dns - a configured asynchronous resolver."""

    def __init__(self, nameservers: list[tuple[str, int]] | None = None, timeout: float = 10.0):
        if nameservers:
            res = dns.asyncresolver.Resolver(configure=False)
            res.nameservers = [h for h, _ in nameservers]
            res.port = nameservers[0][1]
        else:
            try:
                res = dns.asyncresolver.Resolver()
            except dns.resolver.NoResolverConfiguration:
                res = dns.asyncresolver.Resolver(configure=False)
                res.nameservers = ["127.0.0.1"]
        res.lifetime = timeout
        self.resolver = res

    @classmethod
    def from_config(cls, cfg) -> Dns:
        try:
            servers = parse_nameservers(cfg.get_list("dns_nameservers"))
        except KeyError:
            servers = []
        return cls(servers)

    async def query(self, name: str, rdtype: str):
        """query - an answer, or raise LookupError(status)."""
        try:
            return await self.resolver.resolve(name, rdtype, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            raise LookupError(NOTFOUND) from None
        except (dns.exception.Timeout, dns.resolver.NoNameservers, dns.exception.DNSException):
            raise LookupError(TEMPFAIL) from None

    async def domain_status(self, domain: str, mx: bool = True) -> int:
        """domain_status - does the domain have MX, A or AAAA records?"""
        worst = NOTFOUND
        for rdtype in (("MX",) if mx else ()) + ("A", "AAAA"):
            try:
                await self.query(domain, rdtype)
                return FOUND
            except LookupError as exc:
                if exc.args[0] == TEMPFAIL:
                    worst = TEMPFAIL
        return worst

    async def rbl_lookup(self, name: str) -> tuple[list[str], str]:
        """rbl_lookup - the A records of a DNSBL name and its TXT text."""
        try:
            ans = await self.query(name, "A")
        except LookupError:
            return [], ""
        addrs = [r.address for r in ans]
        txt = ""
        try:
            tans = await self.query(name, "TXT")
            txt = " ".join(b.decode("utf-8", "replace") for r in tans for b in r.strings)
        except LookupError:
            pass
        return addrs, txt

    async def mx_hosts(self, domain: str) -> list[tuple[int, str]]:
        """mx_hosts - (preference, host) pairs, or raise LookupError(status)."""
        ans = await self.query(domain, "MX")
        return sorted((r.preference, r.exchange.to_text(omit_final_dot=True)) for r in ans)

    async def addresses(self, host: str, families: tuple[str, ...] = ("A", "AAAA")) -> list[str]:
        """addresses - IP addresses of a host, or raise LookupError(status)."""
        out: list[str] = []
        worst = NOTFOUND
        for rdtype in families:
            try:
                ans = await self.query(host, rdtype)
                out.extend(r.address for r in ans)
            except LookupError as exc:
                if exc.args[0] == TEMPFAIL:
                    worst = TEMPFAIL
        if not out:
            raise LookupError(worst)
        return out
