"""qmgr end to end: a whole instance delivering to Postfix's smtp-sink, error/discard, retries, kill -9."""

from __future__ import annotations

import glob
import os
import re
import shutil
import signal
import smtplib
import subprocess
import sys
import tempfile
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "e2e"))

from lib import Instance, free_port  # noqa: E402

from peerlib import require_peer  # noqa: E402
from postel.ipc.trigger import send_trigger  # noqa: E402


class Sink:
    """Postfix's smtp-sink dumping every message into a directory."""

    def __init__(self, tmp_path, port: int | None = None) -> None:
        self.exe = require_peer("smtp-sink")
        self.port = port or free_port()
        # smtp-sink writes as "nobody": pytest's tmp_path (mode 0700) is out of reach
        self.dir = tempfile.mkdtemp(prefix="qmgr-sink-")
        os.chmod(self.dir, 0o777)
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([self.exe, "-u", "nobody", "-d", self.dir + "/",
                                      f"127.0.0.1:{self.port}", "100"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                smtplib.SMTP("127.0.0.1", self.port, timeout=2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("smtp-sink did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def subjects(self) -> list[str]:
        out = []
        for path in glob.glob(os.path.join(self.dir, "*")):
            with open(path, "rb") as f:
                m = re.search(rb"^Subject: (.*?)\r?$", f.read(), re.M)
            if m:
                out.append(m.group(1).decode())
        return out

    def wait_count(self, n: int, timeout: float = 60) -> list[str]:
        deadline = time.time() + timeout
        while time.time() < deadline:
            subs = self.subjects()
            if len(set(subs)) >= n:
                return subs
            time.sleep(0.1)
        return self.subjects()


def _instance(tmp_path, sink: Sink, **extra) -> Instance:
    main = {"relayhost": f"[127.0.0.1]:{sink.port}", "minimal_backoff_time": "1s",
            "maximal_backoff_time": "2s", "queue_run_delay": "1s",
            "transport_maps": "texthash:$config_directory/transport"}
    main.update(extra)
    inst = Instance(tmp_path, extra_main=main)
    with open(os.path.join(inst.dir, "transport"), "w") as f:
        f.write("bad.example error:5.1.2 no such domain here\n"
                "later.example retry:mailbox busy\n"
                "null.example discard:dropped by policy\n")
    return inst


@pytest.fixture
def sink(tmp_path):
    s = Sink(tmp_path)
    yield s
    s.remove()


def _send(inst, rcpt, subject, sender="a@sender.example"):
    with smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=30) as s:
        s.sendmail(sender, [rcpt], f"Subject: {subject}\n\nhello\n")


def test_relay_error_discard(tmp_path, sink):
    sink.start()
    inst = _instance(tmp_path, sink)
    try:
        inst.start()
        _send(inst, "x@remote.example", "relayed")
        _send(inst, "y@bad.example", "bounced")
        _send(inst, "z@null.example", "dropped")
        _send(inst, "w@later.example", "retried")
        assert "relayed" in sink.wait_count(1)
        inst.wait_log(r"to=<x@remote\.example>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:\d+, "
                      r"delay=[\d.]+, delays=[\d.]+/[\d.]+/[\d.]+/[\d.]+, dsn=2\.0\.0, status=sent")
        inst.wait_log(r"to=<y@bad\.example>, relay=none, .*dsn=5\.1\.2, "
                      r"status=bounced \(no such domain here\)")
        inst.wait_log(r"to=<z@null\.example>, relay=none, .*status=sent \(dropped by policy\)")
        inst.wait_log(r"to=<w@later\.example>, relay=none, .*dsn=4\.0\.0, "
                      r"status=deferred \(mailbox busy\)")
        text = inst.log_text()
        qid = re.search(r"(\w+): to=<x@remote\.example>", text).group(1)
        assert re.search(rf"{qid}: from=<a@sender\.example>, size=\d+, nrcpt=1 \(queue active\)",
                         text)
        inst.wait_log(rf"{qid}: removed")
        bqid = re.search(r"(\w+): to=<y@bad\.example>", text).group(1)
        inst.wait_log(rf"{bqid}: removed")
        # the retry transport keeps the message in the deferred queue
        wqid = re.search(r"(\w+): to=<w@later\.example>", text).group(1)
        deadline = time.time() + 10
        while time.time() < deadline and not glob.glob(
                os.path.join(inst.queue_dir, "deferred", "*", wqid)):
            time.sleep(0.1)
        assert glob.glob(os.path.join(inst.queue_dir, "deferred", "*", wqid))
        assert glob.glob(os.path.join(inst.queue_dir, "defer", "*", wqid))
    finally:
        inst.cleanup()


def test_deferred_then_delivered(tmp_path, sink):
    inst = _instance(tmp_path, sink)
    try:
        inst.start()
        _send(inst, "x@remote.example", "late")
        inst.wait_log(r"to=<x@remote\.example>, relay=.*status=deferred", timeout=20)
        sink.start()
        assert "late" in sink.wait_count(1, timeout=30)
        inst.wait_log(r"to=<x@remote\.example>, relay=127\.0\.0\.1.*status=sent", timeout=20)
        qid = re.search(r"(\w+): to=<x@remote\.example>", inst.log_text()).group(1)
        inst.wait_log(rf"{qid}: removed")
        assert not glob.glob(os.path.join(inst.queue_dir, "defer", "*", qid))
    finally:
        inst.cleanup()


def _qmgr_pid(inst) -> int:
    pids = re.findall(r"postel/qmgr\[(\d+)\]", inst.log_text())
    return int(pids[-1])


def test_kill_qmgr_while_delivering(tmp_path, sink):
    sink.start()
    inst = _instance(tmp_path, sink)
    n = 200
    try:
        inst.start()
        with smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=60) as s:
            for i in range(n):
                s.sendmail("a@sender.example", [f"r{i}@remote.example"],
                           f"Subject: m{i}\n\nbody {i}\n")
        deadline = time.time() + 60
        while time.time() < deadline and inst.count_log(r"status=sent") < 30:
            time.sleep(0.01)
        killed = _qmgr_pid(inst)
        os.kill(killed, signal.SIGKILL)
        sent_at_kill = inst.count_log(r"status=sent")
        # master starts a trigger service again when a trigger arrives (as the
        # next queue wakeup would; cleanup's "new mail" trigger does it at once)
        deadline = time.time() + 30
        while time.time() < deadline and _qmgr_pid(inst) == killed:
            send_trigger(inst.queue_dir, "public/qmgr", b"I")
            time.sleep(0.5)
        assert _qmgr_pid(inst) != killed
        assert sent_at_kill < n, "the kill came too late to test anything"
        subjects = sink.wait_count(n, timeout=120)
        assert set(subjects) == {f"m{i}" for i in range(n)}
        dupes = len(subjects) - len(set(subjects))
        # duplicates only for requests in flight at the kill (Postfix's window)
        assert dupes <= 20, dupes
        def left() -> list[str]:
            return [p for q in ("incoming", "active", "deferred")
                    for p in glob.glob(os.path.join(inst.queue_dir, q, "**", "*"), recursive=True)
                    if os.path.isfile(p)]

        deadline = time.time() + 30
        while time.time() < deadline and (left() or inst.count_log(r": removed") < n - 1):
            time.sleep(0.2)
        assert left() == []
        # Every message is removed; only a removal that the kill interrupted between
        # unlink(2) and its log line (a kill at the very end) may lack "QID: removed".
        assert inst.count_log(r": removed") >= n - 1
    finally:
        inst.cleanup()


def test_defer_transports_wait_for_a_flush(tmp_path, sink):
    sink.start()
    inst = _instance(tmp_path, sink, defer_transports="smtp")
    try:
        inst.start()
        _send(inst, "x@remote.example", "held back")
        line = inst.wait_log(r"to=<x@remote\.example>, .*status=deferred", timeout=20)
        assert "(deferred transport)" in line and "dsn=4.3.2" in line
        time.sleep(2.5)                                  # past minimal_backoff_time: still waiting
        assert sink.subjects() == []
        cp = inst.postel("queue", "-f")                  # postqueue -f: the flush delivers it
        assert cp.returncode == 0, cp.stderr
        assert "held back" in sink.wait_count(1, timeout=30)
        inst.wait_log(r"to=<x@remote\.example>, relay=127\.0\.0\.1.*status=sent", timeout=20)
    finally:
        inst.cleanup()


def test_flush_reaches_a_deferred_queue_larger_than_the_active_limit(tmp_path, sink):
    """A pass stopped by qmgr_message_active_limit goes on when room frees up, and a
    flush delivers every deferred message exactly once (it used to stall after the
    first active-limit's worth until queue_run_delay, re-sending the first ones)."""
    inst = _instance(tmp_path, sink, qmgr_message_active_limit="5",
                     queue_run_delay="3600s", minimal_backoff_time="3600s",
                     maximal_backoff_time="3600s")
    try:
        inst.start()                                     # the sink is down: all deferred
        n = 23
        for i in range(n):
            _send(inst, f"u{i}@remote.example", f"msg {i}")
        deadline = time.time() + 60
        while inst.count_log(r"status=deferred") < n and time.time() < deadline:
            time.sleep(0.1)
        assert inst.count_log(r"status=deferred") == n
        sink.start()
        cp = inst.postel("queue", "-f")
        assert cp.returncode == 0, cp.stderr
        subjects = sink.wait_count(n, timeout=60)
        assert sorted(subjects) == sorted(f"msg {i}" for i in range(n))   # each once
    finally:
        inst.cleanup()
