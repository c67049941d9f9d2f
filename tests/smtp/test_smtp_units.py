"""Unit tests: nexthop parsing, MX ordering, NOTIFY, 8bit -> quoted-printable."""

from __future__ import annotations

import email
import email.policy
import quopri

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postel.queue.records import DSN_NOTIFY_DELAY, DSN_NOTIFY_FAILURE, DSN_NOTIFY_NEVER
from postel.smtp.client import notify_param
from postel.smtp.mime8 import downgrade_8bit, needs_smtputf8_headers
from postel.smtp.nexthop import NexthopError, _sort_mx, parse_nexthop, split_nexthops


@pytest.mark.parametrize("text,kind,host,port,mx", [
    ("example.com", "inet", "example.com", 25, True),
    ("example.com:2525", "inet", "example.com", 2525, True),
    ("[mx.example.com]", "inet", "mx.example.com", 25, False),
    ("[192.0.2.1]:587", "inet", "192.0.2.1", 587, False),
    ("[ipv6:2001:db8::1]:26", "inet", "2001:db8::1", 26, False),
    ("[2001:db8::1]", "inet", "2001:db8::1", 25, False),
    ("inet:host.example:24", "inet", "host.example", 24, True),
    ("unix:/var/run/lmtp", "unix", "/var/run/lmtp", 0, False),
    ("example.com:smtp", "inet", "example.com", 25, True),
])
def test_parse_nexthop_forms(text, kind, host, port, mx):
    hop = parse_nexthop(text)
    assert (hop.kind, hop.host, hop.port, hop.mx) == (kind, host, port, mx)


def test_parse_nexthop_lmtp_never_mx():
    assert parse_nexthop("inet:host.example", lmtp=True, default_port=24).mx is False
    assert parse_nexthop("inet:host.example", lmtp=True, default_port=24).port == 24


@pytest.mark.parametrize("text", ["", "[host", "[host]x", "host:99999", "2001:db8::1",
                                  "host:nosuchservice", "unix:", "a b"])
def test_parse_nexthop_rejects(text):
    with pytest.raises(NexthopError):
        parse_nexthop(text)


def test_split_nexthops_list():
    assert split_nexthops("[a]:587, [b]:587 c") == ["[a]:587", "[b]:587", "c"]


@given(st.lists(st.tuples(st.integers(0, 3), st.sampled_from("abcdef")), min_size=1))
def test_sort_mx_by_preference(records):
    out = _sort_mx(records, randomize=True)
    assert sorted(out) == sorted(records)
    assert [p for p, _ in out] == sorted(p for p, _ in records)


def test_notify_param():
    assert notify_param(0) is None
    assert notify_param(DSN_NOTIFY_NEVER) == "NEVER"
    assert notify_param(DSN_NOTIFY_FAILURE | DSN_NOTIFY_DELAY) == "FAILURE,DELAY"


def test_downgrade_keeps_7bit_message():
    msg = b"Subject: x\nContent-Transfer-Encoding: 8bit\n\nplain ascii\n"
    assert downgrade_8bit(msg) is msg


def test_downgrade_multipart_only_8bit_part():
    msg = (b"Subject: m\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=B\n"
           b"Content-Transfer-Encoding: 8bit\n\n--B\nContent-Type: text/plain\n\nascii\n"
           b"--B\nContent-Type: text/plain; charset=latin1\nContent-Transfer-Encoding: 8bit\n\n"
           b"\xe9t\xe9\n--B--\n")
    out = downgrade_8bit(msg)
    assert out.isascii()
    assert b"Content-Transfer-Encoding: 7bit\n" in out.split(b"\n\n")[0] + b"\n"
    assert b"Content-Transfer-Encoding: quoted-printable\n\n=E9t=E9\n" in out
    assert b"Content-Type: text/plain\n\nascii\n" in out


def test_needs_smtputf8_headers():
    assert needs_smtputf8_headers("From: j\u00f6rg@x\n\nb\n".encode())
    assert not needs_smtputf8_headers("From: a@x\n\nb\u00e9\n".encode())


@settings(max_examples=60)
@given(st.binary(max_size=300))
def test_downgrade_round_trips_body(body):
    body = body.replace(b"\r", b"")
    if body and not body.endswith(b"\n"):
        body += b"\n"
    msg = b"Subject: h\nContent-Type: text/plain\nContent-Transfer-Encoding: 8bit\n\n" + body
    out = downgrade_8bit(msg)
    assert out.isascii()
    parsed = email.message_from_bytes(out, policy=email.policy.compat32)
    if body.isascii():
        assert out == msg
    else:
        assert parsed["Content-Transfer-Encoding"] == "quoted-printable"
        assert quopri.decodestring(parsed.get_payload().encode()) == body


def test_service_main_picks_protocol_from_argv0(monkeypatch):
    import postel.smtp.service as service

    seen = []
    monkeypatch.setattr(service, "delivery_agent_main",
                        lambda name, argv, deliver, **kw: seen.append(name) or 0)
    assert service.main(["lmtp", "-c", "/nonexistent"]) == 0
    assert service.main(["/usr/lib/postel/smtp"]) == 0
    assert service.main(["relay"]) == 0
    assert seen == ["lmtp", "smtp", "smtp"]


def test_lmtp_settings_use_lmtp_parameters(tmp_path):
    from smtp_harness import Env

    env = Env(tmp_path, {"lmtp_lhlo_name": "lhlo.example", "lmtp_connect_timeout": "7s",
                         "smtp_helo_name": "helo.example"})
    lmtp = env.client(lmtp=True).settings
    smtp = env.client().settings
    assert (lmtp.helo_name, lmtp.timeouts.connect, lmtp.default_port) == ("lhlo.example", 7, 24)
    assert (smtp.helo_name, smtp.default_port) == ("helo.example", 25)
