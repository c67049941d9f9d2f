"""In-process tests: cleanup served on a UNIX socket, CleanupClient, real queue files."""

from __future__ import annotations

import asyncio
import os

import pytest

from postel.cleanup import service as cleanup_service
from postel.ipc.cleanup_client import CleanupClient, cleanup_submit_sync
from postel.ipc.skeleton import run_standalone
from postel.queue import QueueDir, QueueFileReader, set_fault_enospc_after


class FakeRewrite:
    """FakeRewrite - trivial-rewrite's local rule without the service."""

    def __init__(self, origin="example.com"):
        self.origin = origin

    async def rewrite_internal(self, rule, addr):
        return addr if "@" in addr else f"{addr}@{self.origin}"


def make_instance(tmp_path, extra=""):
    qdir = tmp_path / "queue"
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "main.cf").write_text(
        f"queue_directory = {qdir}\nmyhostname = mx.example.com\nmydomain = example.com\n"
        f"myorigin = example.com\n" + extra)
    QueueDir(str(qdir)).create_dirs()
    return str(conf), str(qdir)


@pytest.fixture
def cleanup(tmp_path):
    """cleanup - start cleanup standalone; yields a function (extra main.cf) -> queue dir."""
    servers = []

    def start(extra=""):
        conf, qdir = make_instance(tmp_path, extra)

        def post_init(ctx):
            ctx.state["cleanup"] = cleanup_service.CleanupService(
                ctx.cfg, ctx.queue_directory, rewrite_client=FakeRewrite())
        sock = os.path.join(qdir, "private", "cleanup")
        servers.append(run_standalone("cleanup", [f"unix:{sock}"],
                                      handler=cleanup_service.serve_client,
                                      config_dir=conf, post_init=post_init))
        return qdir
    yield start
    for s in servers:
        s.stop()
    set_fault_enospc_after(None)


def incoming(qdir):
    return sorted(QueueDir(qdir).scan("incoming"))


def all_files(qdir, queue="incoming"):
    out = []
    for _root, _, files in os.walk(os.path.join(qdir, queue)):
        out += files
    return out


MSG = (b"Received: from client.example.org by mx.example.com; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
       b"From: Alice <alice@example.org>\r\nTo: bob@example.com\r\nSubject: test\r\n"
       b"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <m1@example.org>\r\n\r\n"
       b"Hello\r\n" + b"x" * 5000 + b"\r\n..dot\r\n")


async def submit(qdir, sender="alice@example.org", rcpts=(("bob@example.com", "", 0),),
                 content=MSG, flags="", attrs=None, chunk=1000):
    cc = CleanupClient(qdir)
    async with cc.message(flags=flags) as m:
        qid = m.queue_id
        await m.envelope(sender, list(rcpts), attrs or {"protocol": "ESMTP",
                                                        "client_name": "client.example.org",
                                                        "client_address": "192.0.2.1"})
        for i in range(0, len(content), chunk):
            await m.write(content[i:i + chunk])
        result = await m.close()
    await cc.close()
    assert result.queue_id == qid
    return result


def test_submit_and_read_back(cleanup):
    qdir = cleanup()
    r = asyncio.run(submit(qdir, rcpts=[("bob@example.com", "rfc822;bob@example.com", 6),
                                        ("carol", "", 0)]))
    assert r.ok and r.status == 0
    assert incoming(qdir) == [r.queue_id]
    with QueueFileReader(QueueDir(qdir).path("incoming", r.queue_id)) as q:
        env = q.envelope
        assert env.sender == "alice@example.org"
        assert [x.address for x in q.recipients] == ["bob@example.com", "carol@example.com"]
        assert q.recipients[0].dsn_orcpt == "rfc822;bob@example.com"
        assert q.recipients[0].dsn_notify == 6
        assert q.recipients[1].orig_rcpt == "carol"
        assert env.attrs["client_address"] == "192.0.2.1"
        assert q.read_content(eol=b"\r\n") == MSG


def test_many_messages_one_connection(cleanup):
    qdir = cleanup()

    async def go():
        cc = CleanupClient(qdir)
        results = []
        for _ in range(5):
            results.append(await cc.submit("a@example.org", ["b@example.com"], MSG))
        await cc.close()
        return results
    results = asyncio.run(go())
    assert all(r.ok for r in results)
    assert len(set(r.queue_id for r in results)) == 5
    assert incoming(qdir) == sorted(r.queue_id for r in results)


def test_header_check_reject_leaves_nothing(cleanup, tmp_path):
    checks = tmp_path / "header_checks"
    checks.write_text("/^Subject: test/ REJECT no tests here\n")
    qdir = cleanup(f"header_checks = regexp:{checks}\n")
    r = asyncio.run(submit(qdir))
    assert (r.status, r.dsn, r.reason) == (550, "5.7.1", "no tests here")
    assert all_files(qdir) == []


def test_hold_and_discard(cleanup, tmp_path):
    checks = tmp_path / "header_checks"
    checks.write_text("/^Subject: hold/ HOLD\n/^Subject: discard/ DISCARD\n")
    qdir = cleanup(f"header_checks = regexp:{checks}\n")
    r = asyncio.run(submit(qdir, content=b"Subject: hold\n\nb\n"))
    assert r.ok and all_files(qdir) == [] and all_files(qdir, "hold") == [r.queue_id]
    r = asyncio.run(submit(qdir, content=b"Subject: discard\n\nb\n"))
    assert r.ok and all_files(qdir) == [] and len(all_files(qdir, "hold")) == 1


def test_size_limit(cleanup):
    qdir = cleanup("message_size_limit = 1000\n")
    r = asyncio.run(submit(qdir))
    assert (r.status, r.dsn) == (552, "5.3.4")
    assert all_files(qdir) == []


def test_client_disconnect_mid_message(cleanup):
    qdir = cleanup()

    async def go():
        cc = CleanupClient(qdir)
        m = await cc.open()
        await m.envelope("a@example.org", ["b@example.com"])
        # More than 64 KiB: the client sends it, and the lazy queue file
        # writer must create its file to store it.
        await m.write(MSG + (b"x" * 78 + b"\r\n") * 2000)
        await asyncio.sleep(0.2)
        # a temp file exists while the message is open
        assert any(f.endswith(".tmp") for f in all_files(qdir))
        m._conn.writer.close()           # the client dies
        await asyncio.sleep(0.3)
    asyncio.run(go())
    assert all_files(qdir) == []


def test_enospc(cleanup):
    qdir = cleanup()
    set_fault_enospc_after(2000)
    r = asyncio.run(submit(qdir))
    assert (r.status, r.dsn, r.reason) == (452, "4.3.1", "Insufficient system storage")
    assert all_files(qdir) == []


def test_fifty_concurrent(cleanup):
    qdir = cleanup()

    async def go():
        cc = CleanupClient(qdir)
        rs = await asyncio.gather(*[cc.submit(f"s{i}@example.org", [f"r{i}@example.com"], MSG)
                                    for i in range(50)])
        await cc.close()
        return rs
    rs = asyncio.run(go())
    assert all(r.ok for r in rs)
    qids = incoming(qdir)
    assert sorted(r.queue_id for r in rs) == qids
    for r in rs:
        with QueueFileReader(QueueDir(qdir).path("incoming", r.queue_id)) as q:
            assert q.read_content(eol=b"\r\n") == MSG


def test_extract_recipients_and_virtual(cleanup, tmp_path):
    virt = tmp_path / "virtual"
    virt.write_text("list@example.com a@example.net, b@example.net\n")
    qdir = cleanup(f"virtual_alias_maps = texthash:{virt}\nalways_bcc = archive@example.com\n")
    content = b"To: list@example.com\nBcc: c@example.net\nSubject: s\n\nbody\n"
    r = asyncio.run(submit(qdir, rcpts=[], content=content,
                           flags="extract_recipients,bcc_ok,map_ok",
                           attrs={"rewrite_context": "local"}))
    assert r.ok, r
    with QueueFileReader(QueueDir(qdir).path("incoming", r.queue_id)) as q:
        addrs = [x.address for x in q.recipients]
        assert addrs == ["a@example.net", "b@example.net", "c@example.net",
                         "archive@example.com"]
        content = q.read_content()
        assert b"Bcc:" not in content
        assert b"\nMessage-Id: <" in content and b"\nFrom: alice@example.org\n" in content


def test_sync_submit(cleanup):
    qdir = cleanup()
    r = cleanup_submit_sync(qdir, "private/cleanup", "a@example.org", ["b@example.com"],
                            [MSG[:100], MSG[100:]], {"rewrite_context": "local"}, "")
    assert r.ok and incoming(qdir) == [r.queue_id]


def test_no_service(tmp_path):
    r = cleanup_submit_sync(str(tmp_path), "private/cleanup", "a@b", ["c@d"], b"x\n",
                            timeout=1, retry_for=0.1)
    assert r.status == 451


def test_small_message_goes_to_cleanup_in_one_send(cleanup):
    qdir = cleanup()

    async def go():
        cc = CleanupClient(qdir)
        m = await cc.open()
        sends = []
        real_write = m._conn.writer.write
        m._conn.writer.write = lambda data: (sends.append(bytes(data)), real_write(data))[1]
        await m.envelope("a@example.org", ["b@example.com"])
        for i in range(0, len(MSG), 1000):          # six content chunks
            await m.write(MSG[i:i + 1000])
        result = await m.close()
        await cc.close()
        return result, sends

    result, sends = asyncio.run(go())
    assert result.ok
    assert len(sends) == 1                           # envelope, data x6, close
    assert sends[0].count(b"request=") == 8 and sends[0].endswith(b"request=5:close,\n")
    with QueueFileReader(QueueDir(qdir).path("incoming", result.queue_id)) as r:
        assert b"..dot" in r.read_content()


@pytest.mark.parametrize("method", ["fsync", "syncfs", "bogus"])
def test_queue_commit_method(cleanup, method):
    qdir = cleanup(f"queue_commit_method = {method}\n")
    r = asyncio.run(submit(qdir))
    assert r.ok and incoming(qdir) == [r.queue_id]
    assert not [f for f in all_files(qdir) if f.endswith(".tmp")]
