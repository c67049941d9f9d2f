"""Test doubles for trivial-rewrite tests: a dict Config and dict tables."""

from __future__ import annotations

DEFAULTS = {
    "myhostname": "mail.example.com",
    "mydomain": "example.com",
    "myorigin": "example.com",
    "mydestination": "mail.example.com, localhost.example.com, localhost",
    "inet_interfaces": "all",
    "proxy_interfaces": "",
    "local_transport": "local:mail.example.com",
    "virtual_transport": "virtual",
    "relay_transport": "relay",
    "default_transport": "smtp",
    "relayhost": "",
    "transport_maps": "",
    "virtual_alias_domains": "",
    "virtual_mailbox_domains": "",
    "relay_domains": "",
    "parent_domain_matches_subdomains": "relay_domains",
    "sender_dependent_relayhost_maps": "",
    "sender_dependent_default_transport_maps": "",
    "empty_address_relayhost_maps_lookup_key": "<>",
    "empty_address_default_transport_maps_lookup_key": "<>",
    "empty_address_recipient": "MAILER-DAEMON",
    "recipient_delimiter": "",
    "resolve_dequoted_address": "yes",
    "resolve_null_domain": "no",
    "resolve_numeric_domain": "no",
    "show_user_unknown_table_name": "yes",
    "swap_bangpath": "yes",
    "allow_percent_hack": "yes",
    "append_at_myorigin": "yes",
    "append_dot_mydomain": "no",
    "remote_header_rewrite_domain": "",
    "address_verify_local_transport": "local:mail.example.com",
    "address_verify_virtual_transport": "virtual",
    "address_verify_relay_transport": "relay",
    "address_verify_default_transport": "smtp",
    "address_verify_relayhost": "",
    "address_verify_transport_maps": "",
    "address_verify_sender_dependent_relayhost_maps": "",
    "address_verify_sender_dependent_default_transport_maps": "",
}


class FakeConfig:
    """The Config surface trivial-rewrite uses, over a dict."""

    def __init__(self, **overrides: str):
        self.values = dict(DEFAULTS)
        self.values.update(overrides)

    def get(self, name: str) -> str:
        return self.values[name]

    def get_bool(self, name: str) -> bool:
        return self.values[name].lower() in ("yes", "true", "1")

    def get_list(self, name: str) -> list[str]:
        return self.values[name].replace(",", " ").split()


class Unavailable(Exception):
    """Stands in for postel.tables.TableUnavailable."""


class DictTable:
    """A fixed-key table (like hash:) over a dict; folds keys to lower case."""

    fixed_keys = True
    type_name = "hash"

    def __init__(self, data: dict[str, str], fail: bool = False):
        self.data = {k.lower(): v for k, v in data.items()}
        self.fail = fail
        self.keys_seen: list[str] = []
        self.changed = False

    def lookup(self, key: str) -> str | None:
        self.keys_seen.append(key)
        if self.fail:
            raise Unavailable("table is down")
        return self.data.get(key.lower())

    def needs_reopen(self) -> bool:
        return self.changed


class PatternTable(DictTable):
    """A pattern table (like regexp:): exact-match on the unfolded key here."""

    fixed_keys = False
    type_name = "regexp"


def opener(tables: dict[str, DictTable]):
    """opener - an open_table() over named fake tables."""
    return lambda spec: tables[spec]
