"""DSN construction: logs + queue files -> multipart/report, parsed back with email."""

from __future__ import annotations

from bounce_helpers import MSG, log_entry, make_conf, parse, report_parts, write_message

from postel.bounce.logfile import parse_log, read_log
from postel.mail import dsn
from postel.mail.bounce_templates import default_templates, load_templates, parse_template_file
from postel.queue import QueueDir
from postel.queue.records import DSN_RET_FULL, DSN_RET_HDRS


def _build(qdir, cfg, qid, kind="failure", entries=None, ret=0, postmaster=False,
           envid="", limit=50000, to="alice@example.org"):
    qd = QueueDir(qdir)
    entries = entries if entries is not None else read_log(qd.path("bounce", qid))
    rep = dsn.Report(kind=kind, queue_id=qid, notice_qid="4bXXXXXXXXXXz0000001", to=to,
                     sender="alice@example.org", entries=entries, dsn_envid=envid,
                     postmaster=postmaster, now=1700000100.0)
    orig = dsn.read_original(qd.path("active", qid), dsn.returned_headers_only(rep, ret), limit)
    tpl = getattr(default_templates(), kind)
    return dsn.build_notice(rep, tpl, cfg, orig)


def test_failure_dsn_structure(tmp_path):
    _conf, qdir, cfg = make_conf(tmp_path)
    qid = write_message(qdir)
    log_entry(qdir, "bounce", qid, "bob@example.com", orig_rcpt="bobby@example.com",
              dsn_orcpt="rfc822;bobby@example.com")
    data = _build(qdir, cfg, qid)
    assert b"\r" not in data
    msg = parse(data)
    assert msg["Subject"] == "Undelivered Mail Returned to Sender"
    assert msg["To"] == "alice@example.org"
    assert "MAILER-DAEMON@example.com" in msg["From"]
    assert msg["Auto-Submitted"] == "auto-replied"
    human, per_msg, per_rcpt, returned = report_parts(msg)
    assert "This is the mail system at host mx.example.com." in human
    assert "I'm sorry to have to inform you that your message could not" in human
    assert "<bob@example.com> (expanded from <bobby@example.com>): host" in human
    assert per_msg["Reporting-MTA"] == "dns; mx.example.com"
    assert per_msg["X-Postel-Queue-ID"] == qid
    assert per_msg["X-Postel-Sender"] == "rfc822; alice@example.org"
    assert "Nov 2023" in per_msg["Arrival-Date"]
    assert per_msg["Original-Envelope-Id"] is None
    (r,) = per_rcpt
    assert r["Final-Recipient"] == "rfc822; bob@example.com"
    assert r["Original-Recipient"] == "rfc822;bobby@example.com"
    assert r["Action"] == "failed"
    assert r["Status"] == "5.1.1"
    assert r["Remote-MTA"] == "dns; mx.example.net"
    assert r["Diagnostic-Code"].startswith("smtp; 550 5.1.1 <bob@example.com>")
    assert returned.get_content_type() == "message/rfc822"
    assert returned["Content-Description"] == "Undelivered Message"
    # the returned message, byte for byte
    assert data.split(b"Content-Type: message/rfc822\n\n", 1)[1].startswith(MSG)
    inner = returned.get_payload()[0]
    assert inner["Subject"] == "hello"


def test_long_diagnostic_is_wrapped_and_unwraps(tmp_path):
    _conf, qdir, cfg = make_conf(tmp_path)
    qid = write_message(qdir)
    text = "550 5.7.1 " + " ".join(["word"] * 60)
    log_entry(qdir, "bounce", qid, "bob@example.com", diag_text=text, reason="said: " + text)
    data = _build(qdir, cfg, qid)
    assert all(len(line) <= 78 for line in data.split(b"\n")[:60])
    _h, _m, (r,), _ret = report_parts(parse(data))
    assert " ".join(r["Diagnostic-Code"].split()) == "smtp; " + text


def test_envid_and_ret_hdrs(tmp_path):
    _conf, qdir, cfg = make_conf(tmp_path)
    qid = write_message(qdir, envid="ENV-42", ret=DSN_RET_HDRS)
    log_entry(qdir, "bounce", qid, "bob@example.com")
    data = _build(qdir, cfg, qid, envid="ENV-42", ret=DSN_RET_HDRS)
    _h, per_msg, _r, returned = report_parts(parse(data))
    assert per_msg["Original-Envelope-Id"] == "ENV-42"
    assert returned.get_content_type() == "text/rfc822-headers"
    assert returned["Content-Description"] == "Undelivered Message Headers"
    body = returned.get_payload()
    assert "Subject: hello" in body and "Hello Bob" not in body


def test_size_limit_returns_headers_only(tmp_path):
    _conf, qdir, cfg = make_conf(tmp_path)
    big = MSG + b"x" * 70 + b"\n" + (b"y" * 70 + b"\n") * 1000
    qid = write_message(qdir, content=big)
    log_entry(qdir, "bounce", qid, "bob@example.com")
    data = _build(qdir, cfg, qid, limit=5000)
    _h, _m, _r, returned = report_parts(parse(data))
    assert returned.get_content_type() == "text/rfc822-headers"
    assert b"yyyy" not in data
    full = _build(qdir, cfg, qid, limit=0)          # 0: no limit
    assert report_parts(parse(full))[3].get_content_type() == "message/rfc822"


def test_delay_and_success_default_to_headers(tmp_path):
    _conf, qdir, cfg = make_conf(tmp_path)
    qid = write_message(qdir)
    e = {"recipient": "bob@example.com", "status": "4.4.1", "action": "delayed",
         "reason": "connect to mx.example.net[192.0.2.9]:25: Connection refused"}
    data = _build(qdir, cfg, qid, kind="delay", entries=[e])
    msg = parse(data)
    assert msg["Subject"] == "Delayed Mail (still being retried)"
    human, _m, (r,), returned = report_parts(msg)
    assert "THIS IS A WARNING ONLY" in human
    assert r["Action"] == "delayed" and r["Status"] == "4.4.1"
    assert r["Diagnostic-Code"].startswith("X-Postel; connect to")
    assert returned.get_content_type() == "text/rfc822-headers"
    assert returned["Content-Description"] == "Undelivered Message Headers"
    e2 = {"recipient": "bob@example.com", "status": "2.0.0", "action": "delivered",
          "reason": "delivered to maildir"}
    ok = parse(_build(qdir, cfg, qid, kind="success", entries=[e2], ret=DSN_RET_FULL))
    assert ok["Subject"] == "Successful Mail Delivery Report"
    _h, _m, (r2,), ret2 = report_parts(ok)
    assert r2["Action"] == "delivered"
    assert ret2.get_content_type() == "message/rfc822"
    assert ret2["Content-Description"] == "Message"


def test_postmaster_copy(tmp_path):
    _conf, qdir, cfg = make_conf(tmp_path)
    qid = write_message(qdir)
    log_entry(qdir, "bounce", qid, "bob@example.com")
    msg = parse(_build(qdir, cfg, qid, postmaster=True, to="postmaster"))
    assert msg["Subject"] == "Postmaster Copy: Undelivered Mail"
    assert msg["To"] == "postmaster"
    assert report_parts(msg)[3].get_content_type() == "text/rfc822-headers"


def test_missing_queue_file_still_reports(tmp_path):
    _conf, qdir, cfg = make_conf(tmp_path)
    e = {"recipient": "bob@example.com", "status": "5.0.0", "reason": "gone"}
    rep = dsn.Report(kind="failure", queue_id="4bUI252lRFz0555001", notice_qid="",
                     to="a@example.org", sender="a@example.org", entries=[e])
    orig = dsn.read_original(str(tmp_path / "nope"), False, 50000)
    assert orig.content is None
    msg = parse(dsn.build_notice(rep, default_templates().failure, cfg, orig))
    _h, per_msg, _r, returned = report_parts(msg)
    assert per_msg["Arrival-Date"] is None
    assert "Undelivered message unavailable" in returned.get_payload()


def test_eight_bit_original(tmp_path):
    _conf, qdir, cfg = make_conf(tmp_path)
    qid = write_message(qdir, content=MSG + "Grüße\n".encode())
    log_entry(qdir, "bounce", qid, "bob@example.com")
    data = _build(qdir, cfg, qid)
    msg = parse(data)
    assert msg["Content-Transfer-Encoding"] == "8bit"
    assert "Grüße".encode() in data


def test_log_parse_tolerates_torn_tail():
    data = (b"recipient=a@x\nstatus=5.0.0\n\nrecipient=b@x\nstatus=5.1.1\n\n"
            b"recipient=c@x\nstatus=4.0.0\nreas")
    entries = parse_log(data)
    assert [e["recipient"] for e in entries] == ["a@x", "b@x"]
    assert entries[1]["status"] == "5.1.1"
    assert parse_log(b"") == []
    assert parse_log(b"garbage\n\n") == []


def test_template_file(tmp_path):
    p = tmp_path / "bounce.cf"
    p.write_text("# comment\nfailure_template = <<EOF\nCharset: us-ascii\n"
                 "From: MAILER-DAEMON (Postmaster)\nSubject: Oops\n\n"
                 "Host $myhostname, waited $delay_warning_time_hours hours.\nEOF\n")
    found = parse_template_file(str(p))
    assert found["failure_template"].subject == "Oops"
    conf, qdir, cfg = make_conf(tmp_path, f"bounce_template_file = {p}\ndelay_warning_time = 4h\n")
    tpl = load_templates(cfg)
    assert tpl.failure.subject == "Oops"
    assert tpl.failure.body(cfg) == "Host mx.example.com, waited 4 hours.\n"
    assert tpl.delay.subject == "Delayed Mail (still being retried)"


def test_bad_template_file_falls_back(tmp_path):
    p = tmp_path / "bounce.cf"
    p.write_text("failure_template = <<EOF\nBogus: x\n\ntext\nEOF\n")
    conf, qdir, cfg = make_conf(tmp_path, f"bounce_template_file = {p}\n")
    assert load_templates(cfg).failure.subject == "Undelivered Mail Returned to Sender"
