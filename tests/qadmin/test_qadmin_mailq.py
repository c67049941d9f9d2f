"""mailq / postqueue -p -j layout, from a constructed queue (direct reading)."""

from __future__ import annotations

import io
import json
import time

import pytest
from qadmin_helpers import BASE_TIME, add_defer_log, add_message, make_config

from postel.commands import postqueue
from postel.queue.report import (
    MailqFormatter,
    QueueEntry,
    decode_entry,
    encode_entry,
    read_defer_log,
    scan_entries,
)

REASON = "connect to 203.0.113.1[203.0.113.1]:25: Connection timed out"
LONG = "host mx.example.net[192.0.2.7] said: 450 4.7.1 <r@example.org>: Recipient address rejected: try later"


@pytest.fixture(autouse=True)
def utc(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.delenv("TZ")
    time.tzset()


def _run(argv, cfg_dir, capsys):
    rc = postqueue.main(argv, cfg_dir)
    out, err = capsys.readouterr()
    return rc, out, err


def test_empty_queue(tmp_path, capsys):
    cfg_dir, _ = make_config(tmp_path)
    rc, out, err = _run(["-p"], cfg_dir, capsys)
    assert rc == 0 and out == "Mail queue is empty\n"
    rc, out, _ = _run(["-j"], cfg_dir, capsys)
    assert rc == 0 and out == ""


def test_mailq_layout_byte_for_byte(tmp_path, capsys):
    cfg_dir, qd = make_config(tmp_path)
    a = add_message(qd, "active", "alice@example.com", ("bob@example.org",), BASE_TIME,
                    b"x" * 1500 + b"\n")
    d = add_message(qd, "deferred", "", ("u1@example.net", "u2@example.net", "u3@example.net",
                                         "u4@example.net"), BASE_TIME + 60,
                    b"Subject: y\n\n" + b"z" * 99 + b"\n", done=("u4@example.net",))
    add_defer_log(qd, d, [("u1@example.net", REASON), ("u2@example.net", REASON),
                          ("u3@example.net", LONG)])
    h = add_message(qd, "hold", "carol@example.com", ("dave@example.org", "dave@example.org"),
                    BASE_TIME + 3600, b"short\n")
    size_a, size_d, size_h = 1501, 12 + 100, 6
    expected = (   # Postfix's long queue ID layout: "%-17s %8s %-19s %s", recipients at 47
        "----Queue ID----- --Size-- ---Arrival Time---- --Sender/Recipient------\n"
        f"{a + '*':<17} {size_a:8d} Tue Nov 14 22:13:20 alice@example.com\n"
        f"{' ' * 47}bob@example.org\n"
        "\n"
        f"{d + ' ':<17} {size_d:8d} Tue Nov 14 22:14:20 MAILER-DAEMON\n"
        f"{' ' * 16}({REASON})\n"
        f"{' ' * 47}u1@example.net\n"
        f"{' ' * 47}u2@example.net\n"
        f"({LONG})\n"
        f"{' ' * 47}u3@example.net\n"
        "\n"
        f"{h + '!':<17} {size_h:8d} Tue Nov 14 23:13:20 carol@example.com\n"
        f"{' ' * 47}dave@example.org\n"
        "\n"
        "-- 1 Kbytes in 3 Requests.\n"
    )
    rc, out, err = _run(["-p"], cfg_dir, capsys)
    assert rc == 0, err
    assert out == expected


def test_trailer_singular_and_kbytes():
    fmt = MailqFormatter()
    fmt.entry(QueueEntry("incoming", "X", BASE_TIME, 2047, "s", [("r", "")]))
    assert fmt.finish() == "\n-- 1 Kbytes in 1 Request.\n"


def test_json_fields(tmp_path, capsys):
    cfg_dir, qd = make_config(tmp_path)
    d = add_message(qd, "deferred", "s@example.com", ("a@example.org", "b@example.org"))
    add_defer_log(qd, d, [("a@example.org", REASON)])
    rc, out, _ = _run(["-j"], cfg_dir, capsys)
    assert rc == 0
    lines = out.splitlines()
    assert len(lines) == 1
    obj = json.loads(lines[0])
    assert obj == {"queue_name": "deferred", "queue_id": d, "arrival_time": BASE_TIME,
                   "message_size": 20, "forced_expire": False, "sender": "s@example.com",
                   "recipients": [{"address": "a@example.org", "delay_reason": REASON},
                                  {"address": "b@example.org"}]}
    assert list(obj) == ["queue_name", "queue_id", "arrival_time", "message_size",
                         "forced_expire", "sender", "recipients"]


def test_corrupt_file_skipped(tmp_path, capsys):
    cfg_dir, qd = make_config(tmp_path)
    good = add_message(qd, "incoming")
    bad = add_message(qd, "incoming", when=BASE_TIME + 5)
    path = qd.path("incoming", bad)
    with open(path, "r+b") as f:
        f.truncate(40)
    entries = list(scan_entries(qd))
    assert [e.queue_id for e in entries] == [good]


def test_defer_log_parser(tmp_path):
    p = tmp_path / "log"
    p.write_text("recipient=a\nreason=one\n\nbogus line\nrecipient=b\nstatus=4.0.0\n"
                 "reason=two\n\nrecipient=a\nreason=three\n")
    assert read_defer_log(str(p)) == {"a": "three", "b": "two"}
    assert read_defer_log(str(tmp_path / "missing")) == {}


def test_wire_round_trip():
    e = QueueEntry("hold", "Q", 12, 34, "", [("a", "why"), ("b", "")], True)
    from postel.ipc.attr import AttrDecoder, encode
    lst = AttrDecoder().feed(encode(encode_entry(e)))[0]
    assert decode_entry(lst) == e


def test_usage_errors(tmp_path, capsys):
    cfg_dir, _ = make_config(tmp_path)
    rc, _, err = _run(["-x"], cfg_dir, capsys)
    assert rc == 64 and "invalid option" in err
    rc, _, err = _run(["-p", "-j"], cfg_dir, capsys)
    assert rc == 64
    rc, _, err = _run(["-i", "not-a-qid"], cfg_dir, capsys)
    assert rc == 64 and "invalid queue ID" in err
    rc, _, err = _run(["-p"], str(tmp_path / "nowhere"), capsys)
    assert rc == 1 and "postqueue: fatal:" in err and "Traceback" not in err


def test_unprivileged_user_without_showq(tmp_path, capsys, monkeypatch):
    cfg_dir, _ = make_config(tmp_path)
    monkeypatch.setattr(postqueue, "privileged", lambda cfg: False)
    rc, out, err = _run(["-p"], cfg_dir, capsys)
    assert rc == 69
    assert err.strip() == "postqueue: fatal: Queue report unavailable - mail system is down"


def test_flush_without_mail_system(tmp_path, capsys):
    cfg_dir, _ = make_config(tmp_path)
    rc, _, err = _run(["-f"], cfg_dir, capsys)
    assert rc == 69 and "Cannot flush mail queue - mail system is down" in err
    rc, _, err = _run(["-s", "example.com"], cfg_dir, capsys)
    assert rc == 69


def test_stream_output_to_writer(tmp_path):
    cfg_dir, qd = make_config(tmp_path)
    for i in range(5):
        add_message(qd, "deferred", when=BASE_TIME + i)
    from postel.config import load_config
    buf = io.StringIO()
    assert postqueue.list_queue(load_config(cfg_dir), json_mode=False, out=buf) == 0
    assert buf.getvalue().endswith("-- 0 Kbytes in 5 Requests.\n")


def test_postqueue_text_constants_match_report():
    """postqueue -p keeps its own copy of the header and trailer (no queue import on its path)."""
    from postel.queue import report, scan
    assert postqueue.HEADER_B == report.HEADER.encode()
    for count, size in ((0, 0), (1, 1023), (2, 1024), (5, 10**9)):
        assert postqueue.mailq_trailer(count, size) == scan.mailq_trailer(count, size).encode()


def test_postqueue_p_imports_no_queue_module():
    import subprocess
    import sys
    code = ("import sys, postel.commands.postqueue; "
            "print(sorted(m for m in sys.modules if m.startswith('postel.queue')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
