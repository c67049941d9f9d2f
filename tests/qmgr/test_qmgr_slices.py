"""qmgr reads recipients in slices (qmgr_message_recipient_limit), as Postfix's qmgr does."""

from __future__ import annotations

import os
import re
import smtplib
import sys

from postel.config import load_config
from postel.ipc.skeleton import ServiceContext
from postel.qmgr.service import MsgData, Qmgr
from postel.queue import QueueDir, QueueFileReader, QueueFileWriter
from postel.queue.envelope import Envelope, Recipient

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "e2e"))

from lib import Instance  # noqa: E402


def _qmgr(tmp_path, limit: int, minimum: int) -> Qmgr:
    (tmp_path / "main.cf").write_text(f"queue_directory = {tmp_path}/queue\n"
                                      f"qmgr_message_recipient_limit = {limit}\n"
                                      f"qmgr_message_recipient_minimum = {minimum}\n")
    cfg = load_config(str(tmp_path))
    QueueDir(f"{tmp_path}/queue").create_dirs()
    ctx = ServiceContext(cfg=cfg, service_name="qmgr", process_name="qmgr",
                         config_dir=str(tmp_path), queue_directory=f"{tmp_path}/queue", args=[])
    return Qmgr(ctx)


def _queue(q: Qmgr, rcpts: list[str], done: set[str] = frozenset()) -> str:
    w = QueueFileWriter(q.qd, "active")
    w.write_envelope(Envelope("s@example.com", [Recipient(r, done=r in done) for r in rcpts]))
    w.write_content(b"Subject: x\n\nbody\n")
    w.commit_sync()
    return w.qid


def test_slices_respect_the_in_core_limit(tmp_path):
    q = _qmgr(tmp_path, limit=2, minimum=1)
    qid = _queue(q, ["a@x", "b@x", "c@x", "d@x", "e@x"], done={"b@x"})
    data = MsgData(qid, "s@example.com", 0.0, 0.0, 0, {})
    seen = []
    with QueueFileReader(q.qd.path("active", qid)) as qf:
        while True:
            q._read_slice(data, qf)
            if not data.rcpts:
                break
            assert q.rcpts_in_core <= 2
            seen.append([r.address for r in data.rcpts])
            q.rcpts_in_core -= len(data.rcpts)
    assert seen == [["a@x", "c@x"], ["d@x", "e@x"]]       # done recipients are skipped


def test_minimum_when_the_limit_is_used_up(tmp_path):
    q = _qmgr(tmp_path, limit=3, minimum=2)
    qid = _queue(q, ["a@x", "b@x", "c@x"])
    q.rcpts_in_core = 3                                   # other messages fill the limit
    data = MsgData(qid, "s@example.com", 0.0, 0.0, 0, {})
    with QueueFileReader(q.qd.path("active", qid)) as qf:
        q._read_slice(data, qf)
    assert [r.address for r in data.rcpts] == ["a@x", "b@x"] and data.next_rcpt == 2


def test_many_recipients_in_small_slices_all_delivered(tmp_path):
    with Instance(tmp_path, extra_main={"qmgr_message_recipient_limit": "2",
                                        "qmgr_message_recipient_minimum": "1",
                                        "default_transport": "discard:dropped"}) as inst:
        inst.start()
        rcpts = [f"r{i}@remote.example" for i in range(7)]
        with smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=30) as s:
            s.sendmail("a@sender.example", rcpts, "Subject: many\n\nhello\n")
        inst.wait_log(r"to=<r6@remote\.example>.*status=sent", timeout=30)
        qid = re.search(r"(\w+): to=<r0@remote\.example>", inst.log_text()).group(1)
        inst.wait_log(rf"{qid}: removed", timeout=30)
        assert inst.count_log(rf"{qid}: to=<r\d@remote\.example>.*status=sent \(dropped\)") == 7
