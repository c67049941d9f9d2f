"""qmgr end to end: delay warnings, queue lifetime expiry, and the defer log of one attempt."""

from __future__ import annotations

import email
import email.policy
import glob
import os
import re
import smtplib
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "e2e"))

from lib import Instance  # noqa: E402

from postel.deliver.status import read_log  # noqa: E402

SENDER = "root@localhost.localdomain"
pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="local delivery to root's Maildir needs root")


def _instance(tmp_path, **extra) -> Instance:
    main = {"minimal_backoff_time": "1s", "maximal_backoff_time": "1s", "queue_run_delay": "1s",
            "transport_maps": "texthash:$config_directory/transport"}
    main.update(extra)
    inst = Instance(tmp_path, extra_main=main)
    with open(os.path.join(inst.dir, "transport"), "w") as f:
        f.write("later.example retry:4.2.2 mailbox busy\n")
    return inst


def _reports(inst, count: int, timeout: float = 30.0) -> list:
    """_reports - the multipart/report messages in root's Maildir (waits for count)."""
    deadline = time.monotonic() + timeout
    found: list = []
    while time.monotonic() < deadline:
        found = []
        for path in sorted(glob.glob(os.path.join(inst.dir, "mail", "root", "new", "*"))):
            with open(path, "rb") as fp:
                msg = email.message_from_binary_file(fp, policy=email.policy.compat32)
            if msg.get_content_type() == "multipart/report":
                found.append(msg)
        if len(found) >= count:
            return found
        time.sleep(0.1)
    pytest.fail(f"{len(found)} of {count} reports; log:\n{inst.log_text()[-3000:]}")


def _send(inst, rcpt: str) -> None:
    with smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=30) as s:
        s.sendmail(SENDER, [rcpt], f"From: {SENDER}\nSubject: slow\n\nhello\n")


def test_delay_warning_then_expiry_bounce(tmp_path):
    """delay_warning_time sends one "delayed" DSN; after maximal_queue_lifetime the deferral
    becomes a failure (4.2.2 reported as 5.2.2) in a bounce to the sender's Maildir."""
    with _instance(tmp_path, delay_warning_time="2s", maximal_queue_lifetime="6s") as inst:
        inst.start()
        _send(inst, "w@later.example")
        inst.wait_log(r"sender delay notification", timeout=30)
        inst.wait_log(r"sender non-delivery notification", timeout=40)
        reports = {m["Subject"]: m for m in _reports(inst, 2)}
        delay = reports["Delayed Mail (still being retried)"]
        fields = delay.get_payload()[1].get_payload()[1]
        assert (fields["Action"], fields["Status"]) == ("delayed", "4.2.2")
        assert fields["Final-Recipient"] == "rfc822; w@later.example"
        bounce = reports["Undelivered Mail Returned to Sender"]
        fields = bounce.get_payload()[1].get_payload()[1]
        assert (fields["Action"], fields["Status"]) == ("failed", "5.2.2")
        assert "<w@later.example>: mailbox busy" in \
            bounce.get_payload()[0].get_payload(decode=True).decode()
        assert inst.count_log(r"sender delay notification") == 1
        qid = re.search(r"(\w+): to=<w@later\.example>", inst.log_text()).group(1)
        inst.wait_log(rf"{qid}: removed")
        assert not glob.glob(os.path.join(inst.queue_dir, "*", "*", qid)) and \
            not glob.glob(os.path.join(inst.queue_dir, "*", qid))


def test_defer_log_holds_only_the_last_attempt(tmp_path):
    """Each time a message re-enters the active queue its defer log starts afresh."""
    with _instance(tmp_path) as inst:
        inst.start()
        _send(inst, "w@later.example")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and \
                inst.count_log(r"to=<w@later\.example>.*status=deferred") < 3:
            time.sleep(0.1)
        assert inst.count_log(r"to=<w@later\.example>.*status=deferred") >= 3
        logs = glob.glob(os.path.join(inst.queue_dir, "defer", "**", "*"), recursive=True)
        entries = [e for p in logs if os.path.isfile(p) for e in read_log(p)]
        assert len(entries) <= 1, entries
