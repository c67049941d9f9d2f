"""trivial-rewrite service: run it standalone on a UNIX socket, query with the client."""

import asyncio
import os

import pytest

from postel.ipc.client import ServiceClient
from postel.ipc.rewrite_client import RewriteClient
from postel.ipc.skeleton import run_standalone
from postel.trivial_rewrite import resolve as R
from postel.trivial_rewrite import service

MAIN_CF = """\
myhostname = mail.example.com
mydomain = example.com
myorigin = example.com
inet_interfaces = loopback-only
relay_domains = relay.example
virtual_alias_domains = alias.example
relayhost = [gw.example.com]
queue_directory = {q}
"""


@pytest.fixture
def server(tmp_path):
    (tmp_path / "q").mkdir()
    (tmp_path / "main.cf").write_text(MAIN_CF.format(q=tmp_path / "q"))
    sock = str(tmp_path / "rewrite")
    srv = run_standalone("trivial-rewrite", [f"unix:{sock}"], handler=service.serve_client,
                         post_init=service.post_init, config_dir=str(tmp_path))
    try:
        yield str(tmp_path), sock
    finally:
        srv.stop()


def test_service_rewrite_and_resolve(server):
    qdir, sock = server

    async def go():
        rw = RewriteClient(qdir, sock)
        try:
            out = [
                await rw.rewrite("local", "joe"),
                await rw.rewrite("local", "host!joe"),
                await rw.rewrite("remote", "joe"),
                await rw.rewrite_internal("local", "john doe"),
                await rw.resolve("joe@localhost"),
                await rw.resolve("joe@example.org", "me@example.com"),
                await rw.resolve("joe@sub.relay.example"),
                await rw.resolve("joe@alias.example"),
                await rw.resolve("joe@[127.0.0.1]"),
                await rw.verify("joe@example.org"),
            ]
            again = await rw.resolve("joe@localhost")
            return out, again, rw.requests, rw.service.connects
        finally:
            await rw.close()

    out, again, requests, connects = asyncio.run(go())
    assert out[:4] == ["joe@example.com", "joe@host", "joe", "john doe@example.com"]
    assert out[4] == R.Resolved("local", "mail.example.com", "joe@localhost",
                                R.CLASS_LOCAL | R.FLAG_FINAL)
    assert out[5] == R.Resolved("smtp", "[gw.example.com]", "joe@example.org", R.CLASS_DEFAULT)
    assert out[6] == R.Resolved("relay", "[gw.example.com]", "joe@sub.relay.example",
                                R.CLASS_RELAY)
    assert out[7].transport == "error" and out[7].flags & R.CLASS_ALIAS
    assert out[8].flags & R.CLASS_LOCAL
    assert out[9].transport == "smtp"
    assert again == out[4]
    assert requests == 10          # the repeated resolve came from the client cache
    assert connects == 1           # one connection for every request


def test_service_bad_requests(server):
    qdir, sock = server

    async def go():
        c = ServiceClient(qdir, sock)
        try:
            a = await c.request({"request": "rewrite", "rule": "bogus", "address": "x"})
            b = await c.request({"request": "frobnicate"})
            d = await c.request({"request": "resolve", "address": "u@example.org"})
            return a.as_dict(), b.as_dict(), d.as_dict()
        finally:
            await c.close()

    a, b, d = asyncio.run(go())
    assert int(a["flags"]) == R.FLAG_FAIL and a["address"] == "x"
    assert int(b["flags"]) == R.FLAG_FAIL
    assert d["transport"] == "smtp"            # the service survived both


def test_state_reopens_changed_tables(tmp_path):
    from tr_fakes import DictTable, FakeConfig, opener
    t = DictTable({"example.org": "smtp:[a]"})
    cfg = FakeConfig(transport_maps="hash:/t")
    st = service.RewriteState(cfg, open_table=opener({"hash:/t": t}), own_addrs=[])
    req = service.AttrList([("request", b"resolve"), ("address", b"u@example.org")])
    assert st.handle(req)["nexthop"] == "[a]"
    t.data["example.org"] = "smtp:[b]"
    t.changed = True
    st.check_tables(now=st.last_check + 0.5)       # too soon: no check
    assert st.handle(req)["nexthop"] == "[a]"
    st.check_tables(now=st.last_check + 2)
    assert st.handle(req)["nexthop"] == "[b]"
    assert os.path.basename(service.ENDPOINT) == "rewrite"
