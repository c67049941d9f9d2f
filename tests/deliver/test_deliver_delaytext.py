"""delay_text keeps the a/b/c text between calls: always equal to formatting all five values."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from postel.deliver.request import DeliverRcpt, DeliverRequest
from postel.deliver.status import DeliveryContext, format_delay

SECS = st.floats(min_value=0, max_value=20000, allow_nan=False)


def _reference(dctx: DeliveryContext, now: float) -> str:
    """The formula before the memo: five format_delay calls."""
    arrival = dctx.req.arrival_time or dctx.start
    res = dctx.resolution
    parts = "/".join(format_delay(x, res) for x in dctx.delays(now))
    return f"delay={format_delay(max(0.0, now - arrival), res)}, delays={parts}"


@given(arrival=SECS, active=SECS, start=SECS, res=st.integers(0, 8),
       steps=st.lists(st.tuples(st.sampled_from(["now", "conn", "xfer", "start"]), SECS),
                      min_size=1, max_size=12))
def test_delay_text_equals_five_formats(arrival, active, start, res, steps):
    req = DeliverRequest("active", "QID", "nexthop", "s@x", [DeliverRcpt("r@x", offset=1)],
                         arrival_time=arrival, active_time=active)
    dctx = DeliveryContext(req, None)
    dctx.start = start
    dctx.resolution = res
    for what, t in steps:
        if what == "conn":
            dctx.conn_start = t
        elif what == "xfer":
            dctx.xfer_start = t
        elif what == "start":
            dctx.start = t
        assert dctx.delay_text(t) == _reference(dctx, t)
        assert dctx.delay_text(t + 0.004) == _reference(dctx, t + 0.004)


def test_format_delay_thresholds():
    assert [format_delay(0.009, r) for r in range(5)] == ["0", "0", "0", "0.009", "0.009"]
    # resolutions beyond the precomputed thresholds: computed as before
    assert format_delay(1e-10, 9) == "0" and format_delay(5e-9, 9) != "0"
