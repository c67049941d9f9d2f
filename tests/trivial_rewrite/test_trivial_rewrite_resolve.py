"""resolve: ADDRESS_CLASS_README classes and transport(5) examples."""

import ipaddress

import pytest
from tr_fakes import DictTable, FakeConfig, PatternTable, Unavailable, opener

from postel.trivial_rewrite import resolve as R
from postel.trivial_rewrite.resolve import Resolver

OWN = [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("192.0.2.1")]


def resolver(tables=None, verify=False, **cfg) -> Resolver:
    r = Resolver.from_config(FakeConfig(**cfg), verify=verify, open_table=opener(tables or {}),
                             own_addrs=OWN)
    r._unavailable = Unavailable
    return r


def res(addr, sender="", tables=None, **cfg):
    r = resolver(tables, **cfg)
    out = r.resolve(addr, sender)
    return out.transport, out.nexthop, out.recipient, out.flags


LOCAL = R.CLASS_LOCAL | R.FLAG_FINAL


@pytest.mark.parametrize("addr, expected", [
    ("user@mail.example.com", ("local", "mail.example.com", "user@mail.example.com", LOCAL)),
    ("user@localhost", ("local", "mail.example.com", "user@localhost", LOCAL)),
    ("user@MAIL.Example.COM.", ("local", "mail.example.com", "user@MAIL.Example.COM", LOCAL)),
    ("user", ("local", "mail.example.com", "user@mail.example.com", LOCAL)),
    ("user@[127.0.0.1]", ("local", "mail.example.com", "user@[127.0.0.1]", LOCAL)),
    ("user@[192.0.2.1]", ("local", "mail.example.com", "user@[192.0.2.1]", LOCAL)),
    ("user@[192.0.2.99]", ("smtp", "[192.0.2.99]", "user@[192.0.2.99]", R.CLASS_DEFAULT)),
    # the null address is $empty_address_recipient@$myhostname (transport(5) Note 1)
    ("", ("local", "mail.example.com", "MAILER-DAEMON@mail.example.com", LOCAL)),
    ("user@example.org", ("smtp", "example.org", "user@example.org", R.CLASS_DEFAULT)),
    # local domains come off the right, the rest is rewritten and retried
    ("user%example.org@mail.example.com",
     ("smtp", "example.org", "user@example.org", R.CLASS_DEFAULT)),
    ("example.org!user@localhost", ("smtp", "example.org", "user@example.org", R.CLASS_DEFAULT)),
    ("user@example.org@localhost", ("smtp", "example.org", "user@example.org", R.CLASS_DEFAULT)),
    ("user%localhost@mail.example.com",
     ("local", "mail.example.com", "user@localhost", LOCAL)),
    # routing operators left in a remote local part: FLAG_ROUTED
    ("user@other@example.org",
     ("smtp", "example.org", "user@other@example.org", R.CLASS_DEFAULT | R.FLAG_ROUTED)),
    ("user%other@example.org",
     ("smtp", "example.org", "user%other@example.org", R.CLASS_DEFAULT | R.FLAG_ROUTED)),
    # bad domains: FLAG_ERROR
    ("user@", ("smtp", "", "user@", R.CLASS_DEFAULT | R.FLAG_ERROR)),
    ("user@192.0.2.7", ("smtp", "192.0.2.7", "user@192.0.2.7", R.CLASS_DEFAULT | R.FLAG_ERROR)),
    ("user@-bad-.example", ("smtp", "-bad-.example", "user@-bad-.example",
                            R.CLASS_DEFAULT | R.FLAG_ERROR)),
    ("user@[300.1.1.1]", ("smtp", "[300.1.1.1]", "user@[300.1.1.1]",
                          R.CLASS_DEFAULT | R.FLAG_ERROR)),
])
def test_resolve_default_config(addr, expected):
    assert res(addr) == expected


def test_resolve_null_domain_and_numeric_domain():
    assert res("user@", resolve_null_domain="yes")[2:] == ("user@mail.example.com", LOCAL)
    assert res("user@192.0.2.7", resolve_numeric_domain="yes") == (
        "smtp", "[192.0.2.7]", "user@[192.0.2.7]", R.CLASS_DEFAULT)
    assert res("user@127.0.0.1", resolve_numeric_domain="yes")[3] == LOCAL


def test_resolve_classes():
    cfg = {"virtual_alias_domains": "alias.example", "virtual_mailbox_domains": "vmail.example",
           "relay_domains": "relay.example"}
    assert res("u@alias.example", **cfg) == (
        "error", "5.1.1 User unknown in virtual alias table", "u@alias.example",
        R.CLASS_ALIAS | R.FLAG_FINAL)
    assert res("u@alias.example", show_user_unknown_table_name="no", **cfg)[1] == \
        "5.1.1 User unknown"
    assert res("u@vmail.example", **cfg) == (
        "virtual", "vmail.example", "u@vmail.example", R.CLASS_VIRTUAL | R.FLAG_FINAL)
    # not a subdomain: virtual_mailbox_domains is not in parent_domain_matches_subdomains
    assert res("u@sub.vmail.example", **cfg)[3] == R.CLASS_DEFAULT
    assert res("u@relay.example", **cfg) == ("relay", "relay.example", "u@relay.example",
                                             R.CLASS_RELAY)
    # relay_domains is in parent_domain_matches_subdomains
    assert res("u@sub.relay.example", **cfg)[3] == R.CLASS_RELAY
    assert res("u@sub.relay.example", parent_domain_matches_subdomains="", **cfg)[3] == \
        R.CLASS_DEFAULT


def test_resolve_domain_list_tables_and_negation():
    tables = {"hash:/vdoms": DictTable({"vmail.example": "whatever"})}
    cfg = {"virtual_mailbox_domains": "!no.vmail.example hash:/vdoms .sub.example"}
    assert res("u@vmail.example", tables=tables, **cfg)[3] & R.CLASS_VIRTUAL
    # table lookups try ".parent" when parent matching is off
    tables2 = {"hash:/vdoms": DictTable({".vmail.example": "x"})}
    assert res("u@a.vmail.example", tables=tables2, **cfg)[3] & R.CLASS_VIRTUAL
    assert res("u@no.vmail.example", tables=tables2, **cfg)[3] == R.CLASS_DEFAULT
    assert res("u@x.sub.example", tables=tables, **cfg)[3] & R.CLASS_VIRTUAL
    assert res("u@sub.example", tables=tables, **cfg)[3] == R.CLASS_DEFAULT


def test_resolve_relayhost_and_transport_parameters():
    assert res("u@example.org", relayhost="[gw.example.com]:587")[:2] == (
        "smtp", "[gw.example.com]:587")
    assert res("u@example.org", relay_domains="example.org",
               relayhost="[gw.example.com]")[:2] == ("relay", "[gw.example.com]")
    # transport:nexthop in default_transport beats relayhost
    assert res("u@example.org", default_transport="smtp:[other]",
               relayhost="[gw.example.com]")[:2] == ("smtp", "[other]")
    # local_transport without nexthop: the MTA host name
    assert res("u@localhost", local_transport="local")[:2] == ("local", "mail.example.com")
    assert res("u@localhost", local_transport="lmtp:unix:private/dovecot-lmtp")[:2] == (
        "lmtp", "unix:private/dovecot-lmtp")
    # virtual alias domains are never relayed
    assert res("u@alias.example", virtual_alias_domains="alias.example",
               relayhost="[gw]")[0] == "error"


TRANSPORT_EXAMPLE = {
    "my.domain": "",
    ".my.domain": ":",
    "*": "smtp:outbound-relay.my.domain",
    "example.com": "uucp:example",
    "slow.example": "slow:",
    "gw.example": ":[gateway.example.com]",
    "port.example": "smtp:bar.example:2025",
    ".err.example": "error:mail for *.err.example is not deliverable",
    "user@plus.example": "local:",
    "mail.example.com": ":",
}


@pytest.mark.parametrize("addr, expected", [
    ("u@my.domain", ("smtp", "my.domain")),
    ("u@sub.my.domain", ("smtp", "sub.my.domain")),
    ("u@elsewhere.org", ("smtp", "outbound-relay.my.domain")),
    ("u@example.com", ("uucp", "example")),
    ("u@slow.example", ("slow", "slow.example")),
    ("u@gw.example", ("smtp", "[gateway.example.com]")),
    ("u@port.example", ("smtp", "bar.example:2025")),
    ("u@anything.err.example", ("error", "mail for *.err.example is not deliverable")),
    ("u@err.example", ("smtp", "outbound-relay.my.domain")),
    ("user+foo@plus.example", ("local", "plus.example")),
    ("user@plus.example", ("local", "plus.example")),
    ("u@mail.example.com", ("local", "mail.example.com")),
])
def test_transport_maps_examples(addr, expected):
    tables = {"hash:/transport": DictTable(TRANSPORT_EXAMPLE)}
    assert res(addr, tables=tables, transport_maps="hash:/transport",
               recipient_delimiter="+")[:2] == expected


def test_transport_maps_search_order_and_pattern_tables():
    t = DictTable({})
    res("User+Ext@Sub.Example.COM", tables={"hash:/t": t}, transport_maps="hash:/t",
        recipient_delimiter="+")
    assert t.keys_seen == ["User+Ext@Sub.Example.COM", "User@sub.example.com",
                           "sub.example.com", ".example.com", ".com", "*"]
    p = PatternTable({"user+ext@sub.example.com": "smtp:[x]", "sub.example.com": "smtp:[y]"})
    out = res("user+ext@sub.example.com", tables={"regexp:/t": p}, transport_maps="regexp:/t",
              recipient_delimiter="+")
    assert out[:2] == ("smtp", "[x]")
    assert p.keys_seen == ["user+ext@sub.example.com"]


def test_table_unavailable_sets_fail():
    down = {"hash:/t": DictTable({}, fail=True)}
    assert res("u@example.org", tables=down, transport_maps="hash:/t")[3] == R.FLAG_FAIL
    assert res("u@example.org", tables=down, relay_domains="hash:/t")[3] == R.FLAG_FAIL
    assert res("u@example.org", tables=down, mydestination="hash:/t")[3] == R.FLAG_FAIL


def test_sender_dependent_maps():
    tables = {
        "hash:/sdrh": DictTable({"@corp.example": "[smarthost.corp]:587",
                                 "boss@corp.example": "DUNNO", "<>": "[bounces]"}),
        "hash:/sdtp": DictTable({"@corp.example": "corpsmtp:"}),
    }
    cfg = {"sender_dependent_relayhost_maps": "hash:/sdrh",
           "sender_dependent_default_transport_maps": "hash:/sdtp", "relayhost": "[gw]",
           "relay_domains": "relay.example"}
    assert res("u@example.org", "a@corp.example", tables, **cfg)[:2] == (
        "corpsmtp", "[smarthost.corp]:587")
    assert res("u@example.org", "boss@corp.example", tables, **cfg)[:2] == ("corpsmtp", "[gw]")
    assert res("u@example.org", "", tables, **cfg)[:2] == ("smtp", "[bounces]")
    assert res("u@example.org", "x@else.example", tables, **cfg)[:2] == ("smtp", "[gw]")
    # relay class: sender-dependent relayhost yes, default transport override no
    assert res("u@relay.example", "a@corp.example", tables, **cfg)[:2] == (
        "relay", "[smarthost.corp]:587")


def test_verify_uses_address_verify_overrides():
    r = resolver(verify=True, address_verify_default_transport="verify-smtp")
    assert r.resolve("u@example.org").transport == "verify-smtp"
    assert resolver().resolve("u@example.org").transport == "smtp"


def test_resolve_dequoted_address():
    # internal form of "user@remote"@localhost
    assert res("user@remote.example@localhost")[0] == "smtp"
    out = res("user@remote.example@localhost", resolve_dequoted_address="no")
    assert out == ("local", "mail.example.com", "user@remote.example@localhost", LOCAL)


def test_cache_and_invalidation():
    t = DictTable({"example.org": "smtp:[a]"})
    r = resolver({"hash:/t": t}, transport_maps="hash:/t")
    assert r.resolve("u@example.org").nexthop == "[a]"
    t.data["example.org"] = "smtp:[b]"
    assert r.resolve("u@example.org").nexthop == "[a]"      # cached
    assert not r.tables_changed()
    t.changed = True
    assert r.tables_changed()
    r.flush_cache()
    assert r.resolve("u@example.org").nexthop == "[b]"
    small = Resolver.from_config(FakeConfig(), open_table=opener({}), own_addrs=OWN, cache_size=2)
    for a in ("a@x.org", "b@x.org", "c@x.org"):
        small.resolve(a)
    assert list(k for k, _ in small.cache) == ["b@x.org", "c@x.org"]


def test_with_real_config_and_tables(tmp_path):
    from postel.config import load_config
    (tmp_path / "transport").write_text("example.org  smtp:[mx.example.org]:2525\n"
                                        ".sub.example :\n")
    (tmp_path / "vdoms").write_text("vmail.example  ok\n")
    (tmp_path / "main.cf").write_text(
        "myhostname = mail.example.com\n"
        f"transport_maps = texthash:{tmp_path}/transport\n"
        f"virtual_mailbox_domains = texthash:{tmp_path}/vdoms\n"
        "relayhost = [gw.example.com]\n")
    r = Resolver.from_config(load_config(str(tmp_path)), own_addrs=OWN)
    assert \
        (r.resolve("u@Example.ORG").transport, r.resolve("u@Example.ORG").nexthop) == \
        ("smtp", "[mx.example.org]:2525")
    assert r.resolve("u@a.sub.example").nexthop == "[gw.example.com]"
    assert r.resolve("u@vmail.example").flags & R.CLASS_VIRTUAL
    assert r.resolve("u@localhost").flags & R.CLASS_LOCAL
