"""anvil: the counters (AnvilTable) and the request dispatcher, without sockets."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from postel.anvil.service import Anvil
from postel.anvil.table import AnvilTable
from postel.ipc.attr import AttrList


def _req(**kw) -> AttrList:
    return AttrList((k, str(v).encode()) for k, v in kw.items())


def test_connect_counts_concurrency_and_rate():
    t = AnvilTable(60)
    assert t.connect("smtp:1.2.3.4", 0).count == 1
    c = t.connect("smtp:1.2.3.4", 1)
    assert (c.count, c.rate) == (2, 2)
    assert t.disconnect("smtp:1.2.3.4", 2) == 1
    c = t.connect("smtp:1.2.3.4", 3)
    assert (c.count, c.rate) == (2, 3)
    assert t.connect("smtp:5.6.7.8", 3).count == 1      # another client is separate


def test_rate_window_restarts_after_the_time_unit():
    t = AnvilTable(60)
    for i in range(5):
        t.event("smtp:a", "message", i)
    assert t.rate("smtp:a", "message", 10) == 5
    assert t.event("smtp:a", "message", 61) == 1        # a new unit began
    assert t.rate("smtp:a", "rcpt", 61) == 0


def test_disconnect_never_goes_negative_and_expire_drops_idle_entries():
    t = AnvilTable(60)
    t.connect("smtp:a", 0)
    t.disconnect("smtp:a", 1)
    assert t.disconnect("smtp:a", 1) == 0
    assert t.disconnect("smtp:unknown", 1) == 0
    t.connect("smtp:b", 0)
    assert t.expire(30) == 0                             # window still open
    assert t.expire(100) == 1                            # a gone, b still connected
    assert list(t.entries) == ["smtp:b"]


def test_unknown_rate_kind_is_an_error():
    t = AnvilTable(60)
    try:
        t.event("smtp:a", "bogus", 0)
    except ValueError as exc:
        assert "bogus" in str(exc)
    else:
        raise AssertionError("no error")


@given(st.lists(st.sampled_from(["c", "d"]), max_size=50))
def test_count_equals_connects_minus_disconnects(ops):
    t = AnvilTable(60)
    n = 0
    for op in ops:
        if op == "c":
            n += 1
            assert t.connect("smtp:x", 0).count == n
        else:
            n = max(0, n - 1)
            assert t.disconnect("smtp:x", 0) == n


def test_dispatcher_requests_and_stream_forget():
    now = [1000.0]
    a = Anvil(60, 600, clock=lambda: now[0])
    mine: dict[str, int] = {}
    assert a.handle(_req(request="connect", ident="smtp:1.2.3.4"), mine) == \
        {"status": 0, "count": 1, "rate": 1}
    assert a.handle(_req(request="message", ident="smtp:1.2.3.4"), mine)["rate"] == 1
    assert a.handle(_req(request="recipient", ident="smtp:1.2.3.4"), mine)["rate"] == 1
    assert a.handle(_req(request="recipient", ident="smtp:1.2.3.4"), mine)["rate"] == 2
    assert a.handle(_req(request="auth", ident="smtp:1.2.3.4"), mine)["rate"] == 1
    assert a.handle(_req(request="newtls", ident="smtp:1.2.3.4"), mine)["rate"] == 1
    assert a.handle(_req(request="newtls_report", ident="smtp:1.2.3.4"), mine)["rate"] == 1
    info = a.handle(_req(request="lookup", ident="smtp:1.2.3.4"), mine)
    assert info == {"status": 0, "count": 1, "connect_rate": 1, "message_rate": 1,
                    "rcpt_rate": 2, "newtls_rate": 1, "auth_rate": 1}
    assert a.handle(_req(request="frobnicate", ident="x"), mine) == {"status": 1}
    assert a.handle(_req(request="connect"), mine) == {"status": 1}
    # a disconnect for a connection this stream never made is ignored
    assert a.handle(_req(request="disconnect", ident="smtp:9.9.9.9"), mine) == {"status": 0}
    a.forget(mine)                       # the client process went away
    assert a.table.lookup("smtp:1.2.3.4", now[0])["count"] == 0


def test_statistics_lines():
    now = [1700000000.0]
    a = Anvil(60, 600, clock=lambda: now[0])
    mine: dict[str, int] = {}
    for _ in range(3):
        a.handle(_req(request="connect", ident="smtp:192.0.2.1"), mine)
    a.handle(_req(request="recipient", ident="smtp:192.0.2.1"), mine)
    lines = a.report()
    assert lines[0].startswith("statistics: max connection rate 3/60s for (smtp:192.0.2.1) at ")
    assert any(ln.startswith("statistics: max connection count 3 for (smtp:192.0.2.1) at ")
               for ln in lines)
    assert any(ln.startswith("statistics: max recipient rate 1/60s for") for ln in lines)
    assert lines[-1].startswith("statistics: max cache size 1 at ")
    assert not any("message rate" in ln for ln in lines)
    # the peaks are reset after a report
    assert not any("connection rate" in ln for ln in a.report())
