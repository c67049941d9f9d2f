"""postscreen in front of smtpd, Postfix's master.cf recipe, DNSBL through a real unbound."""

from __future__ import annotations

import os
import smtplib
import socket
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))

from lib import Instance  # noqa: E402

from peerlib import Unbound  # noqa: E402

# 127.0.0.2 is listed (weight 3 reaches the threshold), 127.0.0.1 is not.
ZONE = ["2.0.0.127.bl.test.example. IN A 127.0.0.2",
        "2.0.0.127.bl.test.example. IN TXT \"listed for testing\""]


@pytest.fixture(scope="module")
def unbound_port():
    with Unbound(ZONE, probe=('2.0.0.127.bl.test.example', 'A')) as port:
        yield port


def _postscreen_instance(tmp_path, unbound_port: int) -> Instance:
    """An instance whose SMTP port is served by postscreen (master.cf recipe)."""
    inst = Instance(tmp_path, extra_main={
        "dns_nameservers": f"127.0.0.1:{unbound_port}",
        "postscreen_access_list": "",             # screen 127.0.0.1 too (not allowlisted)
        "postscreen_greet_wait": "1s",
        "postscreen_greet_action": "enforce",
        "postscreen_dnsbl_sites": "bl.test.example=127.0.0.[2..11]*3 nolist.test.example",
        "postscreen_dnsbl_threshold": "2",
        "postscreen_dnsbl_action": "enforce",
        "smtpd_peername_lookup": "no",
    })
    listen = f"127.0.0.1:{inst.smtp_port}"
    inst.remove_master(listen)
    inst.add_master([f"{listen} inet n - n - 1 postscreen",
                     "smtpd     pass  -  -  n  -  -  smtpd",
                     "dnsblog   unix  -  -  n  -  0  dnsblog"])
    return inst


def _raw(port: int, source: str = "127.0.0.1") -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=20, source_address=(source, 0))
    return s


def test_postscreen_recipe_end_to_end(tmp_path, unbound_port):
    with _postscreen_instance(tmp_path, unbound_port) as inst:
        inst.start()
        # 1. a zombie that talks before the greeting is rejected
        z = _raw(inst.smtp_port, "127.0.0.3")
        f = z.makefile("rwb")
        assert f.readline().startswith(b"220-")
        f.write(b"EHLO zombie\r\n")
        f.flush()
        assert f.readline().startswith(b"220 ")          # the dummy engine's greeting
        assert f.readline().startswith(b"250 ")          # its EHLO reply
        f.write(b"MAIL FROM:<z@zombie.example>\r\nRCPT TO:<anyone@localhost>\r\n")
        f.flush()
        assert f.readline().startswith(b"250 ")
        assert f.readline() == b"550 5.5.1 Protocol error\r\n"
        f.write(b"QUIT\r\n")
        f.flush()
        assert f.readline().startswith(b"221 ")
        z.close()
        inst.wait_log(r"postscreen\[\d+\]: PREGREET 13 after [\d.e-]+ from \[127\.0\.0\.3\]:\d+: "
                      r"EHLO zombie\\r\\n")
        inst.wait_log(r"NOQUEUE: reject: RCPT from \[127\.0\.0\.3\]:\d+: 550 5\.5\.1 Protocol error; "
                      r"from=<z@zombie\.example>, to=<anyone@localhost>, proto=ESMTP, helo=<zombie>")
        inst.wait_log(r"DISCONNECT \[127\.0\.0\.3\]:\d+")

        # 2. a well-behaved client passes, is handed to smtpd, and its mail is queued
        with smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=30) as s:
            code, banner = s.ehlo()
            assert code == 250
            assert s.sendmail("sender@example.com", ["anyone@localhost"],
                              b"Subject: through postscreen\r\n\r\nhello\r\n") == {}
        inst.wait_log(r"postscreen\[\d+\]: CONNECT from \[127\.0\.0\.1\]:\d+ to \[127\.0\.0\.1\]:\d+")
        inst.wait_log(r"postscreen\[\d+\]: PASS NEW \[127\.0\.0\.1\]:\d+")
        inst.wait_log(r"smtpd\[\d+\]: \w+: client=localhost\[127\.0\.0\.1\]")
        inst.wait_log(r"cleanup\[\d+\]: \w+: message-id=", timeout=20)
        # 3. the same client again: the cache lets it through at once
        with smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=30) as s:
            assert s.noop()[0] == 250
        inst.wait_log(r"postscreen\[\d+\]: PASS OLD \[127\.0\.0\.1\]:\d+")
        assert os.path.exists(os.path.join(inst.dir, "data", "postscreen_cache.sqlite"))

        # 4. a client listed in the DNSBL: rank 3, RCPT rejected
        with smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=30,
                          source_address=("127.0.0.2", 0)) as s:
            s.ehlo("listed.example")
            s.mail("spam@listed.example")
            code, text = s.rcpt("anyone@localhost")
            assert code == 550
            assert text == b"5.7.1 Service unavailable; client [127.0.0.2] blocked using bl.test.example"
        inst.wait_log(r"postscreen\[\d+\]: DNSBL rank 3 for \[127\.0\.0\.2\]:\d+")
        inst.wait_log(r"dnsblog\[\d+\]: addr 127\.0\.0\.2 listed by domain bl\.test\.example as 127\.0\.0\.2")
        inst.wait_log(r"NOQUEUE: reject: RCPT from \[127\.0\.0\.2\]:\d+: 550 5\.7\.1 Service unavailable; "
                      r"client \[127\.0\.0\.2\] blocked using bl\.test\.example; from=<spam@listed\.example>")
        assert inst.count_log(r"PASS NEW \[127\.0\.0\.2\]") == 0
