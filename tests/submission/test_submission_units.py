"""Unit tests for sendmail's command line and input, and postdrop's checks."""

from __future__ import annotations

import io
import os

import pytest

from postel.commands import postdrop, sendmail
from postel.commands._qadmin import Fatal
from postel.queue import Envelope, QueueDir, QueueFileReader, Recipient
from postel.queue.records import DSN_RET_HDRS


def test_parse_args_flags():
    req = sendmail.parse_args(["-t", "-oi", "-f", "<a@x>", "-Fwho", "-N", "success,delay",
                               "-R", "hdrs", "-V", "env1", "-B8BITMIME", "b@y", "c@z"])
    assert req.extract and not req.dot_ends
    assert req.sender == "a@x" and req.full_name == "who"
    assert req.notify == 2 | 8 and req.ret == DSN_RET_HDRS and req.envid == "env1"
    assert req.body == "8bitmime" and req.recipients == ["b@y", "c@z"]


def test_parse_args_modes_and_ignored():
    assert sendmail.parse_args(["-bs"]).mode == "bs"
    assert sendmail.parse_args(["-bp"]).mode == "bp"
    assert sendmail.parse_args(["-I"]).mode == "bi"
    assert sendmail.parse_args(["-q"]).queue_arg == ("-f", "")
    assert sendmail.parse_args(["-qRexample.com"]).queue_arg == ("-s", "example.com")
    assert sendmail.parse_args(["-qI4bUI252lRFz0555001"]).queue_arg == ("-i", "4bUI252lRFz0555001")
    req = sendmail.parse_args(["-L", "x", "-U", "-om", "-O", "a=b", "-n", "u"])
    assert req.recipients == ["u"] and req.dot_ends
    assert sendmail.parse_args(["-f", ""]).sender == ""
    assert sendmail.parse_args(["-f<>"]).sender == ""


@pytest.mark.parametrize("argv", [["-N", "sometimes"], ["-R", "body"], ["-B", "binary"],
                                  ["-Z"], ["-f"], ["-bz"], ["-f", "a\nb"]])
def test_parse_args_bad_usage(argv):
    with pytest.raises(Fatal) as ei:
        sendmail.parse_args(argv)
    assert ei.value.status == 64


def test_no_recipients_is_usage_error(tmp_path, capsys):
    (tmp_path / "main.cf").write_text(f"queue_directory = {tmp_path}/q\n")
    rc = sendmail.sendmail_main(["-C", str(tmp_path / "main.cf")])
    assert rc == 64
    assert "sendmail: fatal: Recipient addresses must be specified" in capsys.readouterr().err


def test_split_recipients():
    assert sendmail.split_recipients(["a@x, b@y", "Joe <j@z>", "bare"]) == \
        ["a@x", "b@y", "j@z", "bare"]


def _read(data: bytes, dot_ends: bool) -> bytes:
    return b"".join(sendmail.read_message(io.BufferedReader(io.BytesIO(data)), dot_ends))


def test_read_message_dot_and_from_line():
    data = b"From someone Mon Jan  1\nSubject: x\n\n.\nafter\n"
    assert _read(data, True) == b"Subject: x\n\n"
    assert _read(data, False) == b"Subject: x\n\n.\nafter\n"
    assert _read(b"a\n.\r\nb\n", True) == b"a\n"
    assert _read(b"a\n..\nb\n", True) == b"a\n..\nb\n"     # no unstuffing in sendmail
    assert _read(b"x" * 200000 + b"\n.\n", True) == b"x" * 200000 + b"\n"


def _env() -> Envelope:
    return Envelope(sender="alice", recipients=[Recipient("bob@example.com", dsn_notify=4)],
                    full_name="Alice", dsn_envid="E1", attrs={"flags": "extract_recipients"})


def test_write_maildrop_round_trip(tmp_path):
    qd = QueueDir(str(tmp_path))
    qd.create_dirs()
    qid = postdrop.write_maildrop(qd, _env(), [b"Subject: t\n", b"\nbody\n"])
    path = qd.path("maildrop", qid)
    r = QueueFileReader(path, writable=False)
    assert r.envelope.sender == "alice" and r.envelope.full_name == "Alice"
    assert r.recipients[0].address == "bob@example.com" and r.recipients[0].dsn_notify == 4
    assert r.read_content() == b"Subject: t\n\nbody\n"
    assert os.stat(path).st_mode & 0o777 == postdrop.MAILDROP_MODE
    assert not [n for n in os.listdir(tmp_path / "maildrop") if "." in n]


def test_write_maildrop_too_big(tmp_path):
    qd = QueueDir(str(tmp_path))
    qd.create_dirs()
    with pytest.raises(postdrop.DropError) as ei:
        postdrop.write_maildrop(qd, _env(), [b"x" * 100 + b"\n"], size_limit=50)
    assert ei.value.status == 65
    assert os.listdir(tmp_path / "maildrop") == []


def _stream(tmp_path) -> bytes:
    src = QueueDir(str(tmp_path / "src"))
    src.create_dirs()
    qid = postdrop.write_maildrop(src, _env(), [b"Subject: t\n\nbody\n"])
    return open(src.path("maildrop", qid), "rb").read()


def test_drop_stream_accepts_complete_file(tmp_path):
    data = _stream(tmp_path)
    qd = QueueDir(str(tmp_path / "dst"))
    qd.create_dirs()
    qid = postdrop.drop_stream(qd, io.BytesIO(data))
    assert open(qd.path("maildrop", qid), "rb").read() == data


@pytest.mark.parametrize("damage", ["truncate", "append", "flip", "empty"])
def test_drop_stream_refuses_damaged_input(tmp_path, damage):
    data = bytearray(_stream(tmp_path))
    if damage == "truncate":
        data = data[:-5]
    elif damage == "append":
        data += b"junk"
    elif damage == "flip":
        data[len(data) // 2] ^= 0x20
    else:
        data = bytearray()
    qd = QueueDir(str(tmp_path / "dst"))
    qd.create_dirs()
    with pytest.raises(postdrop.DropError) as ei:
        postdrop.drop_stream(qd, io.BytesIO(bytes(data)))
    assert ei.value.status == 65
    assert os.listdir(tmp_path / "dst" / "maildrop") == []
