"""proxymap/proxywrite standalone, reached through proxy: tables."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

from postel import log
from postel.config import load_config
from postel.ipc.client import request_sync
from postel.ipc.skeleton import run_standalone
from postel.proxymap import service
from postel.tables import (
    LookupFlags,
    TableError,
    TableUnavailable,
    close_all,
    open_table,
    set_table_config,
)
from postel.tables import proxy as P


@pytest.fixture
def inst():
    """inst - a config dir with a queue, a texthash table and both services."""
    top = tempfile.mkdtemp(prefix="pm", dir="/tmp")
    q = os.path.join(top, "q")
    os.makedirs(os.path.join(q, "private"))
    users = os.path.join(top, "users")
    with open(users, "w") as fp:
        fp.write("joe joe-result\nAnn ann-result\n")
    secret = os.path.join(top, "secret")
    with open(secret, "w") as fp:
        fp.write("x y\n")
    cache = os.path.join(top, "verify")
    logfile = os.path.join(top, "log")
    with open(os.path.join(top, "main.cf"), "w") as fp:
        fp.write(f"queue_directory = {q}\nmaillog_file = {logfile}\n"
                 f"proxy_read_maps = texthash:{users} proxy:unix:passwd.byname\n"
                 f"proxy_write_maps = proxy:lmdb:{cache}\n")
    log.init("proxymap", maillog_file=logfile)
    cfg = load_config(top)
    set_table_config(cfg)
    servers = [
        run_standalone("proxymap", [f"unix:{q}/private/proxymap"], handler=service.serve_client,
                       post_init=service.post_init, config_dir=top),
        run_standalone("proxywrite", [f"unix:{q}/private/proxywrite"],
                       handler=service.serve_client, post_init=service.post_init,
                       config_dir=top),
    ]
    try:
        yield {"top": top, "q": q, "users": users, "secret": secret, "cache": cache,
               "log": logfile}
    finally:
        P.close_channels()
        close_all()
        for srv in servers:
            srv.stop()
        set_table_config(None)
        shutil.rmtree(top, ignore_errors=True)


def _log(inst) -> str:
    with open(inst["log"]) as fp:
        return fp.read()


def test_proxymap_lookup_and_connection_reuse(inst):
    t = open_table(f"proxy:texthash:{inst['users']}")
    assert t.lookup("joe") == "joe-result"
    assert t.lookup("ANN") == "ann-result"          # folded by the server's texthash table
    assert t.lookup("nobody-here") is None
    root = open_table("proxy:unix:passwd.byname").lookup("root")
    assert root.startswith("root:") and root.split(":")[2] == "0"
    ch = P.channel(inst["q"], "proxymap", 3600.0)
    assert ch.connects == 1                         # one connection carried every request


def test_proxymap_refuses_unapproved_table(inst):
    t = open_table(f"proxy:texthash:{inst['secret']}")
    with pytest.raises(TableError, match="not configured for table"):
        t.lookup("x")
    assert f'/proxymap[{os.getpid()}]: warning: request for unapproved table: "texthash:{inst["secret"]}"' \
        in _log(inst)
    reply = request_sync(inst["q"], "private/proxymap",
                         {"request": "lookup", "table": f"texthash:{inst['secret']}",
                          "flags": 1, "key": "x"})
    assert reply.get_int("status") == P.PROXY_STAT_DENY


def test_proxymap_read_service_refuses_update(inst):
    reply = request_sync(inst["q"], "private/proxymap",
                         {"request": "update", "table": f"texthash:{inst['users']}",
                          "flags": 1, "key": "a", "value": "b"})
    assert reply.get_int("status") == P.PROXY_STAT_DENY
    reply = request_sync(inst["q"], "private/proxymap", {"request": "frobnicate"})
    assert reply.get_int("status") == P.PROXY_STAT_BAD


def test_proxywrite_update_lookup_delete_sequence(inst):
    spec = f"proxy:lmdb:{inst['cache']}"
    t = open_table(spec, LookupFlags.FOLD_FIX | LookupFlags.OPEN_WRITE)
    assert t.lookup("joe@example.com") is None
    t.update("Joe@Example.com", "2:1700000000")
    t.update("ann@example.com", "0:1700000001")
    assert t.lookup("joe@example.com") == "2:1700000000"
    assert dict(t.sequence()) == {"joe@example.com": "2:1700000000",
                                  "ann@example.com": "0:1700000001"}
    assert t.delete("joe@example.com") is True
    assert t.delete("joe@example.com") is False
    assert t.lookup("joe@example.com") is None
    # the cache is an ordinary lmdb: table on disk
    close_all()
    assert open_table(f"lmdb:{inst['cache']}").lookup("ann@example.com") == "0:1700000001"
    # the read-only service does not serve the write map
    with pytest.raises(TableError):
        open_table(spec).lookup("ann@example.com")


def test_proxymap_reopens_changed_table(inst):
    t = open_table(f"proxy:texthash:{inst['users']}")
    assert t.lookup("joe") == "joe-result"
    with open(inst["users"] + ".new", "w") as fp:
        fp.write("joe changed\n")
    os.rename(inst["users"] + ".new", inst["users"])
    assert t.lookup("joe") == "changed"
    assert t.lookup("ann") is None


def test_proxy_table_unavailable_when_service_down(inst):
    shutil.rmtree(os.path.join(inst["q"], "private"))
    t = open_table(f"proxy:texthash:{inst['users']}", cache=False)   # open does not fail
    with pytest.raises(TableUnavailable):
        t.lookup("joe")


def test_proxy_table_bad_name():
    with pytest.raises(TableError, match="type:name"):
        open_table("proxy:nocolon", cache=False).lookup("x")
    assert P.strip_proxy("proxy:proxy:hash:/x") == "hash:/x"


def test_proxymap_approved_tables():
    class Cfg:
        def get_list(self, name):
            return ["permit_mynetworks", "proxy:hash:/a", "check_client_access",
                    "cidr:/b", "$x", "example.com", "{", "lmdb:/c"]
    assert service.approved_tables(Cfg(), "proxy_read_maps") == {"hash:/a", "cidr:/b", "lmdb:/c"}
