"""pickup(8): mail that cleanup rejects with 5XX is returned to the sender as an RFC 3464 notice."""

from __future__ import annotations

import asyncio
import email
import email.policy
import os

from postel import log
from postel.config import load_config
from postel.ipc.cleanup_client import CleanupResult
from postel.pickup.service import DONE, RETRY_LATER, Pickup
from postel.queue import QueueDir, QueueFileWriter
from postel.queue.envelope import Envelope, Recipient
from postel.queue.records import DSN_NOTIFY_NEVER, DSN_RET_HDRS

MSG = b"From: joe@example.com\nSubject: reject-me\n\nbody line\n"


class FakeMsg:
    """One open cleanup stream; its verdict is set by the fake."""

    def __init__(self, fake: FakeCleanup, verdict: CleanupResult, qid: str) -> None:
        self.fake, self.verdict, self.queue_id = fake, verdict, qid
        self.sender, self.rcpts, self.data = None, None, b""

    async def envelope(self, sender, rcpts, attrs):
        self.sender, self.rcpts = sender, list(rcpts)

    async def write(self, data: bytes):
        self.data += data

    async def abort(self):
        pass

    async def close(self) -> CleanupResult:
        self.fake.closed.append(self)
        return self.verdict


class FakeCleanup:
    """Answers each open() with the next verdict; None means "service unavailable"."""

    def __init__(self, *verdicts) -> None:
        self.verdicts = list(verdicts)
        self.closed: list[FakeMsg] = []

    async def open(self, flags: str) -> FakeMsg:
        verdict = self.verdicts.pop(0)
        if verdict is None:
            raise OSError("cleanup is down")
        return FakeMsg(self, verdict, f"QID{len(self.closed) + 1}")


REJECT = CleanupResult(550, "5.7.1", "not wanted here")


def _setup(tmp_path, sender="joe@example.com", notify=0, ret=0):
    (tmp_path / "main.cf").write_text(f"queue_directory = {tmp_path}/queue\n"
                                      f"maillog_file = {tmp_path}/maillog\n"
                                      "myhostname = mail.example.com\n")
    cfg = load_config(str(tmp_path))
    log.init("pickup", maillog_file=f"{tmp_path}/maillog", use_syslog=False)
    qd = QueueDir(f"{tmp_path}/queue")
    qd.create_dirs()
    w = QueueFileWriter(qd, "maildrop")
    w.write_envelope(Envelope(sender, [Recipient("a@example.net", dsn_notify=notify),
                                       Recipient("b@example.net")], dsn_ret=ret))
    w.write_content(MSG)
    w.commit_sync()
    return cfg, qd, w.qid


def test_rejected_mail_returned_to_sender(tmp_path):
    cfg, qd, qid = _setup(tmp_path)
    fake = FakeCleanup(REJECT, CleanupResult(0, "2.0.0", "", "NOTICE"))
    pk = Pickup(cfg, qd.queue_directory, cleanup=fake)
    assert asyncio.run(pk.pickup_file(qid)) == DONE
    assert not os.path.exists(qd.path("maildrop", qid))
    original, notice = fake.closed
    assert notice.sender == "" and notice.rcpts == [("joe@example.com", "", 0)]
    msg = email.message_from_bytes(notice.data, policy=email.policy.compat32)
    assert msg.get_content_type() == "multipart/report"
    assert msg["Subject"] == "Undelivered Mail Returned to Sender"
    human, status, returned = msg.get_payload()
    text = human.get_payload(decode=True).decode()
    assert "<a@example.net>: message rejected by cleanup: not wanted here" in text
    per_rcpt = status.get_payload()[1:]
    assert [(b["Final-Recipient"], b["Action"], b["Status"]) for b in per_rcpt] == \
        [("rfc822; a@example.net", "failed", "5.7.1"), ("rfc822; b@example.net", "failed", "5.7.1")]
    assert returned.get_payload()[0]["Subject"] == "reject-me"
    log = (tmp_path / "maillog").read_text()
    assert "message rejected by cleanup: 550 5.7.1 not wanted here; returned to sender" in log
    assert f"{original.queue_id}: sender non-delivery notification: NOTICE" in log


def test_notify_never_and_headers_only(tmp_path):
    cfg, qd, qid = _setup(tmp_path, notify=DSN_NOTIFY_NEVER, ret=DSN_RET_HDRS)
    fake = FakeCleanup(REJECT, CleanupResult(0, "2.0.0", "", "NOTICE"))
    assert asyncio.run(Pickup(cfg, qd.queue_directory, cleanup=fake).pickup_file(qid)) == DONE
    msg = email.message_from_bytes(fake.closed[1].data, policy=email.policy.compat32)
    _human, status, returned = msg.get_payload()
    assert [b["Final-Recipient"] for b in status.get_payload()[1:]] == ["rfc822; b@example.net"]
    assert returned.get_content_type() == "text/rfc822-headers"
    assert b"body line" not in fake.closed[1].data


def test_null_sender_gets_no_notice(tmp_path):
    cfg, qd, qid = _setup(tmp_path, sender="")
    fake = FakeCleanup(REJECT)
    assert asyncio.run(Pickup(cfg, qd.queue_directory, cleanup=fake).pickup_file(qid)) == DONE
    assert len(fake.closed) == 1 and not os.path.exists(qd.path("maildrop", qid))


def test_notice_not_queued_keeps_the_file(tmp_path):
    cfg, qd, qid = _setup(tmp_path)
    fake = FakeCleanup(REJECT, None)
    assert asyncio.run(Pickup(cfg, qd.queue_directory, cleanup=fake).pickup_file(qid)) == \
        RETRY_LATER
    assert os.path.exists(qd.path("maildrop", qid))
