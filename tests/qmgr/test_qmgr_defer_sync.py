"""qmgr's own defers (dead destination): appended unsynced, made durable in one batch."""

from __future__ import annotations

import os

import postel.qmgr.service as qsvc
from postel.config import load_config
from postel.deliver.request import DeliverRcpt
from postel.deliver.status import read_log
from postel.ipc.skeleton import ServiceContext
from postel.qmgr.sched import Msg
from postel.qmgr.service import MsgData, Qmgr
from postel.queue import QueueDir
from postel.queue.qid import new_qid


def _qmgr(tmp_path) -> Qmgr:
    (tmp_path / "main.cf").write_text(f"queue_directory = {tmp_path}/queue\n")
    cfg = load_config(str(tmp_path))
    QueueDir(f"{tmp_path}/queue").create_dirs()
    ctx = ServiceContext(cfg=cfg, service_name="qmgr", process_name="qmgr",
                         config_dir=str(tmp_path), queue_directory=f"{tmp_path}/queue", args=[])
    return Qmgr(ctx)


def _dead_destination_defers(q: Qmgr, n: int) -> list[str]:
    """n one-recipient messages for a destination that is already dead."""
    t = q.sched.transport("smtp")
    t.dead_until, t.dead_reason = 1e12, "connect to x: refused"
    qids = []
    for i in range(n):
        qid = new_qid()
        msg = Msg(qid, data=MsgData(qid, "a@example.org", 0.0, 0.0, 10, {}, "", 0, 0))
        q.sched.add(msg, [("smtp", "example.com", DeliverRcpt(f"r{i}@example.com",
                                                               f"r{i}@example.com", -1))], 1.0)
        qids.append(qid)
    return qids


def test_batch_is_synced_once(tmp_path, monkeypatch):
    q = _qmgr(tmp_path)
    calls = []
    monkeypatch.setattr(qsvc, "syncfs", lambda fd: calls.append(fd))
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append(("fsync", fd)))
    qids = _dead_destination_defers(q, 5)
    q.write_defers()
    assert len(calls) == 1 and not isinstance(calls[0], tuple)     # one syncfs, no fsync
    for i, qid in enumerate(qids):
        [entry] = read_log(q.qd.path("defer", qid))
        assert entry["recipient"] == f"r{i}@example.com"
        assert entry["reason"] == "delivery temporarily suspended: connect to x: refused"
    assert len(q.sched.take_finished()) == 5


def test_fsync_each_file_without_syncfs(tmp_path, monkeypatch):
    q = _qmgr(tmp_path)
    synced = []
    monkeypatch.setattr(qsvc, "syncfs_unavailable", lambda: "no syncfs here")
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(os.readlink(f"/proc/self/fd/{fd}"))
                        or real_fsync(fd))
    qids = _dead_destination_defers(q, 3)
    q.write_defers()
    assert sorted(synced) == sorted(q.qd.path("defer", qid) for qid in qids)
