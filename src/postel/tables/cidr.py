"""cidr - cidr: network address tables

SYNOPSIS
    cidr:/path/file      cidr:{ { rule }, { rule } }

DESCRIPTION
    As cidr_table(5).  A logical line is one of

        network/prefix result      match a network
        address result             match one address exactly
        !pattern result            match when the pattern does not
        if pattern  ...  endif     nested rules tried only on a match
        if !pattern ... endif

    Patterns and keys are compared as binary addresses, so IPv6 leading
    zeros do not matter; an IPv4 key never matches an IPv6 pattern, not even
    ::ffff:a.b.c.d, as with Postfix.  A pattern may be written inside "[]".
    The host bits of network/prefix must be zero; otherwise the rule is
    skipped with a warning that suggests the right network.  Rules are tried
    in order and the first match wins.  A key that is not an IP address
    matches nothing (but "!pattern" rules of its family do not apply either).

DIAGNOSTICS
    "cidr map FILE, line N: ...: skipping this rule" warnings, as Postfix.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from postel import log
from postel.tables import LookupFlags, Table, TableError
from postel.tables.source import logical_lines, split_braced

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(slots=True)
class CidrRule:
    """CidrRule - one line: a match rule, an if, or an endif."""

    kind: str
    network: Network | None
    negate: bool
    result: str
    line: int
    skip_to: int = 0


def parse_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """parse_address - an IP address from a lookup key, or None."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


class CidrTable(Table):
    """CidrTable - first matching network wins."""

    type_name = "cidr"
    fixed_keys = False

    def __init__(self, name: str, flags: LookupFlags = LookupFlags.FOLD_FIX) -> None:
        super().__init__(name, flags)
        self.label = name
        if name.strip().startswith("{"):
            lines = split_braced(name)
            if lines is None:
                raise TableError(f'cidr map: syntax error: "{name}"')
        else:
            try:
                with open(name, encoding="utf-8", errors="surrogateescape") as fp:
                    lines = fp.readlines()
            except OSError as exc:
                raise TableError(f"open {name}: {exc.strerror}") from None
            self.watch(name)
        self.rules = self._compile(lines)

    def warn(self, line: int | None, msg: str) -> None:
        """warn - a Postfix-style table syntax warning."""
        where = f", line {line}" if line else ""
        log.warning("cidr map %s%s: %s", self.label, where, msg)

    def _network(self, text: str, line: int) -> Network | None:
        """_network - the network of a pattern, or None after a warning."""
        pattern = text
        if pattern.startswith("[") and "]" in pattern:
            close = pattern.index("]")
            pattern = pattern[1:close] + pattern[close + 1:]
        addr, slash, mask = pattern.partition("/")
        host = parse_address(addr)
        if host is None:
            self.warn(line, f'bad address pattern: "{text}": skipping this rule')
            return None
        if not slash:
            return ipaddress.ip_network(host)
        if not mask.isdigit() or int(mask) > host.max_prefixlen:
            self.warn(line, f'bad mask length in "{text}": skipping this rule')
            return None
        network = ipaddress.ip_network(f"{host}/{int(mask)}", strict=False)
        if network.network_address != host:
            self.warn(line, f'non-null host address bits in "{text}", perhaps you should use '
                            f'"{network}" instead: skipping this rule')
            return None
        return network

    def _parse_line(self, number: int, text: str) -> CidrRule | None:
        word = re.match(r"(?i)(if|endif)(?=\s|!|$)", text)
        if word and word.group(1).lower() == "endif":
            if text[5:].strip():
                self.warn(number, "ignoring extra text after ENDIF")
            return CidrRule("endif", None, False, "", number)
        body = text[2:].lstrip() if word else text
        negate = False
        while body.startswith("!"):
            negate = not negate
            body = body[1:].lstrip()
        pattern, rest = (re.split(r"\s+", body, maxsplit=1) + [""])[:2]
        rest = rest.strip()
        network = self._network(pattern, number)
        if network is None:
            return None
        if word:
            if rest:
                self.warn(number, f'ignoring extra text after IF statement: "{rest}"')
            return CidrRule("if", network, negate, "", number)
        if not rest:
            self.warn(number, f'no lookup result: "{text}": skipping this rule')
            return None
        return CidrRule("match", network, negate, rest, number)

    def _compile(self, lines: list[str]) -> list[CidrRule]:
        rules: list[CidrRule] = []
        stack: list[int] = []
        for number, text in logical_lines(lines, self.warn):
            rule = self._parse_line(number, text.strip())
            if rule is None:
                continue
            if rule.kind == "endif":
                if not stack:
                    self.warn(number, "ignoring ENDIF without matching IF")
                    continue
                rules[stack.pop()].skip_to = len(rules) + 1
            rules.append(rule)
            if rule.kind == "if":
                stack.append(len(rules) - 1)
        for index in stack:
            self.warn(rules[index].line, "IF has no matching ENDIF")
            rules[index].skip_to = len(rules)
        return rules

    def get(self, key: str) -> str | None:
        """get - the result of the first rule that matches address key."""
        addr = parse_address(key)
        if addr is None:
            return None
        i, rules = 0, self.rules
        while i < len(rules):
            rule = rules[i]
            if rule.kind == "endif":
                i += 1
                continue
            if rule.network.version != addr.version:
                hit = False
                applies = False
            else:
                hit = addr in rule.network
                applies = True
            if rule.kind == "if":
                i = i + 1 if applies and hit != rule.negate else rule.skip_to
                continue
            if applies and hit != rule.negate:
                return rule.result
            i += 1
        return None


def register(register_type) -> None:
    """register - cidr:."""
    register_type("cidr", CidrTable)
