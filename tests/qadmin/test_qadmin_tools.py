"""postkick, postlock, postlog."""

from __future__ import annotations

import io
import os
import socket
import sys

from qadmin_helpers import make_config

from postel.commands import postkick, postlock, postlog


def test_postkick_delivers_trigger(tmp_path, capsys):
    cfg_dir, qd = make_config(tmp_path)
    path = os.path.join(qd.queue_directory, "public", "qmgr")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    try:
        assert postkick.main(["public", "qmgr", "D"], cfg_dir) == 0
        conn, _ = srv.accept()
        assert conn.recv(16) == b"D"
        conn.close()
    finally:
        srv.close()
    assert postkick.main(["public", "nobody", "W"], cfg_dir) == 1
    assert "Cannot contact class public service nobody" in capsys.readouterr().err
    assert postkick.main(["public", "qmgr"], cfg_dir) == 64


def test_postlock_runs_command_under_lock(tmp_path, capsys):
    cfg_dir, _ = make_config(tmp_path, {"deliver_lock_attempts": "1"})
    mbox = tmp_path / "mbox"
    mbox.write_text("")
    probe = f"import os,sys; sys.exit(7 if os.path.exists({str(mbox)!r} + '.lock') else 0)"
    assert postlock.main([str(mbox), sys.executable, "-c", probe], cfg_dir) == 7
    assert not os.path.exists(str(mbox) + ".lock")
    (tmp_path / "mbox.lock").write_text("")           # held by someone else
    assert postlock.main(["-l", "dotlock", str(mbox), "true"], cfg_dir) == 75
    assert postlock.main([str(tmp_path / "missing"), "true"], cfg_dir) == 1
    assert "postlock: fatal: open" in capsys.readouterr().err


def test_postlog_writes_maillog(tmp_path):
    cfg_dir, _ = make_config(tmp_path)
    assert postlog.main(["-p", "warning", "-t", "myscript", "disk", "full"], cfg_dir) == 0
    assert postlog.main(["-t", "other/tag"], cfg_dir, stdin=io.StringIO("one\n\ntwo\n")) == 0
    lines = (tmp_path / "maillog").read_text().splitlines()
    assert lines[-3].endswith("]: warning: disk full") and "postel/myscript[" in lines[-3]
    assert lines[-2].endswith("]: one") and " other/tag[" in lines[-2]
    assert lines[-1].endswith("]: two")
    assert postlog.main(["-p", "bogus", "x"], cfg_dir) == 64
