"""queue.scan (the fast listing) against queue.report (the full reader), on the same files."""

from __future__ import annotations

import os
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qadmin_helpers import BASE_TIME, add_defer_log, make_config

from postel.ipc.attr import AttrDecoder, AttrError, encode
from postel.queue import Envelope, QueueFileWriter, Recipient, new_qid, report, scan
from postel.queue.report import QueueEntry, ShowqProtocolError, encode_entry

ADDRS = st.sampled_from(["a@x.example", "b@x.example", "c@y.example", "", "d" * 130 + "@z",
                         "\u00e9@x.example", "q=r@x.example"])
SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


def _message(qd, queue, rng: random.Random, sender, rcpts, extra, attrs, dsn, done, content) -> str:
    """_message - one queue file with a random mix of the records the writer can produce."""
    w = QueueFileWriter(qd, queue, qid=new_qid(now=BASE_TIME + rng.random() * 1000))
    env = Envelope(sender=sender, time=BASE_TIME + rng.randint(0, 10**6) / 7,
                   recipients=[Recipient(r, orig_rcpt=r if dsn & 1 else "",
                                         dsn_orcpt="rfc822;" + r if dsn & 2 else "",
                                         dsn_notify=(dsn >> 2) & 15, done=i in done)
                               for i, r in enumerate(rcpts)],
                   attrs=attrs, warn_time=BASE_TIME if dsn & 64 else 0,
                   full_name="Full Name" if dsn & 128 else "")
    w.write_envelope(env)
    w.write_content(content)
    for r in extra:
        w.add_recipient(Recipient(r))
    w.finish()
    w.sync_file(fsync=False)            # a test needs no durability
    w.publish()
    return w.qid


@SETTINGS
@given(data=st.data())
def test_fast_scan_equals_full_reader(tmp_path_factory, data):
    _, qd = make_config(tmp_path_factory.mktemp("q"))
    rng = random.Random(data.draw(st.integers(0, 2**32)))
    for _ in range(data.draw(st.integers(1, 4))):
        queue = data.draw(st.sampled_from(["maildrop", "incoming", "active", "deferred", "hold"]))
        rcpts = data.draw(st.lists(ADDRS, min_size=1, max_size=4))
        attrs = data.draw(st.dictionaries(st.sampled_from(["client_name", "forced_expire", "x"]),
                                          st.sampled_from(["1", "yes", "0", "", "a=b"]),
                                          max_size=3))
        qid = _message(qd, queue, rng, data.draw(ADDRS), rcpts,
                       data.draw(st.lists(ADDRS, max_size=2)), attrs,
                       data.draw(st.integers(0, 255)),
                       set(data.draw(st.lists(st.integers(0, 3), max_size=2))),
                       data.draw(st.sampled_from([b"s\n", b"x" * 9000 + b"\n"])))
        if data.draw(st.booleans()):
            add_defer_log(qd, qid, [(r, data.draw(st.sampled_from(["why", "other", "", "\u00e9t\u00e9"])))
                                    for r in rcpts[:2]])
        if data.draw(st.booleans()):     # damage one byte (or cut the file)
            path = qd.path(queue, qid)
            size = os.path.getsize(path)
            with open(path, "r+b") as f:
                if data.draw(st.booleans()):
                    f.truncate(data.draw(st.integers(0, size - 1)))
                else:
                    at = data.draw(st.integers(0, size - 1))
                    f.seek(at)
                    f.write(bytes([data.draw(st.integers(0, 255))]))
    want = list(report.scan_entries(qd))
    assert list(scan.scan_entries(qd)) == want
    assert scan.wire_of(qd, scan.listing(qd)) == (b"".join(map(scan.entry_wire, want)), len(want))
    fmt = report.MailqFormatter()
    text = "".join(fmt.entry(e) for e in want).encode("utf-8", "surrogateescape")
    data, count, size = scan.text_of(qd, scan.listing(qd))
    assert (count, size) == (len(want), sum(e.message_size for e in want))
    assert (text[:len(report.HEADER)] + data[1:] if count else b"") == text


DEFER_LINES = st.sampled_from(["recipient=a", "recipient=b", "recipient=", "reason=one",
                               "reason=two=2", "reason=", "status=4.0.0", "bogus", "",
                               "recipient=a\r", " reason=x", "recipient=\u00e9"])


@settings(max_examples=300, deadline=None)
@given(st.lists(DEFER_LINES, max_size=12), st.booleans())
def test_defer_log_parser_equals_report(lines, final_newline):
    text = "\n".join(lines) + ("\n" if final_newline else "")
    want = _report_defer_log(text)
    assert scan.parse_defer_log(text) == want
    data = text.encode("utf-8", "surrogateescape")
    for addr in ("a", "b", "\u00e9", ""):
        assert scan.defer_reason(data, addr.encode()) == want.get(addr, "").encode()


def _report_defer_log(text: str) -> dict[str, str]:
    """_report_defer_log - report.read_defer_log's rules on text (through a file)."""
    import tempfile
    with tempfile.NamedTemporaryFile("wb", delete=False) as f:
        f.write(text.encode("utf-8", "surrogateescape"))
    try:
        return report.read_defer_log(f.name)
    finally:
        os.unlink(f.name)


ENTRIES = st.builds(
    QueueEntry,
    st.sampled_from(["active", "deferred", "hold", "x" * 20]),
    st.sampled_from(["4bULG42787z093F001", "Q", "a,b"]),
    st.integers(0, 2**33), st.integers(0, 2**40),
    st.text(max_size=20),
    st.lists(st.tuples(st.text(max_size=12), st.sampled_from(["", "why", "x" * 90])), max_size=4),
    st.booleans())


@settings(max_examples=200, deadline=None)
@given(st.lists(ENTRIES, max_size=6), st.integers(1, 200))
def test_wire_encoder_and_reader(entries, chunk):
    wire = b"".join(scan.entry_wire(e) for e in entries)
    assert wire == b"".join(encode(encode_entry(e)) for e in entries)
    wire += encode({"end": 1, "count": len(entries)})
    reader = scan.WireReader()
    got = []
    for i in range(0, len(wire), chunk):
        got += reader.feed(wire[i:i + chunk])
    assert reader.done and got == entries


def test_wire_reader_errors():
    good = scan.entry_wire(QueueEntry("hold", "Q", 1, 2, "s", [("r", "")]))
    reader = scan.WireReader()
    assert reader.feed(good[:-5]) == []
    try:
        reader.eof()
        raise AssertionError("no error")
    except AttrError as exc:
        assert "truncated" in str(exc)
    reader = scan.WireReader()
    reader.feed(good)
    try:
        reader.eof()
        raise AssertionError("no error")
    except ShowqProtocolError as exc:
        assert "early" in str(exc)
    reader = scan.WireReader()
    try:
        reader.feed(good + encode({"end": 1, "count": 0, "error": "unknown request"}))
        raise AssertionError("no error")
    except ShowqProtocolError as exc:
        assert "unknown request" in str(exc)
    reader = scan.WireReader()
    try:
        reader.feed(b"queue_name=4:hold,bogus\n" + b"x" * 300)
        raise AssertionError("no error")
    except AttrError:
        pass


def test_many_recipients_through_the_wire():
    e = QueueEntry("deferred", "Q", 1, 2, "s", [(f"r{i}@x.example", "why") for i in range(3000)])
    reader = scan.WireReader()
    wire = scan.entry_wire(e) + encode({"end": 1, "count": 1})
    got = []
    for i in range(0, len(wire), 4096):
        got += reader.feed(wire[i:i + 4096])
    assert got == [e]
    assert len(AttrDecoder().feed(encode({"end": 1}))) == 1


def test_defer_log_of_hashed_and_flat_queues(tmp_path):
    cfg_dir, qd = make_config(tmp_path)
    for queue in ("deferred", "active", "hold"):
        qid = _message(qd, queue, random.Random(1), "s@x", ["a@x.example"], [], {}, 0, set(), b"x\n")
        add_defer_log(qd, qid, [("a@x.example", f"in {queue}")])
    got = {e.queue_name: e.recipients for e in scan.scan_entries(qd)}
    assert got == {q: [("a@x.example", f"in {q}")] for q in ("deferred", "active", "hold")}
    assert list(scan.scan_entries(qd)) == list(report.scan_entries(qd))


def test_usual_files_take_the_fast_path(tmp_path, monkeypatch):
    _, qd = make_config(tmp_path)
    qids = [_message(qd, "deferred", random.Random(i), "s@x", ["a@x.example", "b@x.example"],
                     ["c@x.example"], {"client_name": "h", "forced_expire": "yes"}, 3, {1},
                     b"body\n") for i in range(3)]
    expected = list(report.scan_entries(qd))
    monkeypatch.setattr(report, "read_entry", lambda *a: 1 / 0)
    got = list(scan.scan_entries(qd))
    assert got == expected and sorted(e.queue_id for e in got) == sorted(qids)
    assert got[0].forced_expire and got[0].recipients == [("a@x.example", ""), ("c@x.example", "")]


@settings(max_examples=200, deadline=None)
@given(st.lists(ENTRIES, max_size=8), st.integers(1, 4), st.sampled_from(["UTC", "Europe/Paris"]))
def test_mailq_text_equals_formatter(entries, split, tz):
    """entry_text (showq's general path) and the trailer give MailqFormatter's text."""
    import time
    old = os.environ.get("TZ")
    os.environ["TZ"] = tz
    time.tzset()
    try:
        slow = report.MailqFormatter()
        want = "".join(slow.entry(e) for e in entries) + slow.finish()
        blocks = b"".join(scan.entry_text(e, report.asctime19(e.arrival_time)) for e in entries)
        got = (report.HEADER.encode() + blocks[1:] if entries else b"") + scan.mailq_trailer(
            len(entries), sum(e.message_size for e in entries)).encode()
        assert got == want.encode("utf-8", "surrogateescape") and split
    finally:
        if old is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = old
        time.tzset()


def test_listing_equals_qdir_walk(tmp_path):
    """scan.listing() finds and orders what QueueDir.scan_paths() does, odd entries included."""
    _, qd = make_config(tmp_path)
    rng = random.Random(7)
    qids = [_message(qd, q, rng, "s@x", ["a@x.example"], [], {}, 0, set(), b"x\n")
            for q in ("deferred", "deferred", "active", "hold", "incoming", "deferred")]
    deferred = qd.queue_path("deferred")
    os.makedirs(os.path.join(deferred, "F", qids[2]))               # a directory named like an ID
    open(os.path.join(deferred, qids[0]), "w").close()               # the same ID, unhashed
    os.makedirs(os.path.join(deferred, "3"), exist_ok=True)
    os.symlink(qd.path("deferred", qids[1]), os.path.join(deferred, "3", qids[3]))
    open(os.path.join(deferred, "x.tmp"), "w").close()
    open(os.path.join(qd.queue_path("active"), "A"), "w").close()    # a file named like a hash dir
    os.makedirs(os.path.join(qd.queue_path("hold"), "B", "C"))       # nested hash directories
    open(os.path.join(qd.queue_path("hold"), "B", "C", qids[5]), "w").close()
    want = [(q, qid, path) for q in report.SHOWQ_QUEUES for qid, path in sorted(qd.scan_paths(q))]
    assert scan.listing(qd) == want
    assert [item[1] for item in want].count(qids[0]) == 2 and len(want) == 8


def test_listing_leaves_access_times(tmp_path, monkeypatch):
    """Queue files and defer logs are opened with O_NOATIME; without the right, plainly."""
    _, qd = make_config(tmp_path)
    qid = _message(qd, "deferred", random.Random(3), "s@x", ["a@x.example"], [], {}, 0, set(),
                   b"x\n")
    add_defer_log(qd, qid, [("a@x.example", "why")])
    paths = [qd.path("deferred", qid), qd.path("defer", qid)]
    for path in paths:
        os.utime(path, (1000000000, os.stat(path).st_mtime))     # read never (relatime)
    data, count, _ = scan.text_of(qd, scan.listing(qd))
    assert count == 1 and b"(why)" in data
    assert [os.stat(path).st_atime for path in paths] == [1000000000] * 2
    real_open = os.open

    def no_noatime(path, flags, *args):
        if flags & getattr(os, "O_NOATIME", 0):
            raise PermissionError(1, "Operation not permitted", path)
        return real_open(path, flags, *args)

    monkeypatch.setattr(scan, "_open_flags", scan._open_flags)
    monkeypatch.setattr(os, "open", no_noatime)
    assert scan.text_of(qd, scan.listing(qd))[:2] == (data, 1)
    assert scan._open_flags == os.O_RDONLY | os.O_CLOEXEC


def test_latest_reason_of_a_log_with_several_deferrals(tmp_path):
    _, qd = make_config(tmp_path)
    qid = _message(qd, "deferred", random.Random(5), "s@x", ["a@x.example"], [], {}, 0, set(),
                   b"x\n")
    add_defer_log(qd, qid, [("a@x.example", "first"), ("b@x.example", "other"),
                            ("a@x.example", "latest"), ("", "none")])
    want = list(report.scan_entries(qd))
    assert want[0].recipients == [("a@x.example", "latest")]
    fmt = report.MailqFormatter()
    data, count, _ = scan.text_of(qd, scan.listing(qd))
    assert report.HEADER.encode() + data[1:] == fmt.entry(want[0]).encode() and count == 1
    assert scan.wire_of(qd, scan.listing(qd)) == (scan.entry_wire(want[0]), 1)


@settings(max_examples=300, deadline=None)
@given(st.integers(-2**31, 2**33), st.sampled_from(["UTC", "Europe/Paris", "Asia/Kolkata",
                                                    "America/St_Johns", "Africa/Monrovia",
                                                    "Europe/Amsterdam"]))
def test_arrival_minute_cache_equals_asctime(sec, tz):
    """The per-minute arrival time text (text_of's cache) is asctime19's, zones with odd offsets."""
    import time
    old = os.environ.get("TZ")
    os.environ["TZ"] = tz
    time.tzset()
    try:
        sc = scan._Scanner(scan.QueueDir("/nonexistent"))
        for s in (sec, sec - sec % 60, sec - sec % 60 + 59, 1680000000 + sec % 10**8):
            minute = sc.minute(s // 60)
            assert not minute or minute + b"%02d" % (s % 60) == report.asctime19(s).encode()
        assert sc.minute(1700000000 // 60)            # a usual minute is cached
    finally:
        if old is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = old
        time.tzset()


def test_arrival_seconds_of_far_times(tmp_path):
    """Whole seconds as the full reader gives them, where a float sum could round up."""
    _, qd = make_config(tmp_path)
    for when in (BASE_TIME + 0.999999, 2**33 + 0.999999, 10**11 + 0.5):
        w = QueueFileWriter(qd, "hold", qid=new_qid(now=BASE_TIME))
        w.write_envelope(Envelope(sender="s@x", time=when, recipients=[Recipient("r@x")]))
        w.write_content(b"x\n")
        w.commit_sync()
    want = list(report.scan_entries(qd))
    assert list(scan.scan_entries(qd)) == want and len(want) == 3
    assert sorted(e.arrival_time for e in want)[0] == BASE_TIME
