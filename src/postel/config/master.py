"""master - master.cf parsing

SYNOPSIS
    from postel.config.master import MasterEntry, parse_master_cf

DESCRIPTION
    Each logical line of master.cf (same comment and continuation rules as
    main.cf) describes one service in eight or more columns:

      service type private unpriv chroot wakeup maxproc command [args...]

    type is inet, unix, unix-dgram, fifo or pass.  "-" in a column means
    its default: private y, unpriv y, chroot y (parsed, ignored by Postel:
    services never chroot), wakeup 0 (none), maxproc $default_process_limit.
    wakeup may end in "?" (only wake up a service that is in use).  maxproc
    0 means no limit.

    "-o name=value" arguments (also "-o { name = value }", whose value may
    contain whitespace, and "-oname=value") are taken out of the argument
    list into MasterEntry.overrides.  An argument written as { text } is one
    argument, without the braces.

    The identity of an entry is "service/type" (MasterEntry.key), for inet
    services the service column as written ("127.0.0.1:smtp/inet").

DIAGNOSTICS
    ConfigError "FILE, line N: ..." for a bad line.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from postel.config.errors import ConfigError
from postel.config.parser import logical_lines, strip_braces

SERVICE_TYPES = ("inet", "unix", "unix-dgram", "fifo", "pass")
FIELD_NAMES = ("service", "type", "private", "unprivileged", "chroot", "wakeup",
               "process_limit", "command")


@dataclass(slots=True)
class MasterEntry:
    """One master.cf service."""

    service: str
    type: str
    private: bool = True
    unpriv: bool = True
    chroot: bool = True
    wakeup: int = 0
    wakeup_conditional: bool = False
    maxproc: int = 100
    command: str = ""
    args: list[str] = field(default_factory=list)
    overrides: dict[str, str] = field(default_factory=dict)
    file: str = ""
    line: int = 0
    fields: list[str] = field(default_factory=list)   # the eight columns as written

    @property
    def key(self) -> str:
        """key - "service/type", Postfix's identity of a master.cf entry."""
        return f"{self.service}/{self.type}"


def split_fields(text: str) -> list[str]:
    """split_fields - whitespace-separated columns; { ... } stays one token, braces kept."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        start, level = i, 0
        while i < n and (level > 0 or not text[i].isspace()):
            if text[i] == "{":
                level += 1
            elif text[i] == "}" and level > 0:
                level -= 1
            i += 1
        out.append(text[start:i])
    return out


def _flag(value: str, default: bool, what: str, file: str, line: int) -> bool:
    """_flag - a y/n/- column."""
    if value == "-":
        return default
    if value in ("y", "n"):
        return value == "y"
    raise ConfigError(f'bad {what} field "{value}" (expected y, n or -)', file=file, line=line)


def _override(token: str, file: str, line: int) -> tuple[str, str]:
    """_override - "name=value" or "{ name = value }" -> (name, value)."""
    text = strip_braces(token)
    name, eq, value = text.partition("=")
    name = name.strip()
    if not eq or not name or any(c.isspace() for c in name):
        raise ConfigError(f'bad "-o" argument: "{token}" (expected name=value)', file=file, line=line)
    return name, value.strip()


def parse_master_line(text: str, file: str, line: int, default_process_limit: int) -> MasterEntry:
    """parse_master_line - one logical master.cf line into a MasterEntry."""
    tokens = split_fields(text)
    if len(tokens) < 8:
        raise ConfigError(f'missing fields (need 8, found {len(tokens)}): "{text.strip()}"',
                          file=file, line=line)
    service, stype, private, unpriv, chroot, wakeup, maxproc, command = tokens[:8]
    if stype not in SERVICE_TYPES:
        raise ConfigError(f'bad transport type: {stype}', file=file, line=line)
    entry = MasterEntry(service, stype, file=file, line=line, fields=tokens[:8])
    entry.private = _flag(private, True, "private", file, line)
    entry.unpriv = _flag(unpriv, True, "unprivileged", file, line)
    entry.chroot = _flag(chroot, True, "chroot", file, line)
    if wakeup != "-":
        digits = wakeup[:-1] if wakeup.endswith("?") else wakeup
        if not digits.isdigit():
            raise ConfigError(f'bad wakeup time: "{wakeup}"', file=file, line=line)
        entry.wakeup = int(digits)
        entry.wakeup_conditional = wakeup.endswith("?")
    if maxproc == "-":
        entry.maxproc = default_process_limit
    elif maxproc.isdigit():
        entry.maxproc = int(maxproc)
    else:
        raise ConfigError(f'bad process limit: "{maxproc}"', file=file, line=line)
    entry.command = command
    rest = tokens[8:]
    k = 0
    while k < len(rest):
        tok = rest[k]
        if tok == "-o":
            if k + 1 >= len(rest):
                raise ConfigError('"-o" without name=value', file=file, line=line)
            name, value = _override(rest[k + 1], file, line)
            k += 2
        elif tok.startswith("-o") and "=" in tok:
            name, value = _override(tok[2:], file, line)
            k += 1
        else:
            entry.args.append(strip_braces(tok))
            k += 1
            continue
        entry.overrides[name] = value
    return entry


def parse_master_cf(text: str, file: str, default_process_limit: int = 100,
                    warnings: list[str] | None = None) -> list[MasterEntry]:
    """parse_master_cf - every entry of a master.cf text, in file order."""
    entries = [parse_master_line(t, file, n, default_process_limit)
               for n, t in logical_lines(text.splitlines(), warnings, file)]
    seen: dict[str, int] = {}
    for e in entries:
        if e.key in seen:
            raise ConfigError(f"duplicate service name/type entry {e.key} (first at line {seen[e.key]})",
                              file=file, line=e.line)
        seen[e.key] = e.line
    return entries
