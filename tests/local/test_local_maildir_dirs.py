"""Maildir delivery makes missing directories on demand (no stat per message)."""

from __future__ import annotations

import os
import shutil

import pytest

from postel.deliver.mailbox import MailboxError, Message, deliver_maildir


def _msg() -> Message:
    return Message("a@example.com", [b"Subject: hi", b"", b"body"])


def test_maildir_new_missing_is_made(tmp_path):
    md = str(tmp_path / "Maildir") + "/"
    deliver_maildir(md, _msg())
    shutil.rmtree(os.path.join(md, "new"))
    final = deliver_maildir(md, _msg())
    assert os.path.dirname(final) == os.path.join(md, "new")
    assert os.listdir(os.path.join(md, "tmp")) == []


def test_maildir_tmp_missing_is_made(tmp_path):
    md = str(tmp_path / "Maildir") + "/"
    os.makedirs(os.path.join(md, "new"))
    final = deliver_maildir(md, _msg())
    assert os.path.exists(final) and sorted(os.listdir(md)) == ["cur", "new", "tmp"]


def test_maildir_path_is_a_file_fails_hard(tmp_path):
    path = tmp_path / "Maildir"
    path.write_bytes(b"")
    with pytest.raises(MailboxError) as info:
        deliver_maildir(str(path) + "/", _msg())
    assert info.value.dsn == "5.2.0"
