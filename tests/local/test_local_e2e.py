"""End to end: smtplib -> smtpd -> cleanup -> qmgr -> local -> DIR/mail/anyone/new/ (self-contained instance)."""

from __future__ import annotations

import os
import smtplib
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))

from lib import Instance  # noqa: E402

BODY = b"From: s@example.com\r\nTo: anyone@localhost\r\nSubject: e2e local\r\n\r\nFrom the body\r\nbye\r\n"


def _wait_files(path: str, count: int, timeout: float = 20.0) -> list[str]:
    """_wait_files - the files in path once there are count of them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.isdir(path) and len(os.listdir(path)) >= count:
            return sorted(os.listdir(path))
        time.sleep(0.1)
    raise AssertionError(f"{path}: no {count} files")


def test_smtp_to_anyone_at_localhost_lands_in_maildir(tmp_path):
    with Instance(tmp_path) as inst:
        inst.start()
        with smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=20) as s:
            s.sendmail("s@example.com", ["anyone@localhost"], BODY)
        new = os.path.join(inst.dir, "mail", "anyone", "new")
        (name,) = _wait_files(new, 1)
        data = open(os.path.join(new, name), "rb").read()
        inst.wait_log(r"to=<anyone@localhost>, relay=local, .*status=sent \(delivered to maildir\)")
    head, _, body = data.partition(b"\n\n")
    lines = head.split(b"\n")
    assert lines[0] == b"Return-Path: <s@example.com>"
    assert lines[1] == b"X-Original-To: anyone@localhost"
    assert lines[2] == b"Delivered-To: anyone@localhost"
    assert lines[3].startswith(b"Received: from ")
    assert b"Subject: e2e local" in head
    assert body == b"From the body\nbye\n"


def test_alias_forward_and_owner_through_cleanup(tmp_path):
    aliases = tmp_path / "inst-aliases"
    aliases.write_text("team: anyone, other\nowner-team: anyone\nloop1: loop2\nloop2: loop1\n")
    with Instance(tmp_path / "i", extra_main={"alias_maps": f"lmdb:{aliases}"}) as inst:
        assert inst.postel("alias", f"lmdb:{aliases}").returncode == 0
        inst.start()
        with smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=20) as s:
            s.sendmail("s@example.com", ["team@localhost"], BODY)
        for user in ("anyone", "other"):
            new = os.path.join(inst.dir, "mail", user, "new")
            (name,) = _wait_files(new, 1)
            data = open(os.path.join(new, name), "rb").read()
            head = data.partition(b"\n\n")[0].split(b"\n")
            assert head[0] == b"Return-Path: <owner-team@localhost>"
            # bare names in an alias are qualified with $myorigin by cleanup, as in Postfix
            assert head[2].startswith(f"Delivered-To: {user}@".encode())
            assert b"Delivered-To: team@localhost" in head
        inst.wait_log(r"to=<team@localhost>, relay=local, .*status=sent \(forwarded as \w+\)")
        with smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=20) as s:
            s.sendmail("s@example.com", ["loop1@localhost"], BODY)
        # loop1 -> loop2@$myorigin -> loop1@$myorigin -> loop2@$myorigin: seen in Delivered-To
        inst.wait_log(r"dsn=5\.4\.6, status=bounced \(mail forwarding loop for loop\d@", timeout=30)
