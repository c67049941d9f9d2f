"""smtpd_check - SMTP server access restrictions

SYNOPSIS
    engine = Restrictions(cfg, resolve_class=..., dns=..., open_table=...)
    reply = await engine.check_rcpt(state)      # None: accepted

DESCRIPTION
    Evaluates the smtpd_*_restrictions lists the way Postfix's smtpd_check
    does.  Each list is read left to right; the first restriction that
    decides (permit or reject) ends that list.  A permit ends only its own
    list: the next list is still evaluated.  The relay and recipient lists
    are both evaluated at RCPT time and both must pass.

    With smtpd_delay_reject = yes (the default) the client, helo and sender
    lists are evaluated at RCPT time, so that the log shows the recipient of
    a rejected attempt.

    Restrictions understood:
        permit, reject, defer, defer_if_permit, defer_if_reject,
        warn_if_reject, permit_mynetworks, permit_inet_interfaces,
        permit_sasl_authenticated, reject_unauth_destination,
        defer_unauth_destination, permit_auth_destination,
        reject_unlisted_recipient, reject_unlisted_sender,
        reject_non_fqdn_sender, reject_non_fqdn_recipient,
        reject_non_fqdn_helo_hostname, reject_invalid_helo_hostname,
        reject_unknown_sender_domain, reject_unknown_recipient_domain,
        reject_unknown_helo_hostname, reject_unknown_client_hostname,
        reject_unknown_reverse_client_hostname, reject_unauth_pipelining,
        reject_unverified_recipient, reject_unverified_sender,
        reject_null_sender? no: see check_sender_access with <>,
        check_client_access, check_reverse_client_hostname_access,
        check_helo_access, check_sender_access, check_recipient_access,
        check_policy_service, reject_rbl_client, reject_rhsbl_client,
        reject_rhsbl_sender, reject_rhsbl_recipient, reject_rhsbl_helo,
        permit_dnswl_client, sleep, and the names listed in
        smtpd_restriction_classes.
    Old names (reject_invalid_hostname, reject_unknown_client,
    reject_non_fqdn_hostname, reject_unknown_hostname) are accepted too.

    Access table results: OK (or all digits), REJECT [text], DEFER [text],
    DEFER_IF_REJECT, DEFER_IF_PERMIT, 4NN/5NN [text], DUNNO, HOLD, DISCARD,
    FILTER transport:destination, PREPEND header, REDIRECT address,
    BCC address, WARN text, INFO text, a restriction or restriction class
    name (or a list of restrictions, evaluated in place).

CONFIGURATION PARAMETERS
    smtpd_client_restrictions, smtpd_helo_restrictions,
    smtpd_sender_restrictions, smtpd_relay_restrictions,
    smtpd_recipient_restrictions, smtpd_data_restrictions,
    smtpd_end_of_data_restrictions, smtpd_etrn_restrictions,
    smtpd_delay_reject (yes), smtpd_restriction_classes, mynetworks,
    relay_domains, parent_domain_matches_subdomains, access_map_reject_code
    (554), access_map_defer_code (450), reject_code (554), defer_code (450),
    relay_domains_reject_code (554), maps_rbl_reject_code (554),
    non_fqdn_reject_code (504), invalid_hostname_reject_code (501),
    unknown_address_reject_code (450), unknown_client_reject_code (450),
    unknown_hostname_reject_code (450), unknown_local_recipient_reject_code
    (550), unknown_relay_recipient_reject_code (550),
    unknown_virtual_alias_reject_code (550),
    unknown_virtual_mailbox_reject_code (550), smtpd_null_access_lookup_key
    (<>), smtpd_policy_service_timeout (100s),
    smtpd_policy_service_default_action (451 4.3.5 Server configuration
    problem), default_rbl_reply, unverified_recipient_reject_code (450),
    unverified_recipient_defer_code (450), unverified_recipient_reject_reason,
    unverified_recipient_tempfail_action ($reject_tempfail_action), the same
    four for unverified_sender_*, address_verify_poll_count (3),
    address_verify_poll_delay (3s).

SEE ALSO
    Postfix's postconf(5) and SMTPD_ACCESS_README, access(5),
    SMTPD_POLICY_README.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from postel import log

# Address classes, as trivial-rewrite reports them.
CLASS_LOCAL = "local"
CLASS_ALIAS = "alias"        # virtual alias domain
CLASS_VIRTUAL = "virtual"    # virtual mailbox domain
CLASS_RELAY = "relay"
CLASS_DEFAULT = "default"


@dataclass(slots=True)
class Verdict:
    """The outcome of a restriction list: None reply means 'not rejected'."""

    code: int = 0                 # 0: no decision; 2xx permit; 4xx/5xx reject
    dsn: str = ""
    text: str = ""

    @property
    def decided(self) -> bool:
        return self.code != 0

    @property
    def permit(self) -> bool:
        return 200 <= self.code < 300

    @property
    def reject(self) -> bool:
        return self.code >= 400

    def reply_line(self) -> str:
        return f"{self.code} {self.dsn} {self.text}"


PERMIT = Verdict(250, "2.0.0", "Ok")
DUNNO = Verdict()


@dataclass(slots=True)
class CheckState:
    """What the restrictions may look at: the session and the current command."""

    client_name: str = "unknown"
    client_addr: str = ""
    client_port: str = ""
    reverse_client_name: str = "unknown"
    client_name_status: int = 2     # 2 ok, 4 temporary lookup failure, 5 no name
    helo_name: str = ""
    sender: str | None = None       # None: no MAIL FROM yet
    recipient: str | None = None
    sasl_username: str = ""
    sasl_method: str = ""
    protocol: str = "SMTP"
    queue_id: str = "NOQUEUE"
    size: int = 0
    rcpt_count: int = 0
    etrn_domain: str = ""
    pipelining_violation: bool = False
    instance: str = ""
    # actions requested by access tables, applied by smtpd/cleanup
    hold: str = ""
    discard: str = ""
    filter: str = ""
    redirect: str = ""
    bcc: list[str] = field(default_factory=list)
    prepend: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class RestrictionConfigError(Exception):
    """A restriction list names something unknown: defer mail, log the problem."""


# Stage names -> (list parameter, what is checked, reply prefix).
_STAGES = {
    "client": ("smtpd_client_restrictions", "Client host rejected"),
    "helo": ("smtpd_helo_restrictions", "Helo command rejected"),
    "sender": ("smtpd_sender_restrictions", "Sender address rejected"),
    "relay": ("smtpd_relay_restrictions", "Recipient address rejected"),
    "recipient": ("smtpd_recipient_restrictions", "Recipient address rejected"),
    "data": ("smtpd_data_restrictions", "Data command rejected"),
    "end_of_data": ("smtpd_end_of_data_restrictions", "End-of-data rejected"),
    "etrn": ("smtpd_etrn_restrictions", "ETRN command rejected"),
}

_OLD_NAMES = {
    "reject_invalid_hostname": "reject_invalid_helo_hostname",
    "reject_unknown_client": "reject_unknown_client_hostname",
    "reject_non_fqdn_hostname": "reject_non_fqdn_helo_hostname",
    "reject_unknown_hostname": "reject_unknown_helo_hostname",
}

_TABLE_RESTRICTIONS = {
    "check_client_access", "check_reverse_client_hostname_access", "check_helo_access",
    "check_sender_access", "check_recipient_access", "check_etrn_access",
}
_ARG_RESTRICTIONS = _TABLE_RESTRICTIONS | {
    "check_policy_service", "reject_rbl_client", "reject_rhsbl_client", "reject_rhsbl_sender",
    "reject_rhsbl_recipient", "reject_rhsbl_helo", "reject_rhsbl_reverse_client",
    "permit_dnswl_client", "sleep",
}
_RESULT_RE = re.compile(r"^([45]\d\d)(?:\s+([245]\.\d{1,3}\.\d{1,3}))?(?:\s+(.*))?$", re.S)
_HOST_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", re.I)


def valid_hostname(name: str) -> bool:
    """valid_hostname - RFC 1035 syntax with Postfix's tolerance for '_'."""
    if not name or len(name) > 255:
        return False
    name = name.rstrip(".")
    labels = name.split(".")
    if all(label.isdigit() for label in labels):
        return False
    return all(_HOST_LABEL.match(label.replace("_", "a")) for label in labels)


def valid_address_literal(name: str) -> bool:
    """valid_address_literal - [1.2.3.4] or [ipv6:::1]."""
    if not (name.startswith("[") and name.endswith("]")):
        return False
    inner = name[1:-1]
    if inner.lower().startswith("ipv6:"):
        inner = inner[5:]
    try:
        ipaddress.ip_address(inner)
    except ValueError:
        return False
    return True


def split_list(value: str) -> list[str]:
    """split_list - Postfix list syntax: commas and whitespace, { } groups kept."""
    out: list[str] = []
    i, n = 0, len(value)
    while i < n:
        c = value[i]
        if c in " \t\r\n,":
            i += 1
            continue
        if c == "{":
            depth, j = 0, i
            while j < n:
                if value[j] == "{":
                    depth += 1
                elif value[j] == "}":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            out.append(value[i + 1:j].strip())
            i = j + 1
            continue
        j = i
        while j < n and value[j] not in " \t\r\n,":
            j += 1
        out.append(value[i:j])
        i = j
    return out


def domain_of(address: str) -> str:
    """domain_of - the part after the last '@', lowercased, or ''."""
    at = address.rfind("@")
    return address[at + 1:].lower().rstrip(".") if at >= 0 else ""


def local_of(address: str) -> str:
    at = address.rfind("@")
    return address[:at] if at >= 0 else address


@functools.lru_cache(maxsize=4096)
def ip_of(addr: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """ip_of - the parsed address or None (cached: clients come back often)."""
    try:
        return ipaddress.ip_address(addr)
    except ValueError:
        return None


MATCH_CACHE_SIZE = 4096     # addresses remembered per NetworkList


class NetworkList:
    """NetworkList - mynetworks-style matching of client addresses."""

    def __init__(self, items: list[str]):
        self.nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self.bad: list[str] = []
        self._seen: dict[str, bool] = {}   # addr -> match result
        for item in items:
            text = item.strip()
            if text.startswith("[") and "]" in text:
                text = text[1:text.index("]")] + text[text.index("]") + 1:]
            if not text:
                continue
            try:
                self.nets.append(ipaddress.ip_network(text, strict=False))
            except ValueError:
                self.bad.append(item)

    def match(self, addr: str) -> bool:
        """match - is addr in one of the networks (cached per address)?"""
        hit = self._seen.get(addr)
        if hit is None:
            hit = self._match(addr)
            if len(self._seen) >= MATCH_CACHE_SIZE:
                self._seen.clear()
            self._seen[addr] = hit
        return hit

    def _match(self, addr: str) -> bool:
        """_match - match without the cache."""
        ip = ip_of(addr)
        if ip is None:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip.version == net.version and ip in net for net in self.nets)


class DomainList:
    """DomainList - relay_domains-style matching (names, parent domains, tables)."""

    def __init__(self, items: list[str], parent_matches: bool, open_table: Callable | None):
        self.names: set[str] = set()
        self.dotted: set[str] = set()
        self.tables = []
        self.parent_matches = parent_matches
        for item in items:
            if ":" in item and not item.startswith("["):
                if open_table is not None:
                    self.tables.append(open_table(item))
                continue
            name = item.lower().rstrip(".")
            if name.startswith("."):
                self.dotted.add(name[1:])
            else:
                self.names.add(name)

    def match(self, domain: str) -> bool:
        domain = domain.lower().rstrip(".")
        if not domain:
            return False
        if domain in self.names or self._table_hit(domain):
            return True
        parts = domain.split(".")
        for i in range(1, len(parts)):
            parent = ".".join(parts[i:])
            if parent in self.dotted:
                return True
            if self.parent_matches and (parent in self.names or self._table_hit(parent)):
                return True
        return False

    def _table_hit(self, key: str) -> bool:
        return any(t.lookup(key) is not None for t in self.tables)


ResolveClass = Callable[[str], Awaitable[str]]


class Restrictions:
    """Restrictions - the smtpd access policy engine for one configuration."""

    def __init__(self, cfg, *, resolve_class: ResolveClass | None = None,
                 dns=None, open_table: Callable | None = None,
                 recipient_known: Callable[[str, str], Awaitable[bool | None]] | None = None,
                 inet_addresses: list[str] | None = None,
                 verify: Callable[[str], Awaitable[object]] | None = None):
        self.cfg = cfg
        # verify(addr) -> object with .status, .rcpt_status, .reason
        # (postel.ipc.verify_client.VerifyClient.query); None: the
        # reject_unverified_* restrictions report a verification problem.
        self.verify = verify
        self.resolve_class = resolve_class
        self.dns = dns
        self.open_table = open_table
        self.recipient_known = recipient_known
        self.inet_addresses = set(inet_addresses or [])
        self.lists = {stage: split_list(cfg.get(param)) for stage, (param, _) in _STAGES.items()}
        self.classes: dict[str, list[str]] = {}
        for name in split_list(cfg.get("smtpd_restriction_classes")):
            try:
                self.classes[name] = split_list(cfg.get(name))
            except KeyError:
                self.classes[name] = []
        self.mynetworks = NetworkList(split_list(cfg.get("mynetworks")))
        for bad in self.mynetworks.bad:
            log.warning("mynetworks: bad network specification: %s", bad)
        parent = split_list(cfg.get("parent_domain_matches_subdomains"))
        self.relay_domains = DomainList(split_list(cfg.get("relay_domains")),
                                        "relay_domains" in parent, open_table)
        self.access_parent = "smtpd_access_maps" in parent
        self._codes: dict[str, int] = {}
        self._tables: dict[str, object] = {}
        self._validate()

    # -- configuration ---------------------------------------------------

    def _code(self, name: str) -> int:
        code = self._codes.get(name)
        if code is None:
            code = self._codes[name] = self.cfg.get_int(name)
        return code

    def _validate(self) -> None:
        """_validate - report unknown restriction names once, at start-up."""
        for stage, items in self.lists.items():
            self._validate_list(_STAGES[stage][0], items)
        for name, items in self.classes.items():
            self._validate_list(name, items)

    def _validate_list(self, where: str, items: list[str]) -> None:
        i = 0
        while i < len(items):
            name = _OLD_NAMES.get(items[i], items[i])
            if name in _ARG_RESTRICTIONS:
                i += 1
            elif ":" in name:
                pass  # bare table: an implicit check_*_access
            elif name not in _HANDLERS and name not in self.classes:
                raise RestrictionConfigError(f"{where}: unknown restriction: \"{items[i]}\"")
            i += 1

    def has_relay_list(self) -> bool:
        return bool(self.lists["relay"])

    def table(self, spec: str):
        t = self._tables.get(spec)
        if t is None:
            if self.open_table is None:
                raise RestrictionConfigError(f"no table support for {spec}")
            t = self._tables[spec] = self.open_table(spec)
        return t

    # -- public checks --------------------------------------------------

    async def check_client(self, st: CheckState) -> Verdict:
        return await self._run_stage("client", st)

    async def check_helo(self, st: CheckState) -> Verdict:
        return await self._run_stage("helo", st)

    async def check_sender(self, st: CheckState) -> Verdict:
        return await self._run_stage("sender", st)

    async def check_rcpt(self, st: CheckState, delayed: bool = True) -> Verdict:
        """check_rcpt - at RCPT: the delayed lists, then relay and recipient."""
        lists = self.lists
        if delayed:
            for stage in ("client", "helo", "sender"):
                if not lists[stage]:
                    continue            # an empty list decides nothing
                v = await self._run_stage(stage, st)
                if v.code >= 400:
                    return v
        if lists["relay"]:
            v = await self._run_stage("relay", st)
            if v.code >= 400:
                return v
        if not lists["recipient"]:
            return DUNNO
        return await self._run_stage("recipient", st)

    async def check_data(self, st: CheckState) -> Verdict:
        return await self._run_stage("data", st)

    async def check_end_of_data(self, st: CheckState) -> Verdict:
        return await self._run_stage("end_of_data", st)

    async def check_etrn(self, st: CheckState) -> Verdict:
        return await self._run_stage("etrn", st)

    # -- evaluation ------------------------------------------------------

    async def _run_stage(self, stage: str, st: CheckState) -> Verdict:
        items = self.lists[stage]
        if not items:
            return DUNNO                # nothing to evaluate (the usual data stages)
        ctx = _Eval(stage, _STAGES[stage][1])
        v = await self._run_list(items, st, ctx, depth=0)
        if v.code >= 400 and ctx.defer_if_reject:
            return ctx.defer_if_reject
        if v.code < 400 and ctx.defer_if_permit:
            return ctx.defer_if_permit
        return v

    async def _run_list(self, items: list[str], st: CheckState, ctx: _Eval, depth: int) -> Verdict:
        if depth > 100:
            raise RestrictionConfigError("restriction class nesting too deep")
        i = 0
        while i < len(items):
            name = _OLD_NAMES.get(items[i], items[i])
            arg = None
            if name in _ARG_RESTRICTIONS:
                if i + 1 >= len(items):
                    raise RestrictionConfigError(f"restriction {name} requires an argument")
                arg = items[i + 1]
                i += 1
            elif ":" in name:
                arg, name = name, _IMPLICIT_ACCESS[ctx.stage]
            i += 1
            if name in self.classes:
                v = await self._run_list(self.classes[name], st, ctx, depth + 1)
            else:
                handler = _HANDLERS.get(name)
                if handler is None:
                    raise RestrictionConfigError(f"unknown restriction: \"{name}\"")
                v = await handler(self, st, ctx, arg)
            if ctx.warn_next and v.code != 0:
                ctx.warn_next = False
                if v.code >= 400:
                    st.warnings.append(f"reject_warning: {v.reply_line()}")
                    continue
            if v.code != 0:
                return v
        return DUNNO

    # -- helpers used by handlers ----------------------------------------

    def reject(self, code: int, dsn: str, text: str) -> Verdict:
        """reject - make a reject verdict, fixing the DSN class to the code."""
        if code // 100 == 4 and dsn.startswith("5"):
            dsn = "4" + dsn[1:]
        elif code // 100 == 5 and dsn.startswith("4"):
            dsn = "5" + dsn[1:]
        return Verdict(code, dsn, text)

    async def access_lookup(self, spec: str, keys: list[str], st: CheckState, ctx: _Eval,
                            what: str, reply_name: str) -> Verdict:
        """access_lookup - try keys in order; act on the first table result."""
        table = self.table(spec)
        for key in keys:
            result = table.lookup(key)
            if result is None:
                continue
            return await self.access_action(result, st, ctx, what, reply_name)
        return DUNNO

    async def access_action(self, result: str, st: CheckState, ctx: _Eval, what: str,
                            reply_name: str) -> Verdict:
        """access_action - interpret an access(5) result."""
        result = result.strip()
        word, _, rest = result.partition(" ")
        rest = rest.strip()
        up = word.upper()
        prefix = f"<{reply_name}>: {ctx.prefix}"
        if up == "OK" or result.isdigit():
            return PERMIT
        if up == "DUNNO":
            return DUNNO
        if up == "REJECT":
            return self.reject(self._code("access_map_reject_code"), "5.7.1",
                               f"{prefix}: {rest or 'Access denied'}")
        if up == "DEFER":
            return self.reject(self._code("access_map_defer_code"), "4.7.1",
                               f"{prefix}: {rest or 'Access denied'}")
        if up == "DEFER_IF_REJECT":
            ctx.defer_if_reject = self.reject(self._code("defer_code"), "4.7.1",
                                              f"{prefix}: {rest or 'Service unavailable'}")
            return DUNNO
        if up == "DEFER_IF_PERMIT":
            ctx.defer_if_permit = self.reject(self._code("defer_code"), "4.7.1",
                                              f"{prefix}: {rest or 'Service unavailable'}")
            return DUNNO
        m = _RESULT_RE.match(result)
        if m and word[0] in "45":
            code = int(m.group(1))
            dsn = m.group(2) or f"{code // 100}.7.1"
            return self.reject(code, dsn, f"{prefix}: {m.group(3) or 'Access denied'}")
        if up == "HOLD":
            st.hold = rest or f"{prefix}: triggers HOLD action"
            return DUNNO
        if up == "DISCARD":
            st.discard = rest or f"{prefix}: triggers DISCARD action"
            return DUNNO
        if up == "FILTER":
            st.filter = rest
            return DUNNO
        if up == "REDIRECT":
            st.redirect = rest
            return DUNNO
        if up == "BCC":
            st.bcc.append(rest)
            return DUNNO
        if up == "PREPEND":
            st.prepend.append(rest)
            return DUNNO
        if up in ("WARN", "INFO"):
            st.warnings.append(f"{up.lower()}: {ctx.stage.upper()} from {st.client_name}[{st.client_addr}]: {rest}")
            return DUNNO
        # A restriction name or a list of them, evaluated in place.
        items = split_list(result)
        if items:
            return await self._run_list(items, st, ctx, 1)
        return DUNNO


@dataclass(slots=True)
class _Eval:
    stage: str
    prefix: str
    warn_next: bool = False
    defer_if_permit: Verdict | None = None
    defer_if_reject: Verdict | None = None


_IMPLICIT_ACCESS = {
    "client": "check_client_access",
    "helo": "check_helo_access",
    "sender": "check_sender_access",
    "relay": "check_recipient_access",
    "recipient": "check_recipient_access",
    "data": "check_client_access",
    "end_of_data": "check_client_access",
    "etrn": "check_etrn_access",
}

# -- handlers: async (engine, state, ctx, arg) -> Verdict ------------------

_HANDLERS: dict[str, Callable[..., Awaitable[Verdict]]] = {}


def _handler(name: str):
    def register(func):
        _HANDLERS[name] = func
        return func
    return register


@_handler("permit")
async def _permit(eng: Restrictions, st: CheckState, ctx: _Eval, arg) -> Verdict:
    return PERMIT


@_handler("reject")
async def _reject(eng, st, ctx, arg) -> Verdict:
    return eng.reject(eng._code("reject_code"), "5.7.1", f"<{_subject(st, ctx)}>: {ctx.prefix}: Access denied"
                      if ctx.stage not in ("data", "end_of_data", "etrn")
                      else f"{ctx.prefix}: Access denied")


@_handler("defer")
async def _defer(eng, st, ctx, arg) -> Verdict:
    return eng.reject(eng._code("defer_code"), "4.7.1", f"{ctx.prefix}: Access denied")


@_handler("defer_if_permit")
async def _defer_if_permit(eng, st, ctx, arg) -> Verdict:
    ctx.defer_if_permit = eng.reject(eng._code("defer_code"), "4.7.1", f"{ctx.prefix}: Access denied")
    return DUNNO


@_handler("defer_if_reject")
async def _defer_if_reject(eng, st, ctx, arg) -> Verdict:
    ctx.defer_if_reject = eng.reject(eng._code("defer_code"), "4.7.1", f"{ctx.prefix}: Access denied")
    return DUNNO


@_handler("warn_if_reject")
async def _warn_if_reject(eng, st, ctx, arg) -> Verdict:
    ctx.warn_next = True
    return DUNNO


@_handler("permit_mynetworks")
async def _permit_mynetworks(eng, st, ctx, arg) -> Verdict:
    return PERMIT if eng.mynetworks.match(st.client_addr) else DUNNO


@_handler("permit_inet_interfaces")
async def _permit_inet_interfaces(eng, st, ctx, arg) -> Verdict:
    return PERMIT if st.client_addr in eng.inet_addresses else DUNNO


@_handler("permit_sasl_authenticated")
async def _permit_sasl(eng, st, ctx, arg) -> Verdict:
    return PERMIT if st.sasl_username else DUNNO


def _subject(st: CheckState, ctx: _Eval) -> str:
    """_subject - what a reject reply names: <client>, <helo>, <sender>, <rcpt>."""
    if ctx.stage == "client":
        return f"{st.client_name}[{st.client_addr}]"
    if ctx.stage == "helo":
        return st.helo_name
    if ctx.stage == "sender":
        return st.sender or ""
    return st.recipient or ""


def _sender_routed(local: str) -> bool:
    """_sender_routed - the local part asks for source routing (% ! @)."""
    return any(c in local for c in "%!@")


async def _rcpt_class(eng: Restrictions, rcpt: str) -> str:
    if eng.resolve_class is not None:
        return await eng.resolve_class(rcpt)
    dom = domain_of(rcpt)
    mydest = {d.lower() for d in split_list(eng.cfg.get("mydestination"))}
    if not dom or dom in mydest:
        return CLASS_LOCAL
    return CLASS_RELAY if eng.relay_domains.match(dom) else CLASS_DEFAULT


async def _auth_destination(eng: Restrictions, rcpt: str) -> bool:
    """_auth_destination - may mail for rcpt be accepted from anyone?"""
    if _sender_routed(local_of(rcpt)) and domain_of(rcpt):
        # RFC 5321 bans source routes; Postfix refuses user%host@ours unless local.
        cls = await _rcpt_class(eng, rcpt)
        return cls == CLASS_LOCAL and not ("@" in local_of(rcpt) or "!" in local_of(rcpt))
    cls = await _rcpt_class(eng, rcpt)
    if cls in (CLASS_LOCAL, CLASS_ALIAS, CLASS_VIRTUAL):
        return True
    return eng.relay_domains.match(domain_of(rcpt))


@_handler("reject_unauth_destination")
async def _reject_unauth_destination(eng, st, ctx, arg) -> Verdict:
    if st.recipient is None or await _auth_destination(eng, st.recipient):
        return DUNNO
    return eng.reject(eng._code("relay_domains_reject_code"), "5.7.1",
                      f"<{st.recipient}>: Relay access denied")


@_handler("defer_unauth_destination")
async def _defer_unauth_destination(eng, st, ctx, arg) -> Verdict:
    if st.recipient is None or await _auth_destination(eng, st.recipient):
        return DUNNO
    return eng.reject(450 if eng._code("relay_domains_reject_code") < 500 else 454, "4.7.1",
                      f"<{st.recipient}>: Relay access denied")


@_handler("permit_auth_destination")
async def _permit_auth_destination(eng, st, ctx, arg) -> Verdict:
    if st.recipient is not None and await _auth_destination(eng, st.recipient):
        return PERMIT
    return DUNNO


async def _unlisted(eng: Restrictions, addr: str, what: str) -> Verdict:
    if eng.recipient_known is None or not addr:
        return DUNNO
    known = await eng.recipient_known(addr, what)
    if known is None or known:
        return DUNNO
    cls = await _rcpt_class(eng, addr)
    label = "Recipient" if what == "recipient" else "Sender"
    table, code = {
        CLASS_LOCAL: ("local recipient table", "unknown_local_recipient_reject_code"),
        CLASS_ALIAS: ("virtual alias table", "unknown_virtual_alias_reject_code"),
        CLASS_VIRTUAL: ("virtual mailbox table", "unknown_virtual_mailbox_reject_code"),
        CLASS_RELAY: ("relay recipient table", "unknown_relay_recipient_reject_code"),
    }.get(cls, ("", ""))
    if not table:
        return DUNNO
    return eng.reject(eng._code(code), "5.1.1",
                      f"<{addr}>: {label} address rejected: User unknown in {table}")


@_handler("reject_unlisted_recipient")
async def _reject_unlisted_recipient(eng, st, ctx, arg) -> Verdict:
    return await _unlisted(eng, st.recipient or "", "recipient")


@_handler("reject_unlisted_sender")
async def _reject_unlisted_sender(eng, st, ctx, arg) -> Verdict:
    return await _unlisted(eng, st.sender or "", "sender")


def _non_fqdn(eng: Restrictions, addr: str, label: str) -> Verdict:
    if not addr:
        return DUNNO
    dom = domain_of(addr)
    if dom and (valid_address_literal(dom) or (valid_hostname(dom) and "." in dom)):
        return DUNNO
    return eng.reject(eng._code("non_fqdn_reject_code"), "5.5.2",
                      f"<{addr}>: {label} address rejected: need fully-qualified address")


@_handler("reject_non_fqdn_sender")
async def _reject_non_fqdn_sender(eng, st, ctx, arg) -> Verdict:
    return _non_fqdn(eng, st.sender or "", "Sender")


@_handler("reject_non_fqdn_recipient")
async def _reject_non_fqdn_recipient(eng, st, ctx, arg) -> Verdict:
    return _non_fqdn(eng, st.recipient or "", "Recipient")


@_handler("reject_non_fqdn_helo_hostname")
async def _reject_non_fqdn_helo(eng, st, ctx, arg) -> Verdict:
    h = st.helo_name
    if not h or valid_address_literal(h) or (valid_hostname(h) and "." in h.rstrip(".")):
        return DUNNO
    return eng.reject(eng._code("non_fqdn_reject_code"), "5.5.2",
                      f"<{h}>: Helo command rejected: need fully-qualified hostname")


@_handler("reject_invalid_helo_hostname")
async def _reject_invalid_helo(eng, st, ctx, arg) -> Verdict:
    h = st.helo_name
    if not h or valid_address_literal(h) or valid_hostname(h):
        return DUNNO
    return eng.reject(eng._code("invalid_hostname_reject_code"), "5.5.2",
                      f"<{h}>: Helo command rejected: Invalid name")


async def _dns_has_address(eng: Restrictions, domain: str, mx: bool) -> int:
    """_dns_has_address - 2: found, 4: temporary failure, 5: no such domain/record."""
    if eng.dns is None:
        return 4
    return await eng.dns.domain_status(domain, mx=mx)


async def _unknown_domain(eng: Restrictions, addr: str, label: str, dsn_code: str) -> Verdict:
    if not addr:
        return DUNNO
    dom = domain_of(addr)
    if not dom or valid_address_literal(dom):
        return DUNNO
    cls = await _rcpt_class(eng, addr)
    if cls in (CLASS_LOCAL, CLASS_ALIAS, CLASS_VIRTUAL):
        return DUNNO
    status = await _dns_has_address(eng, dom, mx=True)
    if status == 2:
        return DUNNO
    if status == 4:
        return eng.reject(450, "4.1.8" if label == "Sender" else "4.1.2",
                          f"<{addr}>: {label} address rejected: Domain not found")
    return eng.reject(eng._code("unknown_address_reject_code"), dsn_code,
                      f"<{addr}>: {label} address rejected: Domain not found")


@_handler("reject_unknown_sender_domain")
async def _reject_unknown_sender_domain(eng, st, ctx, arg) -> Verdict:
    return await _unknown_domain(eng, st.sender or "", "Sender", "4.1.8")


@_handler("reject_unknown_recipient_domain")
async def _reject_unknown_recipient_domain(eng, st, ctx, arg) -> Verdict:
    return await _unknown_domain(eng, st.recipient or "", "Recipient", "4.1.2")


@_handler("reject_unknown_helo_hostname")
async def _reject_unknown_helo(eng, st, ctx, arg) -> Verdict:
    h = st.helo_name
    if not h or valid_address_literal(h):
        return DUNNO
    status = await _dns_has_address(eng, h, mx=True)
    if status == 2:
        return DUNNO
    code = 450 if status == 4 else eng._code("unknown_hostname_reject_code")
    return eng.reject(code, "4.7.1", f"<{h}>: Helo command rejected: Host not found")


@_handler("reject_unknown_client_hostname")
async def _reject_unknown_client(eng, st, ctx, arg) -> Verdict:
    if st.client_name_status == 2:
        return DUNNO
    code = 450 if st.client_name_status == 4 else eng._code("unknown_client_reject_code")
    return eng.reject(code, "4.7.25", f"Client host rejected: cannot find your hostname, [{st.client_addr}]")


@_handler("reject_unknown_reverse_client_hostname")
async def _reject_unknown_reverse(eng, st, ctx, arg) -> Verdict:
    if st.reverse_client_name != "unknown":
        return DUNNO
    return eng.reject(eng._code("unknown_client_reject_code"), "4.7.25",
                      f"Client host rejected: cannot find your reverse hostname, [{st.client_addr}]")


@_handler("reject_unauth_pipelining")
async def _reject_unauth_pipelining(eng, st, ctx, arg) -> Verdict:
    if not st.pipelining_violation:
        return DUNNO
    return eng.reject(503, "5.5.0", "Error: improper use of SMTP command pipelining")


@_handler("sleep")
async def _sleep(eng, st, ctx, arg) -> Verdict:
    try:
        seconds = min(float(arg), 60.0)
    except (TypeError, ValueError):
        raise RestrictionConfigError(f"sleep: bad time value: {arg}") from None
    await asyncio.sleep(seconds)
    return DUNNO


# -- access tables ---------------------------------------------------------

def address_keys(addr: str, null_key: str, delimiter: str = "") -> list[str]:
    """address_keys - access(5) lookup order for an e-mail address."""
    if not addr:
        return [null_key]
    addr = addr.lower()
    keys = [addr]
    local, at, dom = addr.rpartition("@")
    if not at:
        local, dom = addr, ""
    if delimiter and local:
        for d in delimiter:
            if d in local:
                base = local.split(d, 1)[0]
                keys.append(f"{base}@{dom}" if dom else base)
                break
    if dom:
        parts = dom.split(".")
        keys.append(dom)
        for i in range(1, len(parts)):
            keys.append(".".join(parts[i:]))
            keys.append("." + ".".join(parts[i:]))
        keys.append(local + "@")
    return keys


def _dedupe(keys: list[str]) -> list[str]:
    seen: set[str] = set()
    return [k for k in keys if not (k in seen or seen.add(k))]


def host_keys(name: str, parent_matches: bool) -> list[str]:
    """host_keys - a host name, then its parent domains."""
    name = name.lower().rstrip(".")
    keys = [name]
    parts = name.split(".")
    for i in range(1, len(parts)):
        parent = ".".join(parts[i:])
        if parent_matches:
            keys.append(parent)
        keys.append("." + parent)
    return keys


def addr_keys(addr: str) -> list[str]:
    """addr_keys - an IP address, then shorter prefixes (access(5))."""
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return [addr]
    if ip.version == 4:
        octets = addr.split(".")
        return [".".join(octets[:n]) for n in range(4, 0, -1)]
    full = ip.exploded.split(":")
    keys = [ip.compressed]
    for n in range(7, 0, -1):
        keys.append(":".join(p.lstrip("0") or "0" for p in full[:n]))
    return _dedupe(keys)


@_handler("check_client_access")
async def _check_client_access(eng, st, ctx, arg) -> Verdict:
    keys = []
    if st.client_name and st.client_name != "unknown":
        keys += host_keys(st.client_name, eng.access_parent)
    keys += addr_keys(st.client_addr)
    return await eng.access_lookup(arg, _dedupe(keys), st, ctx, "client",
                                   f"{st.client_name}[{st.client_addr}]")


@_handler("check_reverse_client_hostname_access")
async def _check_reverse_access(eng, st, ctx, arg) -> Verdict:
    keys = []
    if st.reverse_client_name and st.reverse_client_name != "unknown":
        keys += host_keys(st.reverse_client_name, eng.access_parent)
    keys += addr_keys(st.client_addr)
    return await eng.access_lookup(arg, _dedupe(keys), st, ctx, "client",
                                   f"{st.reverse_client_name}[{st.client_addr}]")


@_handler("check_helo_access")
async def _check_helo_access(eng, st, ctx, arg) -> Verdict:
    if not st.helo_name:
        return DUNNO
    return await eng.access_lookup(arg, host_keys(st.helo_name, eng.access_parent), st, ctx,
                                   "helo", st.helo_name)


@_handler("check_sender_access")
async def _check_sender_access(eng, st, ctx, arg) -> Verdict:
    if st.sender is None:
        return DUNNO
    keys = address_keys(st.sender, eng.cfg.get("smtpd_null_access_lookup_key"),
                        eng.cfg.get("recipient_delimiter"))
    return await eng.access_lookup(arg, _dedupe(keys), st, ctx, "sender", st.sender)


@_handler("check_recipient_access")
async def _check_recipient_access(eng, st, ctx, arg) -> Verdict:
    if st.recipient is None:
        return DUNNO
    keys = address_keys(st.recipient, eng.cfg.get("smtpd_null_access_lookup_key"),
                        eng.cfg.get("recipient_delimiter"))
    return await eng.access_lookup(arg, _dedupe(keys), st, ctx, "recipient", st.recipient)


@_handler("check_etrn_access")
async def _check_etrn_access(eng, st, ctx, arg) -> Verdict:
    return await eng.access_lookup(arg, host_keys(st.etrn_domain, eng.access_parent), st, ctx,
                                   "etrn", st.etrn_domain)


# -- DNS block lists -------------------------------------------------------

def _rbl_spec(arg: str) -> tuple[str, set[str]]:
    """_rbl_spec - 'zone=127.0.0.2' or 'zone=127.0.0.[2..11]': the zone and filter."""
    zone, _, filt = arg.partition("=")
    wanted: set[str] = set()
    if filt:
        m = re.match(r"^(\d+\.\d+\.\d+\.)\[(\d+)\.\.(\d+)\]$", filt)
        if m:
            wanted = {f"{m.group(1)}{n}" for n in range(int(m.group(2)), int(m.group(3)) + 1)}
        else:
            wanted = {f.strip() for f in filt.split(";")}
    return zone.rstrip("."), wanted


def reverse_ip_name(addr: str) -> str | None:
    """reverse_ip_name - 4.3.2.1 for 1.2.3.4, nibbles for IPv6."""
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.reverse_pointer.rsplit(".", 2)[0]


async def _rbl(eng: Restrictions, st: CheckState, query_name: str, zone: str, wanted: set[str],
               rbl_class: str, what: str) -> Verdict:
    if eng.dns is None:
        return DUNNO
    addrs, txt = await eng.dns.rbl_lookup(f"{query_name}.{zone}")
    if not addrs:
        return DUNNO
    if wanted and not (set(addrs) & wanted):
        return DUNNO
    reason = f"; {txt}" if txt else ""
    code = eng._code("maps_rbl_reject_code")
    return eng.reject(code, "5.7.1",
                      f"Service unavailable; {rbl_class} [{what}] blocked using {zone}{reason}")


@_handler("reject_rbl_client")
async def _reject_rbl_client(eng, st, ctx, arg) -> Verdict:
    zone, wanted = _rbl_spec(arg)
    rev = reverse_ip_name(st.client_addr)
    if rev is None:
        return DUNNO
    return await _rbl(eng, st, rev, zone, wanted, "Client host", st.client_addr)


@_handler("permit_dnswl_client")
async def _permit_dnswl_client(eng, st, ctx, arg) -> Verdict:
    zone, wanted = _rbl_spec(arg)
    rev = reverse_ip_name(st.client_addr)
    if rev is None or eng.dns is None:
        return DUNNO
    addrs, _ = await eng.dns.rbl_lookup(f"{rev}.{zone}")
    if addrs and (not wanted or set(addrs) & wanted):
        return PERMIT
    return DUNNO


async def _rhsbl(eng, st, domain: str, arg: str, rbl_class: str, what: str) -> Verdict:
    if not domain or valid_address_literal(domain):
        return DUNNO
    zone, wanted = _rbl_spec(arg)
    return await _rbl(eng, st, domain, zone, wanted, rbl_class, what)


@_handler("reject_rhsbl_client")
async def _reject_rhsbl_client(eng, st, ctx, arg) -> Verdict:
    name = st.client_name if st.client_name != "unknown" else ""
    return await _rhsbl(eng, st, name, arg, "Client host", name)


@_handler("reject_rhsbl_reverse_client")
async def _reject_rhsbl_reverse(eng, st, ctx, arg) -> Verdict:
    name = st.reverse_client_name if st.reverse_client_name != "unknown" else ""
    return await _rhsbl(eng, st, name, arg, "Unverified Client host", name)


@_handler("reject_rhsbl_sender")
async def _reject_rhsbl_sender(eng, st, ctx, arg) -> Verdict:
    return await _rhsbl(eng, st, domain_of(st.sender or ""), arg, "Sender address", st.sender or "")


@_handler("reject_rhsbl_recipient")
async def _reject_rhsbl_recipient(eng, st, ctx, arg) -> Verdict:
    return await _rhsbl(eng, st, domain_of(st.recipient or ""), arg, "Recipient address",
                        st.recipient or "")


@_handler("reject_rhsbl_helo")
async def _reject_rhsbl_helo(eng, st, ctx, arg) -> Verdict:
    return await _rhsbl(eng, st, st.helo_name, arg, "Helo command", st.helo_name)


# -- policy delegation (SMTPD_POLICY_README) -------------------------------

_POLICY_LINE_LIMIT = 4096


def policy_request(st: CheckState, stage: str, cfg) -> bytes:
    """policy_request - the name=value attribute block sent to a policy server."""
    state_name = {"client": "CONNECT", "helo": "EHLO", "sender": "MAIL", "relay": "RCPT",
                  "recipient": "RCPT", "data": "DATA", "end_of_data": "END-OF-MESSAGE",
                  "etrn": "ETRN"}[stage]
    attrs = {
        "request": "smtpd_access_policy",
        "protocol_state": state_name,
        "protocol_name": st.protocol,
        "helo_name": st.helo_name,
        "queue_id": "" if st.queue_id == "NOQUEUE" else st.queue_id,
        "sender": st.sender or "",
        "recipient": st.recipient or "",
        "recipient_count": str(st.rcpt_count),
        "client_address": st.client_addr,
        "client_name": st.client_name,
        "reverse_client_name": st.reverse_client_name,
        "instance": st.instance,
        "sasl_method": st.sasl_method,
        "sasl_username": st.sasl_username,
        "size": str(st.size),
        "etrn_domain": st.etrn_domain,
        "policy_context": cfg.get("smtpd_policy_service_policy_context"),
    }
    out = "".join(f"{k}={v.replace(chr(10), ' ')}\n" for k, v in attrs.items()) + "\n"
    return out.encode("utf-8", "surrogateescape")


async def _policy_query(spec: str, payload: bytes, timeout: float) -> str:
    """_policy_query - one request to inet:host:port or unix:path; the action text."""
    kind, _, where = spec.partition(":")
    if kind == "inet":
        host, _, port = where.rpartition(":")
        opened = asyncio.open_connection(host.strip("[]"), int(port))
    elif kind == "unix":
        opened = asyncio.open_unix_connection(where)
    else:
        raise RestrictionConfigError(f"check_policy_service: unsupported endpoint: {spec}")
    reader, writer = await asyncio.wait_for(opened, timeout)
    try:
        writer.write(payload)
        await writer.drain()
        action = ""
        while True:
            line = await asyncio.wait_for(reader.readline(), timeout)
            if not line:
                raise ConnectionError("policy server closed the connection")
            if len(line) > _POLICY_LINE_LIMIT:
                raise ConnectionError("policy server reply line too long")
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            if not text:
                break
            if text.startswith("action="):
                action = text[7:]
        return action
    finally:
        writer.close()


@_handler("check_policy_service")
async def _check_policy_service(eng, st, ctx, arg) -> Verdict:
    spec = arg
    if not spec.startswith(("inet:", "unix:")):
        spec = "unix:" + spec if spec.startswith("/") else "inet:" + spec
    timeout = eng.cfg.get_time("smtpd_policy_service_timeout")
    payload = policy_request(st, ctx.stage, eng.cfg)
    try:
        action = await _policy_query(spec, payload, timeout)
    except (OSError, ConnectionError, asyncio.TimeoutError, ValueError) as exc:
        log.warning("problem talking to server %s: %s", arg, exc or type(exc).__name__)
        action = eng.cfg.get("smtpd_policy_service_default_action")
    if not action:
        log.warning("policy server %s returned no action", arg)
        action = eng.cfg.get("smtpd_policy_service_default_action")
    subject = _subject(st, ctx)
    return await eng.access_action(action, st, ctx, ctx.stage, subject)


# -- address verification (verify(8)) ---------------------------------------

# verify(8) recipient status values (postel.ipc.verify_client RCPT_STAT_*).
_VRFY_OK, _VRFY_DEFER, _VRFY_BOUNCE, _VRFY_TODO = 0, 1, 2, 3


def _tempfail(eng: Restrictions, ctx: _Eval, action: str, v: Verdict) -> Verdict:
    """_tempfail - apply unverified_*_tempfail_action (defer or defer_if_permit)."""
    if action.strip().lower() == "defer":
        return v
    ctx.defer_if_permit = v     # defer_if_permit (the default)
    return DUNNO


async def _verify_query(eng: Restrictions, addr: str):
    """_verify_query - ask verify(8), polling while the answer is "in progress"."""
    try:
        count = max(1, eng.cfg.get_int("address_verify_poll_count"))
        delay = float(eng.cfg.get_time("address_verify_poll_delay"))
    except (KeyError, ValueError):
        count, delay = 1, 0.0
    result = None
    for i in range(count):
        result = await eng.verify(addr)
        if result.status != 0 or result.rcpt_status != _VRFY_TODO or i == count - 1:
            break
        await asyncio.sleep(delay)
    return result


async def _unverified(eng: Restrictions, ctx: _Eval, addr: str, what: str) -> Verdict:
    """_unverified - Postfix's check_verify for reject_unverified_{recipient,sender}."""
    if not addr:
        return DUNNO        # the null sender cannot be verified
    label = "Sender" if what == "sender" else "Recipient"
    dsn = "4.1.7" if what == "sender" else "4.1.1"
    p = f"unverified_{what}_"
    action = eng.cfg.get(p + "tempfail_action")
    result = await _verify_query(eng, addr) if eng.verify is not None else None
    if result is None or result.status != 0:
        log.warning("%s service failure", eng.cfg.get("address_verify_service_name"))
        return _tempfail(eng, ctx, action, eng.reject(
            450, dsn, f"<{addr}>: {label} address rejected: address verification problem"))
    if result.rcpt_status == _VRFY_OK:
        return DUNNO
    if result.rcpt_status in (_VRFY_TODO, _VRFY_DEFER):
        return _tempfail(eng, ctx, action, eng.reject(
            eng._code(p + "defer_code"), dsn,
            f"<{addr}>: {label} address rejected: unverified address: {result.reason}"))
    if result.rcpt_status == _VRFY_BOUNCE:
        reason = eng.cfg.get(p + "reject_reason") or result.reason
        return eng.reject(eng._code(p + "reject_code"), dsn,
                          f"<{addr}>: {label} address rejected: undeliverable address: {reason}")
    log.warning("unknown address verification status %s", result.rcpt_status)
    return DUNNO


@_handler("reject_unverified_recipient")
async def _reject_unverified_recipient(eng, st, ctx, arg) -> Verdict:
    return await _unverified(eng, ctx, st.recipient or "", "recipient")


@_handler("reject_unverified_sender")
async def _reject_unverified_sender(eng, st, ctx, arg) -> Verdict:
    return await _unverified(eng, ctx, st.sender or "", "sender")
