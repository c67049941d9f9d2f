"""local(8) agent: mailbox, aliases, :include:, |command, /file, .forward, loops, unknown users."""

from __future__ import annotations

import os
import pwd

import pytest
from agent_harness import Harness

from postel.commands import postalias
from postel.local.service import deliver

MSG = b"From: s@example.com\nSubject: test\n\nFrom here\nbody\n"
ROOT = os.geteuid() == 0


def _only_file(d: str) -> bytes:
    names = os.listdir(d)
    assert len(names) == 1, names
    with open(os.path.join(d, names[0]), "rb") as f:
        return f.read()


def test_self_contained_maildir_for_anyone(tmp_path):
    h = Harness(tmp_path, {"mail_owner": pwd.getpwuid(os.geteuid()).pw_name})
    res = h.deliver(deliver, "s@example.com", ["anyone@localhost"], MSG)
    assert res.status("anyone@localhost") == "sent"
    data = _only_file(str(tmp_path / "mail/anyone/new"))
    assert data == (b"Return-Path: <s@example.com>\nX-Original-To: anyone@localhost\n"
                    b"Delivered-To: anyone@localhost\n" + MSG)
    assert "to=<anyone@localhost>, relay=local" in res.log
    assert "status=sent (delivered to maildir)" in res.log


def test_self_contained_mbox_spool(tmp_path):
    h = Harness(tmp_path, {"mail_owner": pwd.getpwuid(os.geteuid()).pw_name,
                           "mail_spool_directory": "$config_directory/spool"})
    os.mkdir(tmp_path / "spool")
    res = h.deliver(deliver, "", ["Bob@localhost"], MSG)
    assert res.status("Bob@localhost") == "sent"
    data = (tmp_path / "spool/bob").read_bytes()
    assert data.startswith(b"From MAILER-DAEMON  ")
    assert data.split(b"\n", 1)[1] == (b"Return-Path: <>\nX-Original-To: Bob@localhost\n"
                                       b"Delivered-To: bob@localhost\n"
                                       b"From: s@example.com\nSubject: test\n\n>From here\nbody\n\n")


def test_bad_user_name_bounces(tmp_path):
    h = Harness(tmp_path, {"mail_owner": pwd.getpwuid(os.geteuid()).pw_name})
    res = h.deliver(deliver, "s@example.com", [".hidden@localhost"], MSG)
    assert res.status(".hidden@localhost") == "bounced"
    assert res.entries("bounce")[0]["status"] == "5.1.1"


def test_delivered_to_loop_bounces(tmp_path):
    h = Harness(tmp_path, {"mail_owner": pwd.getpwuid(os.geteuid()).pw_name})
    res = h.deliver(deliver, "s@example.com", ["joe@localhost"],
                    b"Delivered-To: Joe@localhost\n" + MSG)
    assert res.status("joe@localhost") == "bounced"
    assert "dsn=5.4.6, status=bounced (mail forwarding loop for joe@localhost)" in res.log
    assert not os.path.exists(tmp_path / "mail/joe")


def _aliases(tmp_path, text: str) -> str:
    path = tmp_path / "aliases"
    path.write_text(text)
    (tmp_path / "main.cf").write_text(f"config_directory = {tmp_path}\n")
    assert postalias.main([f"lmdb:{path}"], str(tmp_path)) == 0
    return f"lmdb:{path}"


def test_alias_to_file_include_and_self(tmp_path):
    inc = tmp_path / "list.inc"
    inc.write_text("# members\n/%s/incfile\n" % tmp_path)
    spec = _aliases(tmp_path, f"team: \\team, {tmp_path}/teamfile, :include:{inc}\n")
    h = Harness(tmp_path, {"mail_owner": pwd.getpwuid(os.geteuid()).pw_name, "alias_maps": spec,
                           "allow_mail_to_files": "alias, forward, include"})
    res = h.deliver(deliver, "s@example.com", ["team@localhost"], MSG)
    assert res.status("team@localhost") == "sent", res.log
    assert (tmp_path / "teamfile").read_bytes().split(b"\n", 1)[1] == (
        b"Return-Path: <s@example.com>\nX-Original-To: team@localhost\n"
        b"Delivered-To: team@localhost\nFrom: s@example.com\nSubject: test\n\n>From here\nbody\n\n")
    assert (tmp_path / "incfile").read_bytes().count(b"Subject: test") == 1
    assert _only_file(str(tmp_path / "mail/team/new")).endswith(MSG)


def test_alias_file_restricted(tmp_path):
    spec = _aliases(tmp_path, f"x: {tmp_path}/f\n")
    h = Harness(tmp_path, {"mail_owner": pwd.getpwuid(os.geteuid()).pw_name, "alias_maps": spec,
                           "allow_mail_to_files": "forward"})
    res = h.deliver(deliver, "s@example.com", ["x@localhost"], MSG)
    assert res.status("x@localhost") == "bounced"
    assert "mail to file is restricted" in res.log
    assert not (tmp_path / "f").exists()


def test_alias_command_gets_message_and_env(tmp_path):
    out = tmp_path / "out"
    spec = _aliases(tmp_path, f'cmd: "|cat > {out}; echo $RECIPIENT $SENDER $EXTENSION >> {out}"\n')
    h = Harness(tmp_path, {"mail_owner": pwd.getpwuid(os.geteuid()).pw_name, "alias_maps": spec,
                           "recipient_delimiter": "+", "default_privs": pwd.getpwuid(os.geteuid()).pw_name})
    res = h.deliver(deliver, "s@example.com", ["cmd+ext@localhost"], MSG)
    assert res.status("cmd+ext@localhost") == "sent", res.log
    data = out.read_bytes()
    lines = data.split(b"\n", 1)
    assert lines[0].startswith(b"From s@example.com  ")
    assert lines[1] == (b"Return-Path: <s@example.com>\nX-Original-To: cmd+ext@localhost\n"
                        b"Delivered-To: cmd+ext@localhost\n" + MSG
                        + b"cmd+ext@localhost s@example.com ext\n")


def test_alias_command_exit_codes(tmp_path):
    spec = _aliases(tmp_path, 'a: "|exit 75"\nb: "|echo nope; exit 67"\nc: "|exit 3"\n')
    h = Harness(tmp_path, {"mail_owner": pwd.getpwuid(os.geteuid()).pw_name, "alias_maps": spec})
    res = h.deliver(deliver, "s@example.com", ["a@localhost"], MSG)
    assert res.status("a@localhost") == "deferred"
    res = h.deliver(deliver, "s@example.com", ["b@localhost"], MSG)
    assert res.status("b@localhost") == "bounced"
    assert "dsn=5.1.1, status=bounced (user unknown. Command output: nope)" in res.log
    res = h.deliver(deliver, "s@example.com", ["c@localhost"], MSG)
    assert res.entries("bounce")[0]["status"] == "5.3.0"


@pytest.mark.skipif(not ROOT, reason="needs root to switch users")
def test_root_unknown_user_bounces(tmp_path):
    h = Harness(tmp_path, {"mail_owner": "nobody"})
    res = h.deliver(deliver, "s@example.com", ["no-such-user-xyz@localhost"], MSG)
    assert res.status("no-such-user-xyz@localhost") == "bounced"
    assert 'dsn=5.1.1, status=bounced (unknown user: "no-such-user-xyz")' in res.log


@pytest.mark.skipif(not ROOT, reason="needs root to switch users")
def test_root_command_runs_as_default_privs(tmp_path, open_dir):
    out = open_dir / "who"
    spec = _aliases(tmp_path, f'w: "|id -u > {out}"\n')
    h = Harness(tmp_path, {"mail_owner": "nobody", "alias_maps": spec, "default_privs": "nobody"})
    res = h.deliver(deliver, "s@example.com", ["w@localhost"], MSG)
    assert res.status("w@localhost") == "sent", res.log
    assert out.read_text().strip() == str(pwd.getpwnam("nobody").pw_uid)


@pytest.fixture
def open_dir():
    """A directory that every user may enter (pytest's tmp_path is 0700 root)."""
    import pathlib
    import shutil
    import tempfile
    d = tempfile.mkdtemp(prefix="postel-local-", dir="/tmp")
    os.chmod(d, 0o777)
    yield pathlib.Path(d)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def unix_user():
    """A real user with a home directory (root only), for .forward and spool tests."""
    if not ROOT:
        pytest.skip("needs root")
    try:
        return pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no nobody user")


def test_root_forward_file_and_spool_ownership(tmp_path, unix_user, monkeypatch, open_dir):
    home = open_dir / "home"
    home.mkdir()
    os.chown(home, unix_user.pw_uid, unix_user.pw_gid)
    fwd = home / ".forward"
    fwd.write_text(f"\\{unix_user.pw_name}, {home}/copy\n")
    os.chown(fwd, unix_user.pw_uid, unix_user.pw_gid)
    spool = tmp_path / "spool"
    spool.mkdir()
    os.chmod(spool, 0o1777)
    monkeypatch.setattr(pwd, "getpwnam", lambda n: _with_home(unix_user, str(home)) if n == unix_user.pw_name
                        else _real_getpwnam(n))
    h = Harness(tmp_path, {"mail_owner": "postfix-nonexistent", "mail_spool_directory": str(spool),
                           "forward_path": "$home/.forward"})
    res = h.deliver(deliver, "s@example.com", [f"{unix_user.pw_name}@localhost"], MSG)
    assert res.status(f"{unix_user.pw_name}@localhost") == "sent", res.log
    box = spool / unix_user.pw_name
    assert os.stat(box).st_uid == unix_user.pw_uid
    assert box.read_bytes().count(b"Subject: test") == 1
    copy = home / "copy"
    assert os.stat(copy).st_uid == unix_user.pw_uid
    assert copy.read_bytes().count(b"Subject: test") == 1


_real_getpwnam = pwd.getpwnam


def _with_home(pw, home):
    return pwd.struct_passwd((pw.pw_name, pw.pw_passwd, pw.pw_uid, pw.pw_gid, pw.pw_gecos, home,
                              pw.pw_shell))


class _FakeCleanup:
    """Records forwarded messages instead of talking to cleanup(8)."""

    def __init__(self):
        self.calls = []

    async def submit(self, sender, recipients, content, attrs=None, flags=""):
        from postel.ipc.cleanup_client import CleanupResult
        self.calls.append((sender, list(recipients), b"".join(content)))
        return CleanupResult(status=0, dsn="2.0.0", reason="", queue_id="FWDQID")


@pytest.mark.skipif(not ROOT, reason="root decides unknown users")
def test_luser_relay_forwards_unknown_user(tmp_path, monkeypatch):
    import postel.local.service as svc
    fake = _FakeCleanup()
    monkeypatch.setattr(svc, "_cleanup_client", lambda st: fake)
    h = Harness(tmp_path, {"mail_owner": "nobody", "luser_relay": "catch+$local@example.net"})
    res = h.deliver(deliver, "s@example.com", ["Ghost-xyz@localhost"], MSG)
    assert res.status("Ghost-xyz@localhost") == "sent", res.log
    assert "status=sent (forwarded as FWDQID)" in res.log
    ((sender, rcpts, content),) = fake.calls
    assert sender == "s@example.com"
    assert rcpts[0][0] == "catch+ghost-xyz@example.net"
    assert content == b"Delivered-To: ghost-xyz@localhost\r\n" + MSG.replace(b"\n", b"\r\n")


def test_mailbox_command(tmp_path):
    out = tmp_path / "mbcmd"
    h = Harness(tmp_path, {"mail_owner": pwd.getpwuid(os.geteuid()).pw_name,
                           "mailbox_command": f"cat > {out}; echo $USER >> {out}"})
    res = h.deliver(deliver, "s@example.com", ["someone@localhost"], MSG)
    assert res.status("someone@localhost") == "sent", res.log
    data = out.read_bytes()
    assert data.split(b"\n", 1)[1] == (b"Return-Path: <s@example.com>\nX-Original-To: someone@localhost\n"
                                       b"Delivered-To: someone@localhost\n" + MSG + b"someone\n")
