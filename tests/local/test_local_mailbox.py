"""Mailbox writers: mbox and Maildir content byte for byte, locks, limits."""

from __future__ import annotations

import os
import time

import pytest

from postel.deliver.mailbox import (
    MailboxError,
    Message,
    deliver_maildir,
    deliver_mbox,
    from_line,
    parse_locks,
)

LINES = [b"From: a@example.com", b"Subject: hi", b"", b"From the start", b">From quoted", b"body"]


def _msg(**kw) -> Message:
    return Message("a@example.com", LINES, orig_rcpt="Orig@Localhost", delivered="User@Localhost", **kw)


def test_from_line_is_asctime_with_two_spaces():
    when = time.mktime((2024, 3, 5, 7, 8, 9, 0, 0, -1))
    assert from_line("a@example.com", when) == b"From a@example.com  Tue Mar  5 07:08:09 2024"
    assert from_line("", when).startswith(b"From MAILER-DAEMON  ")
    assert from_line("a b@x", when).startswith(b'From "a b"@x  ')


def test_mbox_bytes_exact(tmp_path):
    path = str(tmp_path / "user")
    deliver_mbox(path, _msg(), locks=["fcntl", "dotlock"])
    data = open(path, "rb").read()
    first, rest = data.split(b"\n", 1)
    assert first.startswith(b"From a@example.com  ")
    assert rest == (b"Return-Path: <a@example.com>\n"
                    b"X-Original-To: Orig@Localhost\n"
                    b"Delivered-To: user@localhost\n"
                    b"From: a@example.com\nSubject: hi\n\n"
                    b">From the start\n>From quoted\nbody\n\n")
    assert not os.path.exists(path + ".lock")
    assert os.stat(path).st_mode & 0o777 == 0o600


def test_mbox_appends_second_message(tmp_path):
    path = str(tmp_path / "user")
    deliver_mbox(path, _msg())
    size = os.path.getsize(path)
    deliver_mbox(path, _msg())
    data = open(path, "rb").read()
    assert len(data) == 2 * size
    assert data.count(b"\nFrom a@example.com  ") == 1


def test_mbox_size_limit_truncates_back(tmp_path):
    path = str(tmp_path / "user")
    deliver_mbox(path, _msg())
    size = os.path.getsize(path)
    with pytest.raises(MailboxError) as info:
        deliver_mbox(path, _msg(), size_limit=size + 20)
    assert info.value.dsn == "5.2.2"
    assert os.path.getsize(path) == size


def test_mbox_stale_dotlock_removed_and_fresh_one_defers(tmp_path, monkeypatch):
    import postel.deliver.mailbox as mb
    monkeypatch.setattr(mb, "LOCK_DELAY", 0.0)
    path = str(tmp_path / "user")
    open(path + ".lock", "w").close()
    old = time.time() - 1000
    os.utime(path + ".lock", (old, old))
    deliver_mbox(path, _msg(), locks=["dotlock"])
    assert os.path.getsize(path) > 0
    open(path + ".lock", "w").close()
    with pytest.raises(MailboxError) as info:
        deliver_mbox(path, _msg(), locks=["dotlock"])
    assert info.value.temporary


def test_mbox_symlink_refused(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_bytes(b"")
    os.symlink(target, tmp_path / "user")
    with pytest.raises(MailboxError) as info:
        deliver_mbox(str(tmp_path / "user"), _msg())
    assert info.value.dsn.startswith("5")
    assert target.read_bytes() == b""


def test_maildir_bytes_and_layout(tmp_path):
    md = str(tmp_path / "Maildir") + "/"
    final = deliver_maildir(md, _msg())
    assert os.path.dirname(final) == os.path.join(md, "new")
    assert sorted(os.listdir(md)) == ["cur", "new", "tmp"]
    assert os.listdir(os.path.join(md, "tmp")) == []
    data = open(final, "rb").read()
    assert data == (b"Return-Path: <a@example.com>\nX-Original-To: Orig@Localhost\n"
                    b"Delivered-To: user@localhost\n"
                    b"From: a@example.com\nSubject: hi\n\nFrom the start\n>From quoted\nbody\n")
    name = os.path.basename(final)
    assert name.endswith(f",S={len(data)}")
    assert f"P{os.getpid()}" in name


def test_maildir_names_unique(tmp_path):
    md = str(tmp_path / "md") + "/"
    names = {deliver_maildir(md, _msg()) for _ in range(50)}
    assert len(names) == 50


def test_parse_locks():
    assert parse_locks("fcntl, dotlock") == ["fcntl", "dotlock"]
    with pytest.raises(ValueError):
        parse_locks("fcntl, bogus")
