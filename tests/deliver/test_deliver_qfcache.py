"""CachingReader (delivery agents): a cached envelope parse equals a fresh QueueFileReader parse."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postel.deliver import qfcache
from postel.deliver.qfcache import CachingReader
from postel.queue import (
    Envelope,
    QueueDir,
    QueueFileCorrupt,
    QueueFileReader,
    QueueFileWriter,
    Recipient,
)

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture
def qd(tmp_path):
    q = QueueDir(str(tmp_path / "q"))
    q.create_dirs()
    return q


def _write(qd, nrcpt: int, warn: int = 0, attrs: dict | None = None) -> str:
    rcpts = [Recipient(f"u{i}@d{i % 7}.example", orig_rcpt=f"o{i}@example" if i % 3 else "",
                       dsn_notify=i % 16, dsn_orcpt=f"rfc822;u{i}@x" if i % 5 == 0 else "")
             for i in range(nrcpt)]
    w = QueueFileWriter(qd)
    w.write_envelope(Envelope(sender="a@example.org", recipients=rcpts, time=1700000000.5,
                              attrs=attrs or {"client_name": "localhost"}, warn_time=warn,
                              dsn_envid="env1", dsn_ret=1))
    w.write_lines([b"Subject: x", b"", b"body"])
    return w.commit_sync()


def _view(r: QueueFileReader) -> tuple:
    env = r.envelope
    return (env, [(x.address, x.orig_rcpt, x.dsn_notify, x.dsn_orcpt, x.done, x.offset)
                  for x in r.recipients], r.warn_offset, r.extracted, r.message_size,
            r.read_content())


def _both(path: str) -> tuple:
    with QueueFileReader(path) as plain, CachingReader(path) as cached:
        return _view(plain), _view(cached)


@SETTINGS
@given(nrcpt=st.integers(1, 60), warn=st.sampled_from([0, 1800000000]),
       rounds=st.lists(st.tuples(st.lists(st.integers(0, 59), max_size=10),
                                 st.sampled_from([None, 0, 1900000000])), min_size=1, max_size=4))
def test_cached_parse_equals_full_parse(qd, nrcpt, warn, rounds):
    qfcache.forget()
    path = _write(qd, nrcpt, warn)
    plain, cached = _both(path)
    assert plain == cached
    marked: set[int] = set()
    for done, new_warn in rounds:
        with QueueFileReader(path) as w:
            for i in done:
                if i < nrcpt:
                    w.mark_done(w.recipients[i].offset)
                    marked.add(i)
            if new_warn is not None and w.warn_offset >= 0:
                w.set_warn_time(new_warn)
        plain, cached = _both(path)
        assert plain == cached
        assert [x[4] for x in cached[1]] == [i in marked for i in range(nrcpt)]
    if nrcpt >= qfcache.MIN_RECIPIENTS:
        assert path in CachingReader._cache      # the hit path was taken above


@SETTINGS
@given(pos=st.integers(0, 10**6), byte=st.integers(0, 255))
def test_corruption_reported_as_full_parse(qd, pos, byte):
    qfcache.forget()
    path = _write(qd, 30, 1800000000)
    with CachingReader(path) as r:
        end, w = r.content_offset, r.warn_offset
    pos = pos % end
    digit_in_warn = w <= pos < w + 12 and chr(byte).isdigit()
    with open(path, "r+b") as f:
        f.seek(pos)
        old = f.read(1)
        f.seek(pos)
        f.write(bytes([byte]))
    errors = []
    for cls in (QueueFileReader, CachingReader):
        try:
            with cls(path) as r:
                errors.append(("ok", _view(r)))
        except QueueFileCorrupt as exc:
            errors.append(("corrupt", str(exc)))
    assert errors[0] == errors[1]
    if old != bytes([byte]) and not digit_in_warn \
            and not (old in (b"R", b"D") and bytes([byte]) in (b"R", b"D")):
        assert errors[0][0] == "corrupt"        # the checksum sees every other change


def test_other_file_at_same_path_is_parsed(qd, tmp_path):
    qfcache.forget()
    path = _write(qd, 40)
    with CachingReader(path):
        pass
    other = _write(qd, 40, attrs={"client_name": "otherhost"})
    with open(other, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data)
    with CachingReader(path) as r:
        assert r.envelope.attrs["client_name"] == "otherhost"
    plain, cached = _both(path)
    assert plain == cached


def test_small_envelopes_not_cached(qd):
    qfcache.forget()
    path = _write(qd, qfcache.MIN_RECIPIENTS - 1)
    with CachingReader(path):
        pass
    assert path not in CachingReader._cache


@SETTINGS
@given(nrcpt=st.integers(20, 45), marks=st.lists(st.integers(0, 44), max_size=30),
       extracted=st.integers(0, 3))
def test_mark_done_through_cached_readers(qd, nrcpt, marks, extracted):
    """Readers open at once share Recipient objects; every fresh open equals a plain parse."""
    qfcache.forget()
    rcpts = [Recipient(f"u{i}@d{i % 7}.example") for i in range(nrcpt)]
    w = QueueFileWriter(qd)
    w.write_envelope(Envelope(sender="a@example.org", recipients=rcpts))
    w.write_lines([b"Subject: x", b"", b"body"])
    for i in range(extracted):
        w.add_recipient(Recipient(f"x{i}@extracted.example"))
    path = w.commit_sync()
    total = nrcpt + extracted
    with CachingReader(path):
        pass                                    # cached now
    held = []
    for n, i in enumerate(marks):
        r = CachingReader(path)                 # a cache hit, kept open like a delivery
        held.append(r)
        target = r.recipients[i % total]
        r.mark_done(target.offset)
        assert target.done
        plain, cached = _both(path)
        assert plain == cached
        if n % 3 == 0:
            held.pop(0).close()
    for r in held:
        r.close()
    with QueueFileReader(path) as plain:
        assert [x.offset for x in plain.recipients if x.done] == \
            sorted({plain.recipients[i % total].offset for i in marks})
