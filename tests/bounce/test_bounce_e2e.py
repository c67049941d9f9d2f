"""End to end: a whole instance bounces to the sender's Maildir, and reports successes."""

from __future__ import annotations

import email
import email.policy
import glob
import os
import smtplib
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "e2e"))
from lib import Instance  # noqa: E402

SENDER = "root@localhost.localdomain"


def _maildir_messages(inst, user="root"):
    return sorted(glob.glob(os.path.join(inst.dir, "mail", user, "new", "*")))


def _wait_messages(inst, count, user="root", timeout=20.0):
    """_wait_messages - poll the Maildir until count messages are there."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = _maildir_messages(inst, user)
        if len(found) >= count:
            return found
        time.sleep(0.1)
    pytest.fail(f"expected {count} messages in {user}'s Maildir, log:\n{inst.log_text()[-3000:]}")


def _parse(path):
    with open(path, "rb") as fp:
        return email.message_from_binary_file(fp, policy=email.policy.compat32)


@pytest.mark.skipif(os.geteuid() != 0, reason="local delivery to root's Maildir needs root")
def test_error_transport_bounces_to_sender_maildir(tmp_path):
    with Instance(tmp_path, extra_main={"default_transport": "error:remote delivery disabled"}) as inst:
        inst.start()
        body = b"Subject: test bounce\r\nFrom: " + SENDER.encode() + b"\r\n\r\nhello\r\n"
        with smtplib.SMTP("127.0.0.1", inst.smtp_port) as s:
            s.ehlo()
            s.sendmail(SENDER, ["someone@remote.example"], body)
            # NOTIFY=NEVER: no notification at all
            s.sendmail(SENDER, ["never@remote.example"], body, rcpt_options=["NOTIFY=NEVER"])
            # NOTIFY=SUCCESS to a local mailbox: a success notice
            s.sendmail(SENDER, [SENDER], body, mail_options=["ENVID=E2E-1"],
                       rcpt_options=["NOTIFY=SUCCESS"])
        inst.wait_log(r"sender non-delivery notification", timeout=20)
        inst.wait_log(r"sender delivery status notification", timeout=20)
        # the original (to root) + bounce + success notice
        paths = _wait_messages(inst, 3)
        msgs = [_parse(p) for p in paths]
        reports = {m["Subject"]: m for m in msgs if m.get_content_type() == "multipart/report"}
        assert set(reports) == {"Undelivered Mail Returned to Sender",
                                "Successful Mail Delivery Report"}
        bounce = reports["Undelivered Mail Returned to Sender"]
        assert bounce["Return-Path"] == "<>"
        human, status, returned = bounce.get_payload()
        assert "<someone@remote.example>: remote delivery disabled" in \
            human.get_payload(decode=True).decode()
        per_rcpt = status.get_payload()[1:]
        assert [b["Final-Recipient"] for b in per_rcpt] == ["rfc822; someone@remote.example"]
        assert per_rcpt[0]["Action"] == "failed" and per_rcpt[0]["Status"] == "5.0.0"
        assert returned.get_payload()[0]["Subject"] == "test bounce"
        ok = reports["Successful Mail Delivery Report"]
        _h, ok_status, _ret = ok.get_payload()
        assert ok_status.get_payload()[0]["Original-Envelope-Id"] == "E2E-1"
        assert ok_status.get_payload()[1]["Action"] == "delivered"
        assert inst.count_log(r"never@remote\.example.*status=bounced") == 1
        assert inst.count_log(r"sender non-delivery notification") == 1
