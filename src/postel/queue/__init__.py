"""queue - Postel queue files, queue IDs and queue directories

SYNOPSIS
    from postel.queue import (QueueDir, new_qid, qid_time, QueueFileWriter,
                              QueueFileReader, QueueFileCorrupt, QueueFull,
                              Committer, Envelope, Recipient, quarantine)

DESCRIPTION
    The library that every service uses to touch the queue; see
    docs/queue.md for the administrator's view.

      qid.py       queue IDs: new_qid, qid_time, qid_ok, qid_hash
      records.py   the record format: one table of record types, the file grammar
      envelope.py  Envelope, Recipient, Extracted (plain data)
      qdir.py      QueueDir: directories, paths, moves, scans, free space,
                   temp-file purge, quarantine
      file.py      QueueFileWriter, QueueFileReader, fault injection
      commit.py    Committer: group commit with an async API
      errors.py    QueueFileCorrupt, QueueFull

    Committer is imported on first use (PEP 562 __getattr__): commit.py
    pulls in asyncio and concurrent.futures, which a command such as
    postqueue never needs.
"""

from postel.queue.envelope import Envelope, Extracted, Recipient
from postel.queue.errors import QueueFileCorrupt, QueueFull
from postel.queue.file import (
    QueueFileReader,
    QueueFileWriter,
    iter_raw_records,
    mark_done,
    set_fault_enospc_after,
)
from postel.queue.qdir import MESSAGE_QUEUES, QUEUE_NAMES, QueueDir, quarantine
from postel.queue.qid import new_qid, qid_hash, qid_ok, qid_time

QueueFile = QueueFileReader

TYPE_CHECKING = False      # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from postel.queue.commit import Committer


def __getattr__(name: str):
    """__getattr__ - Committer, imported when first asked for."""
    if name == "Committer":
        from postel.queue.commit import Committer
        globals()["Committer"] = Committer
        return Committer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Committer", "Envelope", "Extracted", "Recipient", "QueueFileCorrupt", "QueueFull",
    "QueueFileReader", "QueueFileWriter", "QueueFile", "iter_raw_records", "mark_done",
    "set_fault_enospc_after", "MESSAGE_QUEUES", "QUEUE_NAMES", "QueueDir", "quarantine",
    "new_qid", "qid_hash", "qid_ok", "qid_time",
]
