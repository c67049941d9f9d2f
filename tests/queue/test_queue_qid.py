"""Queue IDs: format, time order, uniqueness across processes, hashing."""

from __future__ import annotations

import multiprocessing
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postel.queue import new_qid, qid_hash, qid_ok, qid_time
from postel.queue.qid import QID_LEN


def test_qid_format_and_time():
    before = time.time()
    qid = new_qid()
    after = time.time()
    assert len(qid) == QID_LEN and qid_ok(qid)
    assert qid.isalnum() and "/" not in qid
    assert before - 1e-6 <= qid_time(qid) <= after + 1e-6


def test_qid_strictly_increasing_in_one_process():
    ids = [new_qid() for _ in range(20000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


@given(st.floats(min_value=0, max_value=2**34), st.floats(min_value=0, max_value=2**34))
def test_qid_sorts_by_time(a, b):
    qa, qb = new_qid(a), new_qid(b)
    assert abs(qid_time(qa) - a) < 2e-6
    if int(a * 1e6) < int(b * 1e6):
        assert qa < qb


def test_qid_rejects_malformed():
    for bad in ("", "abc", "../../etc/passwd", "4bUI252lRFy0555001", "4bUI252lRFz0555001x"):
        assert not qid_ok(bad)
        with pytest.raises(ValueError):
            qid_time(bad)


def _make_ids(n: int) -> list[str]:
    return [new_qid() for _ in range(n)]


def test_qid_unique_across_processes():
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(4) as pool:
        results = pool.map(_make_ids, [5000] * 4)
    assert len({q for r in results for q in r}) == 20000
    for r in results:
        assert r == sorted(r)


def test_qid_hash_levels():
    qid = new_qid(1700000000.000123)   # usec 123 = 0x07B
    assert qid_hash(qid, 1) == ["B"]
    assert qid_hash(qid, 3) == ["B", "7", "0"]
    spread = {qid_hash(new_qid(1700000000 + i / 1e6), 1)[0] for i in range(64)}
    assert len(spread) == 16
