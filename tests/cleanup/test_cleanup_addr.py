"""Tests of cleanup's table-driven address mapping (postel.cleanup.addr)."""

from __future__ import annotations

import pytest

from postel.cleanup.addr import AddressMaps, AliasExpansionError


class Dict:
    """Dict - a lookup table from a dict."""

    def __init__(self, d):
        self.d = d

    def lookup(self, key):
        return self.d.get(key)


ALL = frozenset({"envelope_sender", "envelope_recipient", "header_sender", "header_recipient"})


def maps(**kw):
    base = dict(canonical_classes=ALL, sender_canonical_classes=ALL,
                recipient_canonical_classes=ALL, local_domains=frozenset({"example.com"}),
                masquerade_classes=ALL)
    base.update(kw)
    return AddressMaps(**base)


def test_canonical_lookup_order():
    m = maps(canonical_maps=[Dict({"joe@example.com": "joe.smith@example.com",
                                   "ann": "ann.b@example.com",
                                   "@old.example": "@new.example"})])
    assert m.canonical("joe@example.com", "envelope_sender") == "joe.smith@example.com"
    assert m.canonical("ann@example.com", "header_sender") == "ann.b@example.com"
    assert m.canonical("ann@other.org", "header_sender") == "ann@other.org"
    assert m.canonical("x@old.example", "envelope_recipient") == "x@new.example"
    assert m.canonical("", "envelope_sender") == ""


def test_canonical_classes_and_sender_maps():
    m = maps(sender_canonical_maps=[Dict({"a@example.com": "s@example.com"})],
             recipient_canonical_maps=[Dict({"a@example.com": "r@example.com"})])
    assert m.canonical("a@example.com", "envelope_sender") == "s@example.com"
    assert m.canonical("a@example.com", "envelope_recipient") == "r@example.com"
    m = maps(canonical_maps=[Dict({"a@example.com": "c@example.com"})],
             canonical_classes=frozenset({"envelope_sender"}))
    assert m.canonical("a@example.com", "envelope_recipient") == "a@example.com"


def test_extension_propagation():
    m = maps(recipient_delimiter="+",
             virtual_alias_maps=[Dict({"joe@example.com": "joe@example.net"})])
    assert m.virtual_expand("joe+x@example.com") == ["joe+x@example.net"]
    m.propagate = frozenset()
    assert m.virtual_expand("joe+x@example.com") == ["joe@example.net"]


def test_masquerade():
    m = maps(masquerade_domains=["!secret.example.com", "example.com"],
             masquerade_exceptions=frozenset({"root"}))
    assert m.masquerade("u@host.example.com", "header_sender") == "u@example.com"
    assert m.masquerade("u@example.com", "header_sender") == "u@example.com"
    assert m.masquerade("u@a.secret.example.com", "header_sender") == "u@a.secret.example.com"
    assert m.masquerade("root@host.example.com", "header_sender") == "root@host.example.com"
    m.masquerade_classes = frozenset({"header_sender"})
    assert m.masquerade("u@host.example.com", "envelope_recipient") == "u@host.example.com"


def test_virtual_recursive_and_self_reference():
    m = maps(virtual_alias_maps=[Dict({"all@example.com": "a@example.com, b@example.com",
                                       "a@example.com": "a@example.com, a2@example.net",
                                       "b@example.com": "c@example.org"})])
    assert m.virtual_expand("all@example.com") == ["a@example.com", "a2@example.net",
                                                   "c@example.org"]
    assert m.virtual_expand("z@example.com") == ["z@example.com"]


def test_virtual_limits():
    loop = {f"l{i}@x.org": f"l{i + 1}@x.org" for i in range(50)}
    m = maps(virtual_alias_maps=[Dict(loop)], recursion_limit=10)
    with pytest.raises(AliasExpansionError):
        m.virtual_expand("l0@x.org")
    big = {"big@x.org": ", ".join(f"u{i}@x.org" for i in range(20))}
    m = maps(virtual_alias_maps=[Dict(big)], expansion_limit=10)
    with pytest.raises(AliasExpansionError):
        m.virtual_expand("big@x.org")


def test_bcc_maps():
    m = maps(sender_bcc_maps=[Dict({"@example.com": "audit@example.com"})],
             recipient_bcc_maps=[Dict({"r@example.org": "copy@example.org"})])
    assert m.bcc_for_sender("a@example.com") == "audit@example.com"
    assert m.bcc_for_sender("") is None
    assert m.bcc_for_recipient("r@example.org") == "copy@example.org"
