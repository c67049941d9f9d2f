"""mark_done: R -> D in place, fsync only on request (as Postfix's deliver_completed)."""

from __future__ import annotations

import os

from postel.queue import Envelope, QueueDir, QueueFileReader, QueueFileWriter, Recipient


def _one(tmp_path) -> str:
    qd = QueueDir(str(tmp_path / "q"))
    qd.create_dirs()
    w = QueueFileWriter(qd)
    w.write_envelope(Envelope(sender="a@x", recipients=[Recipient("b@y"), Recipient("c@y")]))
    w.write_content(b"Subject: t\r\n\r\nbody\r\n")
    return w.commit_sync()


def test_mark_done_no_fsync_by_default(tmp_path, monkeypatch):
    path = _one(tmp_path)
    synced: list[int] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd))[1])
    with QueueFileReader(path) as r:
        r.mark_done(r.recipients[0])
        assert synced == []
        r.mark_done(r.recipients[1], sync=True)
        assert len(synced) == 1
    with QueueFileReader(path) as r:      # both marks are visible to the next reader
        assert [x.done for x in r.recipients] == [True, True]
