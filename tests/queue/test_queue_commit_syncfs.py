"""Group commit with syncfs(2): order, batching, errors, fallback to fsync."""

from __future__ import annotations

import asyncio
import errno
import os

import pytest

from postel.queue import (
    Committer,
    Envelope,
    QueueDir,
    QueueFileReader,
    QueueFileWriter,
    QueueFull,
    Recipient,
)
from postel.queue import commit as commit_mod

needs_syncfs = pytest.mark.skipif(bool(commit_mod.syncfs_unavailable()),
                                  reason=commit_mod.syncfs_unavailable() or "syncfs available")


@pytest.fixture
def qd(tmp_path):
    q = QueueDir(str(tmp_path / "q"))
    q.create_dirs()
    return q


def _writer(qd, i=0):
    w = QueueFileWriter(qd)
    w.write_envelope(Envelope("s@x", recipients=[Recipient(f"r{i}@x")]))
    w.write_content(b"Subject: %d\n\nbody\n" % i)
    return w


def _files(qd):
    return sorted(n for _, _, names in os.walk(qd.queue_directory) for n in names)


class _Events:
    """Records renames, syncfs calls and fsyncs in order."""

    def __init__(self, monkeypatch, fail: OSError | None = None) -> None:
        self.events: list[tuple[str, str]] = []
        real_rename, real_syncfs, real_fsync = os.rename, commit_mod.syncfs, os.fsync

        def rename(src, dst):
            real_rename(src, dst)
            self.events.append(("rename", os.path.basename(dst)))

        def syncfs(fd):
            self.events.append(("syncfs", ""))
            if fail is not None:
                raise fail
            real_syncfs(fd)

        def fsync(fd):
            self.events.append(("fsync", ""))
            real_fsync(fd)

        monkeypatch.setattr(os, "rename", rename)
        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(commit_mod, "syncfs", syncfs)


@needs_syncfs
def test_syncfs_commit_order_and_batching(qd, monkeypatch):
    rec = _Events(monkeypatch)
    returned: dict[str, int] = {}

    async def one(c, i):
        w = _writer(qd, i)
        path = await c.commit(w)
        returned[w.qid] = len(rec.events)
        return w.qid, path, i

    async def main():
        async with Committer(method="syncfs") as c:
            assert c.method == "syncfs" and c.fallback_reason == ""
            out = await asyncio.gather(*(one(c, i) for i in range(40)))
            return out, c.batches

    results, batches = asyncio.run(main())
    syncs = [i for i, e in enumerate(rec.events) if e[0] == "syncfs"]
    assert batches < 40 and len(syncs) == 2 * batches      # two syncfs per batch
    assert not any(e[0] == "fsync" for e in rec.events)     # no per-file fsync
    for qid, path, i in results:
        renamed = rec.events.index(("rename", qid))
        # content durable before the file is visible under its name ...
        assert any(s < renamed for s in syncs)
        # ... and the name durable before commit() returned
        assert any(renamed < s < returned[qid] for s in syncs)
        with QueueFileReader(path) as r:
            assert r.read_content() == b"Subject: %d\n\nbody\n" % i
    assert sorted(qd.scan("incoming")) == sorted(q for q, _, _ in results)
    assert not any(n.endswith(".tmp") for n in _files(qd))


@pytest.mark.parametrize("err,exc_type", [(errno.EIO, OSError), (errno.ENOSPC, QueueFull)])
def test_syncfs_failure_fails_the_batch_and_removes_it(qd, monkeypatch, err, exc_type):
    monkeypatch.setattr(commit_mod, "syncfs_unavailable", lambda: "")
    _Events(monkeypatch, fail=OSError(err, os.strerror(err)))

    async def main():
        async with Committer(method="syncfs") as c:
            return await asyncio.gather(*(c.commit(_writer(qd, i)) for i in range(5)),
                                        return_exceptions=True)

    out = asyncio.run(main())
    assert all(isinstance(r, exc_type) and r.errno == err for r in out)
    assert _files(qd) == []                                 # nothing half-acknowledged stays


def test_syncfs_unavailable_falls_back_to_fsync(qd, monkeypatch):
    monkeypatch.setattr(commit_mod, "syncfs_unavailable", lambda: "kernel 5.4.0 is older than 5.8")
    rec = _Events(monkeypatch)

    async def main():
        async with Committer(method="syncfs") as c:
            assert c.method == "fsync" and "5.8" in c.fallback_reason
            return await c.commit(_writer(qd))

    path = asyncio.run(main())
    assert os.path.exists(path)
    assert [e[0] for e in rec.events] == ["fsync", "rename", "fsync"]   # file, rename, directory


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="fsync, syncfs"):
        Committer(method="fdatasync")


@pytest.mark.parametrize("release,want", [
    ("6.1.0-18-amd64", (6, 1)), ("5.8.0", (5, 8)), ("5.4.0-99-generic", (5, 4)),
    ("4.19.0+", (4, 19)), ("weird", (0, 0)), ("5.10rc1", (5, 10)),
])
def test_kernel_version(release, want):
    assert commit_mod._kernel_version(release) == want


def test_inline_commit_when_alone_same_order_no_thread(qd, monkeypatch):
    """commit(inline=True) with nothing else in flight: fsync < rename < dir fsync, in the caller's thread."""
    import threading
    threads = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (threads.append(threading.get_ident()), real_fsync(fd)))
    ev = _Events(monkeypatch)

    async def go():
        async with Committer(method="syncfs") as c:
            w = _writer(qd)
            path = await c.commit(w, inline=True)
            return c, w, path
    c, w, path = asyncio.run(go())
    assert c.inline == 1 and c.files == 1
    assert path == w.path and os.path.exists(path) and not os.path.exists(w.temp_path)
    assert [e for e, _ in ev.events] == ["fsync", "rename", "fsync"]
    assert set(threads) == {threading.get_ident()}          # no pool thread
    with QueueFileReader(path) as r:
        assert r.recipients[0].address == "r0@x"


def test_inline_commit_waits_its_turn_behind_a_batch(qd):
    """With a batch in flight, inline=True goes through the flusher like any commit."""
    async def go():
        async with Committer() as c:
            ws = [_writer(qd, i) for i in range(3)]
            first = asyncio.ensure_future(c.commit(ws[0]))
            await asyncio.sleep(0)                            # the flusher is now running
            paths = await asyncio.gather(first, c.commit(ws[1], inline=True),
                                         c.commit(ws[2], inline=True))
            return c, ws, paths
    c, ws, paths = asyncio.run(go())
    assert c.inline == 0 and c.files == 3
    assert paths == [w.path for w in ws] and all(os.path.exists(p) for p in paths)


def test_inline_commit_failure_is_raised_and_file_removed(qd):
    async def go():
        async with Committer() as c:
            w = _writer(qd)
            from postel.queue import file as file_mod
            file_mod.set_fault_enospc_after(0)
            try:
                with pytest.raises(QueueFull):
                    await c.commit(w, inline=True)
            finally:
                file_mod.set_fault_enospc_after(None)
            return w
    w = asyncio.run(go())
    assert not os.path.exists(w.temp_path) and not os.path.exists(w.path)
