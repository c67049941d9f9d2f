"""Queue directories: modes, hashed paths, moves, scans, purge, quarantine, space."""

from __future__ import annotations

import os
import stat
import time

import pytest

from postel import log
from postel.queue import (
    QUEUE_NAMES,
    Envelope,
    QueueDir,
    QueueFileCorrupt,
    QueueFileReader,
    QueueFileWriter,
    QueueFull,
    Recipient,
    new_qid,
    quarantine,
)


@pytest.fixture
def qd(tmp_path):
    q = QueueDir(str(tmp_path / "q"), hash_queue_names="deferred, defer", hash_queue_depth=2)
    q.create_dirs()
    return q


def _commit(qd, queue="incoming"):
    w = QueueFileWriter(qd, queue)
    w.write_envelope(Envelope("s", recipients=[Recipient("r")]))
    w.write_content(b"hi\n")
    w.commit_sync()
    return w.qid


def test_create_dirs_modes(qd):
    assert sorted(os.listdir(qd.queue_directory)) == sorted(QUEUE_NAMES)
    modes = {n: stat.S_IMODE(os.stat(qd.queue_path(n)).st_mode) for n in QUEUE_NAMES}
    assert modes["maildrop"] == 0o730 and modes["public"] == 0o710
    assert modes["pid"] == 0o755 and modes["incoming"] == 0o700
    qd.create_dirs()   # idempotent


def test_paths_hashed_only_where_configured(qd):
    qid = new_qid(1700000000.000123)
    assert qd.path("incoming", qid) == os.path.join(qd.queue_directory, "incoming", qid)
    assert qd.path("deferred", qid) == os.path.join(qd.queue_directory, "deferred", "B", "7", qid)
    for bad in ("../x", "", "a/b"):
        with pytest.raises(ValueError):
            qd.path("incoming", bad)
    with pytest.raises(ValueError):
        qd.path("nosuchqueue", qid)
    with pytest.raises(ValueError):
        QueueDir("/x", hash_queue_names=("bogus",))


def test_move_creates_hashed_dirs_and_scan(qd):
    qids = [_commit(qd) for _ in range(30)]
    assert sorted(qd.scan("incoming")) == sorted(qids)
    for qid in qids[:20]:
        qd.move(qid, "incoming", "active")
    for qid in qids[:10]:
        path = qd.move(qid, "active", "deferred")
        assert path.split(os.sep)[-5:-2] == ["q", "deferred", qd.dir_path("deferred", qid).split(os.sep)[-2]]
        assert QueueFileReader(path).read_content() == b"hi\n"
    assert sorted(qd.scan("deferred")) == sorted(qids[:10])
    assert sorted(qd.scan("active")) == sorted(qids[10:20])
    assert sorted(qd.scan("incoming")) == sorted(qids[20:])
    assert qd.find(qids[0]) == ("deferred", qd.path("deferred", qids[0]))
    with pytest.raises(FileNotFoundError):
        qd.move(qids[0], "incoming", "hold")


def test_scan_skips_temp_files_and_junk(qd):
    qid = _commit(qd)
    w = QueueFileWriter(qd)       # left open: a temp file
    open(os.path.join(qd.queue_path("incoming"), "README"), "w").close()
    assert list(qd.scan("incoming")) == [qid]
    w.abort()


def test_purge_temp(qd):
    w1 = QueueFileWriter(qd)
    w2 = QueueFileWriter(qd, "deferred")
    old = time.time() - 10000
    os.utime(w1.temp_path, (old, old))
    qid = _commit(qd)
    os.utime(qd.path("incoming", qid), (old, old))
    removed = qd.purge_temp(max_age=3600)
    assert removed == [w1.temp_path]
    assert os.path.exists(w2.temp_path) and qd.exists("incoming", qid)
    assert qd.purge_temp(max_age=0, now=time.time() + 1) == [w2.temp_path]
    w1.abort()
    w2.abort()


def test_quarantine_logs_like_postfix(qd, tmp_path):
    logfile = tmp_path / "maillog"
    log.init("qmgr", maillog_file=str(logfile))
    try:
        qid = _commit(qd)
        path = qd.move(qid, "incoming", "active")
        with open(path, "r+b") as f:
            f.truncate(20)
        with pytest.raises(QueueFileCorrupt) as info:
            QueueFileReader(path)
        dst = quarantine(path, str(info.value))
        qid2 = _commit(qd)
        dst2 = qd.quarantine(qid2, "incoming", "test reason")
    finally:
        log.init("test", maillog_file="")
    assert dst == qd.path("corrupt", qid) and os.path.exists(dst)
    assert dst2 == qd.path("corrupt", qid2)
    text = logfile.read_text()
    assert f'warning: {qid}: corrupt queue file: {path}: offset' in text
    assert f'warning: saving corrupt file "{qid}" from queue "active" to queue "corrupt"' in text
    assert f'warning: saving corrupt file "{qid2}" from queue "incoming" to queue "corrupt"' in text
    assert sorted(qd.scan("corrupt")) == sorted([qid, qid2])


def test_check_space(qd, monkeypatch):
    free = qd.free_space()
    assert free > 0
    qd.check_space(size_estimate=1000)
    assert qd.space_ok(queue_minfree=free // 2, size_estimate=1)
    assert not qd.space_ok(queue_minfree=free + 1, size_estimate=1)
    assert not qd.space_ok(size_estimate=free)          # needs 1.5 * SIZE=
    assert not qd.space_ok(message_size_limit=free)     # and 1.5 * message_size_limit
    assert qd.space_ok(message_size_limit=free // 2, size_estimate=100)
    with pytest.raises(QueueFull):
        qd.check_space(queue_minfree=free * 2)


def test_from_params(tmp_path):
    qd = QueueDir.from_params({"queue_directory": str(tmp_path), "hash_queue_names": "hold",
                               "hash_queue_depth": "1"})
    assert qd.depth("hold") == 1 and qd.depth("deferred") == 0
