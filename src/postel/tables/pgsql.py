"""pgsql - pgsql: tables (PostgreSQL)

SYNOPSIS
    virtual_alias_maps = proxy:pgsql:/etc/postel/pgsql-aliases.cf

    /etc/postel/pgsql-aliases.cf:
        hosts = inet:127.0.0.1:5432 unix:/run/postgresql
        user = postel
        password = secret
        dbname = mail
        query = SELECT forw_addr FROM mxaliases WHERE alias='%s' AND status='paid'

DESCRIPTION
    As pgsql_table(5).  The table name is a configuration file of
    "name = value" lines (main.cf syntax); the settings:

        hosts           servers to try, in the order listed: "host",
                        "host:port", "inet:host:port", "unix:/directory" or
                        "unix:/directory/.s.PGSQL.5432" (default: localhost)
        user, password  login; dbname: the database
        query           SELECT template; %s %u %d %S %U %D %1..%9 %% expand
                        as for sqlite: (postel.tables.sqlite), values quoted
                        with PostgreSQL's own string escaping
        result_format   (%s) template for each result value
        domain          only look up user@domain keys in these domains
        expansion_limit (0) more results than this is a temporary failure
        select_field, table, where_field, additional_conditions
                        the pre-Postfix-2.2 way to give the query

    Every non-empty column of every result row is formatted and the results
    are joined with ",".  Keys are folded to lower case unless the table is
    opened without LookupFlags.FOLD_FIX (postmap -f).

    The connection is made at the first lookup and kept.  A server that
    cannot be reached is skipped for the rest of the walk over hosts; when
    no host answers, or a query fails, the lookup is a temporary failure
    (TableUnavailable) and the connection is made again next time.  Use
    proxy:pgsql:... so that all processes share the proxymap service's
    connections.

    Uses psycopg 3; without it, opening a pgsql: table is a configuration
    error.
"""

from __future__ import annotations

from postel.tables import LookupFlags, TableError, TableUnavailable
from postel.tables.sqlite import SqlTable

CONNECT_TIMEOUT = 10    # seconds for one connection attempt


def conninfo_args(host: str) -> dict[str, str]:
    """conninfo_args - libpq host/port for one entry of "hosts"."""
    if host.startswith("unix:"):
        path = host[5:]
        if "/.s.PGSQL." in path:
            directory, _, port = path.rpartition("/.s.PGSQL.")
            return {"host": directory, "port": port}
        return {"host": path}
    if host.startswith("inet:"):
        host = host[5:]
    if host.startswith("["):
        addr, _, rest = host[1:].partition("]")
        return {"host": addr, "port": rest.lstrip(":")} if rest else {"host": addr}
    name, sep, port = host.rpartition(":")
    if sep and port.isdigit() and name:
        return {"host": name, "port": port}
    return {"host": host}


class PgsqlTable(SqlTable):
    """PgsqlTable - rows of a SELECT on a PostgreSQL server."""

    type_name = "pgsql"

    def __init__(self, name: str, flags: LookupFlags = LookupFlags.FOLD_FIX) -> None:
        super().__init__(name, flags)
        try:
            import psycopg
        except ImportError:
            raise TableError(f"{name}: pgsql: tables need psycopg "
                             "(pip install 'psycopg[binary]')") from None
        self.psycopg = psycopg
        p = self.params
        self.hosts = [h for h in p.get("hosts", "localhost").replace(",", " ").split() if h]
        self.login = {k: p[k] for k in ("user", "password", "dbname") if p.get(k)}
        self.conn = None

    def _connect(self):
        """_connect - a connection to the first host that answers."""
        errors: list[str] = []
        for host in self.hosts:
            try:
                conn = self.psycopg.connect(**conninfo_args(host), **self.login,
                                            connect_timeout=CONNECT_TIMEOUT, autocommit=True)
            except self.psycopg.Error as exc:
                errors.append(f"{host}: {str(exc).strip().splitlines()[0] if str(exc) else exc}")
                continue
            return conn
        raise TableUnavailable(f"{self.spec}: cannot connect to any server: "
                               + "; ".join(errors or ["no hosts"]))

    def quote(self, text: str) -> str:
        """quote - PQescapeStringConn() of text (needs the connection)."""
        if self.conn is None:
            self.conn = self._connect()
        from psycopg.pq import Escaping
        raw = text.encode("utf-8", "surrogateescape")
        return Escaping(self.conn.pgconn).escape_string(raw).decode("utf-8", "surrogateescape")

    def run(self, sql: str) -> list[tuple]:
        """run - execute the query; on any database error drop the connection."""
        if self.conn is None:
            self.conn = self._connect()
        try:
            with self.conn.cursor() as cur:
                cur.execute(sql.encode("utf-8", "surrogateescape"))
                return cur.fetchall() if cur.description is not None else []
        except self.psycopg.Error as exc:
            self.close()
            raise TableUnavailable(f"{self.spec}: query failed: "
                                   f"{str(exc).strip() or type(exc).__name__}") from None

    def close(self) -> None:
        """close - close the server connection."""
        if self.conn is not None:
            try:
                self.conn.close()
            except self.psycopg.Error:
                pass
            self.conn = None


def register(register_type) -> None:
    """register - pgsql:."""
    register_type("pgsql", PgsqlTable)
