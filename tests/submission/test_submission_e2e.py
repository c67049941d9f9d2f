"""End-to-end: sendmail/postdrop -> maildrop -> pickup -> cleanup -> incoming, and qmqpd.

One instance for the module (qmgr removed from master.cf, so that queued
mail stays in incoming/ where the tests read it), with a QMQP listener for
127.0.0.1 and a second one that authorizes nobody.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "e2e"))

from lib import Instance, free_port  # noqa: E402

from postel.queue import QueueFileReader  # noqa: E402

SENDMAIL = os.path.join(os.path.dirname(sys.executable), "sendmail")


@pytest.fixture(scope="module")
def inst(tmp_path_factory):
    qmqp, qmqp_closed = free_port(), free_port()
    i = Instance(tmp_path_factory.mktemp("submission"),
                 extra_main={"qmqpd_authorized_clients": "127.0.0.1, [::1]/128",
                             "qmqpd_error_delay": "0s",
                             "header_checks": "regexp:$config_directory/header_checks"},
                 extra_master=[f"127.0.0.1:{qmqp} inet n - n - - qmqpd",
                               f"127.0.0.1:{qmqp_closed} inet n - n - - qmqpd "
                               "-o qmqpd_authorized_clients=192.0.2.1"])
    i.remove_master("qmgr ")
    with open(os.path.join(i.dir, "header_checks"), "w") as f:
        f.write("/^Subject: reject-me/ REJECT not wanted here\n")
    i.qmqp_port, i.qmqp_closed_port = qmqp, qmqp_closed
    try:
        i.start()
        yield i
    finally:
        i.cleanup()


def _sh(inst, script: str, stdin: str = "") -> subprocess.CompletedProcess:
    env = dict(os.environ, MAIL_CONFIG=inst.dir, SENDMAIL=SENDMAIL, POSTEL=os.path.join(
        os.path.dirname(sys.executable), "postel"))
    return subprocess.run(["bash", "-c", script], input=stdin, capture_output=True, text=True,
                          env=env, timeout=60)


def _queued(inst, sender_pattern: str) -> QueueFileReader:
    """_queued - the incoming file of the message pickup logged for this sender."""
    line = inst.wait_log(rf"postel/pickup\[\d+\]: (\w+): uid=\d+ from=<{sender_pattern}>")
    qid = re.search(r"\]: (\w+): uid=", line).group(1)
    inst.wait_log(rf"postel/cleanup\[\d+\]: {qid}: message-id=")
    # cleanup logs message-id= while it reads the headers; the file appears when committed
    path = os.path.join(inst.queue_dir, "incoming", qid)
    deadline = time.monotonic() + 10
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.02)
    return QueueFileReader(path, writable=False)


def test_sendmail_t_from_shell_script(inst):
    cp = _sh(inst, '"$SENDMAIL" -t -f tsender <<EOF\n'
                   'To: Bob <bob@example.com>\nCc: carol@example.org\nSubject: dash t\n\n'
                   'hello\n.\nnot part of it\nEOF\necho rc=$?')
    assert cp.stdout.strip() == "rc=0", cp.stderr
    r = _queued(inst, r"tsender")
    assert r.envelope.sender.startswith("tsender@")
    rcpts = sorted(x.address for x in r.recipients + r.extracted.recipients)
    assert rcpts == ["bob@example.com", "carol@example.org"]
    assert r.envelope.attrs.get("rewrite_context") == "local"
    content = r.read_content()
    assert re.match(rb"Received: by \S+ \(Postel, from userid %d\)\n\tid \w+; " % os.getuid(),
                    content)
    assert b"Subject: dash t\n" in content and content.endswith(b"\nhello\n")
    assert b"not part of it" not in content
    assert os.listdir(os.path.join(inst.queue_dir, "maildrop")) == []


def test_sendmail_flags(inst):
    cp = _sh(inst, '"$SENDMAIL" -i -f flags@example.net -F "Fred Flags" -N success,failure '
                   '-R hdrs -V envid42 -B 8BITMIME dave@example.com',
             stdin="Subject: flags\n\nline\n.\nstill here\n")
    assert cp.returncode == 0, cp.stderr
    r = _queued(inst, r"flags@example\.net")
    assert r.envelope.sender == "flags@example.net"
    assert r.envelope.full_name == "Fred Flags"
    assert r.envelope.dsn_envid == "envid42" and r.envelope.dsn_ret == 2
    assert [(x.address, x.dsn_notify) for x in r.recipients] == [("dave@example.com", 2 | 4)]
    assert r.envelope.attrs.get("encoding") == "8bitmime"
    content = r.read_content()
    assert content.endswith(b"\nline\n.\nstill here\n")
    assert b"From: Fred Flags <flags@example.net>" in content


def test_sendmail_bs_session(inst):
    lines = ("EHLO client.example\r\nMAIL FROM:<bs@example.com>\r\n"
             "RCPT TO:<erin@example.com> NOTIFY=NEVER\r\nDATA\r\n"
             "Subject: via -bs\r\n\r\nsmtp body\r\n..dot\r\n.\r\nQUIT\r\n")
    cp = subprocess.run([SENDMAIL, "-bs"], input=lines.encode(), capture_output=True,
                        env=dict(os.environ, MAIL_CONFIG=inst.dir), timeout=60)
    out = cp.stdout.decode()
    codes = [ln[:3] for ln in out.split("\r\n") if ln[3:4] == " "]
    assert codes == ["220", "250", "250", "250", "354", "250", "221"], out
    assert "Ok: queued as " in out
    r = _queued(inst, r"bs@example\.com")
    assert [(x.address, x.dsn_notify) for x in r.recipients] == [("erin@example.com", 1)]
    assert r.read_content().endswith(b"\nsmtp body\n.dot\n")


def test_sendmail_no_recipients_exit_status(inst):
    cp = _sh(inst, 'echo hi | "$SENDMAIL"; echo rc=$?')
    assert "rc=64" in cp.stdout
    assert "sendmail: fatal: Recipient addresses must be specified" in cp.stderr


def test_postdrop_refuses_truncated_input(inst, tmp_path):
    from postel.commands import postdrop
    from postel.queue import Envelope, QueueDir, Recipient
    qd = QueueDir(str(tmp_path))
    qd.create_dirs()
    qid = postdrop.write_maildrop(qd, Envelope("trunc", [Recipient("x@example.com")]),
                                  [b"Subject: t\n\nbody\n"])
    data = open(qd.path("maildrop", qid), "rb").read()
    postel = os.path.join(os.path.dirname(sys.executable), "postel")
    cp = subprocess.run([postel, "-c", inst.dir, "drop"], input=data[:-7], capture_output=True,
                        timeout=60)
    assert cp.returncode == 65
    assert b"postdrop: fatal: " in cp.stderr and b"malformed input" in cp.stderr
    assert os.listdir(os.path.join(inst.queue_dir, "maildrop")) == []
    cp = subprocess.run([postel, "-c", inst.dir, "drop"], input=data, capture_output=True,
                        timeout=60)
    assert cp.returncode == 0, cp.stderr
    r = _queued(inst, r"trunc")
    assert r.recipients[0].address == "x@example.com"


def test_sendmail_through_postdrop_command(inst):
    from postel.commands import sendmail
    from postel.queue import Envelope, Recipient
    env = Envelope("viadrop", [Recipient("y@example.com")])
    sendmail.drop_via_postdrop(inst.dir, env, iter([b"Subject: pd\n\n", b"via postdrop\n"]), 0)
    r = _queued(inst, r"viadrop")
    assert r.read_content().endswith(b"\nvia postdrop\n")


def test_cleanup_reject_removes_maildrop_file(inst):
    cp = _sh(inst, '"$SENDMAIL" -f rejected z@example.com',
             stdin="Subject: reject-me\n\nbody\n")
    assert cp.returncode == 0, cp.stderr
    line = inst.wait_log(r"warning: \w+: uid=\d+: message rejected by cleanup: 550 5\.7\.1 "
                         r".*not wanted here; (removed|returned to sender)")
    qid = re.search(r"warning: (\w+): uid=", line).group(1)
    assert not os.path.exists(os.path.join(inst.queue_dir, "incoming", qid))
    assert os.listdir(os.path.join(inst.queue_dir, "maildrop")) == []


def test_malformed_maildrop_file_goes_to_corrupt(inst):
    from postel.ipc.trigger import send_trigger
    from postel.queue.qid import new_qid
    qid = new_qid()
    with open(os.path.join(inst.queue_dir, "maildrop", qid), "wb") as f:
        f.write(b"C\x05junk and more junk")
    assert send_trigger(inst.queue_dir, "public/pickup")
    inst.wait_log(rf"warning: {qid}: corrupt queue file: ")
    inst.wait_log(rf'warning: saving corrupt file "{qid}" from queue "maildrop"')
    assert os.path.exists(os.path.join(inst.queue_dir, "corrupt", qid))
    assert not os.path.exists(os.path.join(inst.queue_dir, "maildrop", qid))


# -- QMQP


def netstring(data: bytes) -> bytes:
    return b"%d:%s," % (len(data), data)


def qmqp(port: int, payload: bytes) -> bytes:
    """qmqp - a minimal QMQP client: send the request, read the reply netstring."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    return data


def qmqp_request(message: bytes, sender: bytes, rcpts: list[bytes]) -> bytes:
    return netstring(netstring(message) + netstring(sender) + b"".join(map(netstring, rcpts)))


def test_qmqpd_accepts(inst):
    reply = qmqp(inst.qmqp_port, qmqp_request(b"Subject: qmqp\n\nqmqp body\n",
                                              b"q@example.com", [b"r1@example.com",
                                                                 b"r2@example.com"]))
    m = re.fullmatch(rb"(\d+):KOk: queued as (\w+),", reply)
    assert m and int(m.group(1)) == len(reply) - len(m.group(1)) - 2, reply
    qid = m.group(2).decode()
    inst.wait_log(rf"postel/qmqpd\[\d+\]: {qid}: client=\S+\[127\.0\.0\.1\]")
    inst.wait_log(r"postel/qmqpd\[\d+\]: connect from \S+\[127\.0\.0\.1\]")
    inst.wait_log(r"postel/qmqpd\[\d+\]: disconnect from \S+\[127\.0\.0\.1\]")
    r = QueueFileReader(os.path.join(inst.queue_dir, "incoming", qid), writable=False)
    assert r.envelope.sender == "q@example.com"
    assert [x.address for x in r.recipients] == ["r1@example.com", "r2@example.com"]
    assert r.envelope.attrs.get("protocol") == "QMQP"
    content = r.read_content()
    assert content.startswith(b"Received: from ") and b"with QMQP id " + qid.encode() in content
    assert content.endswith(b"\nqmqp body\n")


@pytest.mark.parametrize("payload", [
    b"12:abc",                                       # truncated
    b"x:",                                           # bad length
    netstring(netstring(b"msg") + netstring(b"s")),   # no recipients
    b"5:3:ab,,",                                      # inner netstring overruns
    b"99999999999:",                                  # length with too many digits
])
def test_qmqpd_rejects_malformed(inst, payload):
    reply = qmqp(inst.qmqp_port, payload)
    assert re.fullmatch(rb"\d+:DError: malformed request,", reply), reply


def test_qmqpd_unauthorized(inst):
    reply = qmqp(inst.qmqp_closed_port, qmqp_request(b"x\n", b"s@x", [b"r@x"]))
    assert reply == netstring(b"DError: Unauthorized client")
    inst.wait_log(r"warning: \S+\[127\.0\.0\.1\]: unauthorized client")


def test_qmqpd_message_too_large(inst):
    big = 10240000 + 1
    reply = qmqp(inst.qmqp_port, b"%d:%d:" % (big + 100, big))
    assert re.fullmatch(rb"\d+:DError: message too large \(5\.3\.4\),", reply), reply
