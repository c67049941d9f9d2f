"""error(8), retry and discard(8) agents, over a real socket through the agent skeleton."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from postel import log
from postel.deliver.agent import agent_handler
from postel.deliver.request import DeliverRcpt, DeliverRequest, decode_reply, encode_request
from postel.deliver.status import read_log, split_dsn
from postel.discard import service as discard
from postel.error import service as error
from postel.ipc.client import ServiceClient
from postel.ipc.skeleton import run_standalone
from postel.queue import Envelope, QueueDir, QueueFileReader, QueueFileWriter, Recipient


@pytest.mark.parametrize("text, default, want", [
    ("5.1.1 no such user", "5.0.0", ("5.1.1", "no such user")),
    ("4.7.0   try later", "5.0.0", ("4.7.0", "try later")),
    ("mail for x is not accepted", "5.0.0", ("5.0.0", "mail for x is not accepted")),
    ("5.1 not a code", "4.0.0", ("4.0.0", "5.1 not a code")),
    ("2.0.0", "5.0.0", ("2.0.0", "")),
])
def test_split_dsn(text, default, want):
    assert split_dsn(default, text) == want


@pytest.mark.parametrize("service, nexthop, want", [
    ("error", "", ("bounce", "5.0.0", "mail delivery failed")),
    ("error", "5.1.1 gone", ("bounce", "5.1.1", "gone")),
    ("error", "4.3.2 later", ("defer", "4.3.2", "later")),
    ("retry", "5.1.1 gone", ("defer", "4.1.1", "gone")),
    ("retry", "over quota", ("defer", "4.0.0", "over quota")),
])
def test_error_outcome(service, nexthop, want):
    assert error.outcome(service, nexthop) == want


@pytest.fixture
def setup(tmp_path):
    cfgdir = tmp_path / "etc"
    cfgdir.mkdir()
    (cfgdir / "main.cf").write_text(f"queue_directory = {tmp_path / 'q'}\n")
    qd = QueueDir(str(tmp_path / "q"))
    qd.create_dirs()
    logfile = tmp_path / "maillog"
    log.init("test", maillog_file=str(logfile), use_syslog=False)
    return qd, str(cfgdir), logfile, tmp_path


def _message(qd, n=2):
    w = QueueFileWriter(qd, "active")
    w.write_envelope(Envelope("s@example.org", [Recipient(f"r{i}@example.com")
                                                for i in range(n)], time=time.time()))
    w.write_content(b"Subject: t\n\nhi\n")
    path = w.commit_sync()
    qf = QueueFileReader(path)
    rcpts = [DeliverRcpt(r.address, r.orig_rcpt, r.offset) for r in qf.recipients]
    qf.close()
    return os.path.basename(path), path, rcpts


def _run(service, deliver, cfgdir, sock, reqs):
    srv = run_standalone(service, [f"unix:{sock}"], handler=agent_handler(deliver),
                         config_dir=cfgdir)
    srv.ctx.service_name = service

    async def go():
        client = ServiceClient("/", sock)
        out = [decode_reply(await client.request(encode_request(r)), len(r.recipients))
               for r in reqs]
        await client.close()
        return out

    try:
        return asyncio.run(go())
    finally:
        srv.stop()


@pytest.mark.parametrize("service, nexthop, status, queue", [
    ("error", "5.1.1 user unknown", "bounced", "bounce"),
    ("retry", "mailbox busy", "deferred", "defer"),
])
def test_error_agent_socket(setup, service, nexthop, status, queue):
    qd, cfgdir, logfile, tmp = setup
    qid, path, rcpts = _message(qd)
    req = DeliverRequest("active", qid, nexthop, "s@example.org", rcpts, transport=service)
    [reply] = _run(service, error.deliver, cfgdir, str(tmp / "sock"), [req])
    assert reply.rcpt_status == [status, status]
    assert reply.status == (0 if status == "bounced" else 4)
    entries = read_log(qd.path(queue, qid))
    assert [e["recipient"] for e in entries] == ["r0@example.com", "r1@example.com"]
    done = [r.done for r in QueueFileReader(path).recipients]
    assert done == [status == "bounced"] * 2
    text = logfile.read_text()
    assert f"{qid}: to=<r0@example.com>, relay=none, delay=" in text
    assert f"status={status} (" in text


def test_discard_agent_socket(setup):
    qd, cfgdir, logfile, tmp = setup
    qid, path, rcpts = _message(qd, 3)
    qid2, path2, rcpts2 = _message(qd, 1)
    reqs = [DeliverRequest("active", qid, "silently dropped", "s@x", rcpts),
            DeliverRequest("active", qid2, "", "s@x", rcpts2)]
    replies = _run("discard", discard.deliver, cfgdir, str(tmp / "sock"), reqs)
    assert [r.rcpt_status for r in replies] == [["sent"] * 3, ["sent"]]
    assert all(r.done for r in QueueFileReader(path).recipients)
    text = logfile.read_text()
    assert "dsn=2.0.0, status=sent (silently dropped)" in text
    assert "status=sent (discarded)" in text
    assert not os.path.exists(qd.path("bounce", qid))


@pytest.mark.parametrize("service, deliver, nexthop, status, text", [
    ("error", error.deliver, "5.1.1 user unknown", "bounced",
     "dsn=5.1.1, status=undeliverable (user unknown)"),
    ("retry", error.deliver, "mailbox busy", "bounced",
     "dsn=4.0.0, status=undeliverable (mailbox busy)"),
    ("discard", discard.deliver, "dropped", "sent", "dsn=2.0.0, status=deliverable (dropped)"),
])
def test_agents_answer_verify_with_their_outcome(setup, service, deliver, nexthop, status, text):
    """sendmail -bv through error/retry/discard: the agent's own verdict, only in trace/."""
    qd, cfgdir, logfile, tmp = setup
    qid, path, rcpts = _message(qd, 1)
    req = DeliverRequest("active", qid, nexthop, "s@example.org", rcpts, transport=service,
                         flags=frozenset({"verify"}))
    [reply] = _run(service, deliver, cfgdir, str(tmp / "sock"), [req])
    assert reply.rcpt_status == [status]
    assert text in logfile.read_text()
    assert [e["recipient"] for e in read_log(qd.path("trace", qid))] == ["r0@example.com"]
    assert not os.path.exists(qd.path("bounce", qid)) and not os.path.exists(qd.path("defer", qid))
