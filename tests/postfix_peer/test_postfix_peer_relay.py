"""Issue 5: Postel relays to a real Postfix, and a real Postfix relays to Postel.

One private Postfix and one Postel instance point their relayhost at each
other.  Postfix delivers pf.test with its virtual(8) agent into a Maildir
under the work directory; Postel delivers localhost with its local agent
into DIR/mail/<user>/.  Each direction checks the delivered bytes, the
receiving side's Received header (it must name the sending client's EHLO
name) and the sending side's status=sent log line with the relay.
"""

from __future__ import annotations

import os
import pwd
import re
import smtplib

import pytest
from lib import Instance
from pfpeer import Postfix, need_postfix, wait_file, wait_log_count, workdir

POSTEL_HELO = "postel.test"


@pytest.fixture(scope="module")
def pair():
    """pair - (postfix, postel, workdir), relaying to each other, both started."""
    need_postfix()
    with workdir() as wd:
        nobody = pwd.getpwnam("nobody")
        vmail = os.path.join(wd, "vmail")
        os.mkdir(vmail, 0o755)
        os.chown(vmail, nobody.pw_uid, nobody.pw_gid)
        inst = Instance(wd, extra_main={"myhostname": POSTEL_HELO,
                                        "smtp_dns_support_level": "disabled"})
        pf = Postfix(wd, "relay", {
            "relayhost": f"[127.0.0.1]:{inst.smtp_port}",
            "virtual_mailbox_domains": "pf.test",
            "virtual_mailbox_base": vmail,
            "virtual_mailbox_maps": "inline:{ u@pf.test=u/ }",
            "virtual_uid_maps": f"static:{nobody.pw_uid}",
            "virtual_gid_maps": f"static:{nobody.pw_gid}",
        })
        with open(os.path.join(inst.dir, "main.cf"), "a") as f:
            f.write(f"relayhost = [127.0.0.1]:{pf.smtp_port}\n")
        try:
            pf.start()
            inst.start()
            yield pf, inst, wd
        finally:
            inst.cleanup()
            pf.stop()


def test_postel_relays_to_postfix(pair):
    pf, inst, wd = pair
    body = b"Subject: postel to postfix\r\n\r\nline one\r\n.dot line\r\n"
    with smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=30) as s:
        s.sendmail("alice@example.com", ["u@pf.test"], body)
    files = wait_file(os.path.join(wd, "vmail", "u", "new"))
    assert len(files) == 1, pf.log_text()[-3000:] + inst.log_text()[-3000:]
    with open(files[0], "rb") as f:
        data = f.read()
    head, _, got = data.partition(b"\n\n")
    assert got == b"line one\n.dot line\n"
    assert b"\nSubject: postel to postfix\n" in b"\n" + head + b"\n"
    # The topmost Received: header is Postfix's; it names Postel's EHLO.
    first = re.search(rb"^Received: from (\S+) \(localhost \[127\.0\.0\.1\]\)\n\tby (\S+) \(Postfix\)",
                      data, re.M)
    assert first is not None, data.decode(errors="replace")
    assert first.group(1) == POSTEL_HELO.encode()
    assert re.search(rb"^Return-Path: <alice@example\.com>$", data, re.M)
    line = inst.wait_log(r"postel/smtp\[\d+\]: \w+: to=<u@pf\.test>.* status=sent")
    assert f"relay=127.0.0.1[127.0.0.1]:{pf.smtp_port}," in line
    assert wait_log_count(pf.log_text, r"postfix/virtual\[\d+\]: \w+: to=<u@pf\.test>.*status=sent", 1) == 1


def test_postfix_relays_to_postel(pair):
    pf, inst, _wd = pair
    body = b"Subject: postfix to postel\r\n\r\nhello postel\r\n"
    with smtplib.SMTP("127.0.0.1", pf.smtp_port, timeout=30) as s:
        s.sendmail("bob@example.org", ["anyone@localhost"], body)
    files = wait_file(os.path.join(inst.dir, "mail", "anyone", "new"))
    assert len(files) == 1, pf.log_text()[-3000:] + inst.log_text()[-3000:]
    with open(files[0], "rb") as f:
        data = f.read()
    head, _, got = data.partition(b"\n\n")
    assert got == b"hello postel\n"
    # Postel's Received: header names Postfix's EHLO (its myhostname) ...
    first = re.search(rb"^Received: from (\S+) \(localhost \[127\.0\.0\.1\]\)\n\tby (\S+) \(Postel\)",
                      data, re.M)
    assert first is not None, data.decode(errors="replace")
    assert first.group(1) == b"localhost.localdomain"
    # ... and Postfix's own Received: header is below it.
    assert re.search(rb"^\tby localhost\.localdomain \(Postfix\) with ESMTP id ", data, re.M)
    assert wait_log_count(pf.log_text, rf"postfix/smtp\[\d+\]: \w+: to=<anyone@localhost>, "
                                       rf"relay=127\.0\.0\.1\[127\.0\.0\.1\]:{inst.smtp_port},"
                                       rf".*status=sent", 1) == 1
    inst.wait_log(r"postel/local\[\d+\]: \w+: to=<anyone@localhost>.* status=sent")
