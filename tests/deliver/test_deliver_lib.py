"""Delivery library: request/reply codec, status functions, per-message logs, agent skeleton."""

from __future__ import annotations

import asyncio
import os
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postel import log
from postel.config import load_config
from postel.deliver.agent import handle_request
from postel.deliver.request import (
    DeliverRcpt,
    DeliverRequest,
    RequestError,
    decode_reply,
    decode_request,
    encode_reply,
    encode_request,
)
from postel.deliver.status import (
    DeliveryContext,
    append_log,
    bounce,
    defer,
    format_delay,
    read_log,
    sent,
)
from postel.ipc.attr import AttrDecoder, encode
from postel.ipc.skeleton import ServiceContext
from postel.queue import Envelope, QueueDir, QueueFileReader, QueueFileWriter, Recipient
from postel.queue import records as rec


def _roundtrip(attrs):
    return AttrDecoder().feed(encode(attrs))[0]


@pytest.fixture
def env(tmp_path):
    """A queue dir with one message in active/, a config, and a log file."""
    cfgdir = tmp_path / "etc"
    cfgdir.mkdir()
    (cfgdir / "main.cf").write_text(f"queue_directory = {tmp_path / 'q'}\n")
    qd = QueueDir(str(tmp_path / "q"))
    qd.create_dirs()
    w = QueueFileWriter(qd, "active")
    w.write_envelope(Envelope("a@example.org", [
        Recipient("b@example.com", "b@example.com"),
        Recipient("c@example.com", "alias@example.com", dsn_notify=rec.DSN_NOTIFY_SUCCESS),
    ], time=time.time() - 5))
    w.write_content(b"Subject: x\n\nbody\n")
    path = w.commit_sync()
    logfile = tmp_path / "maillog"
    log.init("test", maillog_file=str(logfile), use_syslog=False)
    cfg = load_config(str(cfgdir))
    return qd, path, cfg, logfile


def _request(qd, path, flags=frozenset()):
    qf = QueueFileReader(path)
    rcpts = [DeliverRcpt(r.address, r.orig_rcpt, r.offset, r.dsn_orcpt, r.dsn_notify)
             for r in qf.recipients]
    qf.close()
    return DeliverRequest("active", os.path.basename(path), "example.com", "a@example.org",
                          rcpts, transport="smtp", arrival_time=time.time() - 5,
                          active_time=time.time() - 1, flags=flags)


def test_request_round_trip():
    req = DeliverRequest("active", "ABC123", "[127.0.0.1]:25", "s@x",
                         [DeliverRcpt("a@y", "o@y", 12, "rfc822;o@y", 6), DeliverRcpt("b@y")],
                         transport="relay", smtputf8=True, dsn_ret=2, arrival_time=1.5,
                         active_time=2.25, client_name="c", flags=frozenset({"trace", "verify"}))
    assert decode_request(_roundtrip(encode_request(req))) == req


@given(st.lists(st.tuples(st.text(min_size=1), st.text(), st.integers(-1, 2**40),
                          st.text(), st.integers(0, 15)), min_size=1, max_size=5),
       st.text(), st.floats(0, 2e9))
def test_request_round_trip_any(rcpts, sender, when):
    req = DeliverRequest("active", "Q1", "nh", sender, [DeliverRcpt(*r) for r in rcpts],
                         arrival_time=when)
    assert decode_request(_roundtrip(encode_request(req))) == req


@pytest.mark.parametrize("attrs, what", [
    ([("request", "other")], "unknown request"),
    ([("request", "deliver"), ("queue_name", "active")], "missing"),
    ([("request", "deliver"), ("queue_name", "active"), ("queue_id", "Q")], "no recipients"),
    ([("request", "deliver"), ("queue_name", "active"), ("queue_id", "Q"),
      ("rcpt_orig", "x")], "out of order"),
    ([("request", "deliver"), ("queue_name", "active"), ("queue_id", "Q"),
      ("rcpt_address", "x")], "incomplete"),
    ([("request", "deliver"), ("queue_name", "active"), ("queue_id", "Q"), ("rcpt_address", "x"),
      ("rcpt_orig", ""), ("rcpt_offset", "zz"), ("rcpt_dsn_orcpt", ""), ("rcpt_dsn_notify", "0")],
     "rcpt_offset"),
])
def test_request_errors(attrs, what):
    with pytest.raises(RequestError, match=what):
        decode_request(_roundtrip(attrs))


def test_reply_round_trip_and_padding():
    r = decode_reply(_roundtrip(encode_reply(4, ["sent", "deferred"], True)), 3)
    assert (r.status, r.rcpt_status, r.site_dead) == (4, ["sent", "deferred", "deferred"], True)
    with pytest.raises(RequestError):
        decode_reply(_roundtrip([("status", "9")]))


@pytest.mark.parametrize("secs, text", [
    (0, "0"), (0.004, "0"), (0.01, "0.01"), (0.123, "0.12"), (0.1, "0.1"),
    (1.23, "1.2"), (1.0, "1"), (9.96, "10"), (12.4, "12"), (3620.2, "3620"),
])
def test_format_delay(secs, text):
    assert format_delay(secs) == text


def test_read_log_truncated(tmp_path):
    p = str(tmp_path / "log")
    append_log(p, {"recipient": "a@x", "reason": "line1\nline2", "status": "5.0.0"})
    append_log(p, {"recipient": "b@x"})
    with open(p, "ab") as f:
        f.write(b"recipient=c@x\nstatus=4.0")
    entries = read_log(p)
    assert [e["recipient"] for e in entries] == ["a@x", "b@x"]
    assert entries[0]["reason"] == "line1 line2"
    assert read_log(str(tmp_path / "absent")) == []


def test_sent_bounce_defer(env):
    qd, path, cfg, logfile = env
    req = _request(qd, path)
    qf = QueueFileReader(path)
    dctx = DeliveryContext(req, qd, qf, cfg)
    b, c = req.recipients
    sent(dctx, c, "local", "2.0.0", "delivered to mailbox")
    bounce(dctx, b, "mx[192.0.2.1]:25", "5.1.1", "host said: 550 no",
           diag=("smtp", "550 5.1.1 no"), mta=("dns", "mx"))
    defer(dctx, b, "none", "4.0.0", "ignored: second outcome")
    qf.close()
    assert dctx.status == ["bounced", "sent"]
    assert dict(dctx.reply_attrs())["status"] == 0
    assert all(r.done for r in QueueFileReader(path).recipients)
    qid = req.queue_id
    blog = read_log(qd.path("bounce", qid))
    assert len(blog) == 1 and blog[0]["recipient"] == "b@example.com"
    assert blog[0]["status"] == "5.1.1" and blog[0]["action"] == "failed"
    assert blog[0]["diag_text"] == "550 5.1.1 no" and blog[0]["mta_name"] == "mx"
    tlog = read_log(qd.path("trace", qid))      # NOTIFY=SUCCESS
    assert [e["recipient"] for e in tlog] == ["c@example.com"]
    assert not os.path.exists(qd.path("defer", qid))
    text = logfile.read_text()
    assert f"{qid}: to=<c@example.com>, orig_to=<alias@example.com>, relay=local, delay=" in text
    assert "dsn=2.0.0, status=sent (delivered to mailbox)" in text
    assert f"{qid}: to=<b@example.com>, relay=mx[192.0.2.1]:25," in text
    assert "status=bounced (host said: 550 no)" in text
    assert "second status" in text


def test_defer_and_soft_bounce(env):
    qd, path, cfg, _ = env
    req = _request(qd, path)
    dctx = DeliveryContext(req, qd, QueueFileReader(path), cfg.derive({"soft_bounce": "yes"}))
    bounce(dctx, req.recipients[0], "none", "5.1.1", "no such user")
    defer(dctx, req.recipients[1], "none", "4.4.1", "connection refused")
    dctx.site_dead = True
    reply = _roundtrip(dctx.reply_attrs())
    assert decode_reply(reply).rcpt_status == ["deferred", "deferred"]
    assert reply.get("status") == "4" and reply.get("site_dead") == "1"
    assert reply.get("reason") == "connection refused"
    dlog = read_log(qd.path("defer", req.queue_id))
    assert [e["status"] for e in dlog] == ["4.1.1", "4.4.1"]
    assert not any(r.done for r in QueueFileReader(path).recipients)


def test_verify_mode(env):
    qd, path, cfg, logfile = env
    req = _request(qd, path, frozenset({"verify"}))
    dctx = DeliveryContext(req, qd, QueueFileReader(path), cfg)
    sent(dctx, req.recipients[0], "none", "2.0.0", "delivers to mailbox")
    bounce(dctx, req.recipients[1], "none", "5.1.1", "unknown user")
    assert [e["action"] for e in read_log(qd.path("trace", req.queue_id))] == \
        ["deliverable", "undeliverable"]
    assert not os.path.exists(qd.path("bounce", req.queue_id))
    assert "status=undeliverable (unknown user)" in logfile.read_text()



def test_verify_mode_defer_is_final(env):
    """A probe that meets a temporary error is reported undeliverable (4.X.Y) and not retried."""
    qd, path, cfg, logfile = env
    req = _request(qd, path, frozenset({"verify"}))
    dctx = DeliveryContext(req, qd, QueueFileReader(path), cfg)
    defer(dctx, req.recipients[0], "none", "4.4.1", "connection refused")
    entries = read_log(qd.path("trace", req.queue_id))
    assert [(e["action"], e["status"]) for e in entries] == [("undeliverable", "4.4.1")]
    assert not os.path.exists(qd.path("defer", req.queue_id))
    assert QueueFileReader(path).recipients[0].done
    assert "dsn=4.4.1, status=undeliverable (connection refused)" in logfile.read_text()


def test_verify_probe_records_to_verify_service(env, monkeypatch):
    """verify,record (a verify(8) probe): outcomes go to verify_append, not to trace/."""
    from postel.ipc import verify_client as vc
    calls = []
    monkeypatch.setattr(vc, "verify_append", lambda qdir, orig, rcpt, status, reason, **kw:
                        calls.append((orig, rcpt, status, reason)) or True)
    qd, path, cfg, logfile = env
    req = _request(qd, path, frozenset({"verify", "record"}))
    dctx = DeliveryContext(req, qd, QueueFileReader(path), cfg)
    sent(dctx, req.recipients[0], "none", "2.1.5", "250 2.1.5 Ok")
    defer(dctx, req.recipients[1], "none", "4.4.1", "connection refused")
    assert [(c[1], c[2], c[3]) for c in calls] == [
        (req.recipients[0].address, vc.RCPT_STAT_OK, "2.1.5 250 2.1.5 Ok"),
        (req.recipients[1].address, vc.RCPT_STAT_DEFER, "4.4.1 connection refused")]
    assert not os.path.exists(qd.path("trace", req.queue_id))
    assert all(r.done for r in QueueFileReader(path).recipients)

def _ctx(cfg, qd):
    return ServiceContext(cfg=cfg, service_name="test", process_name="test",
                          config_dir=cfg.config_directory, queue_directory=qd.queue_directory)


def test_agent_defers_missing_status_and_errors(env):
    qd, path, cfg, logfile = env
    req = _request(qd, path)

    async def lazy(req, dctx, ctx):
        sent(dctx, req.recipients[0], "none", "2.0.0", "ok")

    dctx = asyncio.run(handle_request(req, lazy, _ctx(cfg, qd)))
    assert dctx.status == ["sent", "deferred"]
    assert "delivery agent gave no status" in logfile.read_text()

    async def crash(req, dctx, ctx):
        raise RuntimeError("boom")

    req2 = _request(qd, path)
    req2.recipients = req2.recipients[1:]
    dctx = asyncio.run(handle_request(req2, crash, _ctx(cfg, qd)))
    assert dctx.status == ["deferred"]
    text = logfile.read_text()
    assert "internal error" in text and "boom" in text


def test_agent_missing_queue_file(env):
    qd, path, cfg, logfile = env
    req = _request(qd, path)
    os.unlink(path)
    called = []

    async def deliver(req, dctx, ctx):
        called.append(1)

    dctx = asyncio.run(handle_request(req, deliver, _ctx(cfg, qd)))
    assert not called and dctx.status == ["deferred", "deferred"]
    assert dict(dctx.reply_attrs())["status"] == 4
    assert "queue file is missing" in logfile.read_text()


def test_defer_log_appends_batched_without_fsync(env, monkeypatch):
    """qmgr's own defers: appends unsynced, paths collected for one sync later."""
    qd, path, cfg, _ = env
    req = _request(qd, path)
    dctx = DeliveryContext(req, qd, None, cfg)
    dctx.unsynced_logs = []
    fsyncs = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: fsyncs.append(fd) or real_fsync(fd))
    for rcpt in req.recipients:
        defer(dctx, rcpt, "none", "4.4.1", "delivery temporarily suspended: refused")
    assert fsyncs == []
    assert dctx.unsynced_logs == [qd.path("defer", req.queue_id)] * 2
    assert [e["recipient"] for e in read_log(qd.path("defer", req.queue_id))] == \
        ["b@example.com", "c@example.com"]
    # the default is unchanged: one fsync per append
    dctx2 = DeliveryContext(req, qd, None, cfg)
    defer(dctx2, req.recipients[0], "none", "4.4.1", "again")
    assert len(fsyncs) == 1
