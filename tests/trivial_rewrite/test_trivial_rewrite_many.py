"""RewriteClient's pipelined rewrite_many/resolve_many answer as one request per address."""

import asyncio

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postel.ipc import rewrite_client
from postel.ipc.client import ServiceUnavailable
from postel.ipc.rewrite_client import RewriteClient
from postel.ipc.skeleton import run_standalone
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

ADDRS = st.lists(st.sampled_from([
    "joe", "host!joe", "joe@localhost", "joe@example.org", "joe@sub.relay.example",
    "joe@alias.example", "joe@[127.0.0.1]", "john doe", "a@b@c", "x@", "@", "u1@d1.example",
    "u2@d2.example", "\"q x\"@example.com", "joe%x@example.com", "joe@mail.example.com",
]), max_size=40)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("rw")
    (tmp_path / "q").mkdir()
    (tmp_path / "main.cf").write_text(MAIN_CF.format(q=tmp_path / "q"))
    sock = str(tmp_path / "rewrite")
    srv = run_standalone("trivial-rewrite", [f"unix:{sock}"], handler=service.serve_client,
                         post_init=service.post_init, config_dir=str(tmp_path))
    try:
        yield str(tmp_path), sock
    finally:
        srv.stop()


def _run(server, coro_fn):
    qdir, sock = server

    async def go():
        one, many = RewriteClient(qdir, sock), RewriteClient(qdir, sock)
        try:
            return await coro_fn(one, many)
        finally:
            await one.close()
            await many.close()
    return asyncio.run(go())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(addrs=ADDRS, window=st.sampled_from([1, 3, 64]), rule=st.sampled_from(["local", "remote"]))
def test_many_equals_one_by_one(server, monkeypatch, addrs, window, rule):
    monkeypatch.setattr(rewrite_client, "PIPELINE_WINDOW", window)

    async def both(one, many):
        seq = ([await one.rewrite(rule, a) for a in addrs],
               [await one.rewrite_internal(rule, a) for a in addrs],
               [await one.resolve(a, "s@example.com") for a in addrs])
        got = (await many.rewrite_many(rule, addrs),
               await many.rewrite_internal_many(rule, addrs),
               await many.resolve_many(addrs, "s@example.com"))
        # the misses are asked once each; a second call is answered from the cache
        asked = many.requests
        again = await many.resolve_many(addrs, "s@example.com")
        return seq, got, asked, again, many.requests
    seq, got, asked, again, after = _run(server, both)
    assert got == seq
    assert asked <= 3 * len(set(addrs))
    assert again == seq[2] and after == asked


def test_many_after_idle_close_and_missing_service(server, tmp_path):
    async def closed(one, many):
        first = await many.resolve_many(["a@example.org", "b@example.org"])
        for conn in many.service._idle:         # the service went away while idle
            conn.writer.close()
        await asyncio.sleep(0.05)
        many.flush()
        second = await many.resolve_many(["a@example.org", "b@example.org"])
        return first, second
    first, second = _run(server, closed)
    assert first == second and first[0].transport

    async def missing():
        rw = RewriteClient(str(tmp_path), str(tmp_path / "nothing"))
        rw.service.retry_for = 0.1
        with pytest.raises(ServiceUnavailable):
            await rw.rewrite_many("local", ["a", "b"])
    asyncio.run(missing())
