"""Per-process memos of the smtp client give what the uncached functions give."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from postel.smtp import client


@given(st.integers(0, 63))
def test_notify_param_memo_equals_uncached(mask):
    assert client.notify_param(mask) == client._notify_param(mask)
    assert client.notify_param(mask) == client._notify_param(mask)     # the memo's answer


def test_notify_param_words():
    from postel.queue.records import DSN_NOTIFY_DELAY, DSN_NOTIFY_FAILURE, DSN_NOTIFY_SUCCESS
    assert client.notify_param(DSN_NOTIFY_SUCCESS | DSN_NOTIFY_DELAY) == "SUCCESS,DELAY"
    assert client.notify_param(DSN_NOTIFY_FAILURE) == "FAILURE"
    assert client.notify_param(0) is None
