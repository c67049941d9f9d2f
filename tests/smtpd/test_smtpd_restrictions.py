"""Restriction engine: Postfix's documented semantics, one behaviour per test."""

from __future__ import annotations

import asyncio

import pytest

from postel.smtpd.restrictions import (
    CheckState,
    RestrictionConfigError,
    Restrictions,
    addr_keys,
    address_keys,
    reverse_ip_name,
    split_list,
    valid_hostname,
)

DEFAULTS = {
    "smtpd_client_restrictions": "",
    "smtpd_helo_restrictions": "",
    "smtpd_sender_restrictions": "",
    "smtpd_relay_restrictions": "permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination",
    "smtpd_recipient_restrictions": "",
    "smtpd_data_restrictions": "",
    "smtpd_end_of_data_restrictions": "",
    "smtpd_etrn_restrictions": "",
    "smtpd_restriction_classes": "",
    "mynetworks": "127.0.0.0/8 [::1]/128",
    "mydestination": "localhost, example.org",
    "relay_domains": "relay.example",
    "parent_domain_matches_subdomains": "relay_domains smtpd_access_maps",
    "access_map_reject_code": "554",
    "access_map_defer_code": "450",
    "reject_code": "554",
    "defer_code": "450",
    "relay_domains_reject_code": "554",
    "maps_rbl_reject_code": "554",
    "non_fqdn_reject_code": "504",
    "invalid_hostname_reject_code": "501",
    "unknown_address_reject_code": "450",
    "unknown_client_reject_code": "450",
    "unknown_hostname_reject_code": "450",
    "unknown_local_recipient_reject_code": "550",
    "unknown_relay_recipient_reject_code": "550",
    "unknown_virtual_alias_reject_code": "550",
    "unknown_virtual_mailbox_reject_code": "550",
    "smtpd_null_access_lookup_key": "<>",
    "recipient_delimiter": "+",
    "smtpd_policy_service_timeout": "5",
    "smtpd_policy_service_default_action": "451 4.3.5 Server configuration problem",
    "smtpd_policy_service_policy_context": "",
}


class FakeCfg:
    def __init__(self, **over):
        self.values = dict(DEFAULTS)
        self.values.update(over)

    def get(self, name):
        return self.values[name]

    def get_int(self, name):
        return int(self.values[name])

    def get_time(self, name):
        return float(self.values[name])

    def get_list(self, name):
        return split_list(self.values[name])


class DictTable:
    def __init__(self, data):
        self.data = {k.lower(): v for k, v in data.items()}
        self.keys_seen = []

    def lookup(self, key):
        self.keys_seen.append(key)
        return self.data.get(key.lower())


def run(coro):
    return asyncio.run(coro)


def engine(tables=None, **over):
    tables = tables or {}
    return Restrictions(FakeCfg(**over), open_table=lambda spec: tables[spec])


def st(**kw):
    base = dict(client_name="mail.remote.example", client_addr="192.0.2.10", helo_name="mail.remote.example",
                sender="someone@remote.example", recipient="user@example.org", protocol="ESMTP")
    base.update(kw)
    return CheckState(**base)


def test_default_relay_policy_accepts_local_and_defers_foreign():
    eng = engine()
    assert not run(eng.check_rcpt(st())).reject
    v = run(eng.check_rcpt(st(recipient="victim@elsewhere.example")))
    assert (v.code, v.dsn) == (454, "4.7.1")
    assert v.text == "<victim@elsewhere.example>: Relay access denied"


def test_mynetworks_may_relay():
    eng = engine()
    v = run(eng.check_rcpt(st(client_addr="127.0.0.1", recipient="x@elsewhere.example")))
    assert not v.reject
    v6 = run(eng.check_rcpt(st(client_addr="::1", recipient="x@elsewhere.example")))
    assert not v6.reject


def test_relay_domains_and_subdomains():
    eng = engine(smtpd_relay_restrictions="reject_unauth_destination")
    assert not run(eng.check_rcpt(st(recipient="a@relay.example"))).reject
    assert not run(eng.check_rcpt(st(recipient="a@sub.relay.example"))).reject
    v = run(eng.check_rcpt(st(recipient="a@notrelay.example")))
    assert (v.code, v.dsn) == (554, "5.7.1")


def test_source_routed_local_part_is_not_authorized():
    eng = engine(smtpd_relay_restrictions="reject_unauth_destination")
    v = run(eng.check_rcpt(st(recipient="victim@elsewhere.example@example.org")))
    assert v.code == 554


def test_permit_ends_only_its_own_list():
    eng = engine(smtpd_client_restrictions="permit",
                 smtpd_sender_restrictions="reject")
    v = run(eng.check_rcpt(st()))
    assert v.code == 554 and "Sender address rejected" in v.text


def test_access_table_results():
    t = DictTable({"remote.example": "REJECT go away", "ok.example": "OK",
                   "defer.example": "DEFER try later", "coded.example": "521 5.7.9 custom text",
                   "someone@": "DUNNO"})
    eng = engine({"hash:x": t}, smtpd_sender_restrictions="check_sender_access hash:x")
    v = run(eng.check_rcpt(st(sender="a@remote.example")))
    assert (v.code, v.dsn, v.text) == (554, "5.7.1", "<a@remote.example>: Sender address rejected: go away")
    assert not run(eng.check_rcpt(st(sender="a@ok.example"))).reject
    v = run(eng.check_rcpt(st(sender="a@defer.example")))
    assert (v.code, v.dsn) == (450, "4.7.1")
    v = run(eng.check_rcpt(st(sender="a@coded.example")))
    assert (v.code, v.dsn, v.text) == (521, "5.7.9", "<a@coded.example>: Sender address rejected: custom text")


def test_access_lookup_order_for_addresses():
    keys = address_keys("User+ext@Sub.Example.COM", "<>", "+")
    assert keys[:3] == ["user+ext@sub.example.com", "user@sub.example.com", "sub.example.com"]
    assert "example.com" in keys and "user+ext@" in keys
    assert keys.index("sub.example.com") < keys.index("example.com")
    assert address_keys("", "<>") == ["<>"]


def test_client_address_keys():
    assert addr_keys("192.0.2.10") == ["192.0.2.10", "192.0.2", "192.0", "192"]
    keys = addr_keys("2001:db8::1")
    assert keys[0] == "2001:db8::1" and "2001:db8" in keys


def test_null_sender_lookup_key():
    t = DictTable({"<>": "550 5.7.1 no bounces here"})
    eng = engine({"hash:x": t}, smtpd_sender_restrictions="check_sender_access hash:x")
    v = run(eng.check_rcpt(st(sender="")))
    assert v.code == 550


def test_warn_if_reject_turns_reject_into_warning():
    eng = engine(smtpd_sender_restrictions="warn_if_reject reject_non_fqdn_sender")
    state = st(sender="user@nodomain")
    v = run(eng.check_rcpt(state))
    assert not v.reject
    assert state.warnings and "504 5.5.2" in state.warnings[0]


def test_non_fqdn_and_invalid_helo():
    eng = engine(smtpd_helo_restrictions="reject_invalid_helo_hostname reject_non_fqdn_helo_hostname")
    v = run(eng.check_rcpt(st(helo_name="bad_host!")))
    assert (v.code, v.text) == (501, "<bad_host!>: Helo command rejected: Invalid name")
    v = run(eng.check_rcpt(st(helo_name="localhostonly")))
    assert (v.code, v.dsn) == (504, "5.5.2")
    assert not run(eng.check_rcpt(st(helo_name="[192.0.2.1]"))).reject


def test_defer_if_permit():
    eng = engine(smtpd_client_restrictions="defer_if_permit permit")
    v = run(eng.check_rcpt(st()))
    assert v.code == 450


def test_restriction_class():
    eng = engine(smtpd_restriction_classes="strict", strict="reject",
                 smtpd_recipient_restrictions="strict")
    assert run(eng.check_rcpt(st())).code == 554


def test_unknown_restriction_is_a_config_error():
    with pytest.raises(RestrictionConfigError):
        engine(smtpd_client_restrictions="permit_everyone")


def test_reject_unlisted_recipient_uses_the_callback():
    async def known(addr, what):
        return addr == "user@example.org"
    eng = Restrictions(FakeCfg(smtpd_recipient_restrictions="reject_unlisted_recipient"),
                       recipient_known=known)
    assert not run(eng.check_rcpt(st())).reject
    v = run(eng.check_rcpt(st(recipient="nobody@example.org")))
    assert (v.code, v.dsn) == (550, "5.1.1")
    assert v.text.endswith("User unknown in local recipient table")


class FakeDns:
    def __init__(self, listed):
        self.listed = listed

    async def rbl_lookup(self, name):
        return (["127.0.0.2"], "listed for test") if name in self.listed else ([], "")

    async def domain_status(self, domain, mx=True):
        return 2 if domain.endswith(".example") else 5


def test_rbl_client():
    eng = Restrictions(FakeCfg(smtpd_client_restrictions="reject_rbl_client bl.test"),
                       dns=FakeDns({"10.2.0.192.bl.test"}))
    v = run(eng.check_rcpt(st()))
    assert v.code == 554
    assert v.text == "Service unavailable; Client host [192.0.2.10] blocked using bl.test; listed for test"
    assert not run(eng.check_rcpt(st(client_addr="192.0.2.11"))).reject


def test_unknown_sender_domain():
    eng = Restrictions(FakeCfg(smtpd_sender_restrictions="reject_unknown_sender_domain"),
                       dns=FakeDns(set()))
    assert not run(eng.check_rcpt(st(sender="a@remote.example"))).reject
    v = run(eng.check_rcpt(st(sender="a@nowhere.invalid")))
    assert (v.code, v.dsn) == (450, "4.1.8")


def test_policy_service_round_trip(tmp_path):
    sock = str(tmp_path / "policy")
    seen = {}

    async def scenario():
        async def handle(reader, writer):
            lines = []
            while True:
                line = await reader.readline()
                if line in (b"\n", b""):
                    break
                lines.append(line.decode().rstrip("\n"))
            seen.update(dict(x.split("=", 1) for x in lines))
            writer.write(b"action=REJECT policy says no\n\n")
            await writer.drain()
            writer.close()

        server = await asyncio.start_unix_server(handle, sock)
        eng = Restrictions(FakeCfg(smtpd_recipient_restrictions=f"check_policy_service unix:{sock}"))
        async with server:
            return await eng.check_rcpt(st())

    v = asyncio.run(scenario())
    assert v.code == 554 and v.text.endswith("policy says no")
    assert seen["request"] == "smtpd_access_policy"
    assert seen["protocol_state"] == "RCPT" and seen["recipient"] == "user@example.org"


def test_policy_service_unreachable_uses_default_action(tmp_path):
    eng = engine(smtpd_recipient_restrictions=f"check_policy_service unix:{tmp_path}/none")
    v = run(eng.check_rcpt(st()))
    assert (v.code, v.dsn) == (451, "4.3.5")


def test_helpers():
    assert valid_hostname("mail.example.com") and not valid_hostname("1.2.3.4")
    assert not valid_hostname("-bad.example")
    assert reverse_ip_name("192.0.2.10") == "10.2.0.192"
    assert split_list("a, b {c d} e") == ["a", "b", "c d", "e"]
