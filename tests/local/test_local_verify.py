"""local(8) in verify mode (sendmail -bv): decide deliverable/undeliverable, write nothing."""

from __future__ import annotations

import os
import pwd

from agent_harness import Harness

from postel.commands import postalias
from postel.local.service import deliver

MSG = b"From: s@example.com\nSubject: test\n\nbody\n"
VERIFY = frozenset({"verify"})


def _me() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


def _aliases(tmp_path, text: str) -> str:
    path = tmp_path / "aliases"
    path.write_text(text)
    assert postalias.main([f"lmdb:{path}"], str(tmp_path)) == 0
    return f"lmdb:{path}"


def test_verify_mailbox_writes_nothing(tmp_path):
    h = Harness(tmp_path, {"mail_owner": _me()})
    res = h.deliver(deliver, "s@example.com", ["anyone@localhost", ".bad@localhost"], MSG,
                    flags=VERIFY)
    assert res.status("anyone@localhost") == "sent"
    assert res.status(".bad@localhost") == "bounced"
    assert not os.path.exists(tmp_path / "mail" / "anyone")
    assert "status=deliverable (delivers to mailbox)" in res.log
    assert 'dsn=5.1.1, status=undeliverable (unknown user: ".bad")' in res.log
    assert [e["action"] for e in res.entries("trace")] == ["deliverable", "undeliverable"]
    assert res.entries("bounce") == [] and res.entries("defer") == []


def test_verify_alias_expansion_runs_nothing(tmp_path):
    out = tmp_path / "ran"
    spec = _aliases(tmp_path, f'cmd: "|touch {out}"\nfile: {tmp_path}/f\n'
                              "fwd: someone@example.net\n")
    h = Harness(tmp_path, {"mail_owner": _me(), "alias_maps": spec,
                           "allow_mail_to_files": "alias"})
    res = h.deliver(deliver, "s@example.com", ["cmd@localhost", "file@localhost",
                                               "fwd@localhost"], MSG, flags=VERIFY)
    assert [res.status(a) for a in ("cmd@localhost", "file@localhost", "fwd@localhost")] == \
        ["sent"] * 3
    assert not out.exists() and not (tmp_path / "f").exists()
    assert f"status=deliverable (delivers to command: touch {out})" in res.log
    assert f"status=deliverable (delivers to file: {tmp_path}/f)" in res.log
    assert "status=deliverable (forwards to someone@example.net)" in res.log


def test_verify_restricted_file_is_undeliverable(tmp_path):
    spec = _aliases(tmp_path, f"x: {tmp_path}/f\n")
    h = Harness(tmp_path, {"mail_owner": _me(), "alias_maps": spec, "allow_mail_to_files": ""})
    res = h.deliver(deliver, "s@example.com", ["x@localhost"], MSG, flags=VERIFY)
    assert res.status("x@localhost") == "bounced"
    assert "status=undeliverable (mail to file is restricted" in res.log
    assert not (tmp_path / "f").exists()
