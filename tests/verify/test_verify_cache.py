"""verify cache rules: entry format, expire/refresh, update robustness."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as s

from postel.verify.cache import (
    IN_PROGRESS,
    PROBE_TTL,
    RCPT_STAT_BOUNCE,
    RCPT_STAT_DEFER,
    RCPT_STAT_OK,
    RCPT_STAT_TODO,
    Policy,
    VerifyEntry,
    decide_query,
    forget_after_reply,
    parse_entry,
    update_entry,
)

P = Policy(positive_expire=1000, positive_refresh=100, negative_expire=500,
           negative_refresh=50, negative_cache=True)
NOW = 1_000_000


@given(s.sampled_from([0, 1, 2, 3]), s.integers(0, 2**40), s.integers(0, 2**40),
       s.text(alphabet=s.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n")))
def test_verify_entry_round_trip(status, probed, updated, text):
    e = VerifyEntry(status, probed, updated, text)
    assert parse_entry(e.format()) == e


def test_verify_parse_rejects_garbage():
    for raw in (None, "", "x", "0:1:2", "9:0:0:t", "a:0:0:t", "0:-1:0:t"):
        assert parse_entry(raw) is None
    assert parse_entry("2:0:5:550 5.1.1 a:b").text == "550 5.1.1 a:b"


def test_verify_unknown_address_probes_once():
    answer, probe = decide_query(None, NOW, P)
    assert (answer.status, answer.text, probe) == (RCPT_STAT_TODO, IN_PROGRESS, True)
    pending = VerifyEntry(RCPT_STAT_TODO, NOW, 0, IN_PROGRESS)
    assert decide_query(pending, NOW + 10, P)[1] is False
    assert decide_query(pending, NOW + PROBE_TTL + 1, P)[1] is True


def test_verify_positive_refresh_and_expire():
    ok = VerifyEntry(RCPT_STAT_OK, 0, NOW, "250 Ok")
    assert decide_query(ok, NOW + 50, P) == (ok, False)
    answer, probe = decide_query(ok, NOW + 101, P)
    assert answer.status == RCPT_STAT_OK and probe           # still valid, refreshed
    answer, probe = decide_query(ok, NOW + 1001, P)
    assert answer.status == RCPT_STAT_TODO and probe         # expired: unknown


def test_verify_negative_refresh_and_expire():
    bad = VerifyEntry(RCPT_STAT_BOUNCE, 0, NOW, "550 no")
    assert decide_query(bad, NOW + 10, P) == (bad, False)
    assert decide_query(bad, NOW + 51, P)[1] is True
    assert decide_query(bad, NOW + 501, P)[0].status == RCPT_STAT_TODO


def test_verify_failed_probe_keeps_valid_ok():
    ok = VerifyEntry(RCPT_STAT_OK, 0, NOW, "250 Ok")
    assert update_entry(ok, RCPT_STAT_BOUNCE, "550", NOW + 10, P) is None
    assert update_entry(ok, RCPT_STAT_DEFER, "450", NOW + 10, P) is None
    new = update_entry(ok, RCPT_STAT_BOUNCE, "550", NOW + 2000, P)   # ok had expired
    assert new == VerifyEntry(RCPT_STAT_BOUNCE, 0, NOW + 2000, "550")
    assert update_entry(None, RCPT_STAT_OK, "250", NOW, P) == VerifyEntry(0, 0, NOW, "250")


def test_verify_update_rejects_bad_status():
    import pytest
    with pytest.raises(ValueError):
        update_entry(None, RCPT_STAT_TODO, "x", NOW, P)


def test_verify_negative_cache_off_forgets():
    off = Policy(negative_cache=False)
    assert forget_after_reply(VerifyEntry(RCPT_STAT_BOUNCE, 0, NOW, "x"), off)
    assert not forget_after_reply(VerifyEntry(RCPT_STAT_OK, 0, NOW, "x"), off)
    assert not forget_after_reply(VerifyEntry(RCPT_STAT_BOUNCE, 0, NOW, "x"), P)
