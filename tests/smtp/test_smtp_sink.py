"""smtp(8) client against Postfix's smtp-sink: bytes, replies, reuse, 8BITMIME, DSN."""

from __future__ import annotations

import asyncio

import pytest
from smtp_harness import Env, Sink, free_port, split_dump

from peerlib import require_peer
from postel.deliver.status import read_log
from postel.queue.envelope import Recipient
from postel.queue.records import DSN_NOTIFY_FAILURE, DSN_NOTIFY_SUCCESS

MSG = (b"From: sender@example.org\nTo: rcpt@example.com\nSubject: test\n\n"
       b"line one\n.starts with a dot\n..two dots\n.\nlast line\n")


@pytest.fixture
def sink_path():
    return require_peer("smtp-sink")


def test_smtp_sink_delivers_bytes(tmp_path, sink_path):
    env = Env(tmp_path)
    sink = Sink(sink_path)
    try:
        qid = env.queue(MSG, ["rcpt@example.com", "other@example.com"])
        dctx = env.deliver(env.request(qid, f"[127.0.0.1]:{sink.port}"))
        meta, body = split_dump(sink.messages(1)[0])
    finally:
        sink.stop()
    assert body == MSG
    assert meta["X-Mail-Args"][0].startswith("<sender@example.org>")
    assert [a.split()[0] for a in meta["X-Rcpt-Args"]] == ["<rcpt@example.com>",
                                                          "<other@example.com>"]
    assert meta["X-Helo-Args"] == ["client.test.example"]
    assert dctx.status == ["sent", "sent"]
    assert env.done(qid) == [True, True]
    text = env.log_text()
    assert f"{qid}: to=<rcpt@example.com>, relay=127.0.0.1[127.0.0.1]:{sink.port}, delay=" in text
    assert "dsn=2.0.0, status=sent (250 2.0.0 Ok)" in text


def test_smtp_sink_rcpt_hard_reject_bounces(tmp_path, sink_path):
    env = Env(tmp_path)
    sink = Sink(sink_path, "-f", "RCPT")
    try:
        qid = env.queue(MSG, ["rcpt@example.com"])
        dctx = env.deliver(env.request(qid, f"[127.0.0.1]:{sink.port}"))
    finally:
        sink.stop()
    assert dctx.status == ["bounced"]
    assert env.done(qid) == [True]
    text = env.log_text()
    assert "status=bounced (host 127.0.0.1[127.0.0.1] said: 500 5.3.0 Error: command failed " \
           "(in reply to RCPT TO command))" in text
    entries = read_log(env.qd.path("bounce", qid))
    assert entries[0]["recipient"] == "rcpt@example.com"
    assert entries[0]["diag_text"] == "500 5.3.0 Error: command failed"


def test_smtp_sink_rcpt_soft_reject_defers(tmp_path, sink_path):
    env = Env(tmp_path)
    sink = Sink(sink_path, "-r", "RCPT")
    try:
        qid = env.queue(MSG, ["rcpt@example.com"])
        dctx = env.deliver(env.request(qid, f"[127.0.0.1]:{sink.port}"))
    finally:
        sink.stop()
    assert dctx.status == ["deferred"]
    assert env.done(qid) == [False]
    assert not dctx.site_dead
    assert "dsn=4.3.0, status=deferred (host 127.0.0.1[127.0.0.1] said: 450 4.3.0 Error: " \
           "command failed (in reply to RCPT TO command))" in env.log_text()


def test_smtp_sink_mail_hard_reject_bounces_all(tmp_path, sink_path):
    env = Env(tmp_path)
    sink = Sink(sink_path, "-f", "MAIL")
    try:
        qid = env.queue(MSG, ["a@example.com", "b@example.com"])
        dctx = env.deliver(env.request(qid, f"[127.0.0.1]:{sink.port}"))
    finally:
        sink.stop()
    assert dctx.status == ["bounced", "bounced"]
    assert "(in reply to MAIL FROM command)" in env.log_text()


def test_smtp_sink_lost_connection_after_dot(tmp_path, sink_path):
    env = Env(tmp_path)
    sink = Sink(sink_path, "-q", ".")
    try:
        qid = env.queue(MSG, ["rcpt@example.com"])
        dctx = env.deliver(env.request(qid, f"[127.0.0.1]:{sink.port}"))
    finally:
        sink.stop()
    assert dctx.status == ["deferred"]
    assert ("status=deferred (lost connection with 127.0.0.1[127.0.0.1] while sending end of "
            "data -- message may be sent more than once)") in env.log_text()


def test_smtp_connection_refused_site_dead(tmp_path):
    env = Env(tmp_path)
    port = free_port()
    qid = env.queue(MSG, ["rcpt@example.com"])
    dctx = env.deliver(env.request(qid, f"[127.0.0.1]:{port}"))
    assert dctx.status == ["deferred"]
    assert dctx.site_dead
    text = env.log_text()
    assert f"connect to 127.0.0.1[127.0.0.1]:{port}: Connection refused" in text
    assert "relay=none" in text and "dsn=4.4.1, status=deferred" in text
    assert ("site_dead", 1) in dctx.reply_attrs()


def test_smtp_fallback_relay_after_refused(tmp_path, sink_path):
    sink = Sink(sink_path)
    env = Env(tmp_path, {"smtp_fallback_relay": f"[127.0.0.1]:{sink.port}"})
    try:
        qid = env.queue(MSG, ["rcpt@example.com"])
        dctx = env.deliver(env.request(qid, f"[127.0.0.1]:{free_port()}"))
        assert len(sink.messages(1)) == 1
    finally:
        sink.stop()
    assert dctx.status == ["sent"] and not dctx.site_dead


def test_smtp_connection_reuse_one_session(tmp_path, sink_path):
    """smtp-sink -n 1 exits after one session: three messages prove one connection."""
    env = Env(tmp_path)
    sink = Sink(sink_path, "-n", "1")
    reqs = [env.request(env.queue(MSG + b"n%d\n" % i, [f"r{i}@example.com"]),
                        f"[127.0.0.1]:{sink.port}") for i in range(3)]

    async def run():
        client = env.client()
        out = [await env.adeliver(client, r) for r in reqs]
        stats = (client.cache.stored, client.cache.reused)
        await client.cache.close_all()
        return out, stats

    try:
        results, (stored, reused) = asyncio.run(run())
        bodies = sorted(split_dump(m)[1] for m in sink.messages(3))
    finally:
        sink.stop()
    assert [d.status for d in results] == [["sent"]] * 3
    assert reused == 2 and stored == 3
    assert bodies == sorted(MSG + b"n%d\n" % i for i in range(3))


def test_smtp_no_cache_when_disabled(tmp_path, sink_path):
    env = Env(tmp_path, {"smtp_connection_cache_on_demand": "no"})
    sink = Sink(sink_path)
    reqs = [env.request(env.queue(MSG, ["r@example.com"]), f"[127.0.0.1]:{sink.port}")
            for _ in range(2)]

    async def run():
        client = env.client()
        for r in reqs:
            await env.adeliver(client, r)
        return client.cache.reused, len(client.cache)

    try:
        assert asyncio.run(run()) == (0, 0)
    finally:
        sink.stop()


EIGHTBIT = (b"From: sender@example.org\nSubject: caf\xc3\xa9?\nMIME-Version: 1.0\n"
            b"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n"
            b"caf\xc3\xa9 cr\xc3\xa8me\n.dot\n")


def test_smtp_8bit_to_server_without_8bitmime_becomes_qp(tmp_path, sink_path):
    env = Env(tmp_path)
    sink = Sink(sink_path, "-8")
    try:
        qid = env.queue(EIGHTBIT, ["rcpt@example.com"])
        dctx = env.deliver(env.request(qid, f"[127.0.0.1]:{sink.port}", encoding="8bit"))
        meta, body = split_dump(sink.messages(1)[0])
    finally:
        sink.stop()
    assert dctx.status == ["sent"]
    assert "BODY=8BITMIME" not in meta["X-Mail-Args"][0]
    assert body == (b"From: sender@example.org\nSubject: caf\xc3\xa9?\nMIME-Version: 1.0\n"
                    b"Content-Type: text/plain; charset=utf-8\n"
                    b"Content-Transfer-Encoding: quoted-printable\n\n"
                    b"caf=C3=A9 cr=C3=A8me\n.dot\n")


def test_smtp_8bit_passes_with_8bitmime(tmp_path, sink_path):
    env = Env(tmp_path)
    sink = Sink(sink_path)
    try:
        qid = env.queue(EIGHTBIT, ["rcpt@example.com"])
        env.deliver(env.request(qid, f"[127.0.0.1]:{sink.port}", encoding="8bit"))
        meta, body = split_dump(sink.messages(1)[0])
    finally:
        sink.stop()
    assert "BODY=8BITMIME" in meta["X-Mail-Args"][0]
    assert body == EIGHTBIT


def test_smtp_dsn_pass_through(tmp_path, sink_path):
    env = Env(tmp_path)
    sink = Sink(sink_path)
    try:
        r = Recipient("rcpt@example.com", orig_rcpt="alias@example.com",
                      dsn_notify=DSN_NOTIFY_SUCCESS | DSN_NOTIFY_FAILURE,
                      dsn_orcpt="rfc822;alias+x@example.com")
        qid = env.queue(MSG, [r], dsn_envid="env id=1", dsn_ret=2)
        dctx = env.deliver(env.request(qid, f"[127.0.0.1]:{sink.port}"))
        meta, _ = split_dump(sink.messages(1)[0])
    finally:
        sink.stop()
    assert dctx.status == ["sent"]
    mail = meta["X-Mail-Args"][0]
    assert "RET=HDRS" in mail and "ENVID=env+20id+3D1" in mail
    rcpt = meta["X-Rcpt-Args"][0]
    assert "NOTIFY=SUCCESS,FAILURE" in rcpt and "ORCPT=rfc822;alias+2Bx@example.com" in rcpt
    # The DSN-aware server reports success itself: no success notice here.
    assert read_log(env.qd.path("trace", qid)) == []


def test_smtp_no_dsn_server_gets_relayed_notice(tmp_path, sink_path):
    env = Env(tmp_path)
    sink = Sink(sink_path, "-N")
    try:
        r = Recipient("rcpt@example.com", dsn_notify=DSN_NOTIFY_SUCCESS)
        qid = env.queue(MSG, [r], dsn_ret=1)
        env.deliver(env.request(qid, f"[127.0.0.1]:{sink.port}"))
        meta, _ = split_dump(sink.messages(1)[0])
    finally:
        sink.stop()
    assert "RET=" not in meta["X-Mail-Args"][0]
    assert "NOTIFY" not in meta["X-Rcpt-Args"][0]
    entries = read_log(env.qd.path("trace", qid))
    assert [e["action"] for e in entries] == ["relayed"]
