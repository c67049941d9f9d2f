"""bounce(8) served standalone with a real cleanup(8) in the same queue directory."""

from __future__ import annotations

import asyncio
import os

import pytest
from bounce_helpers import MSG, log_entry, make_conf, parse, report_parts, write_message

from postel.bounce import service as bounce_service
from postel.cleanup import service as cleanup_service
from postel.ipc import bounce_client
from postel.ipc.skeleton import run_standalone
from postel.queue import QueueDir, QueueFileReader
from postel.queue.records import DSN_NOTIFY_DELAY, DSN_NOTIFY_NEVER, DSN_NOTIFY_SUCCESS


class FakeRewrite:
    """FakeRewrite - trivial-rewrite's local rule without the service."""

    async def rewrite_internal(self, rule, addr):
        return addr if "@" in addr else f"{addr}@example.com"


@pytest.fixture
def instance(tmp_path):
    """instance - cleanup on public/cleanup and bounce/defer/trace; yields start(extra)."""
    servers = []

    def start(extra=""):
        conf, qdir, _cfg = make_conf(tmp_path, extra)

        def cleanup_init(ctx):
            ctx.state["cleanup"] = cleanup_service.CleanupService(
                ctx.cfg, ctx.queue_directory, rewrite_client=FakeRewrite())
        servers.append(run_standalone(
            "cleanup", [f"unix:{os.path.join(qdir, 'public', 'cleanup')}"],
            handler=cleanup_service.serve_client, config_dir=conf, post_init=cleanup_init))
        for name in ("bounce", "defer", "trace"):
            servers.append(run_standalone(
                name, [f"unix:{os.path.join(qdir, 'private', name)}"],
                handler=bounce_service.serve_client, config_dir=conf,
                post_init=bounce_service.post_init))
        return qdir
    yield start
    for s in reversed(servers):          # bounce first: it holds cleanup connections
        svc = s.ctx.state.get("bounce")
        if svc is not None and s.ctx.loop is not None:
            asyncio.run_coroutine_threadsafe(svc.cleanup.close(), s.ctx.loop).result(5)
        s.stop()


def notices(qdir):
    """notices - (sender, [recipients], content bytes) of every file in incoming/."""
    qd = QueueDir(qdir)
    out = []
    for qid in sorted(qd.scan("incoming")):
        with QueueFileReader(qd.path("incoming", qid), writable=False) as qf:
            out.append((qf.envelope.sender, [r.address for r in qf.recipients],
                        qf.read_content()))
    return out


def run(coro):
    """run - one client call in a fresh loop; its pooled connections are closed after."""
    async def main():
        try:
            return await coro
        finally:
            await bounce_client.close_clients(QDIRS[-1])
    return asyncio.run(main())


QDIRS: list[str] = []


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch, tmp_path):
    monkeypatch.setattr(bounce_client, "RETRY_FOR", 0.2)
    monkeypatch.setattr(bounce_service, "CLEANUP_RETRY_FOR", 0.2)
    QDIRS.append(str(tmp_path / "queue"))


def test_flush_sends_dsn_and_removes_log(instance):
    qdir = instance()
    qid = write_message(qdir, rcpts=("bob@example.com", "carol@example.com"))
    log_entry(qdir, "bounce", qid, "bob@example.com")
    log_entry(qdir, "bounce", qid, "carol@example.com", status="5.2.2", offset=7)
    status = run(bounce_client.bounce_flush(qdir, qid, "active", "alice@example.org"))
    assert status == 0
    (sender, rcpts, content), = notices(qdir)
    assert sender == ""
    assert rcpts == ["alice@example.org"]
    msg = parse(content)
    assert msg["Subject"] == "Undelivered Mail Returned to Sender"
    assert msg["Date"] and msg["Message-Id"]
    _h, per_msg, per_rcpt, returned = report_parts(msg)
    assert per_msg["X-Postel-Queue-ID"] == qid
    assert [r["Final-Recipient"] for r in per_rcpt] == ["rfc822; bob@example.com",
                                                         "rfc822; carol@example.com"]
    assert [r["Status"] for r in per_rcpt] == ["5.1.1", "5.2.2"]
    assert returned.get_content_type() == "message/rfc822"
    assert MSG in content
    assert not os.path.exists(QueueDir(qdir).path("bounce", qid))
    # nothing left to report: a second flush is a no-op
    assert run(bounce_client.bounce_flush(qdir, qid, "active", "alice@example.org")) == 0
    assert len(notices(qdir)) == 1


def test_null_sender_never_gets_a_bounce(instance):
    qdir = instance()
    qid = write_message(qdir, sender="")
    log_entry(qdir, "bounce", qid, "bob@example.com")
    assert run(bounce_client.bounce_flush(qdir, qid, "active", "")) == 0
    assert notices(qdir) == []
    assert not os.path.exists(QueueDir(qdir).path("bounce", qid))


def test_double_bounce_to_postmaster(instance):
    qdir = instance("notify_classes = resource, software, 2bounce\n")
    qid = write_message(qdir, sender="")
    log_entry(qdir, "bounce", qid, "bob@example.com")
    assert run(bounce_client.bounce_flush(qdir, qid, "active", "")) == 0
    (sender, rcpts, content), = notices(qdir)
    assert sender == "double-bounce@example.com"
    assert rcpts == ["postmaster@example.com"]
    msg = parse(content)
    assert msg["Subject"] == "Postmaster Copy: Undelivered Mail"
    assert report_parts(msg)[3].get_content_type() == "text/rfc822-headers"


def test_no_triple_bounce(instance):
    qdir = instance("notify_classes = 2bounce, bounce\n")
    qid = write_message(qdir, sender="double-bounce@example.com")
    log_entry(qdir, "bounce", qid, "postmaster@example.com")
    assert run(bounce_client.bounce_flush(qdir, qid, "active", "double-bounce@example.com")) == 0
    assert notices(qdir) == []


def test_bounce_notify_class_copies_postmaster(instance):
    qdir = instance("notify_classes = bounce\nbounce_notice_recipient = hostmaster\n")
    qid = write_message(qdir)
    log_entry(qdir, "bounce", qid, "bob@example.com")
    assert run(bounce_client.bounce_flush(qdir, qid, "active", "alice@example.org")) == 0
    got = {tuple(r): s for s, r, _c in notices(qdir)}
    assert got == {("alice@example.org",): "", ("hostmaster@example.com",): "double-bounce@example.com"}


def test_notify_never_and_envid(instance):
    qdir = instance()
    qid = write_message(qdir, rcpts=("bob@example.com", "carol@example.com"), envid="XYZ")
    log_entry(qdir, "bounce", qid, "bob@example.com", dsn_notify=DSN_NOTIFY_NEVER)
    log_entry(qdir, "bounce", qid, "carol@example.com", dsn_notify=DSN_NOTIFY_SUCCESS, offset=3)
    assert run(bounce_client.bounce_flush(qdir, qid, "active", "alice@example.org",
                                          dsn_envid="XYZ")) == 0
    assert notices(qdir) == []          # neither asked for FAILURE notices
    qid2 = write_message(qdir, envid="XYZ")
    log_entry(qdir, "bounce", qid2, "bob@example.com", dsn_notify=DSN_NOTIFY_NEVER)
    log_entry(qdir, "bounce", qid2, "dave@example.com", offset=9)
    assert run(bounce_client.bounce_flush(qdir, qid2, "active", "alice@example.org",
                                          dsn_envid="XYZ", dsn_ret=2)) == 0
    (_s, _r, content), = notices(qdir)
    _h, per_msg, per_rcpt, returned = report_parts(parse(content))
    assert per_msg["Original-Envelope-Id"] == "XYZ"
    assert [r["Final-Recipient"] for r in per_rcpt] == ["rfc822; dave@example.com"]
    assert returned.get_content_type() == "text/rfc822-headers"


def test_expire_turns_defer_log_into_failures(instance):
    qdir = instance()
    qid = write_message(qdir, queue="deferred")
    for _ in range(3):                 # one entry per attempt: reported once
        log_entry(qdir, "defer", qid, "bob@example.com", status="4.4.1", action="delayed",
                  reason="connect to mx.example.net[192.0.2.9]:25: Connection refused",
                  diag_type="", diag_text="")
    assert run(bounce_client.bounce_expire(qdir, qid, "deferred", "alice@example.org")) == 0
    (_s, rcpts, content), = notices(qdir)
    assert rcpts == ["alice@example.org"]
    _h, _m, per_rcpt, _ret = report_parts(parse(content))
    assert len(per_rcpt) == 1
    assert per_rcpt[0]["Status"] == "5.4.1" and per_rcpt[0]["Action"] == "failed"
    assert not os.path.exists(QueueDir(qdir).path("defer", qid))


def test_warn_keeps_defer_log(instance):
    qdir = instance("delay_warning_time = 4h\nmaximal_queue_lifetime = 2d\n")
    qid = write_message(qdir, queue="deferred", rcpts=("bob@example.com", "eve@example.com"))
    log_entry(qdir, "defer", qid, "bob@example.com", status="4.4.1", action="delayed")
    log_entry(qdir, "defer", qid, "eve@example.com", status="4.4.1", action="delayed",
              dsn_notify=4, offset=5)     # FAILURE only: no delay warning
    assert run(bounce_client.bounce_warn(qdir, qid, "deferred", "alice@example.org")) == 0
    (_s, _r, content), = notices(qdir)
    msg = parse(content)
    assert msg["Subject"] == "Delayed Mail (still being retried)"
    human, _m, per_rcpt, returned = report_parts(msg)
    assert "for more than 4 hour(s)" in human and "until it is 2 day(s) old" in human
    assert [r["Final-Recipient"] for r in per_rcpt] == ["rfc822; bob@example.com"]
    assert per_rcpt[0]["Action"] == "delayed"
    assert "Nov 2023" in per_rcpt[0]["Will-Retry-Until"]
    assert returned.get_content_type() == "text/rfc822-headers"
    assert os.path.exists(QueueDir(qdir).path("defer", qid))


def test_trace_success_and_verify(instance):
    qdir = instance()
    qid = write_message(qdir, rcpts=("bob@example.com", "carol@example.com"))
    log_entry(qdir, "trace", qid, "bob@example.com", status="2.0.0", action="delivered",
              dsn_notify=DSN_NOTIFY_SUCCESS | DSN_NOTIFY_DELAY, reason="delivered to maildir",
              diag_type="", mta_name="")
    log_entry(qdir, "trace", qid, "carol@example.com", status="2.0.0", action="relayed",
              reason="250 ok", offset=4)   # no SUCCESS: not in a success notice
    assert run(bounce_client.trace_flush(qdir, qid, "active", "alice@example.org")) == 0
    (_s, _r, content), = notices(qdir)
    msg = parse(content)
    assert msg["Subject"] == "Successful Mail Delivery Report"
    _h, _m, per_rcpt, _ret = report_parts(msg)
    assert [(r["Final-Recipient"], r["Action"]) for r in per_rcpt] == \
        [("rfc822; bob@example.com", "delivered")]
    assert not os.path.exists(QueueDir(qdir).path("trace", qid))

    qid2 = write_message(qdir)
    log_entry(qdir, "trace", qid2, "bob@example.com", status="2.0.0", action="deliverable",
              reason="delivery via local: delivers to mailbox", diag_type="", mta_name="")
    log_entry(qdir, "trace", qid2, "nobody@example.com", status="5.1.1",
              action="undeliverable", reason="unknown user: \"nobody\"", offset=2,
              diag_type="", mta_name="")
    assert run(bounce_client.trace_flush(qdir, qid2, "active", "alice@example.org",
                                         flags="verify")) == 0
    report = [parse(c) for _s, _r, c in notices(qdir) if b"Mail Delivery Status Report" in c]
    assert len(report) == 1
    human, _m, per_rcpt, _ret = report_parts(report[0])
    assert "<bob@example.com>: delivery via local: delivers to mailbox" in human
    assert [r["Action"] for r in per_rcpt] == ["deliverable", "undeliverable"]


def test_append_and_bad_requests(instance):
    qdir = instance()
    qid = write_message(qdir)
    st = run(bounce_client.bounce_append(qdir, "defer", qid,
                                         {"recipient": "bob@example.com", "status": "4.0.0",
                                          "action": "delayed", "reason": "try\nlater"}))
    assert st == 0
    from postel.bounce.logfile import read_log
    (e,) = read_log(QueueDir(qdir).path("defer", qid))
    assert e["reason"] == "try later" and e["status"] == "4.0.0"
    assert run(bounce_client.bounce_flush(qdir, "../etc", "active", "a@b")) == 4
    assert run(bounce_client.bounce_flush(qdir, qid, "nonsense", "a@b")) == 4


def test_cleanup_down_keeps_log(tmp_path):
    conf, qdir, _cfg = make_conf(tmp_path)
    srv = run_standalone("bounce", [f"unix:{os.path.join(qdir, 'private', 'bounce')}"],
                         handler=bounce_service.serve_client, config_dir=conf,
                         post_init=bounce_service.post_init)
    try:
        qid = write_message(qdir)
        log_entry(qdir, "bounce", qid, "bob@example.com")
        # no cleanup listening: bounce retries briefly, then answers status 4
        assert run(bounce_client.bounce_flush(qdir, qid, "active", "alice@example.org")) == 4
        assert os.path.exists(QueueDir(qdir).path("bounce", qid))
    finally:
        srv.stop()


def test_service_unavailable_is_status_4(tmp_path):
    _conf, qdir, _cfg = make_conf(tmp_path)
    assert run(bounce_client.trace_flush(qdir, "4bUI252lRFz0555001", "active", "a@b")) == 4
