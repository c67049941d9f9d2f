"""lookup - the lookup strategies of Postfix's table users

SYNOPSIS
    from postel.tables.lookup import (access_address, access_domain, access_client_addr,
        virtual_lookup, transport_lookup, Match)

DESCRIPTION
    postmap -q makes one query; the mail system makes a sequence of them,
    from the most to the least specific key.  Each function below tries the
    keys of one manual page in order and returns the first Match (result
    and the key that matched) or None.  A TableUnavailable from a table
    propagates: the caller defers.

    access_domain(table, domain, parent_matches)       access(5) domain patterns
        domain, then each parent domain: "parent" when parent_matches is true
        (parent_domain_matches_subdomains lists the feature, e.g.
        smtpd_access_maps), otherwise ".parent".
    access_address(table, address, parent_matches, delimiter)
        access(5) e-mail address patterns: user+ext@domain, user@domain, the
        domain patterns, user+ext@, user@.  An address without "@" is looked
        up as user@ only ("<>" is the empty key as Postfix's
        smtpd_null_access_lookup_key, given by the caller).
    access_client_addr(table, addr)                    access(5) address patterns
        1.2.3.4, 1.2.3, 1.2, 1; IPv6 addresses likewise at ":" boundaries
        (2001:db8::1, 2001:db8:, 2001:db8, 2001).
    access_client(table, name, addr, parent_matches)   hostname, then address
    virtual_lookup(table, address, local, delimiter)   virtual(5) / canonical(5):
        user+ext@domain, user@domain, user+ext and user (only when local:
        the domain is one of ours), @domain.
    transport_lookup(table, address, parent_matches, delimiter)  transport(5):
        user+ext@domain, user@domain, domain, parents (".parent" unless
        parent_matches), "*".

    The delimiter argument is $recipient_delimiter: each character of it
    can start an extension, as with Postfix 2.11 and later.

STANDARDS
    access(5), virtual(5), canonical(5), transport(5) of Postfix.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from postel.tables import Table


@dataclass(slots=True)
class Match:
    """Match - a lookup result and the key that found it."""

    value: str
    key: str


def first(table: Table, keys: Iterable[str]) -> Match | None:
    """first - the first key in keys that the table knows."""
    seen: set[str] = set()
    for key in keys:
        if key in seen:
            continue
        seen.add(key)
        value = table.lookup(key)
        if value is not None:
            return Match(value, key)
    return None


def strip_extension(localpart: str, delimiter: str) -> str | None:
    """strip_extension - user for user+ext, or None when there is no extension."""
    if not delimiter:
        return None
    positions = [localpart.find(ch) for ch in delimiter if localpart.find(ch) > 0]
    if not positions:
        return None
    return localpart[:min(positions)]


def domain_keys(domain: str, parent_matches: bool) -> Iterator[str]:
    """domain_keys - domain, then its parents as "parent" or ".parent"."""
    domain = domain.rstrip(".")
    if not domain:
        return
    yield domain
    rest = domain
    while "." in rest:
        rest = rest.split(".", 1)[1]
        if rest:
            yield rest if parent_matches else "." + rest


def _split(address: str) -> tuple[str, str | None]:
    local, at, domain = address.rpartition("@")
    return (local, domain) if at else (address, None)


def access_domain(table: Table, domain: str, parent_matches: bool = True) -> Match | None:
    """access_domain - access(5) lookup of a domain name."""
    return first(table, domain_keys(domain, parent_matches))


def access_address(table: Table, address: str, parent_matches: bool = True,
                   delimiter: str = "") -> Match | None:
    """access_address - access(5) lookup of an e-mail address."""
    local, domain = _split(address)
    base = strip_extension(local, delimiter)

    def keys() -> Iterator[str]:
        if domain is not None:
            yield f"{local}@{domain}"
            if base is not None:
                yield f"{base}@{domain}"
            yield from domain_keys(domain, parent_matches)
        yield f"{local}@"
        if base is not None:
            yield f"{base}@"
    return first(table, keys())


def addr_keys(addr: str) -> Iterator[str]:
    """addr_keys - an IP address and its shorter prefixes, as access(5)."""
    text = addr.strip("[]")
    if text.lower().startswith("ipv6:"):
        text = text[5:]
    delim = ":" if ":" in text else "."
    while text:
        yield text
        if delim not in text:
            break
        text = text.rsplit(delim, 1)[0]


def access_client_addr(table: Table, addr: str) -> Match | None:
    """access_client_addr - access(5) lookup of a client IP address."""
    return first(table, addr_keys(addr))


def access_client(table: Table, name: str, addr: str, parent_matches: bool = True) -> Match | None:
    """access_client - check_client_access: hostname patterns, then address patterns."""
    found = None
    if name and name != "unknown":
        found = access_domain(table, name, parent_matches)
    return found or access_client_addr(table, addr)


def virtual_lookup(table: Table, address: str, local: bool = False,
                   delimiter: str = "") -> Match | None:
    """virtual_lookup - virtual(5)/canonical(5) lookup of an address."""
    user, domain = _split(address)
    base = strip_extension(user, delimiter)

    def keys() -> Iterator[str]:
        if domain is None:
            yield user
            if base is not None:
                yield base
            return
        yield f"{user}@{domain}"
        if base is not None:
            yield f"{base}@{domain}"
        if local:
            yield user
            if base is not None:
                yield base
        yield f"@{domain}"
    return first(table, keys())


def transport_lookup(table: Table, address: str, parent_matches: bool = False,
                     delimiter: str = "") -> Match | None:
    """transport_lookup - transport(5) lookup of a recipient address."""
    user, domain = _split(address)
    base = strip_extension(user, delimiter)

    def keys() -> Iterator[str]:
        if domain is not None:
            yield f"{user}@{domain}"
            if base is not None:
                yield f"{base}@{domain}"
            yield from domain_keys(domain, parent_matches)
        yield "*"
    return first(table, keys())
