"""sendmail -bv through a whole instance: a report to the sender, nothing delivered."""

from __future__ import annotations

import email
import email.policy
import glob
import os
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "e2e"))

from lib import Instance  # noqa: E402

SENDMAIL = os.path.join(os.path.dirname(sys.executable), "sendmail")
SENDER = "root@localhost.localdomain"
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the report goes to root's Maildir")


def test_sendmail_bv_reports_without_delivering(tmp_path):
    with Instance(tmp_path, extra_main={
            "transport_maps": "texthash:$config_directory/transport"}) as inst:
        with open(os.path.join(inst.dir, "transport"), "w") as f:
            f.write("bad.example error:5.1.2 no such domain here\n")
        inst.start()
        cp = subprocess.run([SENDMAIL, "-bv", "-f", SENDER, "anyone@localhost", "y@bad.example"],
                            env=dict(os.environ, MAIL_CONFIG=inst.dir), capture_output=True,
                            text=True, timeout=60, input="")
        assert cp.returncode == 0, cp.stderr
        inst.wait_log(r"to=<anyone@localhost>, relay=local, .*status=deliverable "
                      r"\(delivers to mailbox\)", timeout=30)
        inst.wait_log(r"to=<y@bad\.example>, relay=none, .*dsn=5\.1\.2, "
                      r"status=undeliverable \(no such domain here\)", timeout=30)
        inst.wait_log(r"sender delivery status notification", timeout=30)
        deadline = time.monotonic() + 20
        paths: list[str] = []
        while time.monotonic() < deadline and not paths:
            paths = glob.glob(os.path.join(inst.dir, "mail", "root", "new", "*"))
            time.sleep(0.1)
        assert len(paths) == 1, inst.log_text()[-2000:]
        with open(paths[0], "rb") as fp:
            report = email.message_from_binary_file(fp, policy=email.policy.compat32)
        assert report["Subject"] == "Mail Delivery Status Report"
        fields = report.get_payload()[1].get_payload()[1:]
        assert sorted((f["Final-Recipient"], f["Action"]) for f in fields) == [
            ("rfc822; anyone@localhost", "deliverable"),
            ("rfc822; y@bad.example", "undeliverable")]
        assert not os.path.exists(os.path.join(inst.dir, "mail", "anyone"))
        assert inst.count_log(r"to=<(anyone@localhost|y@bad\.example)>.*status=(sent|bounced)") == 0
