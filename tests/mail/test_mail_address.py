"""mail.address: forms, splitting, checks."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postel.mail import address as A


@pytest.mark.parametrize("internal, external", [
    ("user@example.com", "user@example.com"),
    ("first.last@example.com", "first.last@example.com"),
    ("john doe@example.com", '"john doe"@example.com'),
    ('a"b@example.com', '"a\\"b"@example.com'),
    ("a\\b@example.com", '"a\\\\b"@example.com'),
    (".lead@example.com", '".lead"@example.com'),
    ("a..b@example.com", '"a..b"@example.com'),
    ("user@host@example.com", '"user@host"@example.com'),
    ("@example.com", '""@example.com'),
    ("", ""),
    ("postmaster", "postmaster"),
    ("jöe@example.com", "jöe@example.com"),
])
def test_quote_unquote(internal, external):
    assert A.quote_local(internal) == external
    assert A.unquote_local(external) == internal


def test_unquote_partial_quotes():
    assert A.unquote_local('"a b".c@x') == "a b.c@x"


@given(st.text(st.characters(min_codepoint=32, max_codepoint=0x2ff), max_size=20),
       st.sampled_from(["", "example.com", "[192.0.2.1]"]))
def test_quote_round_trip(local, domain):
    addr = f"{local}@{domain}" if domain else local
    if not domain and "@" in local:
        return
    assert A.unquote_local(A.quote_local(addr)) == addr


def test_split():
    assert A.split_addr("a@b@c") == ("a@b", "c")
    assert A.split_addr("user") == ("user", "")
    assert A.split_external('"a@b"@c') == ('"a@b"', "c")
    assert A.split_external('"a@b"') == ('"a@b"', "")


@pytest.mark.parametrize("local, delim, expected", [
    ("user+ext", "+", ("user", "ext")),
    ("user+a+b", "+", ("user", "a+b")),
    ("user-ext", "+-", ("user", "ext")),
    ("user", "+", ("user", None)),
    ("+ext", "+", ("+ext", None)),
    ("owner-list", "-", ("owner-list", None)),
    ("list-request", "-", ("list-request", None)),
    ("Postmaster", "+", ("Postmaster", None)),
    ("MAILER-DAEMON", "-", ("MAILER-DAEMON", None)),
    ("user+ext", "", ("user+ext", None)),
])
def test_split_extension(local, delim, expected):
    assert A.split_extension(local, delim) == expected


def test_strip_helpers():
    assert A.strip_extension("user+ext@example.com", "+") == "user@example.com"
    assert A.strip_source_route("@a,@b:user@c") == "user@c"
    assert A.strip_source_route("@a") == "@a"
    assert A.fold_domain("User@Example.COM") == "User@example.com"
    assert A.strip_trailing_dot("example.com.") == "example.com"
    assert A.strip_trailing_dot("example..") == "example.."


@pytest.mark.parametrize("name, ok", [
    ("example.com", True), ("a", True), ("mail-1.example.com", True), ("a_b.example", True),
    ("123.example", True), ("1.2.3.4", False), ("-bad.example", False), ("bad-.example", False),
    ("a..b", False), ("", False), ("a" * 64 + ".com", False), ("exa mple.com", False),
    ("bücher.example", False),
])
def test_valid_hostname(name, ok):
    assert A.valid_hostname(name) is ok


def test_utf8_hostname_and_literals():
    assert A.valid_utf8_hostname("bücher.example")
    assert A.valid_mailhost_literal("[192.0.2.1]")
    assert A.valid_mailhost_literal("[IPv6:2001:db8::1]")
    assert not A.valid_mailhost_literal("[IPv6:192.0.2.1]")
    assert not A.valid_mailhost_literal("[300.1.1.1]")
    assert not A.valid_mailhost_literal("192.0.2.1")
    assert A.valid_hostaddr("192.0.2.1") and not A.valid_hostaddr("example")
    assert A.is_fqdn("mail.example.com.") and not A.is_fqdn("localhost")
    assert A.valid_domain("[127.0.0.1]") and not A.valid_domain("[x]")
