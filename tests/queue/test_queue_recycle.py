"""Queue file recycling: qmgr keeps delivered files, the writer reuses them byte-exactly."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postel.commands import postsuper
from postel.queue import Envelope, QueueDir, QueueFileReader, QueueFileWriter, Recipient, new_qid
from postel.queue.recycle import Recycler


def _qd(path) -> QueueDir:
    q = QueueDir(str(path))
    q.create_dirs()
    return q


def _write(qd, qid, content: bytes, n_rcpt: int = 1) -> str:
    w = QueueFileWriter(qd, "incoming", qid=qid, lazy=True)
    w.write_envelope(Envelope("s@example.com", time=1795632623.25,
                              recipients=[Recipient(f"r{i}@example.net") for i in range(n_rcpt)]))
    w.write_content(content)
    return w.commit_sync()


def _deliver(qd, path) -> bool:
    """What qmgr does with a finished message: recycle, or unlink."""
    if qd.recycler.put(path):
        return True
    os.unlink(path)
    return False


@pytest.fixture
def qd(tmp_path):
    q = _qd(tmp_path / "q")
    q.recycler = Recycler(q, limit=3, max_size=8192)
    return q


def test_delivered_file_is_kept_under_its_inode_number(qd):
    path = _write(qd, new_qid(), b"hello\n")
    ino = os.stat(path).st_ino
    assert _deliver(qd, path)
    assert not os.path.exists(path)
    assert os.listdir(qd.queue_path("recycle")) == [f"{ino:x}"]


def test_pool_limit_and_size_limit(qd):
    paths = [_write(qd, new_qid(), b"x\n") for _ in range(5)]
    big = _write(qd, new_qid(), b"y" * 70 + b"\n" * 200 + b"z" * 9000 + b"\n")
    kept = [_deliver(qd, path) for path in paths]
    assert kept == [True, True, True, False, False]
    assert len(os.listdir(qd.queue_path("recycle"))) == 3
    qd.recycler = Recycler(qd, limit=100, max_size=8192)
    assert not _deliver(qd, big)                          # over max_size: deleted
    assert not os.path.exists(big)
    assert len(os.listdir(qd.queue_path("recycle"))) == 3


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(old=st.binary(max_size=3000), new=st.binary(max_size=3000), n_old=st.integers(1, 30))
def test_reused_file_is_byte_identical_to_a_new_one(tmp_path_factory, old, new, n_old):
    base = tmp_path_factory.mktemp("r")
    plain, pooled = _qd(base / "plain"), _qd(base / "pooled")
    first = _write(pooled, new_qid(), old, n_old)
    pooled.recycler = Recycler(pooled, limit=10, max_size=1 << 20)
    ino = os.stat(first).st_ino
    assert _deliver(pooled, first)
    qid = new_qid()
    reused = _write(pooled, qid, new)
    assert os.stat(reused).st_ino == ino                  # the same inode, no allocation
    assert os.listdir(pooled.queue_path("recycle")) == []
    fresh = _write(plain, qid, new)
    with open(reused, "rb") as a, open(fresh, "rb") as b:
        assert a.read() == b.read()                       # old tail cut, nothing left over
    with QueueFileReader(reused) as r:
        assert r.envelope.sender == "s@example.com"
        assert b"".join(r.iter_content(eol=b"\n")) == b"".join(
            QueueFileReader(fresh).iter_content(eol=b"\n"))


def test_odd_pool_entries_are_removed_not_used(qd, tmp_path):
    pool = qd.queue_path("recycle")
    target = tmp_path / "outside"
    target.write_bytes(b"do not touch")
    os.symlink(target, os.path.join(pool, "a1"))
    linked = os.path.join(pool, "a2")
    with open(linked, "wb") as f:
        f.write(b"two links")
    os.link(linked, tmp_path / "second-link")
    os.mkdir(os.path.join(pool, "a3"))
    path = _write(qd, new_qid(), b"fine\n")
    with QueueFileReader(path) as r:
        assert r.envelope.sender == "s@example.com"
    assert target.read_bytes() == b"do not touch"
    assert (tmp_path / "second-link").read_bytes() == b"two links"
    assert os.path.islink(os.path.join(pool, "a1"))       # not a plain file: left alone
    assert os.path.isdir(os.path.join(pool, "a3"))
    assert not os.path.exists(linked)                     # two links: taken, then thrown away
    assert os.path.exists(path)
    assert os.listdir(qd.queue_path("incoming")) == [os.path.basename(path)]


def test_no_recycle_directory_means_no_recycling(tmp_path):
    q = _qd(tmp_path / "q")
    os.rmdir(q.queue_path("recycle"))
    q.recycler = Recycler(q, limit=10)
    path = _write(q, new_qid(), b"x\n")
    assert not q.recycler.put(path)
    assert os.path.exists(path)


def test_missing_file_raises_like_unlink(qd):
    with pytest.raises(FileNotFoundError):
        qd.recycler.put(qd.path("active", new_qid()))


def test_postsuper_p_empties_the_pool(qd, capsys):
    for _ in range(2):
        _deliver(qd, _write(qd, new_qid(), b"x\n"))
    assert len(os.listdir(qd.queue_path("recycle"))) == 2
    postsuper.purge(qd)
    assert os.listdir(qd.queue_path("recycle")) == []
    assert "Deleted: 2 recycled queue files" in capsys.readouterr().err
