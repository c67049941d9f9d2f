"""Queue file recycling end to end: delivered files are kept in recycle/ and become new queue files.

A relay to Postfix's smtp-sink in two waves: after the first, recycle/ holds
the delivered files (named by inode number); the second wave, smaller than
the pool, is queued in those same inodes (no new name appears in recycle/)
and arrives byte for byte as sent.  With queue_file_recycle_limit = 0 the
pool stays empty.
"""

from __future__ import annotations

import os
import time

import pytest
from faultlib import DumpSink, Sender, message, queue_files, relay_main
from lib import Instance

MESSAGE_QUEUES = ("maildrop", "incoming", "active", "deferred", "hold")


def _wait_delivered(inst: Instance, sink: DumpSink, n: int, timeout: float = 60.0) -> None:
    """_wait_delivered - until the sink has n messages and the queue is empty."""
    deadline = time.monotonic() + timeout
    while True:
        files = queue_files(inst.queue_dir)
        pending = [p for q in MESSAGE_QUEUES for p in files[q] if not p.endswith(".tmp")]
        if len(sink.files()) >= n and not pending:
            return
        assert time.monotonic() < deadline, f"not delivered: sink {len(sink.files())}/{n}, " \
                                            f"queue {pending[:5]}"
        time.sleep(0.1)


def _pool(inst: Instance) -> set[str]:
    return set(os.listdir(os.path.join(inst.queue_dir, "recycle")))


def _body(path: str) -> bytes:
    """_body - the message as smtp-sink dumped it (LF line ends, one blank line
    after it), without smtp-sink's X- lines and the headers the relay added."""
    with open(path, "rb") as f:
        data = f.read()
    assert data.endswith(b"\n\n"), path
    head, _, body = data[:-1].partition(b"\n\n")
    keep = [h for h in head.split(b"\n") if h.split(b":", 1)[0] in
            (b"From", b"To", b"Subject", b"Message-ID")]
    return b"\n".join(keep) + b"\n\n" + body


def _sent(i: int) -> bytes:
    return message(i).replace(b"\r\n", b"\n")


@pytest.mark.timeout(300)
def test_delivered_files_are_reused_for_new_mail(tmp_path, sink):
    inst = Instance(tmp_path, extra_main=relay_main(sink.port))
    try:
        inst.start()
        first = Sender(inst.smtp_port, 40, sessions=4)
        first.start()
        first.join()
        assert len(first.accepted()) == 40
        _wait_delivered(inst, sink, 40)
        pool = _pool(inst)
        assert pool, "no delivered file was kept in recycle/"
        assert all(int(name, 16) > 0 for name in pool)      # inode numbers in hex
        time.sleep(1.5)               # cleanup lists an empty pool at most once a second
        n2 = min(len(pool), 15)
        second = Sender(inst.smtp_port, n2, sessions=1)
        second.start()
        second.join()
        assert len(second.accepted()) == n2
        _wait_delivered(inst, sink, 40 + n2)
        # the second wave used kept inodes: nothing new appeared in the pool
        assert _pool(inst) <= pool
        assert len(_pool(inst)) == len(pool)
        # and arrived intact: every dump holds exactly one sent message
        bodies = sorted(_body(p) for p in sink.files())
        sent = [_sent(i) for i in range(40)] + [_sent(i) for i in range(n2)]
        assert bodies == sorted(sent)
    finally:
        inst.cleanup()


@pytest.mark.timeout(120)
def test_recycling_off(tmp_path, sink):
    inst = Instance(tmp_path, extra_main=relay_main(sink.port, queue_file_recycle_limit="0"))
    try:
        inst.start()
        snd = Sender(inst.smtp_port, 10, sessions=2)
        snd.start()
        snd.join()
        _wait_delivered(inst, sink, 10)
        assert _pool(inst) == set()
    finally:
        inst.cleanup()
