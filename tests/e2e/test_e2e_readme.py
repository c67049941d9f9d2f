"""The README's first command works from a clean clone: `make run`.

Clones the committed tree into a temporary directory, runs `make run` there
(it makes its own .venv, installs Postel, creates ./.postel and runs the
instance in the foreground), sends a message to anyone@localhost on
127.0.0.1:2525 and checks that it lands in .postel/mail/anyone/ as a
Maildir file and that the log lines appear on stdout.  (`make test` is what
CI runs on a clean clone, so it is covered by CI itself.)
"""

from __future__ import annotations

import os
import shutil
import signal
import smtplib
import subprocess
import time

import pytest
from lib import port_open

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PORT = 2525


def _wait(pred, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.2)
    return False


def test_make_run_from_a_clean_clone(tmp_path):
    if shutil.which("make") is None or shutil.which("git") is None:
        pytest.fail("make and git are needed")
    if port_open(PORT):
        pytest.skip(f"127.0.0.1:{PORT} is already in use; `make run` needs it")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", REPO, str(clone)], check=True, timeout=120)
    os.chmod(tmp_path, 0o755)
    out_path = tmp_path / "make-run.out"
    with open(out_path, "wb") as out:
        proc = subprocess.Popen(["make", "run"], cwd=clone, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        assert _wait(lambda: port_open(PORT) or proc.poll() is not None, 600), "no listener"
        assert proc.poll() is None, out_path.read_text(errors="replace")[-3000:]
        with smtplib.SMTP("127.0.0.1", PORT, timeout=30) as s:
            s.sendmail("readme@example.com", ["anyone@localhost"],
                       b"Subject: from the README test\r\n\r\nhello\r\n")
        maildir = clone / ".postel" / "mail" / "anyone" / "new"
        assert _wait(lambda: maildir.is_dir() and any(maildir.iterdir()), 60), \
            out_path.read_text(errors="replace")[-3000:]
        (msg,) = list(maildir.iterdir())
        data = msg.read_bytes()
        assert b"Subject: from the README test\n" in data and data.endswith(b"\nhello\n")
        text = out_path.read_text(errors="replace")
        assert "postel/master[" in text and "status=sent" in text
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    assert not port_open(PORT)
