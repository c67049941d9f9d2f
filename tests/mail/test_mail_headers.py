"""mail.headers: classes, address rewriting, Received/Date/Message-Id layout."""

import os
import re
import time

import pytest

from postel.mail import headers as H


def test_header_class():
    assert H.header_class("From") == "sender"
    assert H.header_class("Resent-Sender") == "sender"
    assert H.header_class("CC") == "recipient"
    assert H.header_class("Resent-Bcc") == "recipient"
    assert H.header_class("Subject") is None
    assert H.is_resent("Resent-To") and not H.is_resent("To")


def up(addr: str) -> str:
    return addr if "@" in addr else addr + "@example.com"


@pytest.mark.parametrize("value, expected", [
    ("joe", "joe@example.com"),
    (" Joe Doe <joe>", " Joe Doe <joe@example.com>"),
    ('"Doe, Joe" <joe>, ann (Ann A.)', '"Doe, Joe" <joe@example.com>, ann@example.com (Ann A.)'),
    ("friends: joe, ann@x.org;", "friends: joe@example.com, ann@x.org;"),
    ("joe,\n\tann", "joe@example.com,\n\tann@example.com"),
    ("<@relay:joe@x.org>", "<@relay:joe@x.org>"),
    ("<>", "<>"),
    ("undisclosed-recipients:;", "undisclosed-recipients:;"),
])
def test_rewrite_addresses(value, expected):
    assert H.rewrite_addresses(value, up) == expected


def test_addresses():
    assert H.addresses('"Doe, Joe" <joe@x>, ann@y') == [("Doe, Joe", "joe@x"), ("", "ann@y")]


@pytest.fixture
def utc():
    old = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if old is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = old
    time.tzset()


T = 1709629200   # 2024-03-05 09:00:00 UTC


def test_mail_date_and_message_id(utc):
    assert H.mail_date(T) == "Tue,  5 Mar 2024 09:00:00 +0000 (UTC)"
    assert H.message_id("4TqXyZ1abc", "mail.example.com", T) == \
        "<20240305090000.4TqXyZ1abc@mail.example.com>"


def test_received_single_and_multiple(utc):
    one = H.received_header(helo="client.example", name="client.example", addr="192.0.2.9",
                            myhostname="mail.example.com", qid="QID1", rcpts=["a b@x.org"],
                            now=T)
    assert one == ("Received: from client.example (client.example [192.0.2.9])\n"
                   "\tby mail.example.com (Postel) with ESMTP id QID1\n"
                   '\tfor <"a b"@x.org>; Tue,  5 Mar 2024 09:00:00 +0000 (UTC)')
    two = H.received_header(helo="", name="", addr="192.0.2.9", myhostname="m", qid="Q",
                            rcpts=["a@x", "b@x"], protocol="SMTP", now=T)
    assert two == ("Received: from unknown (unknown [192.0.2.9])\n"
                   "\tby m (Postel) with SMTP id Q;\n"
                   "\tTue,  5 Mar 2024 09:00:00 +0000 (UTC)")
    loc = H.local_received_header(myhostname="m", qid="Q", uid=1000, now=T)
    assert re.fullmatch(r"Received: by m \(Postel, from userid 1000\)\n\tid Q; Tue, .*", loc)
