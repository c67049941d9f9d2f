"""local(8) as root in a whole instance: a user in /etc/passwd gets mail with that user's rights."""

from __future__ import annotations

import os
import pwd
import shutil
import smtplib
import sys
import tempfile
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "e2e"))

from lib import Instance  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="switching to a passwd user needs root")


@pytest.fixture
def open_dir():
    """A directory every user may write (pytest's tmp_path is 0700 root), sticky like /var/mail."""
    d = tempfile.mkdtemp(prefix="postel-local-root-", dir="/tmp")
    os.chmod(d, 0o1777)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _wait_file(path: str, timeout: float = 30.0) -> bytes:
    """_wait_file - the file's content once it exists and is not empty."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path) and os.path.getsize(path) > 0:
            time.sleep(0.1)
            with open(path, "rb") as f:
                return f.read()
        time.sleep(0.1)
    pytest.fail(f"{path} did not appear")


def _root_local(inst: Instance) -> Instance:
    """_root_local - local runs as root (unpriv n) to reach system users, as in Postfix.

    A root-made `postel init` instance is self-contained (local runs as mail_owner);
    docs/security.md: set unpriv to n for delivery to the users of /etc/passwd.
    """
    inst.remove_master("local ")
    inst.add_master(["local     unix  -       n       n       -       -       local"])
    return inst


def _send(inst, rcpt: str, subject: str) -> None:
    with smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=30) as s:
        s.sendmail("sender@example.com", [rcpt], f"Subject: {subject}\n\nhello\n")


def test_spool_mailbox_belongs_to_the_user(tmp_path, open_dir):
    nobody = pwd.getpwnam("nobody")
    with _root_local(Instance(tmp_path, extra_main={"mail_spool_directory": open_dir})) as inst:
        inst.start()
        _send(inst, "nobody@localhost", "for nobody")
        data = _wait_file(os.path.join(open_dir, "nobody"))
        inst.wait_log(r"to=<nobody@localhost>, relay=local, .*status=sent \(delivered to mailbox\)")
    info = os.stat(os.path.join(open_dir, "nobody"))
    assert (info.st_uid, info.st_gid) == (nobody.pw_uid, nobody.pw_gid)
    assert data.startswith(b"From sender@example.com ")
    assert b"\nSubject: for nobody\n" in data and b"Delivered-To: nobody@localhost\n" in data


def test_mailbox_command_runs_as_the_user(tmp_path, open_dir):
    nobody = pwd.getpwnam("nobody")
    out = os.path.join(open_dir, "who")
    main = {"mailbox_command": f"id -u > {out}; cat >> {out}"}
    with _root_local(Instance(tmp_path, extra_main=main)) as inst:
        inst.start()
        _send(inst, "nobody@localhost", "by command")
        data = _wait_file(out)
    first, _, rest = data.partition(b"\n")
    assert first == str(nobody.pw_uid).encode()
    assert b"Subject: by command" in rest
