"""addr - envelope and header address mapping for cleanup(8)

SYNOPSIS
    from postel.cleanup.addr import AddressMaps
    maps = AddressMaps.from_config(cfg)
    maps.canonical(addr, "envelope_sender")          # canonical(5)
    maps.masquerade(addr, "header_sender")           # masquerade_domains
    maps.virtual_expand(rcpt) -> list[str]           # virtual(5), recursive
    maps.bcc_for_sender(sender), maps.bcc_for_recipient(rcpt)

DESCRIPTION
    The table-driven address transformations of cleanup(8), without I/O
    other than the (synchronous, cached per process) table lookups.
    Addresses are in internal form (no quoting).

    Lookup order for canonical(5) and virtual(5), for user@domain:
        user@domain
        user            only when domain is $myorigin or in $mydestination
        @domain
    When recipient_delimiter is set and user has an extension, the address
    without the extension is tried next; the extension is put back on the
    result when propagate_unmatched_extensions names the table class.
    A canonical result "@other" keeps the user part: user@other.

    Canonical classes: sender_canonical_maps for envelope_sender/
    header_sender (sender_canonical_classes), recipient_canonical_maps for
    envelope_recipient/header_recipient (recipient_canonical_classes), then
    canonical_maps (canonical_classes).

    Masquerading strips the host part below a domain in masquerade_domains
    (user@host.example.com -> user@example.com), the first matching entry
    wins, "!domain" excludes it; users in masquerade_exceptions and classes
    not in masquerade_classes are left alone.

    virtual_expand() expands a recipient recursively through
    virtual_alias_maps (a result equal to its key ends the recursion),
    within virtual_alias_recursion_limit and virtual_alias_expansion_limit
    (AliasExpansionError beyond them: Postfix's "4.6.0 Alias expansion
    error").  A table that cannot answer raises TableUnavailable.

CONFIGURATION PARAMETERS
    canonical_maps, sender_canonical_maps, recipient_canonical_maps ()
    canonical_classes, sender_canonical_classes, recipient_canonical_classes
    masquerade_domains (), masquerade_exceptions (), masquerade_classes
    virtual_alias_maps (), virtual_alias_recursion_limit (1000),
    virtual_alias_expansion_limit (1000)
    always_bcc (), sender_bcc_maps (), recipient_bcc_maps ()
    recipient_delimiter (), propagate_unmatched_extensions (canonical, virtual)
    myorigin, mydestination, myhostname
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from postel import log
from postel.tables import open_table

_SPLIT = re.compile(r"[\s,]+")


class AliasExpansionError(Exception):
    """Too many addresses or too deep a recursion in virtual_alias_maps."""


def _cfg_list(cfg, name: str) -> list[str]:
    try:
        return cfg.get_list(name)
    except KeyError:
        return []


def _cfg_str(cfg, name: str, default: str = "") -> str:
    try:
        return cfg.get(name)
    except KeyError:
        return default


def _cfg_int(cfg, name: str, default: int) -> int:
    try:
        return cfg.get_int(name)
    except KeyError:
        return default


@dataclass(slots=True)
class AddressMaps:
    """AddressMaps - opened tables and settings for address mapping."""

    canonical_maps: list = field(default_factory=list)
    sender_canonical_maps: list = field(default_factory=list)
    recipient_canonical_maps: list = field(default_factory=list)
    canonical_classes: frozenset = frozenset()
    sender_canonical_classes: frozenset = frozenset()
    recipient_canonical_classes: frozenset = frozenset()
    virtual_alias_maps: list = field(default_factory=list)
    sender_bcc_maps: list = field(default_factory=list)
    recipient_bcc_maps: list = field(default_factory=list)
    always_bcc: str = ""
    masquerade_domains: list = field(default_factory=list)
    masquerade_exceptions: frozenset = frozenset()
    masquerade_classes: frozenset = frozenset()
    local_domains: frozenset = frozenset()
    recipient_delimiter: str = ""
    propagate: frozenset = frozenset({"canonical", "virtual"})
    recursion_limit: int = 1000
    expansion_limit: int = 1000

    @classmethod
    def from_config(cls, cfg, opener=open_table) -> AddressMaps:
        """from_config - open every table once (per process)."""
        def tables(name: str) -> list:
            return [opener(t) for t in _cfg_list(cfg, name)]
        local = {_cfg_str(cfg, "myorigin").lower(), _cfg_str(cfg, "myhostname").lower()}
        local |= {d.lower() for d in _cfg_list(cfg, "mydestination") if "/" not in d
                  and ":" not in d}
        local.discard("")
        return cls(
            canonical_maps=tables("canonical_maps"),
            sender_canonical_maps=tables("sender_canonical_maps"),
            recipient_canonical_maps=tables("recipient_canonical_maps"),
            canonical_classes=frozenset(_cfg_list(cfg, "canonical_classes")),
            sender_canonical_classes=frozenset(_cfg_list(cfg, "sender_canonical_classes")),
            recipient_canonical_classes=frozenset(_cfg_list(cfg, "recipient_canonical_classes")),
            virtual_alias_maps=tables("virtual_alias_maps"),
            sender_bcc_maps=tables("sender_bcc_maps"),
            recipient_bcc_maps=tables("recipient_bcc_maps"),
            always_bcc=_cfg_str(cfg, "always_bcc"),
            masquerade_domains=[d.lower() for d in _cfg_list(cfg, "masquerade_domains")],
            masquerade_exceptions=frozenset(u.lower() for u in
                                            _cfg_list(cfg, "masquerade_exceptions")),
            masquerade_classes=frozenset(_cfg_list(cfg, "masquerade_classes")),
            local_domains=frozenset(local),
            recipient_delimiter=_cfg_str(cfg, "recipient_delimiter"),
            propagate=frozenset(_SPLIT.split(_cfg_str(cfg, "propagate_unmatched_extensions",
                                                      "canonical, virtual").strip())),
            recursion_limit=_cfg_int(cfg, "virtual_alias_recursion_limit", 1000),
            expansion_limit=_cfg_int(cfg, "virtual_alias_expansion_limit", 1000),
        )

    # ------------------------------------------------------------ lookups

    def _keys(self, addr: str) -> list[str]:
        """_keys - canonical(5)/virtual(5) lookup keys for one address."""
        user, at, domain = addr.rpartition("@")
        if not at:
            return [addr]
        keys = [addr]
        if domain.lower() in self.local_domains:
            keys.append(user)
        keys.append("@" + domain)
        return keys

    def _lookup(self, tables: list, addr: str, kind: str) -> str | None:
        """_lookup - the mapped value for addr, extension handling included."""
        if not tables or not addr:
            return None
        for table in tables:
            for key in self._keys(addr):
                value = table.lookup(key)
                if value is not None:
                    return _at_domain(value, addr, key)
        ext = self._extension(addr)
        if ext is None:
            return None
        base, extension, delim = ext
        for table in tables:
            for key in self._keys(base):
                value = table.lookup(key)
                if value is not None:
                    value = _at_domain(value, base, key)
                    if kind in self.propagate and not key.startswith("@"):
                        value = ",".join(_add_ext(v, extension, delim)
                                         for v in _SPLIT.split(value.strip()) if v)
                    elif key.startswith("@"):
                        value = _at_domain(value, addr, key)
                    return value
        return None

    def _extension(self, addr: str) -> tuple[str, str, str] | None:
        """_extension - (address without extension, extension, delimiter) or None."""
        if not self.recipient_delimiter:
            return None
        user, at, domain = addr.rpartition("@")
        if not at:
            user, domain = addr, ""
        if user.lower() in ("postmaster", "mailer-daemon", "double-bounce"):
            return None
        for i, ch in enumerate(user):
            if i > 0 and ch in self.recipient_delimiter:
                base = user[:i] + (("@" + domain) if at else "")
                return base, user[i + 1:], ch
        return None

    # ------------------------------------------------------------ mappings

    def canonical(self, addr: str, cls: str) -> str:
        """canonical - the address after canonical(5) mapping for class cls."""
        if not addr:
            return addr
        if cls.endswith("sender") and cls in self.sender_canonical_classes:
            addr = self._lookup(self.sender_canonical_maps, addr, "canonical") or addr
        if cls.endswith("recipient") and cls in self.recipient_canonical_classes:
            addr = self._lookup(self.recipient_canonical_maps, addr, "canonical") or addr
        if cls in self.canonical_classes:
            addr = self._lookup(self.canonical_maps, addr, "canonical") or addr
        return addr

    def masquerade(self, addr: str, cls: str) -> str:
        """masquerade - strip host detail below a masquerade domain."""
        if not self.masquerade_domains or cls not in self.masquerade_classes:
            return addr
        user, at, domain = addr.rpartition("@")
        if not at or user.lower() in self.masquerade_exceptions:
            return addr
        low = domain.lower()
        for entry in self.masquerade_domains:
            neg = entry.startswith("!")
            dom = entry[1:] if neg else entry
            if low == dom:
                return addr
            if low.endswith("." + dom):
                if neg:
                    return addr
                return f"{user}@{dom}"
        return addr

    def virtual_expand(self, rcpt: str) -> list[str]:
        """virtual_expand - the recipients rcpt expands to (itself when unmapped)."""
        if not self.virtual_alias_maps:
            return [rcpt]
        out: list[str] = []
        seen: set[str] = set()
        self._expand(rcpt, 0, out, seen)
        return out

    def _expand(self, addr: str, depth: int, out: list[str], seen: set[str]) -> None:
        """_expand - recursive step of virtual_expand."""
        if depth > self.recursion_limit:
            log.warning("unreasonable virtual_alias_maps map nesting for %s", addr)
            raise AliasExpansionError(addr)
        value = self._lookup(self.virtual_alias_maps, addr, "virtual")
        if value is None or addr in seen:
            if addr not in out:
                out.append(addr)
            if len(out) > self.expansion_limit:
                log.warning("unreasonable virtual_alias_maps map expansion size for %s", addr)
                raise AliasExpansionError(addr)
            return
        seen.add(addr)
        for new in _SPLIT.split(value.strip()):
            if not new:
                continue
            if new.lower() == addr.lower():
                if new not in out:
                    out.append(new)
                continue
            self._expand(new, depth + 1, out, seen)

    def bcc_for_sender(self, sender: str) -> str | None:
        """bcc_for_sender - sender_bcc_maps result for the envelope sender."""
        return self._lookup(self.sender_bcc_maps, sender, "bcc") if sender else None

    def bcc_for_recipient(self, rcpt: str) -> str | None:
        """bcc_for_recipient - recipient_bcc_maps result for one recipient."""
        return self._lookup(self.recipient_bcc_maps, rcpt, "bcc")


def _at_domain(value: str, addr: str, key: str) -> str:
    """_at_domain - "@other" as a result keeps the user: user@other."""
    value = value.strip()
    if value.startswith("@") and "," not in value and " " not in value:
        user = addr.rpartition("@")[0] or addr
        return user + value
    return value


def _add_ext(addr: str, ext: str, delim: str) -> str:
    """_add_ext - put an address extension back on a mapped address."""
    user, at, domain = addr.rpartition("@")
    if not at:
        return f"{addr}{delim}{ext}"
    return f"{user}{delim}{ext}@{domain}"
