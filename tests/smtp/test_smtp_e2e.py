"""End to end: smtplib -> smtpd -> cleanup -> qmgr -> smtp -> Postfix's smtp-sink (relayhost)."""

from __future__ import annotations

import os
import smtplib
import sys

from smtp_harness import Sink, split_dump

from peerlib import require_peer

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))

from lib import Instance  # noqa: E402

BODY = (b"From: s@example.com\r\nTo: r@remote.example\r\nSubject: e2e smtp\r\n\r\n"
        b"line\r\n.leading dot\r\n")


def test_e2e_relayhost_to_smtp_sink(tmp_path):
    sink = Sink(require_peer("smtp-sink"))
    try:
        with Instance(tmp_path, extra_main={"relayhost": f"[127.0.0.1]:{sink.port}"}) as inst:
            inst.start()
            with smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=20) as s:
                s.sendmail("s@example.com", ["r@remote.example", "q@remote.example"], BODY)
            line = inst.wait_log(r"to=<r@remote\.example>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:"
                                 rf"{sink.port}, .*status=sent \(250 2\.0\.0 Ok\)", timeout=30)
            inst.wait_log(r"to=<q@remote\.example>, .*status=sent", timeout=30)
            inst.wait_log(r": removed", timeout=30)
            meta, body = split_dump(sink.messages(1)[0])
    finally:
        sink.stop()
    assert "postel/smtp[" in line
    assert [a.split()[0] for a in meta["X-Rcpt-Args"]] == ["<r@remote.example>",
                                                          "<q@remote.example>"]
    head, _, rest = body.partition(b"\n\n")
    assert rest == b"line\n.leading dot\n"
    assert b"Subject: e2e smtp" in head and b"Received: from " in head
