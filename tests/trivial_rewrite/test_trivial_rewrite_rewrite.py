"""rewrite: the ADDRESS_REWRITING_README and postconf(5) examples."""

import pytest
from tr_fakes import FakeConfig

from postel.trivial_rewrite.rewrite import Rewriter, UnknownRule


def rw(rule: str, addr: str, **cfg: str) -> str:
    return Rewriter.from_config(FakeConfig(**cfg)).rewrite(rule, addr)


@pytest.mark.parametrize("addr, expected, cfg", [
    # append_at_myorigin: bare user -> user@$myorigin
    ("user", "user@example.com", {}),
    ("user", "user", {"append_at_myorigin": "no"}),
    # swap_bangpath: site!user -> user@site; only the first '!'
    ("host!user", "user@host", {}),
    ("a!b!c", "b!c@a", {}),
    ("host!user", "host!user@example.com", {"swap_bangpath": "no"}),
    # allow_percent_hack: user%domain -> user@domain; the last '%'
    ("user%domain", "user@domain", {}),
    ("user%a%b", "user%a@b", {}),
    ("user%domain", "user%domain@example.com", {"allow_percent_hack": "no"}),
    # bang path wins over percent
    ("host!user%dom", "user%dom@host", {}),
    # operators in a quoted local part are not operators
    ('"a!b"', '"a!b"@example.com', {}),
    ('"a%b"', '"a%b"@example.com', {}),
    # append_dot_mydomain
    ("user@host", "user@host", {}),
    ("user@host", "user@host.example.com", {"append_dot_mydomain": "yes"}),
    ("user@host.sub", "user@host.sub", {"append_dot_mydomain": "yes"}),
    ("user@[192.0.2.1]", "user@[192.0.2.1]", {"append_dot_mydomain": "yes"}),
    ("user@", "user@", {"append_dot_mydomain": "yes"}),
    ("user", "user@example.com", {"append_dot_mydomain": "yes"}),
    # trailing dot
    ("user@example.com.", "user@example.com", {}),
    ("user@.", "user@.", {}),
    ("user@a..", "user@a..", {}),
    # source routes (RFC 5321 appendix C)
    ("@a,@b:user@c", "user@c", {}),
    ("@a:user@c", "user@c", {}),
    # null address; lone @
    ("", "", {}),
    ("@", "", {}),
    ("user@example.org", "user@example.org", {}),
])
def test_rewrite_local_rule(addr, expected, cfg):
    assert rw("local", addr, **cfg) == expected


def test_rewrite_remote_rule_empty_domain_appends_nothing():
    assert rw("remote", "user") == "user"
    assert rw("remote", "user@host", append_dot_mydomain="yes") == "user@host"


def test_rewrite_remote_rule_uses_remote_header_rewrite_domain():
    cfg = {"remote_header_rewrite_domain": "domain.invalid", "append_dot_mydomain": "yes"}
    assert rw("remote", "user", **cfg) == "user@domain.invalid"
    assert rw("remote", "user@host", **cfg) == "user@host.domain.invalid"
    assert rw("local", "user@host", **cfg) == "user@host.example.com"


def test_rewrite_unknown_rule():
    with pytest.raises(UnknownRule):
        rw("canonical", "user")
