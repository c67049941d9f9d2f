"""sqlite - sqlite: tables

SYNOPSIS
    sqlite:/etc/postel/sqlite-aliases.cf

DESCRIPTION
    As sqlite_table(5).  The table name is a configuration file of
    "name = value" lines (main.cf syntax, with continuation lines):

        dbpath          the SQLite database file
        query           SELECT template; %s %u %d %S %U %D %1..%9 %% expand
        result_format   (%s) template for each result value
        domain          only look up user@domain keys in these domains
        expansion_limit (0) more results than this is a lookup error
        table, select_field, where_field, additional_conditions
                        the pre-Postfix-2.2 way to give the query

    %s is the whole key, %u the local part (the whole key when it has no
    "@"), %d the domain part, %1 the last label of the domain, %2 the one
    before, and so on.  Values are quoted for SQL (' becomes '').  A query
    whose expansion needs a part the key lacks (%d of an unqualified key,
    %u with an empty local part, %3 of a two-label domain) is not run and
    the key is not found.  All result rows are formatted and joined with
    ",".  Keys are folded to lower case unless the table is opened without
    LookupFlags.FOLD_FIX (postmap -f).

    The database is opened read-only.  A database error is a temporary
    lookup failure (TableUnavailable).
"""

from __future__ import annotations

from postel.tables import LookupFlags, Table, TableError, TableUnavailable, open_table
from postel.tables.source import logical_lines


class Suppress(Exception):
    """The query cannot be expanded for this key: not found."""


def read_cf(path: str) -> dict[str, str]:
    """read_cf - the name = value settings of a table configuration file."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as fp:
            lines = fp.readlines()
    except OSError as exc:
        raise TableError(f"open {path}: {exc.strerror}") from None
    params: dict[str, str] = {}
    problems: list[str] = []

    def warn(line, msg):
        problems.append(f"{path}{f', line {line}' if line else ''}: {msg}")
    for number, text in logical_lines(lines, warn):
        name, sep, value = text.partition("=")
        if not sep or not name.strip():
            raise TableError(f"{path}, line {number}: missing '=' after attribute name")
        params[name.strip()] = " ".join(value.split())
    return params


def sql_quote(text: str) -> str:
    """sql_quote - text made safe inside '...' for SQLite."""
    return text.replace("'", "''")


def expand(template: str, key: str, *, quote, value: str | None = None) -> str:
    """expand - %-expand template for key (and result value, for result_format)."""
    def parts(text: str) -> tuple[str, str | None]:
        user, at, domain = text.rpartition("@")
        return (user, domain) if at else (text, None)
    out: list[str] = []
    i, n = 0, len(template)
    kuser, kdomain = parts(key)
    while i < n:
        ch = template[i]
        if ch != "%" or i + 1 >= n:
            out.append(ch)
            i += 1
            continue
        code = template[i + 1]
        i += 2
        src = value if value is not None and code in "sud" else key
        user, domain = parts(src) if src is not key else (kuser, kdomain)
        lc = code.lower()
        if code == "%":
            out.append("%")
        elif lc == "s":
            out.append(quote(src))
        elif lc == "u":
            if domain is not None and not user:
                raise Suppress
            out.append(quote(user))
        elif lc == "d":
            if not domain:
                raise Suppress
            out.append(quote(domain))
        elif code.isdigit() and code != "0":
            labels = (kdomain or "").split(".") if kdomain else []
            if len(labels) < int(code):
                raise Suppress
            out.append(quote(labels[-int(code)]))
        else:
            raise TableError(f"invalid %-expansion: %{code}")
    return "".join(out)


class SqlTable(Table):
    """SqlTable - what sqlite: and pgsql: share: the query, the domain list, the formatting."""

    type_name = "sql"

    def __init__(self, name: str, flags: LookupFlags = LookupFlags.FOLD_FIX) -> None:
        super().__init__(name, flags)
        self.params = read_cf(name)
        self.watch(name)
        params = self.params
        self.query = params.get("query") or self._legacy_query(params)
        self.result_format = params.get("result_format", "%s")
        limit = params.get("expansion_limit", "0")
        if not limit.isdigit():
            raise TableError(f'{name}: bad expansion_limit: "{limit}"')
        self.expansion_limit = int(limit)
        self.domains = [d for d in params.get("domain", "").replace(",", " ").split() if d]

    def _legacy_query(self, params: dict[str, str]) -> str:
        try:
            query = (f"SELECT {params['select_field']} FROM {params['table']} "
                     f"WHERE {params['where_field']} = '%s'")
        except KeyError as exc:
            raise TableError(f"{self.name}: missing query (or {exc.args[0]})") from None
        extra = params.get("additional_conditions", "")
        return f"{query} {extra}".rstrip()

    def _domain_ok(self, key: str) -> bool:
        """_domain_ok - the key passes the domain restriction."""
        if not self.domains:
            return True
        user, at, domain = key.rpartition("@")
        if not at or not user or not domain:
            return False
        domain = domain.lower()
        for item in self.domains:
            if ":" in item and not item.startswith("/"):
                if open_table(item).lookup(domain) is not None:
                    return True
            elif item.lower() == domain:
                return True
        return False

    def get(self, key: str) -> str | None:
        """get - the formatted, comma-joined rows for key."""
        if not self._domain_ok(key):
            return None
        try:
            sql = expand(self.query, key, quote=self.quote)
        except Suppress:
            return None
        return self.format_rows(self.run(sql), key)

    def quote(self, text: str) -> str:
        """quote - text made safe inside '...' for this database."""
        return sql_quote(text)

    def run(self, sql: str) -> list[tuple]:
        """run - the rows of one query; TableUnavailable on a database error."""
        raise NotImplementedError

    def format_rows(self, rows: list[tuple], key: str) -> str | None:
        """format_rows - every non-empty column of every row, formatted and joined."""
        results: list[str] = []
        for row in rows:
            for col in row:
                if col is None:
                    continue
                if isinstance(col, (bytes, memoryview)):
                    text = bytes(col).decode("utf-8", "replace")
                else:
                    text = str(col)
                if text == "":
                    continue
                try:
                    results.append(expand(self.result_format, key, quote=str, value=text))
                except Suppress:
                    continue
        if self.expansion_limit and len(results) > self.expansion_limit:
            raise TableUnavailable(f"{self.spec}: expansion limit exceeded for key: '{key}'")
        return ",".join(results) if results else None


class SqliteTable(SqlTable):
    """SqliteTable - rows of a SELECT on an SQLite database."""

    type_name = "sqlite"

    def __init__(self, name: str, flags: LookupFlags = LookupFlags.FOLD_FIX) -> None:
        super().__init__(name, flags)
        self.dbpath = self.params.get("dbpath", "")
        if not self.dbpath:
            raise TableError(f"{name}: missing dbpath")
        try:
            import sqlite3
        except ImportError as exc:
            raise TableError(f"{name}: sqlite: tables need Python's sqlite3: {exc}") from None
        self.sqlite3 = sqlite3
        try:
            self.conn = sqlite3.connect(f"file:{self.dbpath}?mode=ro", uri=True,
                                        check_same_thread=False)
        except self.sqlite3.Error as exc:
            raise TableError(f"{name}: open {self.dbpath}: {exc}") from None

    def run(self, sql: str) -> list[tuple]:
        """run - execute the query on the SQLite database."""
        try:
            return self.conn.execute(sql).fetchall()
        except self.sqlite3.Error as exc:
            raise TableUnavailable(f"{self.spec}: query failed: {exc}") from None

    def close(self) -> None:
        """close - close the database connection."""
        self.conn.close()


def register(register_type) -> None:
    """register - sqlite:."""
    register_type("sqlite", SqliteTable)
