"""anvil + smtpd: client limits in a whole instance, with smtplib clients."""

from __future__ import annotations

import os
import re
import smtplib
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))

from lib import Instance  # noqa: E402

LIMITS = {"smtpd_client_event_limit_exceptions": "", "smtpd_client_connection_count_limit": "2",
          "smtpd_client_recipient_rate_limit": "3", "smtpd_peername_lookup": "no"}


def _smtp(inst: Instance) -> smtplib.SMTP:
    return smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=30)


def test_connection_count_limit_third_client_gets_421(tmp_path):
    with Instance(tmp_path, extra_main=LIMITS) as inst:
        inst.start()
        # start() probed the port: let that session's anvil disconnect happen first
        inst.wait_log(r"disconnect from localhost\[127\.0\.0\.1\] commands=0")
        one, two = _smtp(inst), _smtp(inst)
        assert one.ehlo()[0] == 250 and two.ehlo()[0] == 250
        try:
            _smtp(inst)
        except smtplib.SMTPConnectError as exc:
            assert exc.smtp_code == 421
            assert b"4.7.0" in exc.smtp_error
            assert b"Error: too many connections from 127.0.0.1" in exc.smtp_error
        else:
            raise AssertionError("third connection was accepted")
        inst.wait_log(r"warning: Connection concurrency limit exceeded: 3 from "
                      r"localhost\[127\.0\.0\.1\] for service ")
        one.quit()
        inst.wait_log(r"disconnect from localhost\[127\.0\.0\.1\] ehlo=1 quit=1")
        three = _smtp(inst)                      # a slot is free again
        assert three.noop()[0] == 250
        # the recipient rate limit: 3 per time unit, the 4th gets 450
        two.mail("sender@example.com")
        codes = [two.rcpt(f"anyone{i}@localhost")[0] for i in range(4)]
        assert codes == [250, 250, 250, 450]
        assert b"Error: too many recipients from 127.0.0.1" in two.rcpt("x@localhost")[1]
        inst.wait_log(r"warning: Recipient address rate limit exceeded: 4 from localhost")
        two.quit()
        three.quit()


def test_mail_flows_without_anvil_and_smtpd_warns_once(tmp_path):
    with Instance(tmp_path, extra_main=LIMITS) as inst:
        inst.remove_master("anvil ")
        inst.start()
        for _ in range(4):
            with _smtp(inst) as s:
                refused = s.sendmail("sender@example.com", ["anyone@localhost"],
                                     b"Subject: no anvil\r\n\r\nbody\r\n")
                assert refused == {}
        inst.wait_log(r"postel/cleanup\[\d+\]: \w+: message-id=", timeout=20)
        # once per smtpd process, not once per session
        pids = re.findall(r"smtpd\[(\d+)\]: warning: connect to private/anvil service: .*"
                          r"continuing without client limits", inst.log_text())
        assert pids and len(pids) == len(set(pids))
