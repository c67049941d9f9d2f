"""postscreen: DNSBL site syntax and score, the pass cache, dnsblog query names."""

from __future__ import annotations

import pytest

from postel.dnsblog.service import query_name
from postel.postscreen.cache import PassCache
from postel.postscreen.dnsbl import SiteError, parse_sites, score
from postel.postscreen.service import _printable


def test_parse_sites_weights_and_filters():
    sites = parse_sites("zen.example*3, bl.example=127.0.0.[2..11]*2\n allow.example=127.0.[0..255].[2;3]*-5")
    assert [(s.domain, s.weight) for s in sites] == [("zen.example", 3), ("bl.example", 2),
                                                      ("allow.example", -5)]
    assert sites[0].matches("127.0.0.200")
    assert sites[1].matches("127.0.0.11") and not sites[1].matches("127.0.0.12")
    assert sites[2].matches("127.0.9.3") and not sites[2].matches("127.0.9.4")
    assert not sites[1].matches("not-an-address")


@pytest.mark.parametrize("bad", ["zen.example*x", "bl.example=127.0.0", "bl.example=127.0.0.[a..b]"])
def test_parse_sites_rejects_bad_items(bad):
    with pytest.raises(SiteError):
        parse_sites(bad)


def test_score_adds_weights_and_names_the_heaviest_site():
    sites = parse_sites("a.example*1 b.example*3 b.example=127.0.0.4*2 w.example*-2")
    assert score(sites, {}) == (0, "")
    assert score(sites, {"a.example": ["127.0.0.2"], "b.example": ["127.0.0.2"]}) == (4, "b.example")
    assert score(sites, {"b.example": ["127.0.0.4"]}) == (5, "b.example")
    assert score(sites, {"a.example": ["127.0.0.2"], "w.example": ["127.0.0.1"]}) == (-1, "a.example")


def test_cache_persists_in_sqlite_and_expires(tmp_path):
    spec = f"btree:{tmp_path}/data/postscreen_cache"
    c = PassCache.open(spec)
    c.add("192.0.2.1", 1000.0)
    assert c.valid("192.0.2.1", 999.0) and not c.valid("192.0.2.1", 1000.0)
    again = PassCache.open(spec)                          # a new postscreen process
    assert again.expiry("192.0.2.1") == 1000.0
    assert (tmp_path / "data" / "postscreen_cache.sqlite").exists()
    assert again.cleanup(now=5000.0, retention=100.0) == 1
    assert PassCache.open(spec).expiry("192.0.2.1") is None


def test_memory_cache_when_map_is_empty():
    c = PassCache.open("")
    c.add("192.0.2.1", 10.0)
    assert c.valid("192.0.2.1", 5.0) and c.db is None


def test_query_names_and_log_escapes():
    assert query_name("192.0.2.1", "zen.example.") == "1.2.0.192.zen.example"
    assert query_name("2001:db8::1", "x.example").endswith(".8.b.d.0.1.0.0.2.x.example")
    assert query_name("not-an-ip", "x.example") is None
    assert _printable(b"EHLO zombie\r\n") == "EHLO zombie\\r\\n"
