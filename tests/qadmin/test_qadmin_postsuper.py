"""postsuper -d/-h/-H/-r/-s/-p with ALL, stdin and queue selectors."""

from __future__ import annotations

import io
import os
import time

from qadmin_helpers import BASE_TIME, add_defer_log, add_message, make_config

from postel.commands import postsuper


def _run(argv, cfg_dir, capsys, stdin=""):
    rc = postsuper.main(argv, cfg_dir, stdin=io.StringIO(stdin))
    return rc, capsys.readouterr().err


def test_delete_one_and_logs(tmp_path, capsys):
    cfg_dir, qd = make_config(tmp_path)
    qid = add_message(qd, "deferred")
    add_defer_log(qd, qid, [("r@example.org", "why")])
    rc, err = _run(["-d", qid], cfg_dir, capsys)
    assert rc == 0
    assert err == f"postsuper: {qid}: removed\npostsuper: Deleted: 1 message\n"
    assert not qd.exists("deferred", qid) and not qd.exists("defer", qid)


def test_delete_all_in_one_queue(tmp_path, capsys):
    cfg_dir, qd = make_config(tmp_path)
    d = [add_message(qd, "deferred", when=BASE_TIME + i) for i in range(3)]
    h = add_message(qd, "hold")
    rc, err = _run(["-d", "ALL", "deferred"], cfg_dir, capsys)
    assert rc == 0 and err.endswith("postsuper: Deleted: 3 messages\n")
    assert list(qd.scan("deferred")) == [] and list(qd.scan("hold")) == [h]
    assert all(f"{q}: removed" in err for q in d)


def test_all_must_be_upper_case(tmp_path, capsys):
    cfg_dir, qd = make_config(tmp_path)
    add_message(qd, "deferred")
    rc, err = _run(["-d", "all"], cfg_dir, capsys)
    assert "invalid mail queue id: all" in err
    assert len(list(qd.scan("deferred"))) == 1


def test_ids_from_stdin(tmp_path, capsys):
    cfg_dir, qd = make_config(tmp_path)
    a = add_message(qd, "incoming")
    b = add_message(qd, "active", when=BASE_TIME + 1)
    c = add_message(qd, "deferred", when=BASE_TIME + 2)
    rc, err = _run(["-d", "-"], cfg_dir, capsys, stdin=f"{a}\n{b}\n")
    assert rc == 0 and "Deleted: 2 messages" in err
    assert list(qd.scan("deferred")) == [c]


def test_hold_release(tmp_path, capsys):
    cfg_dir, qd = make_config(tmp_path)
    qid = add_message(qd, "deferred")
    os.utime(qd.path("deferred", qid), (BASE_TIME, BASE_TIME))
    rc, err = _run(["-h", qid], cfg_dir, capsys)
    assert err == f"postsuper: {qid}: placed on hold\npostsuper: Placed on hold: 1 message\n"
    assert qd.exists("hold", qid) and not qd.exists("deferred", qid)
    rc, err = _run(["-h", qid], cfg_dir, capsys)          # already on hold: nothing to do
    assert err == ""
    rc, err = _run(["-H", "ALL"], cfg_dir, capsys)
    assert err.endswith("Released from hold: 1 message\n")
    assert qd.exists("deferred", qid)
    assert os.stat(qd.path("deferred", qid)).st_mtime > time.time() - 600


def test_requeue_to_maildrop(tmp_path, capsys):
    cfg_dir, qd = make_config(tmp_path)
    qid = add_message(qd, "hold")
    add_defer_log(qd, qid, [("r@example.org", "why")])
    rc, err = _run(["-r", "ALL"], cfg_dir, capsys)
    assert rc == 0 and err.endswith("postsuper: Requeued: 1 message\n")
    assert qd.exists("maildrop", qid) and not qd.exists("defer", qid)


def test_structure_check_moves_and_renames(tmp_path, capsys):
    cfg_dir, qd = make_config(tmp_path)
    qid = add_message(qd, "deferred")
    good = qd.path("deferred", qid)
    wrong = os.path.join(qd.queue_path("deferred"), qid)        # not hashed
    os.rename(good, wrong)
    inc = add_message(qd, "incoming", when=BASE_TIME + 1)
    misnamed = os.path.join(qd.queue_path("incoming"), "RESTORED")
    os.rename(qd.path("incoming", inc), misnamed)
    junk = os.path.join(qd.queue_path("incoming"), "JUNK")
    with open(junk, "w") as f:
        f.write("not a queue file")
    os.makedirs(os.path.join(qd.queue_path("incoming"), "A"))      # stale hash dir
    rc, err = _run([], cfg_dir, capsys)                             # no option: -s
    assert rc == 0
    assert os.path.exists(good) and not os.path.exists(wrong)
    assert not os.path.exists(misnamed) and len(list(qd.scan("incoming"))) == 1
    assert "incoming/RESTORED: renamed to incoming/" in err
    assert os.path.exists(junk) and "JUNK: bad name" in err
    assert not os.path.exists(os.path.join(qd.queue_path("incoming"), "A"))


def test_purge_temp_files(tmp_path, capsys):
    cfg_dir, qd = make_config(tmp_path)
    old = os.path.join(qd.queue_path("incoming"), "4bUI8D5e3pz07AK004.tmp")
    new = os.path.join(qd.queue_path("incoming"), "4bUI8D5e3pz07AK005.tmp")
    for p in (old, new):
        open(p, "w").close()
    os.utime(old, (BASE_TIME, BASE_TIME))
    rc, err = _run(["-p"], cfg_dir, capsys)
    assert rc == 0 and not os.path.exists(old) and os.path.exists(new)
    assert "Deleted: 1 temporary file" in err


def test_errors(tmp_path, capsys, monkeypatch):
    cfg_dir, qd = make_config(tmp_path)
    rc, err = _run(["-d"], cfg_dir, capsys)
    assert rc == 64 and "requires an argument" in err
    rc, err = _run(["-d", "ALL", "nosuchqueue"], cfg_dir, capsys)
    assert rc == 64 and "invalid directory name: nosuchqueue" in err
    monkeypatch.setattr(postsuper, "privileged", lambda cfg: False)
    rc, err = _run(["-d", "ALL"], cfg_dir, capsys)
    assert rc == 1
    assert err == "postsuper: fatal: use of this command is reserved for the superuser\n"
