"""postcat sections, options and corrupt files."""

from __future__ import annotations

import io
import time

import pytest
from qadmin_helpers import add_message, make_config

from postel.commands import postcat

CONTENT = b"Subject: hello\nX-Long: a\n  continued\n\nbody line 1\n" + b"L" * 3000 + b"\n"


@pytest.fixture(autouse=True)
def utc(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.delenv("TZ")
    time.tzset()


def _cat(argv, cfg_dir=None, stdin=None):
    out = io.BytesIO()
    rc = postcat.main(argv, cfg_dir, stdin=stdin, out=out)
    return rc, out.getvalue().decode()


def test_default_sections(tmp_path, capsys):
    cfg_dir, qd = make_config(tmp_path)
    qid = add_message(qd, "deferred", "s@example.com", ("r@example.org",), content=CONTENT)
    name = f"deferred/{qd.path('deferred', qid).split('/')[-2]}/{qid}"
    rc, out = _cat(["-q", qid], cfg_dir)
    assert rc == 0, capsys.readouterr().err
    lines = out.splitlines()
    assert lines[0] == f"*** ENVELOPE RECORDS {name} ***"
    assert lines[1].startswith("message_size:") and lines[1].split()[1] == str(len(CONTENT))
    assert "message_arrival_time: Tue Nov 14 22:13:20 2023" in lines
    assert "sender: s@example.com" in lines and "recipient: r@example.org" in lines
    i = lines.index(f"*** MESSAGE CONTENTS {name} ***")
    assert lines[i + 1:i + 7] == ["Subject: hello", "X-Long: a", "  continued", "",
                                  "body line 1", "L" * 3000]
    assert lines[-2] == f"*** HEADER EXTRACTED {name} ***"
    assert lines[-1] == f"*** MESSAGE FILE END {name} ***"


def test_header_body_selection(tmp_path):
    cfg_dir, qd = make_config(tmp_path)
    qid = add_message(qd, "incoming", content=CONTENT)
    path = qd.path("incoming", qid)
    assert _cat(["-h", path])[1] == "Subject: hello\nX-Long: a\n  continued\n"
    assert _cat(["-b", path])[1] == "\nbody line 1\n" + "L" * 3000 + "\n"
    assert _cat(["-bh", path])[1] == CONTENT.decode()
    rc, env = _cat(["-e", path])
    assert "*** MESSAGE CONTENTS" in env and "Subject:" not in env


def test_offsets_and_decimal_types(tmp_path):
    cfg_dir, qd = make_config(tmp_path)
    qid = add_message(qd, "incoming")
    rc, out = _cat(["-eod", qd.path("incoming", qid)])
    first = out.splitlines()[1]
    assert first.startswith("        0  67 message_size:")      # C is 67


def test_stdin(tmp_path):
    cfg_dir, qd = make_config(tmp_path)
    qid = add_message(qd, "incoming")
    data = open(qd.path("incoming", qid), "rb").read()
    rc, out = _cat([], stdin=io.BytesIO(data))
    assert rc == 0 and out.startswith("*** ENVELOPE RECORDS stdin ***\n")


def test_corrupt_files(tmp_path, capsys):
    cfg_dir, qd = make_config(tmp_path)
    qid = add_message(qd, "incoming", content=CONTENT)
    data = open(qd.path("incoming", qid), "rb").read()
    trunc = tmp_path / "trunc"
    trunc.write_bytes(data[:len(data) // 2])
    rc, out = _cat([str(trunc)])
    err = capsys.readouterr().err
    assert rc == 1
    assert "sender: s@example.com" in out and "Subject: hello" in out
    assert f"postcat: warning: {trunc}: corrupt queue file: offset " in err
    flipped = bytearray(data)
    flipped[data.index(b"body line")] ^= 0x20
    flip = tmp_path / "flip"
    flip.write_bytes(bytes(flipped))
    rc, out = _cat([str(flip)])
    err = capsys.readouterr().err
    assert rc == 1 and "content checksum mismatch" in err
    assert "MESSAGE FILE END" in out


def test_errors(tmp_path, capsys):
    cfg_dir, qd = make_config(tmp_path)
    rc, _ = _cat(["-q", "4bUI8D5e3pz07AK004"], cfg_dir)
    err = capsys.readouterr().err
    assert rc == 1 and "postcat: fatal: open queue file 4bUI8D5e3pz07AK004" in err
    rc, _ = _cat(["-x"])
    assert rc == 64
    rc, _ = _cat([str(tmp_path / "missing")])
    assert rc == 1 and "Traceback" not in capsys.readouterr().err
