"""Queue files: round trip, corruption detection, done markers, limits."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postel.queue import (
    Envelope,
    QueueDir,
    QueueFileCorrupt,
    QueueFileReader,
    QueueFileWriter,
    Recipient,
    iter_raw_records,
    mark_done,
)
from postel.queue import records as rec


@pytest.fixture
def qd(tmp_path):
    q = QueueDir(str(tmp_path / "q"))
    q.create_dirs()
    return q


def _write(qd, env, content=b"", extracted=(), chunks=None, **kw):
    w = QueueFileWriter(qd, **kw)
    w.write_envelope(env)
    w.write_content(b"")                  # begin the content: later recipients are extracted
    for chunk in chunks if chunks is not None else [content]:
        w.write_content(chunk)
    for r in extracted:
        w.add_recipient(r)
    return w.commit_sync()


def _normalise(content: bytes) -> bytes:
    """What the reader gives back: LF line ends, a final terminator added."""
    lines = content.split(b"\n")
    last = lines.pop()
    if last:
        lines.append(last)
    return b"".join((ln[:-1] if ln.endswith(b"\r") else ln) + b"\n" for ln in lines)


addr = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
rcpts = st.builds(Recipient, address=addr, orig_rcpt=addr,
                  dsn_notify=st.integers(0, 15), dsn_orcpt=addr, done=st.booleans())
envelopes = st.builds(
    Envelope, sender=addr, recipients=st.lists(rcpts, max_size=5),
    time=st.integers(1, 2**33).map(lambda us: us / 1e6 + 1),
    attrs=st.dictionaries(st.text("abcdefgh_", min_size=1, max_size=8), addr, max_size=5),
    dsn_envid=addr, dsn_ret=st.sampled_from([0, 1, 2]), full_name=addr,
    content_filter=addr, warn_time=st.integers(0, 10**11))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(env=envelopes, content=st.binary(max_size=3000), cuts=st.lists(st.integers(0, 3000)),
       extra=st.lists(rcpts, max_size=3), limit=st.sampled_from([1, 7, 2048]))
def test_round_trip(qd, env, content, cuts, extra, limit):
    bounds = sorted({0, len(content), *[c for c in cuts if c <= len(content)]})
    chunks = [content[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    path = _write(qd, env, chunks=chunks, extracted=extra, line_length_limit=limit)
    with QueueFileReader(path) as r:
        assert r.envelope.sender == env.sender
        assert r.envelope.recipients == env.recipients
        assert r.envelope.attrs == env.attrs
        assert (r.envelope.dsn_envid, r.envelope.dsn_ret, r.envelope.full_name) == \
            (env.dsn_envid, env.dsn_ret, env.full_name)
        assert r.envelope.content_filter == env.content_filter
        assert r.envelope.warn_time == env.warn_time
        assert abs(r.envelope.time - env.time) < 1e-5
        assert r.extracted.recipients == extra
        assert r.recipients == env.recipients + extra
        expected = _normalise(content)
        assert r.read_content() == expected
        assert r.read_content(b"\r\n") == expected.replace(b"\n", b"\r\n")
        assert r.message_size == len(expected)
    os.unlink(path)


def test_content_line_handling(qd):
    content = b"a\r\nb\rc\n\r\nlong " + b"x" * 5000 + b"\r\nend"
    path = _write(qd, Envelope("s"), chunks=[content[:2], content[2:4], content[4:]])
    with QueueFileReader(path) as r:
        lines = list(r.iter_lines())
    assert lines == [b"a", b"b\rc", b"", b"long " + b"x" * 5000, b"end"]


def test_write_line_and_empty_content(qd):
    w = QueueFileWriter(qd)
    w.write_envelope(Envelope("", recipients=[Recipient("r@x")]))
    w.write_line(b"Subject: x")
    w.write_line(b"")
    path = w.commit_sync()
    assert QueueFileReader(path).read_content() == b"Subject: x\n\n"
    path2 = _write(qd, Envelope("s"))
    r = QueueFileReader(path2)
    assert r.read_content() == b"" and r.recipients == [] and r.envelope.sender == "s"


def _small_file(qd) -> str:
    env = Envelope("s@x", recipients=[Recipient("r@x", orig_rcpt="R@x", dsn_notify=2)],
                   attrs={"a": "b"}, warn_time=1234, dsn_ret=1, time=1700000000.5)
    return _write(qd, env, b"Subject: t\n\nhello\n", extracted=[Recipient("e@x")])


def _read_all(path):
    with QueueFileReader(path) as r:
        return r.recipients, r.read_content()


def test_truncation_at_every_offset_is_corrupt(qd):
    path = _small_file(qd)
    data = open(path, "rb").read()
    for n in range(len(data)):
        with open(path, "wb") as f:
            f.write(data[:n])
        with pytest.raises(QueueFileCorrupt):
            _read_all(path)
    with open(path, "wb") as f:
        f.write(data + b"E\x00")
    with pytest.raises(QueueFileCorrupt):
        _read_all(path)


def test_every_bit_flip_is_corrupt(qd):
    path = _small_file(qd)
    data = open(path, "rb").read()
    with QueueFileReader(path) as r:
        warn = range(r.warn_offset, r.warn_offset + rec.WARN_WIDTH)
    for i in range(len(data)):
        for bit in range(8):
            if i in warn:
                continue      # the mutable delay-warning digits
            flipped = bytearray(data)
            flipped[i] ^= 1 << bit
            with open(path, "wb") as f:
                f.write(flipped)
            with pytest.raises(QueueFileCorrupt):
                _read_all(path)


def test_length_field_flips_in_big_file(qd):
    env = Envelope("s@x", recipients=[Recipient(f"r{i}@x") for i in range(50)])
    path = _write(qd, env, b"".join(b"line %d %s\n" % (i, b"y" * (i * 7)) for i in range(200)))
    data = open(path, "rb").read()
    records = list(iter_raw_records(data))
    assert len(records) > 250
    for offset, _, _ in records[1:]:
        for bit in range(8):
            flipped = bytearray(data)
            flipped[offset + 1] ^= 1 << bit
            with open(path, "wb") as f:
                f.write(flipped)
            with pytest.raises(QueueFileCorrupt):
                _read_all(path)


def test_garbage_and_empty_files(qd, tmp_path):
    p = tmp_path / "junk"
    for blob in (b"", b"C", b"hello world" * 20, os.urandom(500), b"C\x7f" + b"0" * 200):
        p.write_bytes(blob)
        with pytest.raises(QueueFileCorrupt):
            _read_all(str(p))


def test_uncommitted_file_is_corrupt(qd):
    w = QueueFileWriter(qd)
    w.write_envelope(Envelope("s", recipients=[Recipient("r")]))
    w.write_content(b"x\n" * 100000)   # flushed in part
    assert os.path.getsize(w.temp_path) > 0
    with pytest.raises(QueueFileCorrupt, match="incomplete"):
        QueueFileReader(w.temp_path)
    w.abort()
    assert not os.path.exists(w.temp_path)


def test_done_marker_persists(qd):
    path = _small_file(qd)
    before = open(path, "rb").read()
    with QueueFileReader(path) as r:
        first, second = r.recipients
        r.mark_done(second)
        assert second.done and not first.done
    after = open(path, "rb").read()
    diff = [i for i in range(len(before)) if before[i] != after[i]]
    assert diff == [second.offset] and after[second.offset:second.offset + 1] == b"D"
    mark_done(path, first.offset)
    mark_done(path, first.offset)          # idempotent
    rcpts, content = _read_all(path)
    assert [r.done for r in rcpts] == [True, True]
    assert content == b"Subject: t\n\nhello\n"
    with QueueFileReader(path) as r, pytest.raises(ValueError):
        r.mark_done(first.offset + 1)


def test_warn_time_rewrite(qd):
    path = _small_file(qd)
    with QueueFileReader(path) as r:
        r.set_warn_time(99999)
    assert QueueFileReader(path).envelope.warn_time == 99999


def test_recipient_limit(qd):
    path = _write(qd, Envelope("s", recipients=[Recipient(f"r{i}") for i in range(11)]))
    assert len(QueueFileReader(path, max_recipients=11).recipients) == 11
    with pytest.raises(QueueFileCorrupt, match="more than 10 recipients"):
        QueueFileReader(path, max_recipients=10)


def test_writer_rejects_bad_input(qd):
    w = QueueFileWriter(qd)
    with pytest.raises(RuntimeError):
        w.write_content(b"x")             # before the envelope
    with pytest.raises(ValueError):
        w.write_envelope(Envelope("s", attrs={"a=b": "c"}))
    w.abort()
    w = QueueFileWriter(qd)
    with pytest.raises(ValueError):
        w.write_envelope(Envelope("s", attrs={f"a{i}": "" for i in range(rec.ATTR_COUNT_LIMIT + 1)}))
    w.abort()
    assert list(os.listdir(qd.queue_path("incoming"))) == []


def test_unknown_printable_envelope_record_skipped(qd):
    """A later version's envelope record is skipped; an unprintable one is corrupt."""
    import zlib

    path = _write(qd, Envelope("s", recipients=[Recipient("r")]), b"x\n")
    data = bytearray(open(path, "rb").read())
    size = rec.parse_size(bytes(data[2:rec.SIZE_RECORD_LEN]))
    for code, ok in ((ord("?"), True), (0x01, False)):
        extra = rec.encode(code, b"future")
        at = rec.SIZE_RECORD_LEN
        new = bytes(data[:at]) + extra + bytes(data[at:])
        shift = len(extra)
        env = new[at:size[1] + shift]
        xtr = new[size[2] + shift:]
        crc = zlib.crc32(xtr, zlib.crc32(env))
        head = rec.encode(rec.REC_TYPE_SIZE, rec.format_size(
            size[0], size[1] + shift, size[2] + shift, size[3] + shift, size[4], crc, size[6]))
        with open(path, "wb") as f:
            f.write(head + new[rec.SIZE_RECORD_LEN:])
        if ok:
            assert _read_all(path)[1] == b"x\n"
        else:
            with pytest.raises(QueueFileCorrupt, match="out of place"):
                _read_all(path)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_damage_never_raises_anything_else(qd, data):
    path = _small_file(qd)
    original = open(path, "rb").read()
    start = data.draw(st.integers(0, len(original)))
    junk = data.draw(st.binary(max_size=8))
    cut = data.draw(st.integers(0, 8))
    damaged = original[:start] + junk + original[start + cut:]
    with open(path, "wb") as f:
        f.write(damaged)
    try:
        rcpts, content = _read_all(path)
    except QueueFileCorrupt:
        return
    finally:
        os.unlink(path)
    # Accepted: only an unchanged file or a change of mutable bytes alone.
    assert len(damaged) == len(original)
    assert content == b"Subject: t\n\nhello\n"
    assert [r.address for r in rcpts] == ["r@x", "e@x"]
