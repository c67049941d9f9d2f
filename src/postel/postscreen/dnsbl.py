"""dnsbl - postscreen's DNSBL/DNSWL site list and score

SYNOPSIS
    from postel.postscreen.dnsbl import parse_sites, DnsblSite, score
    sites = parse_sites("zen.example=127.0.0.[2..11]*3, list.dnswl.example=127.0.[0..255].[1..3]*-2")
    total, top = score(sites, {"zen.example": ["127.0.0.2"]})   # (3, "zen.example")

DESCRIPTION
    postscreen_dnsbl_sites is a list of "domain[=filter][*weight]" items:
    the weight (default 1, negative for allowlists) is added to the client's
    score once for each item whose domain lists the client with an A
    record that passes the filter.  A filter is a dotted IPv4 pattern whose
    octets are a number, "[a..b]" (a range) or "[a;b;c]" (a list), as in
    Postfix's postscreen(8).  The same domain may appear more than once
    with different filters and weights.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ITEM = re.compile(r"^(?P<domain>[^=*\s]+)(?:=(?P<filter>[^*\s]+))?(?:\*(?P<weight>-?\d+))?$")


class SiteError(ValueError):
    """A malformed postscreen_dnsbl_sites item."""


@dataclass(slots=True)
class DnsblSite:
    """One postscreen_dnsbl_sites item."""

    domain: str
    weight: int = 1
    octets: tuple[frozenset[int] | None, ...] | None = None    # None: any address

    def matches(self, reply: str) -> bool:
        """matches - does an A record of the list pass this item's filter?"""
        if self.octets is None:
            return True
        parts = reply.split(".")
        if len(parts) != 4 or not all(p.isdigit() for p in parts):
            return False
        return all(allowed is None or int(p) in allowed for p, allowed in zip(parts, self.octets, strict=True))


def _octet(text: str, item: str) -> frozenset[int] | None:
    """_octet - one filter octet: "2", "[2..11]", "[2;4;6]"."""
    if text == "*":
        return None
    try:
        if text.startswith("[") and text.endswith("]"):
            inner = text[1:-1]
            if ".." in inner:
                lo, _, hi = inner.partition("..")
                return frozenset(range(int(lo), int(hi) + 1))
            return frozenset(int(x) for x in inner.split(";"))
        return frozenset({int(text)})
    except ValueError:
        raise SiteError(f"postscreen_dnsbl_sites: bad filter in {item!r}") from None


def parse_sites(text: str) -> list[DnsblSite]:
    """parse_sites - the postscreen_dnsbl_sites value as a list of items."""
    out = []
    for item in re.split(r"[\s,]+", text.strip()):
        if not item:
            continue
        m = _ITEM.match(item)
        if m is None:
            raise SiteError(f"postscreen_dnsbl_sites: bad item {item!r}")
        octets = None
        if m.group("filter"):
            # the filter's octets may contain "..", so split on dots outside brackets
            parts = re.findall(r"\[[^\]]*\]|[^.\[\]]+", m.group("filter"))
            if len(parts) != 4:
                raise SiteError(f"postscreen_dnsbl_sites: bad filter in {item!r}")
            octets = tuple(_octet(p, item) for p in parts)
        out.append(DnsblSite(m.group("domain").lower().rstrip("."),
                             int(m.group("weight") or 1), octets))
    return out


def score(sites: list[DnsblSite], results: dict[str, list[str]]) -> tuple[int, str]:
    """score - the total weight and the listing domain with the largest weight."""
    total, top, top_weight = 0, "", 0
    for site in sites:
        if any(site.matches(r) for r in results.get(site.domain, [])):
            total += site.weight
            if site.weight > top_weight:
                top, top_weight = site.domain, site.weight
    return total, top
