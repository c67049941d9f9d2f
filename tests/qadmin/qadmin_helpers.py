"""Helpers for the queue administration tests: a config dir and queue files."""

from __future__ import annotations

import os

from postel.queue import Envelope, QueueDir, QueueFileWriter, Recipient, new_qid

BASE_TIME = 1700000000


def make_config(tmp_path, extra: dict[str, str] | None = None) -> tuple[str, QueueDir]:
    """make_config - a main.cf and a queue directory under tmp_path."""
    cfg_dir = str(tmp_path)
    qdir = os.path.join(cfg_dir, "queue")
    lines = [f"queue_directory = {qdir}", f"maillog_file = {cfg_dir}/maillog"]
    for name, value in (extra or {}).items():
        lines.append(f"{name} = {value}")
    with open(os.path.join(cfg_dir, "main.cf"), "w") as f:
        f.write("\n".join(lines) + "\n")
    qd = QueueDir(qdir)
    qd.create_dirs()
    return cfg_dir, qd


def add_message(qd: QueueDir, queue: str, sender: str = "s@example.com",
                rcpts: tuple[str, ...] = ("r@example.org",), when: int = BASE_TIME,
                content: bytes = b"Subject: test\n\nbody\n", done: tuple[str, ...] = ()) -> str:
    """add_message - write one committed queue file; returns its queue ID."""
    w = QueueFileWriter(qd, queue, qid=new_qid(now=when + 0.5))
    w.write_envelope(Envelope(sender=sender, time=when,
                              recipients=[Recipient(r, done=r in done) for r in rcpts]))
    w.write_content(content)
    w.commit_sync()
    return w.qid


def add_defer_log(qd: QueueDir, qid: str, entries: list[tuple[str, str]]) -> None:
    """add_defer_log - a defer log in the documented bounce-log form."""
    qd.ensure_dir("defer", qid)
    with open(qd.path("defer", qid), "w") as f:
        for rcpt, reason in entries:
            f.write(f"recipient={rcpt}\nstatus=4.4.1\naction=delayed\nreason={reason}\n\n")
