"""parser - main.cf and master.cf line syntax

SYNOPSIS
    from postel.config.parser import logical_lines, parse_main_cf, split_list

DESCRIPTION
    Both files share Postfix's line rules (postconf(5) "SYNTAX"):

      * a line whose first non-blank character is # is a comment, also in
        the middle of a continued line;
      * blank lines are ignored;
      * a line that starts with whitespace continues the previous logical
        line (the newline is dropped, the whitespace kept);
      * a logical line that would start with whitespace is ignored with a
        warning.

    main.cf lines are "name = value"; whitespace around name and value is
    removed, and a later definition replaces an earlier one.

    split_list() splits a list value on whitespace and commas; text in
    { } is one element, with the braces and the whitespace just inside them
    removed.

DIAGNOSTICS
    ConfigError "FILE, line N: missing '=' after attribute name: ..." and
    friends, like Postfix's.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from postel.config.errors import ConfigError


@dataclass(slots=True)
class Entry:
    """One "name = value" line of main.cf."""

    name: str
    value: str
    line: int


def logical_lines(lines: Iterable[str], warnings: list[str] | None = None,
                  file: str = "") -> list[tuple[int, str]]:
    """logical_lines - (first line number, text) for each logical line."""
    out: list[tuple[int, str]] = []
    for number, physical in enumerate(lines, 1):
        physical = physical.rstrip("\r\n")
        stripped = physical.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if physical[0].isspace():
            if out:
                out[-1] = (out[-1][0], out[-1][1] + physical)
            elif warnings is not None:
                warnings.append(f'{file}: logical line must not start with whitespace: "{physical}"')
            continue
        out.append((number, physical))
    return out


def parse_entry(text: str, file: str, line: int) -> Entry:
    """parse_entry - split one logical main.cf line into name and value."""
    name, eq, value = text.partition("=")
    name = name.strip()
    if not eq:
        raise ConfigError(f"missing '=' after attribute name: \"{text.strip()}\"", file=file, line=line)
    if not name:
        raise ConfigError(f'missing attribute name: "{text.strip()}"', file=file, line=line)
    if any(c.isspace() for c in name):
        raise ConfigError(f'whitespace in attribute name: "{name}"', file=file, line=line)
    return Entry(name, value.strip(), line)


def parse_main_cf(text: str, file: str, warnings: list[str] | None = None) -> list[Entry]:
    """parse_main_cf - every entry of a main.cf text, in file order."""
    return [parse_entry(t, file, n)
            for n, t in logical_lines(text.splitlines(), warnings, file)]


def split_list(value: str, separators: str = " \t\r\n,") -> list[str]:
    """split_list - words separated by whitespace/commas, honouring { } grouping."""
    out: list[str] = []
    i, n = 0, len(value)
    while i < n:
        if value[i] in separators:
            i += 1
            continue
        start, level = i, 0
        while i < n and (level > 0 or value[i] not in separators):
            if value[i] == "{":
                level += 1
            elif value[i] == "}" and level > 0:
                level -= 1
            i += 1
        out.append(strip_braces(value[start:i]))
    return out


def strip_braces(token: str) -> str:
    """strip_braces - "{ a b }" -> "a b"; anything else unchanged."""
    if len(token) >= 2 and token[0] == "{" and token[-1] == "}":
        return token[1:-1].strip()
    return token
