"""rewrite - rewrite an address to standard user@domain form

SYNOPSIS
    from postel.trivial_rewrite.rewrite import Rewriter
    rw = Rewriter.from_config(cfg)
    rw.rewrite("local", "user")          # "user@$myorigin"
    rw.rewrite("local", "host!user")     # "user@host"

DESCRIPTION
    This is the "rewrite" half of trivial-rewrite(8), without I/O.  The
    input and the result are addresses in external (quoted) form.  The
    rule (context) is "local" for mail from local submission or from
    $local_header_rewrite_clients, and "remote" for other network clients.
    In order:

    * The null address stays null; a lone "@" becomes the null address.
    * A source route is removed: "@a,@b:user@c" becomes "user@c"
      (RFC 5321 appendix C, RFC 5322 section 4.4).
    * An address without '@':
        - "site!user" becomes "user@site" with swap_bangpath (only the
          first '!' is used, so "a!b!c" becomes "b!c@a");
        - otherwise "user%domain" becomes "user@domain" with
          allow_percent_hack (the last '%');
        - otherwise "@$myorigin" (local rule) or
          "@$remote_header_rewrite_domain" (remote rule) is appended with
          append_at_myorigin, when that value is not empty.
    * "user@host" becomes "user@host.$mydomain" (local rule) or
      "user@host.$remote_header_rewrite_domain" (remote rule) with
      append_dot_mydomain, when the domain has no dot and is not an
      address literal.
    * One trailing dot is removed ("user@example.com." -> "user@example.com"),
      but not from "..", or "@." forms, which are left for diagnostics.

    Operators inside a quoted local part are not operators: '"a!b"' is not
    swapped.

CONFIGURATION PARAMETERS
    myorigin ($myhostname)            domain appended to local bare addresses
    mydomain                          domain appended to local dotless hosts
    remote_header_rewrite_domain ()   the same two, for the remote rule
    append_at_myorigin (yes)          append @$myorigin to bare user names
    append_dot_mydomain (no)          append .$mydomain to dotless host names
    swap_bangpath (yes)               site!user -> user@site
    allow_percent_hack (yes)          user%domain -> user@domain

SEE ALSO
    ADDRESS_REWRITING_README, trivial-rewrite(8), resolve.py
"""

from __future__ import annotations

from dataclasses import dataclass

RULE_LOCAL = "local"
RULE_REMOTE = "remote"
RULES = (RULE_LOCAL, RULE_REMOTE)


class UnknownRule(ValueError):
    """The client asked for a rewrite rule that does not exist."""


def find_unquoted(text: str, chars: str, last: bool = False) -> int:
    """find_unquoted - index of the first (or last) char of chars outside quotes and [], or -1."""
    pos = -1
    quoted = False
    escaped = False
    bracket = False
    for i, ch in enumerate(text):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif quoted:
            if ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif bracket:
            if ch == "]":
                bracket = False
        elif ch == "[":
            bracket = True
        elif ch in chars:
            if not last:
                return i
            pos = i
    return pos


@dataclass(slots=True)
class RewriteParams:
    """The parameters that rewriting depends on."""

    myorigin: str = ""
    mydomain: str = ""
    remote_header_rewrite_domain: str = ""
    append_at_myorigin: bool = True
    append_dot_mydomain: bool = False
    swap_bangpath: bool = True
    allow_percent_hack: bool = True


def rewrite_addr(addr: str, origin: str, domain: str, p: RewriteParams) -> str:
    """rewrite_addr - apply the rewrite steps with the given origin and domain."""
    if addr == "" or addr == '""':
        return addr
    if addr == "@":
        return ""
    # RFC 5321 appendix C: strip the source route "@a,@b:".
    if addr.startswith("@"):
        colon = find_unquoted(addr, ":")
        if 0 < colon < len(addr) - 1:
            addr = addr[colon + 1:]
    if find_unquoted(addr, "@", last=True) < 0:
        bang = find_unquoted(addr, "!") if p.swap_bangpath else -1
        pct = find_unquoted(addr, "%", last=True) if p.allow_percent_hack else -1
        if bang >= 0:
            addr = f"{addr[bang + 1:]}@{addr[:bang]}"
        elif pct >= 0:
            addr = f"{addr[:pct]}@{addr[pct + 1:]}"
        elif p.append_at_myorigin and origin:
            addr = f"{addr}@{origin}"
    if p.append_dot_mydomain and domain:
        at = find_unquoted(addr, "@", last=True)
        if 0 <= at < len(addr) - 1:
            host = addr[at + 1:]
            if not host.startswith("[") and "." not in host:
                addr = f"{addr}.{domain}"
    # Strip one trailing dot, but leave "user@." and "a..": bogus forms stay
    # visible for diagnostics.
    if addr.endswith(".") and len(addr) > 1 and addr[-2] not in ".@":
        addr = addr[:-1]
    return addr


class Rewriter:
    """Rewrite addresses according to the local or remote rule."""

    def __init__(self, params: RewriteParams):
        self.params = params

    @classmethod
    def from_config(cls, cfg) -> Rewriter:
        """from_config - take the rewrite parameters from a Config."""
        return cls(RewriteParams(
            myorigin=cfg.get("myorigin"),
            mydomain=cfg.get("mydomain"),
            remote_header_rewrite_domain=cfg.get("remote_header_rewrite_domain"),
            append_at_myorigin=cfg.get_bool("append_at_myorigin"),
            append_dot_mydomain=cfg.get_bool("append_dot_mydomain"),
            swap_bangpath=cfg.get_bool("swap_bangpath"),
            allow_percent_hack=cfg.get_bool("allow_percent_hack"),
        ))

    def context(self, rule: str) -> tuple[str, str]:
        """context - (origin, domain) for a rule name; raises UnknownRule."""
        if rule == RULE_LOCAL:
            return self.params.myorigin, self.params.mydomain
        if rule == RULE_REMOTE:
            d = self.params.remote_header_rewrite_domain
            return d, d
        raise UnknownRule(f"unknown rewrite rule: {rule!r}")

    def rewrite(self, rule: str, addr: str) -> str:
        """rewrite - rewrite an external-form address with the named rule."""
        origin, domain = self.context(rule)
        return rewrite_addr(addr, origin, domain, self.params)
