"""domain_list - match a domain against a Postfix domain list parameter

SYNOPSIS
    from postel.mail.domain_list import DomainList
    dl = DomainList("mydestination", ["example.com", ".sub.example", "hash:/etc/doms"],
                    parent_matches=False, open_table=open_table)
    dl.match("example.com")        # True

DESCRIPTION
    A domain list (mydestination, relay_domains, virtual_alias_domains,
    virtual_mailbox_domains, ...) holds patterns that are tried in order;
    the first that matches decides:

    * "example.com" matches that name.  When the parameter is named in
      parent_domain_matches_subdomains it also matches every subdomain.
    * ".example.com" matches every subdomain of example.com (but not
      example.com itself).
    * "/file/name" is replaced by the patterns in that file (read once,
      when the list is built).
    * "type:table" matches when the name, or a parent domain, is a key in
      the table: with parent matching the parent "example.com" is looked
      up, without it ".example.com".  The value is ignored.
    * "!pattern" matches as pattern does, but the list answers "no".

    Names are compared without case.  match() raises TableUnavailable when
    a table cannot answer; the caller then defers (Postfix's
    RESOLVE_FLAG_FAIL).
"""

from __future__ import annotations

from collections.abc import Callable

from postel.mail.address import strip_trailing_dot


def _parents(name: str, dotted: bool) -> list[str]:
    """_parents - parent domains of name: "a.b.c" -> [".b.c", ".c"] or ["b.c", "c"]."""
    out = []
    pos = name.find(".")
    while pos >= 0:
        out.append(name[pos:] if dotted else name[pos + 1:])
        pos = name.find(".", pos + 1)
    return [p for p in out if p.strip(".")]


def read_pattern_file(path: str) -> list[str]:
    """read_pattern_file - the patterns in a "/file/name" entry (# comments allowed)."""
    words: list[str] = []
    with open(path, encoding="utf-8", errors="replace") as fp:
        for line in fp:
            line = line.split("#", 1)[0]
            words.extend(w for w in line.replace(",", " ").split() if w)
    return words


class DomainList:
    """An ordered list of domain patterns, as Postfix's match_list."""

    def __init__(self, param: str, patterns: list[str], *, parent_matches: bool = False,
                 open_table: Callable | None = None):
        self.param = param
        self.parent_matches = parent_matches
        self._open_table = open_table
        self.entries: list[tuple[bool, str, object]] = []
        for pat in patterns:
            self._add(pat, depth=0)

    def _add(self, pat: str, depth: int) -> None:
        """_add - compile one pattern (files expand in place)."""
        negate = False
        while pat.startswith("!"):
            negate = not negate
            pat = pat[1:]
        if not pat:
            return
        if pat.startswith("/"):
            if depth > 10:
                return
            for sub in read_pattern_file(pat):
                if negate:
                    sub = "!" + sub
                self._add(sub, depth + 1)
            return
        if ":" in pat and not pat.startswith("["):
            if self._open_table is None:
                raise ValueError(f"{self.param}: table {pat} but no table support")
            self.entries.append((negate, "table", self._open_table(pat)))
            return
        self.entries.append((negate, "name", pat.lower()))

    def _match_name(self, pat: str, name: str) -> bool:
        """_match_name - one literal pattern against a folded name."""
        if pat.startswith("."):
            return name.endswith(pat)
        if name == pat:
            return True
        return self.parent_matches and name.endswith("." + pat)

    def _match_table(self, table, name: str) -> bool:
        """_match_table - the name or a parent domain is a key in the table."""
        if table.lookup(name) is not None:
            return True
        if not getattr(table, "fixed_keys", True):
            return False
        return any(table.lookup(p) is not None for p in _parents(name, not self.parent_matches))

    def match(self, name: str) -> bool:
        """match - true when the first matching pattern is not negated."""
        name = strip_trailing_dot(name.lower())
        for negate, kind, pat in self.entries:
            hit = self._match_table(pat, name) if kind == "table" else self._match_name(pat, name)
            if hit:
                return not negate
        return False

    def __bool__(self) -> bool:
        return bool(self.entries)
