"""postlogd: a real process on a unix-dgram socket; postel.log sends to it, falls back."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

from postel import log
from postel.postlogd.service import LINE_MAX, clean_record


def test_postlogd_clean_record():
    assert clean_record(b"a line") == b"a line\n"
    assert clean_record(b"a\nforged line\r\n") == b"a forged line\n"
    assert clean_record(b"x\0y\n") == b"xy\n"
    assert clean_record(b"\n") == b""
    assert len(clean_record(b"z" * (LINE_MAX * 2))) == LINE_MAX + 1


def _wait_for(path: str, text: str) -> str:
    deadline = time.monotonic() + 10
    data = ""
    while time.monotonic() < deadline:
        if os.path.exists(path):
            data = open(path, encoding="utf-8").read()
            if text in data:
                return data
        time.sleep(0.02)
    return data


def _start(tmp_path):
    maillog = tmp_path / "maillog"
    (tmp_path / "main.cf").write_text(f"queue_directory = {tmp_path}\nmaillog_file = {maillog}\n")
    sock = tmp_path / "postlog"
    proc = subprocess.Popen([sys.executable, "-c",
                             "import sys; from postel.postlogd.service import main; "
                             "sys.exit(main(sys.argv))",
                             "-c", str(tmp_path), "-S", f"unix-dgram:{sock}"],
                            env={**os.environ, "POSTEL_SERVICE_UNPRIV": "0"})
    deadline = time.monotonic() + 10
    while not sock.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return proc, str(maillog), str(sock)


def test_postlogd_appends_log_lines_and_reopens(tmp_path):
    proc, maillog, sock = _start(tmp_path)
    try:
        log.init("postlog", maillog_file=maillog, postlog_socket=sock)
        assert log._s.postlog_sock is not None and log._s.file_fd is None
        log.info("hello via postlogd\nsecond")
        data = _wait_for(maillog, "hello via postlogd second")
        assert "postel/postlog[" in data and data.endswith("\n")
        os.rename(maillog, maillog + ".1")
        proc.send_signal(signal.SIGHUP)
        time.sleep(0.3)
        log.info("after rotation")
        assert "after rotation" in _wait_for(maillog, "after rotation")
    finally:
        log.init("pytest")
        proc.terminate()
        assert proc.wait(10) == 0


def test_postlogd_absent_socket_means_direct_write(tmp_path):
    maillog = str(tmp_path / "maillog")
    log.init("postlog", maillog_file=maillog, postlog_socket=str(tmp_path / "nosuch"))
    try:
        assert log._s.postlog_sock is None
        log.info("direct line")
        assert "direct line" in open(maillog).read()
    finally:
        log.init("pytest")


def test_postlogd_gone_falls_back_to_direct_write(tmp_path):
    maillog = str(tmp_path / "maillog")
    path = str(tmp_path / "fake")
    fake = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    fake.bind(path)
    log.init("postlog", maillog_file=maillog, postlog_socket=path)
    try:
        log.info("to fake")
        assert fake.recv(9000).endswith(b"to fake\n")
        fake.close()
        os.unlink(path)
        log.info("after postlogd died")
        assert "after postlogd died" in open(maillog).read()
    finally:
        log.init("pytest")


def test_postlogd_refuses_without_maillog_file(tmp_path):
    (tmp_path / "main.cf").write_text(f"queue_directory = {tmp_path}\n")
    r = subprocess.run([sys.executable, "-c",
                        "import sys; from postel.postlogd.service import main; "
                        "sys.exit(main(sys.argv))", "-c", str(tmp_path),
                        "-S", f"unix-dgram:{tmp_path}/s"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 1
    assert "maillog_file is empty" in r.stderr + r.stdout
