"""lmtp(8) client against Dovecot LMTP: Maildir delivery, per-recipient replies, unix:/inet:."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from smtp_harness import Env, free_port, public_tmpdir, wait_port

from peerlib import require_peer

MSG = b"From: sender@example.org\nSubject: lmtp\n\nhello\n.dot\n"


@pytest.fixture(scope="module")
def dovecot():
    path = require_peer("dovecot")
    require_peer("doveadm")
    d = public_tmpdir()
    port = free_port()
    conf = Path(d) / "dovecot.conf"
    conf.write_text(f"""
protocols = lmtp
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
ssl = no
listen = 127.0.0.1
passdb {{
  driver = static
  args = nopassword=y
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={d}/%n
}}
mail_location = maildir:{d}/%n/Maildir
lmtp_save_to_detail_mailbox = no
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {port}
  }}
  unix_listener lmtp {{
    mode = 0666
  }}
}}
service anvil {{
  chroot =
}}
service stats {{
  chroot =
}}
""")
    subprocess.run([path, "-c", str(conf)], check=True)
    wait_port(port)
    yield d, port
    subprocess.run(["doveadm", "-c", str(conf), "stop"], check=False)
    time.sleep(0.2)


def _maildir_messages(base: str, user: str) -> list[bytes]:
    """the files delivered into user's Maildir/new."""
    new = Path(base) / user / "Maildir" / "new"
    end = time.monotonic() + 5
    while not new.exists() and time.monotonic() < end:
        time.sleep(0.05)
    return [f.read_bytes() for f in sorted(new.iterdir())] if new.exists() else []


def _body(delivered: bytes) -> bytes:
    """what follows Dovecot's Return-Path/Delivered-To/Received lines."""
    lines = delivered.split(b"\n")
    i = 0
    while lines[i].startswith((b"Return-Path:", b"Delivered-To:", b"Received:", b"\t", b" ")):
        i += 1
    return b"\n".join(lines[i:])


def test_lmtp_inet_delivers_to_maildir(tmp_path, dovecot):
    base, port = dovecot
    env = Env(tmp_path)
    qid = env.queue(MSG, ["alice@example.com", "bob@example.com"])
    dctx = env.deliver(env.request(qid, f"inet:127.0.0.1:{port}", transport="lmtp"), lmtp=True)
    assert dctx.status == ["sent", "sent"]
    alice = _maildir_messages(base, "alice")
    assert len(alice) == 1 and _body(alice[0]) == MSG
    assert len(_maildir_messages(base, "bob")) == 1
    text = env.log_text()
    assert f"to=<alice@example.com>, relay=127.0.0.1[127.0.0.1]:{port}" in text
    assert "status=sent (250 2.0.0 <alice@example.com>" in text


def test_lmtp_unix_socket(tmp_path, dovecot):
    base, _ = dovecot
    env = Env(tmp_path)
    sock = f"{base}/run/lmtp"
    qid = env.queue(MSG, ["carol@example.com"])
    dctx = env.deliver(env.request(qid, f"unix:{sock}", transport="lmtp"), lmtp=True)
    assert dctx.status == ["sent"]
    assert len(_maildir_messages(base, "carol")) == 1
    assert f"relay=client.test.example[{sock}]," in env.log_text()


def test_lmtp_connect_failure(tmp_path):
    env = Env(tmp_path)
    qid = env.queue(MSG, ["dave@example.com"])
    dctx = env.deliver(env.request(qid, f"unix:{tmp_path}/nosock", transport="lmtp"), lmtp=True)
    assert dctx.status == ["deferred"] and dctx.site_dead
    assert f"connect to client.test.example[{tmp_path}/nosock]: No such file or directory" \
        in env.log_text()
