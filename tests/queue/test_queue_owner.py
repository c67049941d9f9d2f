"""Files written by root take the queue directory's owner (mail_owner), except in maildrop."""

from __future__ import annotations

import os
import pwd

import pytest

from postel.queue import Envelope, QueueDir, QueueFileWriter, Recipient

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to hand files to another user")


def _write(qd: QueueDir, queue: str) -> str:
    w = QueueFileWriter(qd, queue_name=queue)
    w.write_envelope(Envelope(sender="a@example.com", recipients=[Recipient("b@example.com")]))
    w.write_content(b"Subject: x\n\nbody\n")
    return w.commit_sync()


def test_root_written_files_belong_to_the_queue_owner(tmp_path):
    nobody = pwd.getpwnam("nobody")
    qd = QueueDir(str(tmp_path / "queue"))
    qd.create_dirs()
    for name in ("incoming", "deferred", "maildrop"):
        os.chown(qd.queue_path(name), nobody.pw_uid, nobody.pw_gid)
    path = _write(qd, "incoming")
    assert os.stat(path).st_uid == nobody.pw_uid
    deferred = _write(qd, "deferred")                 # hashed: the new subdirectory too
    assert os.stat(deferred).st_uid == nobody.pw_uid
    assert os.stat(os.path.dirname(deferred)).st_uid == nobody.pw_uid
    dropped = _write(qd, "maildrop")                  # the submitter's uid is the sender's identity
    assert os.stat(dropped).st_uid == 0
