"""spawn(8): a stdin/stdout program serves a unix socket, one process per client."""

from __future__ import annotations

import asyncio
import os
import socket
import time

import pytest

from postel import log
from postel.config import load_config
from postel.ipc.skeleton import run_standalone
from postel.smtpd.restrictions import CheckState, Restrictions
from postel.spawn import service
from postel.spawn.service import SpawnConfigError, parse_attrs

POLICY = """\
import sys
rcpt = ""
while True:
    line = sys.stdin.readline()
    if not line:
        break
    line = line.strip()
    if line.startswith("recipient="):
        rcpt = line[10:]
    if not line:
        action = "REJECT spawned says no" if rcpt.startswith("bad") else "DUNNO"
        sys.stdout.write(f"action={action}\\n\\n")
        sys.stdout.flush()
"""


def test_spawn_parse_attrs():
    a = parse_attrs(["user=nobody:nogroup", "argv=/bin/echo", "a", "user=x"])
    assert (a.user, a.group, a.argv) == ("nobody", "nogroup", ["/bin/echo", "a", "user=x"])
    for bad in ([], ["user=nobody"], ["argv="], ["color=red", "argv=/bin/true"], ["junk"]):
        with pytest.raises(SpawnConfigError):
            parse_attrs(bad)


def _serve(tmp_path, args, extra=""):
    (tmp_path / "main.cf").write_text(
        f"queue_directory = {tmp_path}\nmaillog_file = {tmp_path}/log\n{extra}")
    log.init("spawn", maillog_file=str(tmp_path / "log"))
    sock = str(tmp_path / "policy")
    srv = run_standalone("policy", [f"unix:{sock}"], handler=service.serve_client,
                         post_init=service.pre_init, config_dir=str(tmp_path), args=args,
                         concurrency=1)
    return srv, sock


def _user() -> list[str]:
    return ["user=nobody"] if os.geteuid() == 0 else []


def test_spawn_policy_program_answers_smtpd(tmp_path):
    python = "/usr/bin/python3"         # readable by nobody (a pyenv shim may not be)
    if not os.access(python, os.X_OK):
        pytest.skip("no /usr/bin/python3")
    srv, sock = _serve(tmp_path, [*_user(), f"argv={python}", "-c", POLICY])
    try:
        cfg = load_config(str(tmp_path)).derive({
            "smtpd_relay_restrictions": "", "smtpd_policy_service_timeout": "10s",
            "smtpd_recipient_restrictions": f"check_policy_service unix:{sock}"})
        eng = Restrictions(cfg)

        def check(rcpt):
            st = CheckState(client_addr="192.0.2.1", sender="s@example.com", recipient=rcpt)
            return asyncio.run(eng.check_rcpt(st))
        assert check("bad@example.com").reply_line() == \
            "554 5.7.1 <bad@example.com>: Recipient address rejected: spawned says no"
        assert not check("good@example.com").reject
    finally:
        srv.stop()


def test_spawn_runs_as_user_with_exported_environment(tmp_path):
    srv, sock = _serve(tmp_path, [*_user(), "argv=/bin/sh", "-c", "id -u; echo ${LANG:-none} ${SECRET:-unset}"],
                       extra="export_environment = LANG=C.UTF-8\n")
    os.environ["SECRET"] = "x"
    try:
        with socket.socket(socket.AF_UNIX) as c:
            c.connect(sock)
            c.settimeout(10)
            data = b""
            while chunk := c.recv(100):
                data += chunk
        uid, env = data.decode().split("\n")[:2]
        assert int(uid) == (65534 if os.geteuid() == 0 else os.geteuid())
        assert env == "C.UTF-8 unset"
    finally:
        del os.environ["SECRET"]
        srv.stop()


def test_spawn_time_limit_kills(tmp_path):
    srv, sock = _serve(tmp_path, [*_user(), "argv=/bin/sleep", "30"],
                       extra="policy_time_limit = 1s\n")
    try:
        with socket.socket(socket.AF_UNIX) as c:
            c.connect(sock)
            c.settimeout(20)
            assert c.recv(10) == b""          # closed once the command was killed
        deadline = time.monotonic() + 5
        text = ""
        while "killed after time limit" not in text and time.monotonic() < deadline:
            text = (tmp_path / "log").read_text()
            time.sleep(0.05)
        assert "command /bin/sleep killed after time limit 1 s" in text
    finally:
        srv.stop()
