"""postcat - show Postel queue file contents

SYNOPSIS
    postel cat [-bdehoqrv] [-c config_dir] [-s offset] [files...]

DESCRIPTION
    postcat(1) prints queue files in human-readable form, in Postfix's
    layout.  With no file arguments it reads one queue file from standard
    input.  By default it shows envelope and content, as with -beh.

    -b  Show the body: from the first non-header line (normally the empty
        line after the headers) to the end of the message.
    -d  Print the decimal type of each record.
    -e  Show the envelope records, the extracted records, and the section
        banners ("*** ENVELOPE RECORDS name ***", "*** MESSAGE CONTENTS
        name ***", "*** HEADER EXTRACTED name ***", "*** MESSAGE FILE END
        name ***").
    -h  Show the message header, up to but not including the first
        non-header line.
    -o  Print the queue file offset of each record.
    -q  The arguments are queue IDs: look for them in the maildrop,
        incoming, active, deferred, hold, saved and corrupt queues.  The
        banner then names the file relative to the queue directory.
    -r  Print records in file order.  Postel queue files have no pointer
        records, so this is always the case; accepted for compatibility.
    -s offset
        Skip to this file offset (it must be the start of a record).
    -v  Verbose (accepted).

    Postel's size record has other fields than Postfix's; postcat shows it
    in Postfix's six-column form: message size, content offset, recipient
    count, queue manager flags (always 0), content length, and SMTPUTF8
    flag (always 0).

    postcat works on damaged files: it prints every record up to the point
    where the record framing breaks, then reports the offset and the
    problem.  It also runs the full consistency check of the queue file
    reader (size record, checksums, record order) and reports what that
    finds.  Either problem makes the exit status 1.

CONFIGURATION PARAMETERS
    queue_directory, hash_queue_names, hash_queue_depth (for -q)
"""

from __future__ import annotations

import os
import re
import sys
import time

from postel.commands._qadmin import EX_USAGE, Fatal, fatal, load, options, queue_dir, warn
from postel.queue import QueueFileCorrupt, QueueFileReader, iter_raw_records, qid_ok
from postel.queue import records as rec

PROG = "postcat"
USAGE = "usage: postcat [-bdehoqrv] [-c config_dir] [-s offset] [files...]"
SEARCH_QUEUES = ("maildrop", "incoming", "active", "deferred", "hold", "saved", "corrupt")
MAX_FILE = 1 << 31
_HEADER_RE = re.compile(rb"[!-9;-~]+[ \t]*:")

F_ENV, F_HEAD, F_BODY, F_OFF, F_DEC, F_QUEUE = 1, 2, 4, 8, 16, 32


def _parse(argv: list[str]) -> tuple[int, int, str | None, list[str]]:
    """_parse - (flags, start offset, config_dir, arguments)."""
    flags, start, config_dir = 0, 0, None
    pairs, rest = options(argv, "bc:dehoqrs:v", USAGE)
    for c, value in pairs:
        if c == "c":
            config_dir = value
        elif c == "s":
            if not value.isdigit():
                raise Fatal(f"bad offset: {value}", EX_USAGE)
            start = int(value)
        else:
            flags |= {"b": F_BODY, "e": F_ENV, "h": F_HEAD, "o": F_OFF, "d": F_DEC,
                      "q": F_QUEUE}.get(c, 0)
    if not flags & (F_ENV | F_HEAD | F_BODY):
        flags |= F_ENV | F_HEAD | F_BODY
    return flags, start, config_dir, rest


def _ctime(value: float) -> str:
    """_ctime - asctime(3) without the newline."""
    return time.asctime(time.localtime(value))


def _envelope_text(rec_type: int, payload: bytes) -> str:
    """_envelope_text - the value shown for one envelope/extracted record."""
    if rec_type == rec.REC_TYPE_SIZE:
        try:
            size, content_off, _x, _end, rcpts, _c1, _c2 = rec.parse_size(payload)
        except ValueError:
            return rec.untext(payload)
        return " ".join(f"{v:15d}" for v in (size, content_off, rcpts, 0, size, 0))
    if rec_type == rec.REC_TYPE_TIME:
        try:
            return _ctime(float(payload))
        except ValueError:
            return rec.untext(payload)
    if rec_type == rec.REC_TYPE_WARN:
        try:
            when = int(payload)
        except ValueError:
            return rec.untext(payload)
        return _ctime(when) if when else "0"
    return rec.untext(payload)


class Printer:
    """Prints one queue file's records according to the flags."""

    def __init__(self, out, flags: int, name: str) -> None:
        self.out = out
        self.flags = flags
        self.name = name.encode("utf-8", "surrogateescape")
        self.in_header = True
        self.partial = False

    def _prefix(self, offset: int, rec_type: int) -> bytes:
        """_prefix - the -o and -d columns."""
        p = b""
        if self.flags & F_OFF:
            p += b"%9d " % offset
        if self.flags & F_DEC:
            p += b"%3d " % rec_type
        return p

    def banner(self, what: str) -> None:
        """banner - a section line, shown only with -e."""
        if self.flags & F_ENV:
            self.out.write(b"*** %s %s ***\n" % (what.encode(), self.name))

    def envelope(self, offset: int, rec_type: int, payload: bytes) -> None:
        """envelope - one envelope or extracted record."""
        if self.flags & F_ENV:
            text = f"{rec.type_name(rec_type)}: {_envelope_text(rec_type, payload)}"
            self.out.write(self._prefix(offset, rec_type)
                           + text.encode("utf-8", "surrogateescape") + b"\n")

    def content(self, offset: int, rec_type: int, payload: bytes) -> None:
        """content - one N or L record of the message."""
        if not self.partial:
            if self.in_header and not (payload[:1] in (b" ", b"\t") or _HEADER_RE.match(payload)):
                self.in_header = False
        show = self.flags & (F_HEAD if self.in_header else F_BODY)
        self.partial = rec_type == rec.REC_TYPE_CONT
        if show:
            self.out.write(self._prefix(offset, rec_type) + payload
                           + (b"" if self.partial else b"\n"))

    def end_content(self) -> None:
        """end_content - terminate a dangling partial line."""
        if self.partial and self.flags & (F_HEAD | F_BODY):
            self.out.write(b"\n")
        self.partial = False


def print_file(data: bytes, name: str, flags: int, start: int = 0, out=None,
               path: str = "") -> list[str]:
    """print_file - show one queue file; returns the problems found (empty: clean)."""
    out = out or sys.stdout.buffer
    p = Printer(out, flags, name)
    problems: list[str] = []
    p.banner("ENVELOPE RECORDS")
    section = "envelope"
    try:
        for offset, rec_type, payload in iter_raw_records(data[start:], start, path or name):
            if rec_type == rec.REC_TYPE_MESG and section == "envelope":
                section = "content"
                p.banner("MESSAGE CONTENTS")
                continue
            if rec_type == rec.REC_TYPE_XTRA and section != "extracted":
                p.end_content()
                section = "extracted"
                p.banner("HEADER EXTRACTED")
                continue
            if rec_type == rec.REC_TYPE_END:
                p.end_content()
                p.banner("MESSAGE FILE END")
                section = "end"
                continue
            if section == "content" and rec_type in rec.CONTENT_TYPES:
                p.content(offset, rec_type, payload)
            else:
                p.envelope(offset, rec_type, payload)
    except QueueFileCorrupt as exc:
        p.end_content()
        problems.append(f"offset {exc.offset}: {exc.reason}")
    if section != "end" and not problems:
        problems.append(f"offset {len(data)}: missing end record")
    return problems


def _check(path: str) -> str:
    """_check - the queue file reader's verdict ("" when the file is sound)."""
    try:
        with QueueFileReader(path, writable=False) as r:
            for _ in r.iter_lines():
                pass
    except QueueFileCorrupt as exc:
        return f"offset {exc.offset}: {exc.reason}"
    except OSError as exc:
        return exc.strerror or str(exc)
    return ""


def _locate(cfg, qid: str) -> tuple[str, str]:
    """_locate - (path, name relative to queue_directory) of a queue ID."""
    qd = queue_dir(cfg)
    if qid_ok(qid):
        found = qd.find(qid, SEARCH_QUEUES)
        if found is not None:
            return found[1], os.path.relpath(found[1], qd.queue_directory)
    raise Fatal(f"open queue file {qid}: No such file or directory", 1)


def _read(path: str) -> bytes:
    """_read - a whole file (Fatal when it cannot be opened)."""
    try:
        with open(path, "rb") as f:
            return f.read(MAX_FILE)
    except OSError as exc:
        raise Fatal(f"open {path}: {exc.strerror}", 1) from None


def main(argv: list[str], config_dir: str | None, stdin=None, out=None) -> int:
    """main - postel cat."""
    out = out or sys.stdout.buffer
    status = 0
    try:
        flags, start, opt_dir, args = _parse(argv)
        cfg = None
        if flags & F_QUEUE or config_dir or opt_dir:
            cfg = load(PROG, opt_dir or config_dir)
        if flags & F_QUEUE and not args:
            raise Fatal(USAGE, EX_USAGE)
        if not args:
            data = (stdin or sys.stdin.buffer).read(MAX_FILE)
            problems = print_file(data, "stdin", flags, start, out)
            for problem in problems:
                warn(PROG, f"stdin: {problem}")
            out.flush()
            return 1 if problems else 0
        for arg in args:
            if flags & F_QUEUE:
                path, name = _locate(cfg, arg)
            else:
                path, name = arg, arg
            data = _read(path)
            problems = print_file(data, name, flags, start, out, path)
            if not problems:
                verdict = _check(path)
                if verdict:
                    problems.append(verdict)
            out.flush()
            for problem in problems:
                warn(PROG, f"{name}: corrupt queue file: {problem}")
                status = 1
        return status
    except Fatal as exc:
        out.flush()
        return fatal(PROG, exc)
    except BrokenPipeError:
        return 0
