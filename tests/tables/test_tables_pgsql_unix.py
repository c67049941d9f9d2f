"""pgsql: against a real PostgreSQL server, and unix:; both compared with Postfix's postmap."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile

import pytest
from tables_helpers import postel_query, postfix_query

from peerlib import require_peer
from postel.tables import TableError, TableUnavailable, close_all, open_table


def _pg_bin(name: str) -> str:
    """_pg_bin - a PostgreSQL server program, or skip (fail under CI)."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    return require_peer(name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_pg(argv: list[str]) -> list[str]:
    """_as_pg - run argv as the postgres user when we are root (initdb refuses root)."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


ROWS = [
    ("joe@example.com", "joe@home.net"),
    ("o'hara@example.com", "quoted@x"),
    ("back\\slash@example.com", "bs@x"),
    ("list@example.com", "a@x"),
    ("list@example.com", "b@x"),
    ("mail.example.com", "relay"),
    ("bob", "bob-local"),
    ("empty@example.com", ""),
]


@pytest.fixture(scope="module")
def pg():
    """pg - a private PostgreSQL server on 127.0.0.1, with table aliases; always stopped."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    import psycopg
    top = tempfile.mkdtemp(prefix="pgsql", dir="/tmp")
    data = os.path.join(top, "data")
    if os.geteuid() == 0:
        shutil.chown(top, "postgres", "postgres")
    port = _free_port()
    subprocess.run(_as_pg([initdb, "-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8",
                           "--no-sync"]), check=True, capture_output=True, timeout=120)
    opts = f"-p {port} -k {top} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(_as_pg([pg_ctl, "-D", data, "-o", opts, "-l", os.path.join(top, "log"),
                           "-w", "start"]), check=True, capture_output=True, timeout=120)
    try:
        with psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres",
                             autocommit=True) as conn:
            conn.execute("CREATE TABLE aliases (alias TEXT, target TEXT)")
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO aliases VALUES (%s, %s)", ROWS)
        yield {"port": port, "top": top}
    finally:
        subprocess.run(_as_pg([pg_ctl, "-D", data, "-m", "immediate", "-w", "stop"]),
                       capture_output=True, timeout=120)
        shutil.rmtree(top, ignore_errors=True)


KEYS = ["joe@example.com", "JOE@Example.com", "o'hara@example.com", "back\\slash@example.com",
        "list@example.com", "bob", "nobody@example.com", "user@mail.example.com",
        "'; DROP TABLE aliases; --", "@example.com", "x@com", "empty@example.com"]

CONFIGS = {
    "plain": "query = SELECT target FROM aliases WHERE alias = '%s'\n",
    "format": "query = SELECT target FROM aliases WHERE alias = '%s'\n"
              "result_format = smtp:[%s] %u %d %U\n",
    "parts": "query = SELECT target FROM aliases WHERE alias = '%u@%d' OR alias = '%3.%2.%1'\n",
    "domain": "query = SELECT target FROM aliases WHERE alias = '%s'\ndomain = example.com\n",
    "columns": "query = SELECT target, alias FROM aliases WHERE alias = '%s'\n",
    "legacy": "table = aliases\nselect_field = target\nwhere_field = alias\n",
}


def _cf(top: str, name: str, port: int, text: str) -> str:
    path = os.path.join(top, f"{name}.cf")
    with open(path, "w") as fp:
        fp.write(f"hosts = inet:127.0.0.1:{port}\nuser = postgres\ndbname = postgres\n{text}")
    os.utime(path, (1_000_000_000, 1_000_000_000))  # Postfix waits on files < 1s old
    return path


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_tables_pgsql_matches_postfix(pg, name):
    postmap = require_peer("postmap")
    spec = f"pgsql:{_cf(pg['top'], name, pg['port'], CONFIGS[name])}"
    theirs = postfix_query(postmap, spec, KEYS)
    ours = postel_query(spec, KEYS)
    assert theirs, "postmap found nothing: is postfix-pgsql installed?"
    assert ours == theirs


def test_tables_pgsql_cli_matches_postfix(pg):
    postmap = require_peer("postmap")
    cf = _cf(pg["top"], "cli", pg["port"], CONFIGS["plain"])
    from tables_helpers import pf_config
    theirs = subprocess.run([postmap, "-c", pf_config(), "-q", "list@example.com", f"pgsql:{cf}"],
                            capture_output=True, timeout=60)
    ours = subprocess.run([sys.executable, "-m", "postel.commands.main", "-c", pf_config(),
                           "map", "-q", "list@example.com", f"pgsql:{cf}"],
                          capture_output=True, timeout=60)
    assert ours.returncode == theirs.returncode == 0
    assert ours.stdout == theirs.stdout == b"a@x,b@x\n"


def test_tables_pgsql_expansion_limit_and_down_server(pg):
    close_all()
    cf = _cf(pg["top"], "limit", pg["port"],
             "query = SELECT target FROM aliases WHERE alias = '%s'\nexpansion_limit = 1\n")
    t = open_table(f"pgsql:{cf}")
    assert t.lookup("joe@example.com") == "joe@home.net"
    with pytest.raises(TableUnavailable, match="expansion limit"):
        t.lookup("list@example.com")
    down = _cf(pg["top"], "down", _free_port(), CONFIGS["plain"])
    with pytest.raises(TableUnavailable, match="cannot connect"):
        open_table(f"pgsql:{down}").lookup("joe@example.com")
    bad = _cf(pg["top"], "bad", pg["port"], "query = SELECT nosuchcolumn FROM aliases\n")
    with pytest.raises(TableUnavailable, match="query failed"):
        open_table(f"pgsql:{bad}").lookup("joe@example.com")
    with pytest.raises(TableError, match="missing query"):
        open_table(f"pgsql:{_cf(pg['top'], 'noquery', pg['port'], '')}")


UNIX_KEYS = ["root", "ROOT", "bin", "nobody", "no-such-user-here", "postgres", "mail", "ssl-cert",
             "daemon"]


@pytest.mark.parametrize("name", ["passwd.byname", "group.byname"])
def test_tables_unix_matches_postfix(name):
    postmap = require_peer("postmap")
    theirs = postfix_query(postmap, f"unix:{name}", UNIX_KEYS)
    ours = postel_query(f"unix:{name}", UNIX_KEYS)
    assert "root" in theirs
    assert ours == theirs


def test_tables_unix_unknown_name():
    with pytest.raises(TableError, match="unknown table: unix:shadow.byname"):
        open_table("unix:shadow.byname", cache=False)
