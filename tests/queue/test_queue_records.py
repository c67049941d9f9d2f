"""Record framing: length encoding, size record, the code table."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postel.queue import records as rec


@given(st.integers(min_value=0, max_value=rec.MAX_RECORD_LEN))
def test_length_round_trip(n):
    enc = rec.encode_length(n)
    assert rec.decode_length(enc + b"xyz", 0) == (n, len(enc))


def test_length_errors():
    for bad in (b"", b"\x80", b"\x80\x00", b"\xff\xff\xff\xff\x01", b"\x80\x80\x80\x08"):
        with pytest.raises(ValueError):
            rec.decode_length(bad, 0)


def test_codes_unique_and_printable():
    codes = [v for k, v in vars(rec).items() if k.startswith("REC_TYPE_") and isinstance(v, int)]
    assert len(codes) == len(set(codes))
    assert set(codes) == set(rec.REC_TYPE_NAMES)
    assert all(rec.is_printable(c) for c in codes)


def test_size_record_round_trip_and_strictness():
    payload = rec.format_size(1, 2, 3, 4, 5, 0xDEADBEEF, 7)
    assert len(payload) == rec.SIZE_PAYLOAD_LEN
    assert rec.parse_size(payload) == (1, 2, 3, 4, 5, 0xDEADBEEF, 7)
    with pytest.raises(ValueError):
        rec.parse_size(payload.replace(b"000000000002", b"        0002"))
    with pytest.raises(ValueError):
        rec.parse_size(b"02" + payload[2:])
