"""postsuper - Postel superintendent

SYNOPSIS
    postel super [-psSv] [-c config_dir] [-d queue_id] [-h queue_id]
                 [-H queue_id] [-r queue_id] [queue ...]

DESCRIPTION
    postsuper(1) does maintenance jobs on the queue.  Its use is reserved
    for the superuser, the mail_owner, or (for an unprivileged instance) the
    owner of the queue directory.

    -d queue_id   Delete the message (default queues: hold, incoming, active,
                  deferred), with its bounce, defer and trace logs.
    -h queue_id   Put the message on hold: move it to the hold queue
                  (default queues: incoming, active, deferred).
    -H queue_id   Release the message from hold: move it to the deferred
                  queue with a fresh time stamp (default queue: hold).
    -r queue_id   Requeue the message: move it to the maildrop queue, from
                  where pickup(8) and cleanup(8) copy it to a new queue file,
                  so that address rewriting and virtual/canonical mappings are
                  applied again (default queues: hold, incoming, active,
                  deferred).  Its delivery status logs are removed.
    -s            Structure check and repair: move queue files that are in
                  the wrong (hashed) subdirectory to the right one (after a
                  change of hash_queue_names or hash_queue_depth), give a
                  readable queue file with a bad name a new queue ID, and
                  remove hashed subdirectories that are no longer needed.
                  This is what postsuper does when no option is given.
    -S            The same as -s (Postfix's inode check has no meaning for
                  Postel queue IDs).
    -p            Purge temporary files left over after a crash (older than
                  two hours), and the files of delivered messages kept in
                  recycle/ for reuse (a Postel extension, see
                  docs/queue.md).

    Each of -d -h -H -r may be repeated.  A queue_id of "-" reads queue IDs
    from standard input, one per line; "ALL" (upper case) selects every
    message in the queues.  Queue names after the options replace the
    default queues.  -p and -s run before the other operations; then
    deletions, holds, releases and requeues, in that order.

    Every operation is a rename(2) or unlink(2) of one file, so postsuper is
    safe while the mail system runs.  A message that is deleted while qmgr
    delivers it (active queue) simply disappears: delivery agents that open
    it later find no file and report it, and qmgr forgets it.

DIAGNOSTICS
    One line per message and a summary on stderr and in the mail log, like
    Postfix: "postsuper: QID: removed", "postsuper: Deleted: 2 messages".
    "postsuper: fatal: use of this command is reserved for the superuser".

CONFIGURATION PARAMETERS
    queue_directory, hash_queue_names, hash_queue_depth, mail_owner
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator

from postel import log
from postel.commands._qadmin import (
    EX_USAGE,
    Fatal,
    fatal,
    load,
    options,
    privileged,
    queue_dir,
    say,
    warn,
)
from postel.queue import (
    MESSAGE_QUEUES,
    QueueDir,
    QueueFileCorrupt,
    QueueFileReader,
    new_qid,
    qid_ok,
    recycle,
)

PROG = "postsuper"
USAGE = ("usage: postsuper [-psSv] [-c config_dir] [-d queue_id] [-h queue_id] "
         "[-H queue_id] [-r queue_id] [queue ...]")
DEFAULT_QUEUES = {
    "d": ("hold", "incoming", "active", "deferred"),
    "h": ("incoming", "active", "deferred"),
    "H": ("hold",),
    "r": ("hold", "incoming", "active", "deferred"),
}
SELECTABLE = ("hold", "incoming", "active", "deferred", "maildrop", "corrupt", "saved")
LOG_QUEUES = ("bounce", "defer", "trace")
OP_ORDER = "dhHr"


class Options:
    """The parsed command line."""

    def __init__(self) -> None:
        self.ids: dict[str, list[str]] = {op: [] for op in OP_ORDER}
        self.purge = False
        self.structure = False
        self.queues: list[str] = []
        self.config_dir: str | None = None


def parse(argv: list[str]) -> Options:
    """parse - the command line (Fatal(EX_USAGE) on bad usage)."""
    opts = Options()
    pairs, rest = options(argv, "c:d:h:H:r:psSv", USAGE)
    for c, value in pairs:
        if c == "c":
            opts.config_dir = value
        elif c in "dhHr":
            opts.ids[c].append(value)
        elif c == "p":
            opts.purge = True
        elif c in "sS":
            opts.structure = True
    for name in rest:
        if name not in SELECTABLE:
            raise Fatal(f"invalid directory name: {name}", EX_USAGE)
        opts.queues.append(name)
    if not opts.purge and not any(opts.ids.values()):
        opts.structure = True
    return opts


def _expand_ids(values: list[str], stdin: Iterable[str]) -> Iterator[str]:
    """_expand_ids - the -X arguments with "-" replaced by standard input."""
    for value in values:
        if value == "-":
            for line in stdin:
                for word in line.split():
                    yield word
        else:
            yield value


def _remove_logs(qd: QueueDir, qid: str) -> None:
    """_remove_logs - delete a message's bounce, defer and trace logs."""
    for name in LOG_QUEUES:
        qd.remove(name, qid)


def _select(qd: QueueDir, op: str, values: list[str], queues: tuple[str, ...],
            stdin: Iterable[str]) -> Iterator[tuple[str, str]]:
    """_select - (queue, qid) of every existing file the arguments name."""
    seen: set[tuple[str, str]] = set()
    for value in _expand_ids(values, stdin):
        if value == "ALL":
            for queue in queues:
                for qid in sorted(qd.scan(queue)):
                    if (queue, qid) not in seen:
                        seen.add((queue, qid))
                        yield queue, qid
            continue
        if not qid_ok(value):
            warn(PROG, f"invalid mail queue id: {value}")
            continue
        for queue in queues:
            if (queue, value) not in seen and qd.exists(queue, value):
                seen.add((queue, value))
                yield queue, value


def _plural(n: int) -> str:
    return f"{n} message" + ("" if n == 1 else "s")


def delete(qd: QueueDir, queue: str, qid: str) -> bool:
    """delete - remove one queue file and its logs."""
    if not qd.remove(queue, qid):
        return False
    _remove_logs(qd, qid)
    say(PROG, f"{qid}: removed")
    return True


def hold(qd: QueueDir, queue: str, qid: str) -> bool:
    """hold - move one message to the hold queue."""
    if queue == "hold" or not _move(qd, qid, queue, "hold"):
        return False
    say(PROG, f"{qid}: placed on hold")
    return True


def release(qd: QueueDir, queue: str, qid: str) -> bool:
    """release - move one held message to deferred, eligible for delivery now."""
    if queue != "hold" or not _move(qd, qid, "hold", "deferred"):
        return False
    try:
        os.utime(qd.path("deferred", qid))
    except OSError:
        pass
    say(PROG, f"{qid}: released from hold")
    return True


def requeue(qd: QueueDir, queue: str, qid: str) -> bool:
    """requeue - move one message to maildrop for pickup and cleanup."""
    if queue == "maildrop" or not _move(qd, qid, queue, "maildrop"):
        return False
    _remove_logs(qd, qid)
    say(PROG, f"{qid}: requeued")
    return True


def _move(qd: QueueDir, qid: str, src: str, dst: str) -> bool:
    """_move - rename between queues; False if the file went away meanwhile."""
    if qd.exists(dst, qid):
        warn(PROG, f"{qid}: already in queue {dst}; left in {src}")
        return False
    try:
        qd.move(qid, src, dst)
    except FileNotFoundError:
        return False
    except OSError as exc:
        warn(PROG, f"{qid}: cannot move from {src} to {dst}: {exc.strerror}")
        return False
    return True


OPERATIONS = {
    "d": (delete, "Deleted"),
    "h": (hold, "Placed on hold"),
    "H": (release, "Released from hold"),
    "r": (requeue, "Requeued"),
}


def run_op(qd: QueueDir, op: str, values: list[str], queues: list[str],
           stdin: Iterable[str]) -> int:
    """run_op - one of -d -h -H -r over its arguments; returns the count."""
    func, summary = OPERATIONS[op]
    count = 0
    for queue, qid in list(_select(qd, op, values, tuple(queues) or DEFAULT_QUEUES[op], stdin)):
        if func(qd, queue, qid):
            count += 1
    if count:
        say(PROG, f"{summary}: {_plural(count)}")
    return count


def purge(qd: QueueDir) -> int:
    """purge - postsuper -p."""
    removed = qd.purge_temp()
    if removed:
        say(PROG, f"Deleted: {len(removed)} temporary file" + ("" if len(removed) == 1 else "s"))
    # Files kept for reuse (queue/recycle.py) hold delivered mail until reused.
    kept = recycle.purge(qd.queue_directory)
    if kept:
        say(PROG, f"Deleted: {kept} recycled queue file" + ("" if kept == 1 else "s"))
    return len(removed)


def structure_check(qd: QueueDir) -> int:
    """structure_check - postsuper -s; returns the number of files renamed or moved."""
    fixed = 0
    for queue in MESSAGE_QUEUES + LOG_QUEUES:
        top = qd.queue_path(queue)
        if not os.path.isdir(top):
            continue
        for dirpath, _dirs, files in os.walk(top):
            for name in files:
                if name.endswith(".tmp"):
                    continue
                fixed += _fix_file(qd, queue, os.path.join(dirpath, name), name)
        _prune_dirs(qd, queue, top)
    if fixed:
        say(PROG, f"Renamed or moved: {fixed} file" + ("" if fixed == 1 else "s"))
    return fixed


def _fix_file(qd: QueueDir, queue: str, path: str, name: str) -> int:
    """_fix_file - give one file a good name in the right directory."""
    if not qid_ok(name):
        if queue in LOG_QUEUES:
            warn(PROG, f"{path}: ignoring file with bad name")
            return 0
        try:
            QueueFileReader(path, writable=False).close()
        except (QueueFileCorrupt, OSError) as exc:
            warn(PROG, f"{path}: bad name, not a readable queue file ({exc}); left alone")
            return 0
        new = new_qid()
        target = qd.path(queue, new)
        qd.ensure_dir(queue, new)
        os.rename(path, target)
        say(PROG, f"{queue}/{name}: renamed to {queue}/{new}")
        return 1
    target = qd.path(queue, name)
    if os.path.abspath(path) == target:
        return 0
    if os.path.exists(target):
        warn(PROG, f"{path}: a file {target} exists; left alone")
        return 0
    qd.ensure_dir(queue, name)
    os.rename(path, target)
    log.info("%s: moved %s to %s", name, path, target)
    return 1


def _prune_dirs(qd: QueueDir, queue: str, top: str) -> None:
    """_prune_dirs - remove empty subdirectories the hash layout no longer uses."""
    depth = qd.depth(queue)
    for dirpath, _dirs, _files in os.walk(top, topdown=False):
        if dirpath == top:
            continue
        level = os.path.relpath(dirpath, top).count(os.sep) + 1
        if level > depth:
            try:
                os.rmdir(dirpath)
            except OSError:
                pass


def main(argv: list[str], config_dir: str | None, stdin: Iterable[str] | None = None) -> int:
    """main - postel super."""
    try:
        opts = parse(argv)
        cfg = load(PROG, opts.config_dir or config_dir)
        if not privileged(cfg):
            raise Fatal("use of this command is reserved for the superuser", 1)
        qd = queue_dir(cfg)
        if not os.path.isdir(qd.queue_directory):
            raise Fatal(f"{qd.queue_directory}: no such queue directory", 1)
        if opts.purge:
            purge(qd)
        if opts.structure:
            structure_check(qd)
        source = stdin if stdin is not None else sys.stdin
        for op in OP_ORDER:
            if opts.ids[op]:
                run_op(qd, op, opts.ids[op], opts.queues, source)
        return 0
    except Fatal as exc:
        return fatal(PROG, exc)
    except OSError as exc:
        return fatal(PROG, Fatal(f"{exc.filename or ''}: {exc.strerror or exc}", 1))
