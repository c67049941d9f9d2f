"""virtual(8): maps, Maildir and mbox, catch-all, uid maps and minimum uid, unknown users."""

from __future__ import annotations

import os
import pwd

import pytest
from agent_harness import Harness

from postel.virtual.service import deliver, lookup_keys

MSG = b"From: s@example.com\nSubject: v\n\nFrom me\nbody\n"
ROOT = os.geteuid() == 0


def _harness(tmp_path, extra=None):
    (tmp_path / "vmailbox").write_text("joe@v.example v.example/joe/\nann@v.example v.example/ann\n"
                                      "@catch.example catch/\n")
    main = {"virtual_mailbox_base": str(tmp_path / "vmail"),
            "virtual_mailbox_maps": f"texthash:{tmp_path}/vmailbox",
            "recipient_delimiter": "+",
            "mail_owner": pwd.getpwuid(os.geteuid()).pw_name}
    main.update(extra or {})
    return Harness(tmp_path, main)


def test_lookup_keys():
    assert lookup_keys("Joe+X@V.example", "+") == ["joe+x@v.example", "joe@v.example", "@v.example"]


def test_maildir_and_extension(tmp_path):
    h = _harness(tmp_path)
    res = h.deliver(deliver, "s@example.com", ["joe+tag@v.example"], MSG, transport="virtual")
    assert res.status("joe+tag@v.example") == "sent", res.log
    new = tmp_path / "vmail/v.example/joe/new"
    (name,) = os.listdir(new)
    assert (new / name).read_bytes() == (b"Return-Path: <s@example.com>\nX-Original-To: joe+tag@v.example\n"
                                         b"Delivered-To: joe+tag@v.example\n" + MSG)
    assert "relay=virtual" in res.log and "status=sent (delivered to maildir)" in res.log


def test_mbox_and_catchall(tmp_path):
    h = _harness(tmp_path)
    os.makedirs(tmp_path / "vmail/v.example")
    res = h.deliver(deliver, "", ["ann@v.example", "x@catch.example"], MSG, transport="virtual")
    assert res.status("ann@v.example") == "sent" and res.status("x@catch.example") == "sent"
    data = (tmp_path / "vmail/v.example/ann").read_bytes()
    assert data.startswith(b"From MAILER-DAEMON  ")
    assert data.endswith(b"\n\n>From me\nbody\n\n")
    assert len(os.listdir(tmp_path / "vmail/catch/new")) == 1


def test_unknown_user_bounces(tmp_path):
    h = _harness(tmp_path)
    res = h.deliver(deliver, "s@example.com", ["nobody@v.example"], MSG, transport="virtual")
    assert res.status("nobody@v.example") == "bounced"
    assert res.entries("bounce")[0]["status"] == "5.1.1"


def test_size_limit(tmp_path):
    h = _harness(tmp_path, {"virtual_mailbox_limit": "50"})
    res = h.deliver(deliver, "s@example.com", ["joe@v.example"], MSG, transport="virtual")
    assert res.status("joe@v.example") == "bounced"
    assert res.entries("bounce")[0]["status"] == "5.2.2"


@pytest.mark.skipif(not ROOT, reason="needs root")
def test_root_uid_maps_and_minimum_uid(tmp_path):
    import pathlib
    import shutil
    import tempfile
    nobody = pwd.getpwnam("nobody")
    base = pathlib.Path(tempfile.mkdtemp(prefix="postel-virtual-", dir="/tmp"))
    os.chmod(base, 0o755)
    h = _harness(tmp_path, {"mail_owner": "nobody", "virtual_uid_maps": f"static:{nobody.pw_uid}",
                            "virtual_gid_maps": f"static:{nobody.pw_gid}",
                            "virtual_mailbox_base": str(base)})
    os.makedirs(base / "v.example/joe")
    os.chown(base / "v.example/joe", nobody.pw_uid, nobody.pw_gid)
    res = h.deliver(deliver, "s@example.com", ["joe@v.example"], MSG, transport="virtual")
    shutil.rmtree(base, ignore_errors=True) if res.status("joe@v.example") != "sent" else None
    assert res.status("joe@v.example") == "sent", res.log
    new = base / "v.example/joe/new"
    (name,) = os.listdir(new)
    assert os.stat(new / name).st_uid == nobody.pw_uid
    h = _harness(tmp_path, {"mail_owner": "nobody", "virtual_uid_maps": "static:5",
                            "virtual_gid_maps": "static:5"})
    res = h.deliver(deliver, "s@example.com", ["joe@v.example"], MSG, transport="virtual")
    assert res.status("joe@v.example") == "deferred"
    assert "bad uid 5" in res.log
    h = _harness(tmp_path, {"mail_owner": "nobody"})
    res = h.deliver(deliver, "s@example.com", ["joe@v.example"], MSG, transport="virtual")
    assert res.status("joe@v.example") == "deferred"
    assert "no uid for joe@v.example" in res.log
    shutil.rmtree(base, ignore_errors=True)
