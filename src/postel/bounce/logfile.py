"""logfile - per-message delivery status logs (bounce/, defer/, trace/)

SYNOPSIS
    from postel.bounce.logfile import LOG_FIELDS, read_log, format_entry, append_entry

    entries = read_log(qd.path("bounce", qid))     # list[dict[str, str]]
    append_entry(qd.path("defer", qid), {"recipient": "bob@example.com", ...})

DESCRIPTION
    One file per message and per log, named by queue ID, under the
    bounce, defer or trace queue directory (defer is hashed as
    $hash_queue_names says).  The file is appended to, one entry per
    recipient event; an entry is lines "name=value" followed by an empty
    line.  Names, in this order:

        recipient, orig_rcpt, offset, dsn_orcpt, dsn_notify,
        status (X.Y.Z), action (failed|delayed|delivered|relayed|expanded|
        deliverable|undeliverable), reason, diag_type, diag_text,
        mta_type, mta_name, when (unix time)

    Values never contain CR or LF (they are replaced by spaces when
    written).  The delivery agents write these files through
    postel.deliver.status (which uses the same format); bounce(8) and
    showq read them.

    read_log() tolerates what a crash can leave behind: a last entry
    without its empty line is ignored (each entry is one write(2), so a
    torn one is incomplete), as postel.deliver.status.read_log does.  Unknown names are kept; lines
    without "=" are skipped.  A missing file raises FileNotFoundError.

DIAGNOSTICS
    OSError from the file system as it comes.
"""

from __future__ import annotations

import os

LOG_FIELDS = ("recipient", "orig_rcpt", "offset", "dsn_orcpt", "dsn_notify", "status",
              "action", "reason", "diag_type", "diag_text", "mta_type", "mta_name", "when")
MAX_LOG_SIZE = 64 * 1024 * 1024     # a log larger than this is read only this far


def _clean(value: object) -> str:
    """_clean - a value as one line of text."""
    return str(value).replace("\r", " ").replace("\n", " ")


def format_entry(entry: dict[str, object]) -> bytes:
    """format_entry - one log entry as bytes (known names first, in order)."""
    lines = []
    for name in LOG_FIELDS:
        if name in entry and entry[name] is not None:
            lines.append(f"{name}={_clean(entry[name])}")
    for name, value in entry.items():
        if name not in LOG_FIELDS and value is not None and "=" not in name:
            lines.append(f"{_clean(name)}={_clean(value)}")
    return ("\n".join(lines) + "\n\n").encode("utf-8", "surrogateescape")


def append_entry(path: str, entry: dict[str, object]) -> None:
    """append_entry - append one entry with O_APPEND and fsync (creates the file)."""
    data = format_entry(entry)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def parse_log(data: bytes) -> list[dict[str, str]]:
    """parse_log - the complete entries of a log file's bytes (a torn tail is dropped)."""
    text = data.decode("utf-8", "surrogateescape")
    entries: list[dict[str, str]] = []
    cur: dict[str, str] = {}
    for line in text.split("\n")[:-1]:      # the piece after the last LF is incomplete
        if not line:
            if cur.get("recipient") is not None:
                entries.append(cur)
            cur = {}
            continue
        name, sep, value = line.partition("=")
        if sep:
            cur.setdefault(name, value)
    return entries


def read_log(path: str) -> list[dict[str, str]]:
    """read_log - the entries of one per-message log file."""
    with open(path, "rb") as fp:
        return parse_log(fp.read(MAX_LOG_SIZE))
