"""simple - texthash, inline, static, fail, environ, unionmap and pipemap tables

SYNOPSIS
    texthash:/path/file             postmap(1) source, read into memory
    inline:{ key=value, { key = text with spaces } }
    static:value    static:{ text with spaces }
    fail:name                       every lookup fails (TableUnavailable)
    environ:name                    the process environment
    unionmap:{ type:name, ... }     all results, joined with ","
    pipemap:{ type:name, ... }      each result is the next table's key

DESCRIPTION
    These types need no database.  Their behaviour follows DATABASE_README
    and postmap(1): texthash: reads the source file at open time and needs
    no "postel map" run; inline: keeps its entries in the table name;
    static: answers the same value for every key; fail: exists to test
    error handling.  unionmap: and pipemap: open their member tables with the
    same flags; a member that cannot answer makes the whole lookup fail.
"""

from __future__ import annotations

import os

from postel import log
from postel.tables import LookupFlags, Table, TableError, TableUnavailable, open_table
from postel.tables.source import parse_postmap, split_braced


class TexthashTable(Table):
    """TexthashTable - a postmap source file held in memory."""

    type_name = "texthash"

    def __init__(self, name: str, flags: LookupFlags = LookupFlags.FOLD_FIX) -> None:
        super().__init__(name, flags)
        try:
            with open(name, encoding="utf-8", errors="surrogateescape") as fp:
                lines = fp.readlines()
        except OSError as exc:
            raise TableError(f"open {name}: {exc.strerror}") from None
        self.watch(name)
        self.data: dict[str, str] = {}

        def warn(line, msg):
            log.warning("%s%s: %s", name, f", line {line}" if line else "", msg)
        for entry in parse_postmap(lines, warn, ignoring=True):
            key = self.fold(entry.key)
            if key in self.data:
                log.warning('%s, line %d: duplicate entry: "%s"', name, entry.line, key)
                continue
            self.data[key] = entry.value

    def get(self, key: str) -> str | None:
        """get - the value for key."""
        return self.data.get(key)

    def sequence(self):
        """sequence - every entry in file order."""
        return iter(list(self.data.items()))


class InlineTable(Table):
    """InlineTable - inline:{ key=value, ... }."""

    type_name = "inline"

    def __init__(self, name: str, flags: LookupFlags = LookupFlags.FOLD_FIX) -> None:
        super().__init__(name, flags)
        items = split_braced(name, keep_braces=True) if name.strip().startswith("{") else None
        if not items:
            raise TableError(f'bad syntax: "inline:{name}"; need "inline:{{name=value...}}"')
        self.data: dict[str, str] = {}
        for item in items:
            braced = item.startswith("{")
            key, sep, value = (item[1:-1] if braced else item).partition("=")
            key = key.strip() if braced else key
            if not sep or not key or any(ch.isspace() for ch in key):
                raise TableError(f'missing \'=\' after attribute name: "inline:{name}"; '
                                 'need "inline:{name=value...}"')
            # The last of duplicate names wins, as with Postfix.
            self.data[self.fold(key)] = value.strip() if braced else value

    def get(self, key: str) -> str | None:
        """get - the value for key."""
        return self.data.get(key)

    def sequence(self):
        """sequence - every entry."""
        return iter(list(self.data.items()))


def _braced_value(name: str) -> str:
    """_braced_value - "{ text }" -> "text"; other names unchanged."""
    text = name.strip()
    if text.startswith("{") and text.endswith("}"):
        return text[1:-1].strip()
    return name


class StaticTable(Table):
    """StaticTable - the same result for every key."""

    type_name = "static"
    fixed_keys = False

    def __init__(self, name: str, flags: LookupFlags = LookupFlags.FOLD_FIX) -> None:
        super().__init__(name, flags)
        if name.strip().startswith("{") and not name.strip().endswith("}"):
            raise TableError(f'static map: syntax error: "{name}"')
        self.value = _braced_value(name)

    def get(self, key: str) -> str | None:
        """get - the static value."""
        return self.value


class FailTable(Table):
    """FailTable - a table that always fails."""

    type_name = "fail"
    fixed_keys = False

    def get(self, key: str) -> str | None:
        """get - always TableUnavailable."""
        raise TableUnavailable(f"{self.spec}: table lookup failed")


class EnvironTable(Table):
    """EnvironTable - the process environment."""

    type_name = "environ"
    fixed_keys = False

    def get(self, key: str) -> str | None:
        """get - the environment variable named key."""
        return os.environ.get(key)

    def sequence(self):
        """sequence - every variable."""
        return iter(list(os.environ.items()))


class _MultiTable(Table):
    fixed_keys = False

    def __init__(self, name: str, flags: LookupFlags = LookupFlags.FOLD_FIX) -> None:
        super().__init__(name, flags)
        items = split_braced(name) if name.strip().startswith("{") else None
        if not items:
            raise TableError(f'{self.type_name} map: syntax error: "{name}": '
                             'need "{type:name...}"')
        self.members = [open_table(item, flags) for item in items]

    def needs_reopen(self) -> bool:
        """needs_reopen - true when any member changed."""
        return any(t.needs_reopen() for t in self.members)


class UnionmapTable(_MultiTable):
    """UnionmapTable - every member's result, comma-joined."""

    type_name = "unionmap"

    def get(self, key: str) -> str | None:
        """get - the joined results of all members that know key."""
        found = [r for r in (t.lookup(key) for t in self.members) if r is not None]
        return ",".join(found) if found else None


class PipemapTable(_MultiTable):
    """PipemapTable - each member's result is the key for the next member."""

    type_name = "pipemap"

    def get(self, key: str) -> str | None:
        """get - the result of the last member, or None when a member misses."""
        result: str | None = key
        for table in self.members:
            result = table.lookup(result)
            if result is None:
                return None
        return result


def register(register_type) -> None:
    """register - the simple types."""
    for cls in (TexthashTable, InlineTable, StaticTable, FailTable, EnvironTable,
                UnionmapTable, PipemapTable):
        register_type(cls.type_name, cls)
