"""source - table source file formats

SYNOPSIS
    from postel.tables.source import logical_lines, parse_postmap, parse_aliases

DESCRIPTION
    logical_lines() reads text the way Postfix's readlline() does: empty,
    whitespace-only and "#" comment lines are skipped; a line that starts
    with whitespace continues the previous logical line (the pieces are
    joined as they are, without the newline); a logical line may not start
    with whitespace.  Each logical line comes with the number of its first
    physical line.

    parse_postmap() parses postmap(1) source: "key whitespace value", where
    a key may contain whitespace inside double quotes (a backslash quotes the
    next character; the quotes stay part of the key, as with Postfix).

    parse_aliases() parses aliases(5): "name: value, value, ...", where the
    name may be quoted (the quotes are removed).

    split_braced() splits the text of inline-style table names such as
    "{ a=b, { c = d e } }" into items.

    Problems are returned as (line, message) pairs for the caller to report
    in Postfix's words; nothing here raises on bad input.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass(slots=True)
class Entry:
    """Entry - one key/value pair of a source file and its line number."""

    key: str
    value: str
    line: int


def logical_lines(lines: Iterable[str], warn) -> Iterator[tuple[int, str]]:
    """logical_lines - (first line number, text) for each logical line."""
    buf: str | None = None
    start = 0
    for number, raw in enumerate(lines, 1):
        line = raw.rstrip("\r\n")
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if line[0] in " \t":
            if buf is None:
                warn(None, f'logical line must not start with whitespace: "{line}"')
            else:
                buf += line
            continue
        if buf is not None:
            yield start, buf
        buf, start = line, number
    if buf is not None:
        yield start, buf


def split_key(text: str) -> tuple[str, str] | None:
    """split_key - (key, rest) of a postmap line; None for an unbalanced quote."""
    i, n, quoted = 0, len(text), False
    while i < n:
        ch = text[i]
        if ch == "\\" and i + 1 < n:
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in " \t":
            break
        i += 1
    if quoted:
        return None
    return text[:i], text[i:].strip()


def parse_postmap(lines: Iterable[str], warn, *, ignoring: bool = False) -> Iterator[Entry]:
    """parse_postmap - the entries of a postmap(1) source file."""
    for number, text in logical_lines(lines, warn):
        text = text.rstrip()
        parts = split_key(text)
        if parts is None:
            warn(number, f"unbalanced '\"' in '{text}' -- ignoring this line")
            continue
        key, value = parts
        if not value:
            suffix = " -- ignoring this line" if ignoring else ""
            warn(number, "expected format: key whitespace value" + suffix)
            continue
        yield Entry(key, value, number)


def _alias_name(text: str) -> tuple[str, str] | None:
    """_alias_name - (name, rest after the colon), with quotes removed."""
    out: list[str] = []
    i, n, quoted = 0, len(text), False
    while i < n:
        ch = text[i]
        if ch == "\\" and i + 1 < n:
            out.append(text[i + 1])
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
        elif ch == ":" and not quoted:
            return "".join(out).strip(), text[i + 1:]
        else:
            out.append(ch)
        i += 1
    return None


def split_addresses(text: str) -> list[str]:
    """split_addresses - the comma-separated items of an alias value."""
    items: list[str] = []
    cur: list[str] = []
    quoted = False
    depth = 0
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "\\" and i + 1 < n and not quoted:
            # RFC 5322 quoted-pair outside quotes: the backslash goes, as
            # Postfix's token externalisation drops it.
            cur.append(text[i + 1])
            i += 2
            continue
        if ch == "\\" and i + 1 < n:
            cur.append(text[i:i + 2])
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")" and depth:
            depth -= 1
        if ch == "," and not quoted and not depth:
            items.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
        i += 1
    items.append("".join(cur).strip())
    return [item for item in items if item]


def parse_aliases(lines: Iterable[str], warn) -> Iterator[Entry]:
    """parse_aliases - the entries of an aliases(5) file."""
    for number, text in logical_lines(lines, warn):
        parts = _alias_name(text)
        if parts is None or not parts[0]:
            warn(number, "need name:value pair")
            continue
        name, rest = parts
        values = split_addresses(rest)
        if not values:
            warn(number, "need name:value pair")
            continue
        yield Entry(name, ", ".join(values), number)


def split_braced(text: str, keep_braces: bool = False) -> list[str] | None:
    """split_braced - items of "{ a, { b c }, d }"; None when braces don't balance."""
    text = text.strip()
    if text.startswith("{"):
        if not text.endswith("}"):
            return None
        text = text[1:-1]
    items: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in " \t\r\n,":
            i += 1
            continue
        if ch == "{":
            depth, j = 1, i + 1
            while j < n and depth:
                if text[j] == "{":
                    depth += 1
                elif text[j] == "}":
                    depth -= 1
                j += 1
            if depth:
                return None
            items.append(text[i:j] if keep_braces else text[i + 1:j - 1].strip())
            i = j
            continue
        j = i
        depth = 0
        while j < n and (depth or text[j] not in " \t\r\n,"):
            if text[j] == "{":
                depth += 1
            elif text[j] == "}":
                if not depth:
                    return None
                depth -= 1
            j += 1
        items.append(text[i:j])
        i = j
    return items
