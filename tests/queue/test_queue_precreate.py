"""QueueFileWriter.precreate(): the file is made on a thread; commit and abort still hold."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

from postel.queue import QueueDir, QueueFileReader, QueueFileWriter
from postel.queue.envelope import Envelope, Recipient


def _writer(tmp_path):
    qd = QueueDir(str(tmp_path / "q"))
    qd.create_dirs()
    return qd, QueueFileWriter(qd, "incoming", lazy=True)


def test_precreated_file_commits(tmp_path):
    qd, w = _writer(tmp_path)
    with ThreadPoolExecutor(1) as pool:
        w.precreate(pool)
        w.write_envelope(Envelope(sender="a@example.com", recipients=[Recipient("b@example.net")]))
        w.write_content(b"Subject: x\r\n\r\nbody\r\n")
        path = w.commit_sync()
    r = QueueFileReader(path)
    assert [x.address for x in r.recipients] == ["b@example.net"]
    assert list(r.iter_lines()) == [b"Subject: x", b"", b"body"]
    r.close()
    assert os.listdir(qd.queue_path("incoming")) == [w.qid]


def test_abort_while_the_file_is_being_created(tmp_path):
    qd, w = _writer(tmp_path)
    gate = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        pool.submit(gate.wait, 10)          # the creation waits behind this
        w.precreate(pool)
        pre = w._pre
        w.abort()                           # not started yet: cancelled
        gate.set()
        assert pre.cancelled()
    assert os.listdir(qd.queue_path("incoming")) == []


def test_abort_after_the_file_was_created(tmp_path):
    qd, w = _writer(tmp_path)
    with ThreadPoolExecutor(1) as pool:
        w.precreate(pool)
        w._pre.result()
        assert os.listdir(qd.queue_path("incoming")) == [w.qid + ".tmp"]
        w.abort()
    assert os.listdir(qd.queue_path("incoming")) == []


def test_abort_during_creation_removes_the_file_afterwards(tmp_path):
    qd, w = _writer(tmp_path)
    started, release = threading.Event(), threading.Event()
    create = w._create

    def slow_create():
        started.set()
        release.wait()
        return create()
    w._create = slow_create
    with ThreadPoolExecutor(1) as pool:
        w.precreate(pool)
        started.wait()
        w.abort()                           # running: removed when it is done
        release.set()
    assert os.listdir(qd.queue_path("incoming")) == []
