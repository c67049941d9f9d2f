"""resolve - resolve a recipient to (transport, nexthop, recipient, flags)

SYNOPSIS
    from postel.trivial_rewrite.resolve import Resolver
    res = Resolver.from_config(cfg)
    r = res.resolve("user@example.com", sender="me@example.org")
    r.transport, r.nexthop, r.recipient, r.flags

DESCRIPTION
    This is the "resolve" half of trivial-rewrite(8), without network I/O
    (lookup tables are reached through the open_table function it is given).
    The address is in internal (unquoted) form, as queue files hold it.

    Local domains are taken off the right-hand side: while the domain after
    the last '@' is local ($mydestination, or [ipaddress] of
    $inet_interfaces / $proxy_interfaces), it is removed and what is left
    is rewritten again with the local rule, so that "user%remote@local"
    and "remote!user@local" are routed to remote.  The null address
    becomes $empty_address_recipient.  A local address without domain gets
    "@$myhostname".

    Then the address class decides the default transport and nexthop
    (ADDRESS_CLASS_README):

      local           $mydestination, [own ip]      $local_transport, nexthop $myhostname
      virtual alias   $virtual_alias_domains       error:5.1.1 User unknown in virtual alias table
      virtual mailbox $virtual_mailbox_domains     $virtual_transport, nexthop the domain
      relay           $relay_domains               $relay_transport
      default         anything else                $sender_dependent_default_transport_maps
                                                   or $default_transport
    For relay and default, the nexthop is $sender_dependent_relayhost_maps,
    else $relayhost, else the recipient domain.  A "transport:nexthop"
    value of a *_transport parameter overrides that nexthop.
    transport_maps then override both, with transport(5) semantics.

    Flags (Postfix's RESOLVE_FLAG_* and RESOLVE_CLASS_* values):
      FLAG_FINAL   the class is local, virtual alias or virtual mailbox
      FLAG_ROUTED  the remote local part still holds @, ! or % operators
      FLAG_ERROR   the domain is not valid (null domain, numeric name, ...)
      FLAG_FAIL    a table was unavailable: the caller must defer

    With verify=True, the address_verify_* overrides of the transport,
    relayhost and table parameters are used (the "verify" request).

CONFIGURATION PARAMETERS
    mydestination, inet_interfaces, proxy_interfaces, myhostname
    local_transport (local:$myhostname)  virtual_transport (virtual)
    relay_transport (relay)              default_transport (smtp)
    relayhost (empty)                    transport_maps (empty)
    virtual_alias_domains ($virtual_alias_maps)
    virtual_mailbox_domains ($virtual_mailbox_maps)
    relay_domains                        parent_domain_matches_subdomains
    sender_dependent_relayhost_maps, sender_dependent_default_transport_maps
    empty_address_relayhost_maps_lookup_key (<>)
    empty_address_default_transport_maps_lookup_key (<>)
    empty_address_recipient (MAILER-DAEMON)
    swap_bangpath (yes), allow_percent_hack (yes)
    resolve_dequoted_address (yes), resolve_null_domain (no)
    resolve_numeric_domain (no), recipient_delimiter (empty)
    show_user_unknown_table_name (yes)
    address_verify_{local,virtual,relay,default}_transport, address_verify_relayhost,
    address_verify_transport_maps, address_verify_sender_dependent_*_maps

SEE ALSO
    transport(5), ADDRESS_CLASS_README, rewrite.py
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from postel.mail.address import (
    parse_address_literal,
    quote_local,
    split_extension,
    strip_trailing_dot,
    unquote_local,
    valid_hostaddr,
    valid_mailhost_literal,
    valid_utf8_hostname,
)
from postel.mail.domain_list import DomainList
from postel.mail.resolve_types import (
    CLASS_ALIAS,
    CLASS_DEFAULT,
    CLASS_FINAL,
    CLASS_LOCAL,
    CLASS_RELAY,
    CLASS_VIRTUAL,
    FLAG_ERROR,
    FLAG_FAIL,
    FLAG_FINAL,
    FLAG_ROUTED,
    Resolved,
)
from postel.trivial_rewrite.rewrite import RewriteParams, find_unquoted, rewrite_addr

DUNNO = "DUNNO"


class TableFailure(Exception):
    """A lookup table could not answer (wraps the tables' TableUnavailable)."""


@dataclass(slots=True)
class ResolveParams:
    """Everything the resolver reads from main.cf, already expanded."""

    myhostname: str = "localhost"
    mydestination: list[str] = field(default_factory=list)
    local_transport: str = "local:$myhostname"
    virtual_transport: str = "virtual"
    relay_transport: str = "relay"
    default_transport: str = "smtp"
    relayhost: str = ""
    transport_maps: list[str] = field(default_factory=list)
    virtual_alias_domains: list[str] = field(default_factory=list)
    virtual_mailbox_domains: list[str] = field(default_factory=list)
    relay_domains: list[str] = field(default_factory=list)
    parent_domain_matches_subdomains: list[str] = field(default_factory=list)
    sender_dependent_relayhost_maps: list[str] = field(default_factory=list)
    sender_dependent_default_transport_maps: list[str] = field(default_factory=list)
    empty_address_relayhost_maps_lookup_key: str = "<>"
    empty_address_default_transport_maps_lookup_key: str = "<>"
    empty_address_recipient: str = "MAILER-DAEMON"
    recipient_delimiter: str = ""
    resolve_dequoted_address: bool = True
    resolve_null_domain: bool = False
    resolve_numeric_domain: bool = False
    show_user_unknown_table_name: bool = True
    swap_bangpath: bool = True
    allow_percent_hack: bool = True
    myorigin: str = ""
    mydomain: str = ""
    append_at_myorigin: bool = True
    append_dot_mydomain: bool = False


def _cfg_list(cfg, name: str, fallback: str | None = None) -> list[str]:
    """_cfg_list - a list parameter, or the fallback parameter when it is unknown."""
    try:
        return list(cfg.get_list(name))
    except KeyError:
        return list(cfg.get_list(fallback)) if fallback else []


def _cfg_str(cfg, name: str, fallback: str | None = None) -> str:
    """_cfg_str - a string parameter, or the fallback parameter when it is unknown."""
    try:
        return cfg.get(name)
    except KeyError:
        return cfg.get(fallback) if fallback else ""


def params_from_config(cfg, verify: bool = False) -> ResolveParams:
    """params_from_config - ResolveParams from a Config (verify: address_verify_* overrides)."""
    v = "address_verify_" if verify else ""
    return ResolveParams(
        myhostname=cfg.get("myhostname"),
        mydestination=_cfg_list(cfg, "mydestination"),
        local_transport=_cfg_str(cfg, v + "local_transport", "local_transport"),
        virtual_transport=_cfg_str(cfg, v + "virtual_transport", "virtual_transport"),
        relay_transport=_cfg_str(cfg, v + "relay_transport", "relay_transport"),
        default_transport=_cfg_str(cfg, v + "default_transport", "default_transport"),
        relayhost=_cfg_str(cfg, v + "relayhost", "relayhost"),
        transport_maps=_cfg_list(cfg, v + "transport_maps", "transport_maps"),
        virtual_alias_domains=_cfg_list(cfg, "virtual_alias_domains"),
        virtual_mailbox_domains=_cfg_list(cfg, "virtual_mailbox_domains"),
        relay_domains=_cfg_list(cfg, "relay_domains"),
        parent_domain_matches_subdomains=_cfg_list(cfg, "parent_domain_matches_subdomains"),
        sender_dependent_relayhost_maps=_cfg_list(
            cfg, v + "sender_dependent_relayhost_maps", "sender_dependent_relayhost_maps"),
        sender_dependent_default_transport_maps=_cfg_list(
            cfg, v + "sender_dependent_default_transport_maps",
            "sender_dependent_default_transport_maps"),
        empty_address_relayhost_maps_lookup_key=_cfg_str(
            cfg, "empty_address_relayhost_maps_lookup_key") or "<>",
        empty_address_default_transport_maps_lookup_key=_cfg_str(
            cfg, "empty_address_default_transport_maps_lookup_key") or "<>",
        empty_address_recipient=cfg.get("empty_address_recipient"),
        recipient_delimiter=_cfg_str(cfg, "recipient_delimiter"),
        resolve_dequoted_address=cfg.get_bool("resolve_dequoted_address"),
        resolve_null_domain=cfg.get_bool("resolve_null_domain"),
        resolve_numeric_domain=cfg.get_bool("resolve_numeric_domain"),
        show_user_unknown_table_name=cfg.get_bool("show_user_unknown_table_name"),
        swap_bangpath=cfg.get_bool("swap_bangpath"),
        allow_percent_hack=cfg.get_bool("allow_percent_hack"),
        myorigin=cfg.get("myorigin"),
        mydomain=cfg.get("mydomain"),
        append_at_myorigin=cfg.get_bool("append_at_myorigin"),
        append_dot_mydomain=cfg.get_bool("append_dot_mydomain"),
    )


def split_transport(value: str) -> tuple[str, str]:
    """split_transport - "transport:nexthop" -> (transport, nexthop); no ':' means no nexthop."""
    transport, _, nexthop = value.partition(":")
    return transport.strip(), nexthop.strip()


def transport_keys(rcpt: str, domain: str, delimiter: str, parent_matches: bool) -> list[str]:
    """transport_keys - transport(5) search order for fixed-string tables."""
    keys = [rcpt]
    local, _, _ = rcpt.rpartition("@")
    user, ext = split_extension(local, delimiter)
    if ext is not None:
        keys.append(f"{user}@{domain}")
    if domain:
        keys.append(domain)
        pos = domain.find(".")
        while pos >= 0:
            parent = domain[pos + 1:] if parent_matches else domain[pos:]
            if parent.strip("."):
                keys.append(parent)
            pos = domain.find(".", pos + 1)
    keys.append("*")
    return keys


def _is_pattern_table(table) -> bool:
    """_is_pattern_table - regexp/pcre/tcp tables see only the full address."""
    return not getattr(table, "fixed_keys", True) or getattr(table, "type_name", "") in ("tcp",)


class Resolver:
    """Resolve internal-form recipient addresses; see the module manual."""

    def __init__(self, params: ResolveParams, open_table: Callable | None = None,
                 own_addrs: Iterable | None = None, table_unavailable: type = Exception,
                 cache_size: int = 10000):
        self.p = params
        self._open_table = open_table
        self._unavailable = table_unavailable
        self.own_addrs = frozenset(own_addrs or ())
        self.rw = RewriteParams(
            myorigin=params.myorigin, mydomain=params.mydomain,
            append_at_myorigin=params.append_at_myorigin,
            append_dot_mydomain=params.append_dot_mydomain,
            swap_bangpath=params.swap_bangpath, allow_percent_hack=params.allow_percent_hack)
        pdms = {x.lower() for x in params.parent_domain_matches_subdomains}
        self.mydestination = DomainList("mydestination", params.mydestination,
                                        parent_matches="mydestination" in pdms,
                                        open_table=open_table)
        self.virtual_alias_domains = DomainList(
            "virtual_alias_domains", params.virtual_alias_domains,
            parent_matches="virtual_alias_domains" in pdms, open_table=open_table)
        self.virtual_mailbox_domains = DomainList(
            "virtual_mailbox_domains", params.virtual_mailbox_domains,
            parent_matches="virtual_mailbox_domains" in pdms, open_table=open_table)
        self.relay_domains = DomainList("relay_domains", params.relay_domains,
                                        parent_matches="relay_domains" in pdms,
                                        open_table=open_table)
        self.transport_parent = "transport_maps" in pdms
        self.transport_tables = self._tables(params.transport_maps)
        self.sdrh_tables = self._tables(params.sender_dependent_relayhost_maps)
        self.sdtp_tables = self._tables(params.sender_dependent_default_transport_maps)
        self.cache: OrderedDict[tuple[str, str], Resolved] = OrderedDict()
        self.cache_size = cache_size

    @classmethod
    def from_config(cls, cfg, verify: bool = False, open_table: Callable | None = None,
                    own_addrs: Iterable | None = None, cache_size: int = 10000) -> Resolver:
        """from_config - a Resolver with the tables and interfaces named in cfg."""
        from postel.tables import TableUnavailable
        from postel.tables import open_table as real_open
        from postel.trivial_rewrite.interfaces import own_addresses
        if own_addrs is None:
            own_addrs = own_addresses(_cfg_list(cfg, "inet_interfaces"),
                                      _cfg_list(cfg, "proxy_interfaces"))
        return cls(params_from_config(cfg, verify), open_table or real_open, own_addrs,
                   TableUnavailable, cache_size)

    def _tables(self, specs: list[str]) -> list:
        """_tables - open the tables of a *_maps parameter."""
        if not specs:
            return []
        if self._open_table is None:
            raise ValueError("lookup tables configured but no table support")
        return [self._open_table(s) for s in specs]

    def tables_changed(self) -> bool:
        """tables_changed - a table file behind this resolver changed on disk."""
        tables = [*self.transport_tables, *self.sdrh_tables, *self.sdtp_tables]
        for dl in (self.mydestination, self.virtual_alias_domains,
                   self.virtual_mailbox_domains, self.relay_domains):
            tables.extend(t for _, kind, t in dl.entries if kind == "table")
        return any(getattr(t, "needs_reopen", lambda: False)() for t in tables)

    def _lookup(self, table, key: str) -> str | None:
        """_lookup - one table lookup; TableFailure when the table cannot answer."""
        try:
            return table.lookup(key)
        except self._unavailable as exc:
            raise TableFailure(str(exc)) from exc

    def _match(self, dl: DomainList, domain: str) -> bool:
        """_match - domain list match; TableFailure when a table cannot answer."""
        try:
            return dl.match(domain)
        except self._unavailable as exc:
            raise TableFailure(f"{dl.param} lookup failure: {exc}") from exc

    def is_local(self, domain: str) -> bool:
        """is_local - mydestination, or [ip] of inet_interfaces/proxy_interfaces."""
        domain = strip_trailing_dot(domain)
        if not domain:
            return False
        if domain.startswith("["):
            ip = parse_address_literal(domain)
            return ip is not None and ip in self.own_addrs
        return self._match(self.mydestination, domain)

    # ---- the address loop ----

    def _has_operators(self, local: str) -> bool:
        """_has_operators - local part with @, or ! / % when those are enabled."""
        return (find_unquoted(local, "@") >= 0
                or (self.p.swap_bangpath and find_unquoted(local, "!") >= 0)
                or (self.p.allow_percent_hack and find_unquoted(local, "%") >= 0))

    def _strip_local(self, work: str) -> tuple[str, str | None, str | None]:
        """_strip_local - (address, saved local domain, remote domain or None)."""
        saved: str | None = None
        for _ in range(100):
            at = find_unquoted(work, "@", last=True)
            if work.endswith(".") and at >= 0 and len(work) > 1 and work[-2] not in ".@":
                work = work[:-1]
            if self.p.resolve_null_domain and work.endswith("@"):
                work = work[:-1]
            at = find_unquoted(work, "@", last=True)
            if at >= 0:
                domain = work[at + 1:]
                if not self.is_local(domain):
                    return work, saved, domain
                saved = domain
                work = work[:at]
            if self._has_operators(work):
                work = rewrite_addr(work, self.rw.myorigin, self.rw.mydomain, self.rw)
                saved = None
                continue
            if work in ("", '""'):
                # The null address becomes $empty_address_recipient.
                work = quote_local(self.p.empty_address_recipient)
                continue
            return work, saved, None
        return work, saved, None

    def resolve(self, addr: str, sender: str = "") -> Resolved:
        """resolve - resolve an internal-form address, with the result cache."""
        key = (addr, sender)
        hit = self.cache.get(key)
        if hit is not None:
            self.cache.move_to_end(key)
            return hit
        result = self.resolve_uncached(addr, sender)
        if not result.flags & FLAG_FAIL:
            self.cache[key] = result
            if len(self.cache) > self.cache_size:
                self.cache.popitem(last=False)
        return result

    def flush_cache(self) -> None:
        """flush_cache - forget cached answers (after a table change)."""
        self.cache.clear()

    def resolve_uncached(self, addr: str, sender: str = "") -> Resolved:
        """resolve_uncached - the resolver proper."""
        try:
            return self._resolve(addr, sender)
        except TableFailure:
            return Resolved("", "", addr, FLAG_FAIL)

    def _resolve(self, addr: str, sender: str) -> Resolved:
        p = self.p
        flags = 0
        # resolve_dequoted_address=yes looks inside quotes for routing
        # operators (safe); =no honours the quoting (correct).
        work = addr if p.resolve_dequoted_address else quote_local(addr)
        work, saved, domain = self._strip_local(work)
        if domain is None:
            recipient = f"{work}@{saved if saved is not None else p.myhostname}"
            if not p.resolve_dequoted_address:
                recipient = unquote_local(recipient)
            transport, nexthop = p.local_transport, p.myhostname
            flags |= CLASS_LOCAL | FLAG_FINAL
            rcpt_domain = (saved or p.myhostname).lower()
        else:
            at = find_unquoted(work, "@", last=True)
            local = work[:at]
            if self._has_operators(local):
                flags |= FLAG_ROUTED
            domain = strip_trailing_dot(domain)
            rcpt_domain = domain.lower()
            if domain.startswith("["):
                if not valid_mailhost_literal(domain):
                    flags |= FLAG_ERROR
            elif not valid_utf8_hostname(domain):
                if p.resolve_numeric_domain and valid_hostaddr(domain):
                    ip = ipaddress.ip_address(domain)
                    domain = f"[{domain}]" if ip.version == 4 else f"[IPv6:{domain}]"
                    rcpt_domain = domain.lower()
                    if self.is_local(domain):
                        return self._resolve(f"{local}@{domain}", sender)
                else:
                    flags |= FLAG_ERROR
            recipient = f"{local}@{domain}"
            if not p.resolve_dequoted_address:
                recipient = unquote_local(recipient)
            transport, nexthop, cls = self._remote_class(rcpt_domain, sender)
            flags |= cls
            if cls & CLASS_FINAL:
                flags |= FLAG_FINAL
        # A "transport:nexthop" parameter value overrides the default nexthop.
        transport, explicit = split_transport(transport)
        if explicit:
            nexthop = explicit
        if self.transport_tables:
            transport, nexthop = self._transport_override(
                recipient, rcpt_domain, transport, nexthop)
        return Resolved(transport, nexthop, recipient, flags)

    def _remote_class(self, domain: str, sender: str) -> tuple[str, str, int]:
        """_remote_class - (transport, nexthop, class) for a non-local domain."""
        p = self.p
        if self._match(self.virtual_alias_domains, domain):
            text = "5.1.1 User unknown"
            if p.show_user_unknown_table_name:
                text += " in virtual alias table"
            return "error", text, CLASS_ALIAS
        if self._match(self.virtual_mailbox_domains, domain):
            return p.virtual_transport, domain, CLASS_VIRTUAL
        if self._match(self.relay_domains, domain):
            transport, cls = p.relay_transport, CLASS_RELAY
        else:
            cls = CLASS_DEFAULT
            transport = self._sender_lookup(
                self.sdtp_tables, sender, p.empty_address_default_transport_maps_lookup_key)
            transport = transport or p.default_transport
        relay = self._sender_lookup(
            self.sdrh_tables, sender, p.empty_address_relayhost_maps_lookup_key)
        nexthop = relay or p.relayhost.strip() or domain
        return transport, nexthop, cls

    def _sender_lookup(self, tables: list, sender: str, null_key: str) -> str | None:
        """_sender_lookup - sender-dependent table: sender, then @domain; DUNNO stops."""
        if not tables:
            return None
        if not sender:
            keys = [null_key]
        else:
            local, _, domain = sender.rpartition("@")
            keys = [sender]
            user, ext = split_extension(local, self.p.recipient_delimiter)
            if ext is not None and domain:
                keys.append(f"{user}@{domain}")
            if domain:
                keys.append("@" + domain)
        for key in keys:
            for table in tables:
                if _is_pattern_table(table) and key != keys[0]:
                    continue
                value = self._lookup(table, key)
                if value is not None:
                    value = value.strip()
                    return None if value.upper() == DUNNO else value
        return None

    def _transport_override(self, rcpt: str, domain: str, transport: str,
                            nexthop: str) -> tuple[str, str]:
        """_transport_override - apply transport_maps (transport(5) RESULT FORMAT)."""
        keys = transport_keys(rcpt, domain, self.p.recipient_delimiter, self.transport_parent)
        value = None
        for key in keys:
            for table in self.transport_tables:
                if _is_pattern_table(table) and key != rcpt:
                    continue
                value = self._lookup(table, key)
                if value is not None:
                    break
            if value is not None:
                break
        if value is None:
            return transport, nexthop
        new_transport, new_nexthop = split_transport(value)
        if new_transport:
            # A non-null transport with a null nexthop resets the nexthop to
            # the recipient domain.
            return new_transport, new_nexthop or domain
        if new_nexthop:
            return transport, new_nexthop
        return transport, nexthop
