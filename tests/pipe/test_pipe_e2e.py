"""End to end: smtplib -> ... -> qmgr -> pipe service from master.cf (transport_maps) -> a shell script."""

from __future__ import annotations

import os
import pathlib
import pwd
import shutil
import smtplib
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))

from lib import Instance  # noqa: E402

USER = "nobody" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
BODY = b"From: s@example.com\r\nSubject: e2e pipe\r\n\r\nline\r\n"


def _wait(path: pathlib.Path, timeout: float = 20.0) -> bytes:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_size and path.read_bytes().endswith(b"END\n"):
            return path.read_bytes()
        time.sleep(0.1)
    raise AssertionError(f"{path} not written")


def test_pipe_service_from_master_cf(tmp_path):
    work = pathlib.Path(tempfile.mkdtemp(prefix="postel-pipe-e2e-", dir="/tmp"))
    try:
        os.chmod(work, 0o777)
        script = work / "deliver.sh"
        out = work / "out"
        script.write_text(f"#!/bin/sh\ncat > {out}.tmp\necho \"$@\" >> {out}.tmp\necho END >> {out}.tmp\n"
                          f"mv {out}.tmp {out}\n")
        os.chmod(script, 0o755)
        transport = tmp_path / "transport"
        transport.write_text("pipe.example mypipe:\nfail.example failpipe:\n")
        fail = work / "fail.sh"
        fail.write_text("#!/bin/sh\necho no such mailbox here\nexit 67\n")
        os.chmod(fail, 0o755)
        master = [
            "mypipe unix - n n - - pipe",
            f"  flags=R user={USER} argv={script} ${{sender}} ${{recipient}} ${{nexthop}}",
            "failpipe unix - n n - - pipe",
            f"  user={USER} argv={fail}",
        ]
        with Instance(tmp_path / "i", extra_main={"transport_maps": f"texthash:{transport}",
                                                  "relay_domains": "pipe.example, fail.example"},
                      extra_master=master) as inst:
            inst.start()
            with smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=20) as s:
                s.sendmail("s@example.com", ["joe@pipe.example"], BODY)
                s.sendmail("s@example.com", ["joe@fail.example"], BODY)
            data = _wait(out)
            inst.wait_log(r"to=<joe@pipe.example>, relay=mypipe, .*status=sent \(delivered via mypipe service\)")
            inst.wait_log(r"to=<joe@fail.example>, relay=failpipe, .*dsn=5\.1\.1, status=bounced "
                          r"\(user unknown\. Command output: no such mailbox here\)")
        assert data.startswith(b"Return-Path: <s@example.com>\nReceived: ")
        assert b"\nSubject: e2e pipe\n" in data
        assert data.endswith(b"\n\nline\ns@example.com joe@pipe.example pipe.example\nEND\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)
