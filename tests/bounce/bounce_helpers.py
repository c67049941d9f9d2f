"""Helpers for the bounce tests: instances, queue files, logs, parsing DSNs."""

from __future__ import annotations

import email
import email.policy

from postel.bounce.logfile import append_entry
from postel.config import load_config
from postel.queue import Envelope, QueueDir, QueueFileWriter, Recipient

MSG = (b"Received: from client.example.org by mx.example.com\n"
       b"From: Alice <alice@example.org>\nTo: bob@example.com\nSubject: hello\n"
       b"Message-ID: <m1@example.org>\n\nHello Bob,\nsecond line\n")


def make_conf(tmp_path, extra: str = ""):
    """make_conf - a config dir and queue dir; returns (conf_dir, queue_dir, cfg)."""
    qdir = tmp_path / "queue"
    conf = tmp_path / "conf"
    conf.mkdir(exist_ok=True)
    (conf / "main.cf").write_text(
        f"queue_directory = {qdir}\nmyhostname = mx.example.com\nmydomain = example.com\n"
        f"myorigin = example.com\n" + extra)
    QueueDir(str(qdir)).create_dirs()
    return str(conf), str(qdir), load_config(str(conf))


def write_message(qdir: str, sender="alice@example.org", rcpts=("bob@example.com",),
                  content=MSG, queue="active", envid="", ret=0, notify=0, attrs=None) -> str:
    """write_message - a queue file; returns its queue ID."""
    qd = QueueDir(qdir)
    w = QueueFileWriter(qd, queue)
    env = Envelope(sender=sender, time=1700000000.0, attrs=dict(attrs or {}),
                   dsn_envid=envid, dsn_ret=ret,
                   recipients=[Recipient(r, orig_rcpt=r, dsn_notify=notify) for r in rcpts])
    w.write_envelope(env)
    w.write_content(content)
    w.commit_sync()
    return w.qid


def log_entry(qdir: str, log: str, qid: str, rcpt: str, **kw) -> None:
    """log_entry - append one per-message log entry."""
    entry = {"recipient": rcpt, "orig_rcpt": kw.pop("orig_rcpt", rcpt), "offset": kw.pop("offset", 0),
             "dsn_orcpt": kw.pop("dsn_orcpt", ""), "dsn_notify": kw.pop("dsn_notify", 0),
             "status": kw.pop("status", "5.1.1"), "action": kw.pop("action", "failed"),
             "reason": kw.pop("reason", f"host mx.example.net[192.0.2.9] said: 550 5.1.1 <{rcpt}>: "
                                        "Recipient address rejected: User unknown (in reply "
                                        "to RCPT TO command)"),
             "diag_type": kw.pop("diag_type", "smtp"),
             "diag_text": kw.pop("diag_text", f"550 5.1.1 <{rcpt}>: Recipient address rejected"),
             "mta_type": "dns", "mta_name": kw.pop("mta_name", "mx.example.net"), "when": 1700000001.0}
    entry.update(kw)
    append_entry(QueueDir(qdir).path(log, qid), entry)


def parse(data: bytes) -> email.message.Message:
    """parse - a DSN parsed by the standard library."""
    return email.message_from_bytes(data, policy=email.policy.compat32)


def report_parts(msg):
    """report_parts - (human text, per-message fields, per-recipient field blocks, returned part)."""
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    human, status, returned = msg.get_payload()
    blocks = status.get_payload()
    return human.get_payload(decode=True).decode(), blocks[0], blocks[1:], returned
