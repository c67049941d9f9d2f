"""pipe(8): argument parsing, argv expansion, flags, sysexits classes, signals, time limit."""

from __future__ import annotations

import os
import pathlib
import pwd
import shutil
import tempfile

import pytest
from agent_harness import Harness

from postel.deliver.request import DeliverRcpt, DeliverRequest
from postel.pipe.service import (
    PipeConfigError,
    deliver,
    expand_argv,
    message_macros,
    parse_args,
    rcpt_macros,
)

MSG = b"From: s@example.com\nSubject: pipe\n\n.dot\nFrom x\nbody\n"
ROOT = os.geteuid() == 0
USER = "nobody" if ROOT else pwd.getpwuid(os.geteuid()).pw_name


@pytest.fixture
def work():
    d = tempfile.mkdtemp(prefix="postel-pipe-", dir="/tmp")
    os.chmod(d, 0o777)
    yield pathlib.Path(d)
    shutil.rmtree(d, ignore_errors=True)


def _script(work: pathlib.Path, body: str) -> str:
    path = work / "cmd.sh"
    path.write_text("#!/bin/sh\n" + body + "\n")
    os.chmod(path, 0o755)
    return str(path)


def test_parse_args_and_errors():
    pa = parse_args(["flags=FRX.>", f"user={USER}", "size=100", "eol=\\r\\n", "argv=/bin/cat", "-x"])
    assert pa.argv == ["/bin/cat", "-x"] and pa.flags == "FRX.>" and pa.size_limit == 100
    assert pa.eol == b"\r\n"
    for bad in (["flags=Z", "argv=/bin/cat"], ["user=no-such-user-q", "argv=/bin/cat"],
                ["user=root", "argv=/bin/cat"], ["flags=F"], ["argv=/bin/echo", "${bogus}"],
                ["what=1", "argv=/bin/cat"]):
        with pytest.raises(PipeConfigError):
            parse_args(bad)


def test_argv_expansion_repeats_recipient_words():
    pa = parse_args(["flags=hqu", f"user={USER}", "argv=/bin/x", "-f", "${sender}", "--",
                     "${recipient}", "$user+${extension}", "${nexthop}", "${queue_id}"])
    req = DeliverRequest("active", "QID1", "Host.Example", "a b@Example.COM",
                         [DeliverRcpt("Joe+Box@Example.COM"), DeliverRcpt("Ann@X.org")])
    argv = expand_argv(pa, message_macros(req, pa, 42),
                       [rcpt_macros(r, pa.flags, "+") for r in req.recipients])
    assert argv == ["/bin/x", "-f", '"a b"@example.com', "--", "joe+box@example.com",
                    "ann@x.org", "joe+box", "ann+", "host.example", "QID1"]


def _run(tmp_path, work, body, flags="", extra=()):
    h = Harness(tmp_path)
    cmd = _script(work, body)
    args = [f"flags={flags}", f"user={USER}", "argv=" + cmd, *extra]
    return h.deliver(deliver, "s@example.com", ["u@dest.example"], MSG, args=args,
                     transport="mypipe", nexthop="dest.example")


def test_success_stream_with_flags(tmp_path, work):
    out = work / "out"
    res = _run(tmp_path, work, f'cat > {out}; echo "$@" >> {out}', "FRODX.>B",
               ["${sender}", "${recipient}", "${size}"])
    assert res.status("u@dest.example") == "sent", res.log
    data = out.read_bytes()
    first, rest = data.split(b"\n", 1)
    assert first.startswith(b"From s@example.com  ")
    assert rest == (b"Return-Path: <s@example.com>\nX-Original-To: u@dest.example\n"
                    b"Delivered-To: u@dest.example\n"
                    b"From: s@example.com\nSubject: pipe\n\n..dot\n>From x\nbody\n\n"
                    + f"s@example.com u@dest.example {len(MSG)}\n".encode())
    assert "relay=mypipe" in res.log and "status=sent (delivered via mypipe service)" in res.log


@pytest.mark.parametrize("code,status,dsn", [(75, "deferred", "4.3.0"), (67, "bounced", "5.1.1"),
                                             (69, "bounced", "5.3.0"), (70, "bounced", "5.3.0"),
                                             (78, "bounced", "5.3.5"), (1, "bounced", "5.3.0")])
def test_sysexits_classes(tmp_path, work, code, status, dsn):
    res = _run(tmp_path, work, f"cat >/dev/null; echo oops from command; exit {code}")
    assert res.status("u@dest.example") == status
    log = "bounce" if status == "bounced" else "defer"
    entry = res.entries(log)[0]
    assert entry["status"] == dsn
    assert "Command output: oops from command" in entry["reason"]
    assert entry["diag_type"] == "x-unix"


def test_signal_defers(tmp_path, work):
    res = _run(tmp_path, work, "kill -9 $$")
    assert res.status("u@dest.example") == "deferred"
    assert "Command died with signal 9" in res.log


def test_time_limit_defers(tmp_path, work):
    h = Harness(tmp_path, {"mypipe_time_limit": "1s"})
    cmd = _script(work, "exec sleep 30")
    res = h.deliver(deliver, "s@example.com", ["u@dest.example"], MSG,
                    args=[f"user={USER}", "argv=" + cmd], transport="mypipe")
    assert res.status("u@dest.example") == "deferred"
    assert "Command time limit exceeded" in res.log


def test_size_limit_bounces(tmp_path, work):
    res = _run(tmp_path, work, "cat >/dev/null", "", [])
    assert res.status("u@dest.example") == "sent"
    h = Harness(tmp_path)
    res = h.deliver(deliver, "s@example.com", ["u@dest.example"], MSG,
                    args=[f"user={USER}", "size=10", "argv=/bin/cat"], transport="mypipe")
    assert res.entries("bounce")[0]["status"] == "5.2.3"


def test_bad_args_defer_with_config_error(tmp_path):
    h = Harness(tmp_path)
    res = h.deliver(deliver, "s@example.com", ["u@dest.example"], MSG, args=["flags=Z", "argv=/bin/cat"],
                    transport="mypipe")
    assert res.status("u@dest.example") == "deferred"
    assert "mail system configuration error: mypipe: unknown flag: Z" in res.log


@pytest.mark.skipif(not ROOT, reason="needs root")
def test_runs_as_user(tmp_path, work):
    out = work / "uid"
    res = _run(tmp_path, work, f"cat >/dev/null; id -u > {out}")
    assert res.status("u@dest.example") == "sent"
    assert out.read_text().strip() == str(pwd.getpwnam("nobody").pw_uid)
