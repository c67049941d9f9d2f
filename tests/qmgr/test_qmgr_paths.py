"""qmgr's precomputed queue file paths agree with QueueDir.path; removal in threads is logged."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postel.config import load_config
from postel.ipc.skeleton import ServiceContext
from postel.qmgr.service import Qmgr
from postel.queue import QueueDir, QueueFileWriter
from postel.queue.envelope import Envelope, Recipient
from postel.queue.qid import new_qid


def _qmgr(tmp_path, hashed: str, depth: int = 1) -> Qmgr:
    (tmp_path / "main.cf").write_text(f"queue_directory = {tmp_path}/queue\n"
                                      f"hash_queue_names = {hashed}\n"
                                      f"hash_queue_depth = {depth}\n")
    cfg = load_config(str(tmp_path))
    QueueDir(f"{tmp_path}/queue").create_dirs()
    ctx = ServiceContext(cfg=cfg, service_name="qmgr", process_name="qmgr",
                         config_dir=str(tmp_path), queue_directory=f"{tmp_path}/queue", args=[])
    return Qmgr(ctx)


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("hashed", ["deferred, defer", "incoming, active, bounce, trace",
                                    "deferred"])
def test_paths_match_queuedir(tmp_path, hashed, depth):
    q = _qmgr(tmp_path, hashed, depth)
    for queue in ("defer", "incoming", "active"):
        with pytest.raises(ValueError):
            q.qd.path(queue, "bad/qid")
        with pytest.raises(ValueError):
            q._path(queue, "bad/qid") if queue in q._htops else q.qd.path(queue, "bad/qid")

    @settings(max_examples=30, deadline=None)
    @given(st.sampled_from(["incoming", "active", "deferred", "bounce", "trace", "defer"]),
           st.integers(0, 50))
    def check(queue, _n):
        qid = new_qid()
        assert q._path(queue, qid) == q.qd.path(queue, qid)

    check()


def test_remove_logs_and_deletes(tmp_path, monkeypatch):
    q = _qmgr(tmp_path, "deferred, defer")
    w = QueueFileWriter(q.qd, "active")
    w.write_envelope(Envelope("s@example.com", [Recipient("r@x")]))
    w.write_content(b"Subject: x\n\nbody\n")
    path = w.commit_sync()
    lines: list[str] = []
    monkeypatch.setattr("postel.log.info", lambda fmt, *a: lines.append(fmt % a))
    q._remove(w.qid)
    q._remove(new_qid())                    # not there: no "removed" line
    assert not os.path.exists(path)
    assert lines == [f"{w.qid}: removed"]


def test_wake_wait_set_and_timeout():
    import asyncio

    from postel.qmgr.service import _Wake

    async def run() -> list[str]:
        w, seen = _Wake(), []
        await w.wait(0.01)                      # nothing set: the timeout ends it
        seen.append(str(w.is_set()))
        asyncio.get_running_loop().call_soon(w.set)
        await w.wait(60)                        # set() ends it long before
        seen.append(str(w.is_set()))
        await w.wait(60)                        # still set: returns at once
        w.clear()
        seen.append(str(w.is_set()))
        return seen

    assert asyncio.run(asyncio.wait_for(run(), 10)) == ["False", "True", "False"]


def test_finish_keeps_defer_log_only_when_activation_could_not_remove_it(tmp_path):
    q = _qmgr(tmp_path, "deferred, defer")
    qid = new_qid()
    defer_log = q._path("defer", qid)
    os.makedirs(os.path.dirname(defer_log), exist_ok=True)
    open(defer_log, "w").close()
    q._remove(qid, defer_log=False)
    assert os.path.exists(defer_log)
    q._remove(qid)
    assert not os.path.exists(defer_log)
