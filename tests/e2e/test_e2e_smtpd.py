"""smtpd end to end: real clients (swaks, smtplib, smtp-source) against a running instance.

Delivery is held (qmgr is removed from master.cf) so that what smtpd and
cleanup accepted stays in incoming/ to be read back with the queue library.
"""

from __future__ import annotations

import os
import re
import signal
import smtplib
import socket
import subprocess
import threading
import time

import pytest
from lib import Instance

from peerlib import require_peer
from postel.queue import QueueDir, QueueFileReader

HELD = ["qmgr ", "pickup "]       # master.cf entries removed: mail stays in incoming/


def held_instance(tmp_path, **main) -> Instance:
    inst = Instance(tmp_path, extra_main=main)
    for prefix in HELD:
        inst.remove_master(prefix)
    return inst


def incoming(inst: Instance) -> dict[str, QueueFileReader]:
    """incoming - every queue file in incoming/, parsed."""
    qd = QueueDir(inst.queue_dir)
    out = {}
    for qid, path in qd.scan_paths("incoming"):
        out[qid] = QueueFileReader(path, writable=False)
    return out


def wait_files(inst: Instance, n: int, timeout: float = 30) -> dict[str, QueueFileReader]:
    deadline = time.monotonic() + timeout
    while True:
        files = incoming(inst)
        if len(files) >= n or time.monotonic() > deadline:
            return files
        time.sleep(0.1)


def converse(port: int, lines: list[bytes], timeout: float = 10) -> bytes:
    """converse - send raw bytes line by line (each after a read), return all the server said."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        buf = s.recv(4096)
        for chunk in lines:
            s.sendall(chunk)
            time.sleep(0.05)
            try:
                s.settimeout(0.5)
                while True:
                    got = s.recv(65536)
                    if not got:
                        return buf
                    buf += got
                    if got.endswith(b"\r\n"):
                        break
            except TimeoutError:
                pass
            finally:
                s.settimeout(timeout)
        return buf


QID_RE = re.compile(r"queued as (\w+)")


def test_swaks_message_is_queued_byte_for_byte(tmp_path):
    swaks = require_peer("swaks")
    with held_instance(tmp_path) as inst:
        inst.start()
        body = "first line\nsecond line\n..starts with two dots\n"
        cp = subprocess.run([swaks, "-S", "--server", f"127.0.0.1:{inst.smtp_port}",
                             "--from", "sender@example.com", "--to", "anyone@localhost",
                             "--header", "Subject: e2e test", "--body", body, "--pipeline"],
                            capture_output=True, text=True, timeout=60)
        assert cp.returncode == 0, cp.stdout + cp.stderr
        files = wait_files(inst, 1)
        assert len(files) == 1
        (qid, qf), = files.items()
        assert qf.envelope.sender == "sender@example.com"
        assert [r.address for r in qf.recipients] == ["anyone@localhost"]
        content = qf.read_content(eol=b"\n")
        assert content.startswith(b"Received: from ")
        assert f"id {qid}".encode() in content
        assert b"Subject: e2e test\n" in content
        # swaks dot-stuffs the body on the wire ("..." for ".."); smtpd unstuffs it again
        assert b"\n\nfirst line\nsecond line\n..starts with two dots\n" in content
        inst.wait_log(rf"postel/smtpd\[\d+\]: {qid}: client=localhost\[127\.0\.0\.1\]")
        inst.wait_log(r"disconnect from localhost\[127\.0\.0\.1\] ehlo=1 mail=1 rcpt=1 data=1 "
                      r"quit=1 commands=5")


def test_smtplib_esmtp_extensions_and_dsn_fields(tmp_path):
    with held_instance(tmp_path, message_size_limit="100000") as inst:
        inst.start()
        with smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=30) as s:
            code, text = s.ehlo("client.example")
            assert code == 250
            for kw in ("pipelining", "size", "8bitmime", "dsn", "enhancedstatuscodes",
                       "smtputf8", "chunking"):
                assert s.has_extn(kw), kw
            assert s.esmtp_features["size"] == "100000"
            # SIZE declared over the limit: 552 5.3.4 at MAIL FROM
            code, text = s.mail("a@example.com", ["SIZE=200000"])
            assert (code, text[:5]) == (552, b"5.3.4")
            s.rset()
            s.mail("a@example.com", ["BODY=8BITMIME", "RET=HDRS", "ENVID=env+2Did"])
            code, _ = s.rcpt("anyone@localhost", ["NOTIFY=SUCCESS,FAILURE",
                                                  "ORCPT=rfc822;orig+40x@example.com"])
            assert code == 250
            code, text = s.data("Subject: 8bit\r\n\r\ncaf\xc3\xa9\r\n".encode("latin-1"))
            assert code == 250 and text.startswith(b"2.0.0 Ok: queued as ")
        qid = QID_RE.search(text.decode()).group(1)
        qf = wait_files(inst, 1)[qid]
        rcpt = qf.recipients[0]
        assert rcpt.dsn_orcpt == "rfc822;orig@x@example.com" or "orig" in rcpt.dsn_orcpt
        assert rcpt.dsn_notify != 0
        assert qf.envelope.dsn_envid == "env-id"
        assert qf.envelope.dsn_ret != 0
        assert "café".encode() in qf.read_content()


def test_oversized_data_is_refused_and_nothing_queued(tmp_path):
    with held_instance(tmp_path, message_size_limit="20000") as inst:
        inst.start()
        with smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=30) as s:
            s.ehlo()
            s.mail("a@example.com")
            s.rcpt("anyone@localhost")
            code, text = s.data(b"Subject: big\r\n\r\n" + b"x" * 100 + b"\r\n" * 1 + (b"y" * 998 + b"\r\n") * 40)
            assert (code, text[:5]) == (552, b"5.3.4")
            # the session goes on
            assert s.noop()[0] == 250
        time.sleep(0.3)
        assert incoming(inst) == {}


def test_bdat_chunking(tmp_path):
    with held_instance(tmp_path) as inst:
        inst.start()
        msg = b"Subject: bdat\r\n\r\nline one\r\n.line with a dot\r\n"
        out = converse(inst.smtp_port, [
            b"EHLO client.example\r\n",
            b"MAIL FROM:<a@example.com>\r\n",
            b"RCPT TO:<anyone@localhost>\r\n",
            b"BDAT 10\r\n" + msg[:10],
            b"BDAT %d LAST\r\n" % (len(msg) - 10) + msg[10:],
            b"QUIT\r\n",
        ])
        assert b"250 2.0.0 Ok: 10 bytes" in out
        m = re.search(rb"250 2.0.0 Ok: \d+ bytes queued as (\w+)", out)
        assert m, out
        qf = wait_files(inst, 1)[m.group(1).decode()]
        # BDAT content is not dot-unstuffed (RFC 3030)
        assert qf.read_content(eol=b"\r\n").endswith(b"\r\n\r\nline one\r\n.line with a dot\r\n")


SMUGGLING = [
    b"\n.\n", b"\n.\r\n", b"\r\n.\n", b"\r.\r", b"\r\n.\r", b"\r.\r\n", b"\n.\r",
]


@pytest.mark.parametrize("seq", SMUGGLING, ids=[repr(s) for s in SMUGGLING])
def test_smuggling_sequences_never_end_data(tmp_path, seq):
    with held_instance(tmp_path) as inst:
        inst.start()
        payload = (b"Subject: outer\r\n\r\nouter body" + seq +
                   b"MAIL FROM:<evil@example.com>\r\nRCPT TO:<victim@localhost>\r\nDATA\r\n"
                   b"Subject: smuggled\r\n\r\nsmuggled body\r\n.\r\n")
        out = converse(inst.smtp_port, [
            b"EHLO client.example\r\n",
            b"MAIL FROM:<a@example.com>\r\n",
            b"RCPT TO:<anyone@localhost>\r\n",
            b"DATA\r\n",
            payload,
            b"QUIT\r\n",
        ])
        queued = re.findall(rb"queued as (\w+)", out)
        files = wait_files(inst, 1)
        assert len(queued) <= 1 and len(files) <= 1, out
        for qf in files.values():
            assert [r.address for r in qf.recipients] == ["anyone@localhost"]
            assert b"smuggled body" in qf.read_content()   # stayed inside the first message
            assert qf.envelope.sender == "a@example.com"


def test_bare_lf_reject_mode(tmp_path):
    with held_instance(tmp_path, smtpd_forbid_bare_newline="reject",
                       smtpd_forbid_bare_newline_exclusions="") as inst:
        inst.start()
        out = converse(inst.smtp_port, [b"EHLO client.example\n"])
        assert re.search(rb"^5\d\d 5\.5\.2 .*bare <LF>", out, re.M), out


def test_relay_is_denied_from_outside_mynetworks(tmp_path):
    with held_instance(tmp_path, mynetworks="192.0.2.0/24") as inst:
        inst.start()
        with smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=30) as s:
            s.ehlo("client.example")
            s.mail("a@example.com")
            code, text = s.rcpt("victim@elsewhere.example")
            assert (code, text) == (454, b"4.7.1 <victim@elsewhere.example>: Relay access denied")
            code, _ = s.rcpt("anyone@localhost")          # local mail is still welcome
            assert code == 250
        line = inst.wait_log(r"NOQUEUE: reject: RCPT")
        assert re.search(r"NOQUEUE: reject: RCPT from localhost\[127\.0\.0\.1\]: 454 4\.7\.1 "
                         r"<victim@elsewhere\.example>: Relay access denied; "
                         r"from=<a@example\.com> to=<victim@elsewhere\.example> proto=ESMTP "
                         r"helo=<client\.example>", line), line


def test_non_smtp_client_is_disconnected(tmp_path):
    with held_instance(tmp_path) as inst:
        inst.start()
        out = converse(inst.smtp_port, [b"GET / HTTP/1.0\r\n", b"Host: x\r\n"])
        assert b"221 2.7.0 Error: I can break rules, too. Goodbye.\r\n" in out
        assert b"Host" not in out
        inst.wait_log(r"warning: non-SMTP command from localhost\[127\.0\.0\.1\]: GET / HTTP/1\.0")


def test_sequence_and_syntax_errors(tmp_path):
    with held_instance(tmp_path) as inst:
        inst.start()
        out = converse(inst.smtp_port, [
            b"RCPT TO:<anyone@localhost>\r\n",
            b"MAIL FROM:bad address\r\n",
            b"MAIL FROM:<unterminated@example.com\r\n",
            b"FOO\r\n",
            b"DATA\r\n",
            b"QUIT\r\n",
        ])
        assert b"503 5.5.1 Error: need MAIL command\r\n" in out
        # as Postfix: the second word is taken for an ESMTP parameter
        assert b"555 5.5.4 Unsupported option: ADDRESS\r\n" in out
        assert re.search(rb"\r\n501 5\.[15]\.[47] [^\r]*\r\n500 5\.5\.2", out), out
        assert b"500 5.5.2 Error: command not recognized\r\n" in out
        assert b"221 2.0.0 Bye\r\n" in out


def test_smtp_source_load_all_queued_and_parseable(tmp_path):
    source = require_peer("smtp-source")
    n, sessions = 2000, 20
    with held_instance(tmp_path) as inst:
        inst.start()
        cp = subprocess.run([source, "-s", str(sessions), "-m", str(n), "-l", "1024",
                             "-f", "load@example.com", "-t", "anyone@localhost",
                             f"127.0.0.1:{inst.smtp_port}"],
                            capture_output=True, text=True, timeout=300)
        assert cp.returncode == 0, cp.stderr
        files = wait_files(inst, n, timeout=60)
        assert len(files) == n
        for qf in files.values():
            assert qf.envelope.sender == "load@example.com"
            assert [r.address for r in qf.recipients] == ["anyone@localhost"]
            assert qf.message_size > 1024
        assert inst.count_log(r"postel/smtpd\[\d+\]: \w+: client=") == n


def _send_loop(port: int, stop: threading.Event, acked: list[str], failures: list[str]) -> None:
    """_send_loop - one client sending messages until told to stop."""
    while not stop.is_set():
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=20) as s:
                for _ in range(20):
                    if stop.is_set():
                        break
                    s.mail("crash@example.com")
                    s.rcpt("anyone@localhost")
                    code, text = s.data(b"Subject: crash test\r\n\r\nbody\r\n")
                    if code == 250:
                        acked.append(QID_RE.search(text.decode()).group(1))
                    else:
                        failures.append(f"{code} {text!r}")
        except (smtplib.SMTPException, OSError) as exc:
            failures.append(repr(exc))
            time.sleep(0.05)


@pytest.mark.parametrize("victim", ["cleanup", "smtpd"])
def test_kill_9_during_load_loses_no_acknowledged_mail(tmp_path, victim):
    with held_instance(tmp_path) as inst:
        inst.start()
        stop = threading.Event()
        acked: list[str] = []
        failures: list[str] = []
        threads = [threading.Thread(target=_send_loop, args=(inst.smtp_port, stop, acked, failures))
                   for _ in range(4)]
        for t in threads:
            t.start()
        try:
            killed = 0
            deadline = time.monotonic() + 20
            while killed < 3 and time.monotonic() < deadline:
                time.sleep(0.7)
                pids = [int(p) for p in re.findall(rf"postel/{victim}\[(\d+)\]", inst.log_text())]
                live = [p for p in set(pids) if p in inst.pids()]
                for pid in live:
                    os.kill(pid, signal.SIGKILL)
                    killed += 1
            time.sleep(1.0)
        finally:
            stop.set()
            for t in threads:
                t.join(30)
        assert killed >= 1
        assert len(acked) > 10
        files = incoming(inst)          # every file parses: QueueFileReader raises on a bad one
        missing = [q for q in acked if q not in files]
        assert missing == [], f"acknowledged but not queued: {missing}"
        # Files that were never acknowledged may exist only when complete (cleanup
        # committed, the reply was lost with the process): they parsed above.
        leftovers = [n for n in os.listdir(os.path.join(inst.queue_dir, "incoming"))
                     if not n.endswith(".tmp") and n not in files]
        assert leftovers == []


def test_smtputf8_vrfy_etrn_with_smtplib(tmp_path):
    with held_instance(tmp_path, fast_flush_domains="example.net") as inst:
        inst.start()
        with smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=30) as s:
            s.ehlo("client.example")
            assert s.has_extn("smtputf8")
            s.command_encoding = "utf-8"     # what smtplib does itself for SMTPUTF8 sendmail()
            # SMTPUTF8: a UTF-8 address is refused without the parameter, accepted with it
            code, text = s.mail("jöran@example.com")
            assert (code, text[:5]) == (553, b"5.6.7")
            s.rset()
            code, _ = s.mail("jöran@example.com", ["SMTPUTF8", "BODY=8BITMIME"])
            assert code == 250
            assert s.rcpt("anyone@localhost")[0] == 250
            code, text = s.data("Subject: ünïcödé\r\n\r\nbody\r\n".encode())
            assert code == 250
            qid = QID_RE.search(text.decode()).group(1)
            # VRFY answers 252 as Postfix does when the address is acceptable
            code, text = s.verify("anyone@localhost")
            assert code == 252
            # ETRN for a fast_flush domain starts a queue run; others are refused
            code, text = s.docmd("ETRN", "example.net")
            assert code == 250, text
            code, text = s.docmd("ETRN", "not-listed.example")
            assert code == 459, text
        qf = wait_files(inst, 1)[qid]
        assert qf.envelope.sender == "jöran@example.com"
        assert qf.envelope.attrs.get("smtputf8") in ("1", "yes", "true")


def test_xclient_and_xforward_only_for_authorized_clients(tmp_path):
    with held_instance(tmp_path) as inst:
        inst.start()
        with smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=30) as s:
            s.ehlo("client.example")
            code, text = s.docmd("XCLIENT", "ADDR=192.0.2.7 NAME=spoof.example")
            assert (code, text) == (550, b"5.7.0 Error: insufficient authorization")
            code, _ = s.docmd("XFORWARD", "ADDR=192.0.2.7")
            assert code == 550
    with held_instance(tmp_path / "authorized", smtpd_authorized_xclient_hosts="127.0.0.0/8",
                       smtpd_authorized_xforward_hosts="127.0.0.0/8",
                       mynetworks="192.0.2.0/24") as inst:
        inst.start()
        with smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=30) as s:
            s.ehlo("client.example")
            code, text = s.docmd("XCLIENT", "ADDR=198.51.100.9 NAME=[UNAVAILABLE] HELO=proxied.example")
            assert code == 220, text
            s.ehlo("proxied.example")
            s.mail("a@example.com")
            # the policy now sees the XCLIENT address: it is outside mynetworks
            code, text = s.rcpt("victim@elsewhere.example")
            assert code == 454, text
        inst.wait_log(r"NOQUEUE: reject: RCPT from unknown\[198\.51\.100\.9\]: 454 4\.7\.1")
        with smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=30) as s:
            s.ehlo("client.example")
            assert s.docmd("XFORWARD", "NAME=orig.example ADDR=203.0.113.5 PROTO=ESMTP HELO=orig-helo")[0] == 250
            code, text = s.sendmail("a@example.com", ["anyone@localhost"], b"Subject: fwd\r\n\r\nx\r\n") or (0, b"")
        files = wait_files(inst, 1)
        (qf,) = files.values()
        assert qf.envelope.attrs.get("client_address") == "203.0.113.5"
        assert qf.envelope.attrs.get("client_name") == "orig.example"
