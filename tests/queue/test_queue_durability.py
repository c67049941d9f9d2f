"""Durability: fsync/rename order, ENOSPC fault injection, group commit."""

from __future__ import annotations

import asyncio
import errno
import os
import stat
import subprocess
import sys

import pytest

from postel.queue import (
    Committer,
    Envelope,
    QueueDir,
    QueueFileReader,
    QueueFileWriter,
    QueueFull,
    Recipient,
    set_fault_enospc_after,
)


@pytest.fixture
def qd(tmp_path):
    q = QueueDir(str(tmp_path / "q"))
    q.create_dirs()
    return q


@pytest.fixture(autouse=True)
def _no_fault():
    yield
    set_fault_enospc_after(None)


def _writer(qd, body=b"Subject: x\n\nbody\n", **kw):
    w = QueueFileWriter(qd, **kw)
    w.write_envelope(Envelope("s@x", recipients=[Recipient("r@x")]))
    w.write_content(body)
    return w


class _Recorder:
    """Wraps os.fsync/os.rename to record the order of durability steps."""

    def __init__(self, monkeypatch):
        self.events: list[tuple[str, str]] = []
        real_fsync, real_rename = os.fsync, os.rename

        def fsync(fd):
            kind = "dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"
            real_fsync(fd)
            self.events.append(("fsync", kind))

        def rename(src, dst):
            real_rename(src, dst)
            self.events.append(("rename", os.path.basename(dst)))

        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "rename", rename)


def test_commit_sync_order(qd, monkeypatch):
    rec = _Recorder(monkeypatch)
    w = _writer(qd)
    assert not os.path.exists(w.path) and os.path.exists(w.temp_path)
    path = w.commit_sync()
    rec.events.append(("returned", ""))
    assert rec.events == [("fsync", "file"), ("rename", w.qid), ("fsync", "dir"), ("returned", "")]
    assert os.path.exists(path) and not os.path.exists(w.temp_path)


def test_group_commit_order_and_batching(qd, monkeypatch):
    rec = _Recorder(monkeypatch)
    returned: dict[str, int] = {}

    async def one(committer, i):
        w = _writer(qd, body=b"Subject: %d\n\n" % i + b"x" * (i * 100) + b"\n")
        path = await committer.commit(w)
        returned[w.qid] = len(rec.events)
        rec.events.append(("returned", w.qid))
        return w.qid, path, i

    async def main():
        async with Committer(fsync_workers=4) as committer:
            results = await asyncio.gather(*(one(committer, i) for i in range(50)))
            return results, committer.batches

    results, batches = asyncio.run(main())
    assert batches < 50                     # fsyncs were shared
    dir_syncs = [i for i, e in enumerate(rec.events) if e == ("fsync", "dir")]
    assert len(dir_syncs) == batches
    for qid, path, i in results:
        rename_at = rec.events.index(("rename", qid))
        assert any(e == ("fsync", "file") for e in rec.events[:rename_at])
        assert any(d > rename_at for d in dir_syncs if d < returned[qid])
        with QueueFileReader(path) as r:
            assert r.read_content().startswith(b"Subject: %d\n" % i)
    assert sorted(qd.scan("incoming")) == sorted(q for q, _, _ in results)
    assert all(ev[0] != "fsync" or ev[1] in ("file", "dir") for ev in rec.events)
    file_syncs = sum(1 for e in rec.events if e == ("fsync", "file"))
    assert file_syncs == 50


def test_group_commit_reports_failures_per_file(qd, monkeypatch):
    real_fsync = os.fsync
    victims: set[int] = set()

    def fsync(fd):
        if fd in victims:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)

    async def main():
        committer = Committer()
        writers = [_writer(qd) for _ in range(6)]
        victims.add(writers[2]._fd)
        out = await asyncio.gather(*(committer.commit(w) for w in writers), return_exceptions=True)
        committer.close()
        return writers, out

    writers, out = asyncio.run(main())
    assert isinstance(out[2], QueueFull)
    assert not os.path.exists(writers[2].temp_path) and not os.path.exists(writers[2].path)
    assert all(isinstance(out[i], str) and os.path.exists(out[i]) for i in (0, 1, 3, 4, 5))


def _leftovers(qd):
    return [n for _, _, files in os.walk(qd.queue_directory) for n in files]


@pytest.mark.parametrize("budget", [0, 10, 150, 4000, 70000, 200000])
def test_enospc_leaves_nothing(qd, budget):
    set_fault_enospc_after(budget)
    with pytest.raises(QueueFull) as info:
        w = QueueFileWriter(qd)
        w.write_envelope(Envelope("s@x", recipients=[Recipient(f"r{i}@x") for i in range(100)]))
        for _ in range(300):
            w.write_content(b"y" * 999 + b"\n")
        w.commit_sync()
    assert info.value.errno == errno.ENOSPC
    assert _leftovers(qd) == []


def test_enospc_in_async_commit(qd):
    async def main():
        w = _writer(qd, body=b"z" * 1000 + b"\n")
        set_fault_enospc_after(100)
        async with Committer() as c:
            await c.commit(w)

    with pytest.raises(QueueFull):
        asyncio.run(main())
    assert _leftovers(qd) == []


def test_enospc_env_var_in_child_process(qd):
    code = (
        "import sys\n"
        "from postel.queue import *\n"
        "qd = QueueDir(sys.argv[1])\n"
        "w = QueueFileWriter(qd)\n"
        "w.write_envelope(Envelope('s', recipients=[Recipient('r')]))\n"
        "w.write_content(b'x' * 5000 + b'\\n')\n"
        "try:\n"
        "    w.commit_sync()\n"
        "except QueueFull as exc:\n"
        "    print('452 4.3.1 Insufficient system storage', exc.errno)\n"
    )
    env = dict(os.environ, POSTEL_FAULT_ENOSPC_AFTER="1000")
    out = subprocess.run([sys.executable, "-c", code, qd.queue_directory], env=env,
                         capture_output=True, text=True, check=True)
    assert out.stdout.startswith("452 4.3.1")
    assert _leftovers(qd) == []


def test_abort_and_context_manager(qd):
    w = _writer(qd)
    w.abort()
    assert _leftovers(qd) == []
    with pytest.raises(KeyError):
        with _writer(qd) as w2:
            raise KeyError("boom")
    assert not os.path.exists(w2.temp_path)
    with _writer(qd) as w3:
        path = w3.commit_sync()
    assert os.path.exists(path)
