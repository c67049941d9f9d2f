"""pfpeer - a private, real Postfix next to a Postel instance (comparison tests)

SYNOPSIS
    from pfpeer import workdir, postfix_instance, wait_file, wait_log_count,
                       normalise_mailq, mailq_blocks, mailq_columns, qid_of,
                       postcat_sections, postcat_records

    with workdir() as wd:                       # a 0755 directory under /tmp
        with postfix_instance(wd, {"relayhost": "[127.0.0.1]:2525"}) as pf:
            pf.smtp_port, pf.etc, pf.log_path
            pf.postqueue("-p"), pf.postcat("-q", qid), pf.postsuper("-h", "ALL")

DESCRIPTION
    The tests in this directory run the same traffic through Postel and
    through the Debian package's Postfix and compare what both produce.
    postfix_instance() wraps bench/harness/mta.py's PostfixMTA (a private
    instance in its own directory: main.cf, master.cf without chroot, a
    queue, a data_directory owned by postfix, maillog_file) and adds the
    administrative commands with "-c ETC".  It needs root (Postfix's
    master runs as root) and skips otherwise, or fails when CI is set.

    The instance directory must be traversable by the postfix user, which
    pytest's 0700 tmp_path is not: workdir() makes a 0755 directory under
    /tmp and removes it afterwards.

    normalise_mailq() turns mailq text into comparable lines: queue IDs
    become QID, sizes SIZE, arrival times DATE, the Kbytes total N, and
    runs of blanks one blank (the two layouts have different column
    widths, see docs/postqueue.md).  mailq_blocks() splits mailq text into
    one block per message (Postfix lists a queue in directory order, not in
    arrival order), keyed by sender; mailq_columns() measures the layout.
    postcat_sections() and postcat_records() reduce postcat output to its
    section lines and its envelope record names (named attributes by name).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import pytest

from peerlib import require_peer

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "bench"))
sys.path.insert(0, os.path.join(REPO, "tests", "e2e"))

from harness.mta import PostfixMTA  # noqa: E402


def need_postfix() -> None:
    """need_postfix - skip (fail under CI) without the Postfix programs or root."""
    for prog in ("postfix", "postqueue", "postsuper", "postcat"):
        require_peer(prog)
    if os.geteuid() != 0:
        msg = "a private Postfix instance needs root"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)


@contextlib.contextmanager
def workdir() -> Iterator[str]:
    """workdir - a 0755 temporary directory under /tmp, removed afterwards."""
    path = tempfile.mkdtemp(prefix="postel-pfpeer-", dir="/tmp")
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class Postfix(PostfixMTA):
    """PostfixMTA plus the administrative commands, with -c ETC."""

    def run(self, prog: str, *args: str) -> subprocess.CompletedProcess:
        """run - a Postfix command with "-c ETC", capturing text output."""
        return subprocess.run([prog, "-c", self.etc, *args], capture_output=True, text=True,
                              timeout=60)

    def postqueue(self, *args: str) -> subprocess.CompletedProcess:
        """postqueue - postqueue -c ETC args."""
        return self.run("postqueue", *args)

    def postsuper(self, *args: str) -> subprocess.CompletedProcess:
        """postsuper - postsuper -c ETC args."""
        return self.run("postsuper", *args)

    def postcat(self, *args: str) -> subprocess.CompletedProcess:
        """postcat - postcat -c ETC args."""
        return self.run("postcat", *args)

    def log_text(self) -> str:
        """log_text - the whole maillog."""
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""


@contextlib.contextmanager
def postfix_instance(wd: str, main: dict[str, str], name: str = "peer") -> Iterator[Postfix]:
    """postfix_instance - a started private Postfix; always stopped afterwards."""
    need_postfix()
    pf = Postfix(wd, name, main)
    try:
        pf.start()
        yield pf
    finally:
        pf.stop()


def wait_log_count(text_fn, pattern: str, count: int, timeout: float = 20) -> int:
    """wait_log_count - until text_fn() has count lines matching pattern; the count seen."""
    rx = re.compile(pattern)
    deadline = time.monotonic() + timeout
    while True:
        n = sum(1 for line in text_fn().splitlines() if rx.search(line))
        if n >= count or time.monotonic() > deadline:
            return n
        time.sleep(0.05)


def wait_file(directory: str, timeout: float = 20) -> list[str]:
    """wait_file - the files in directory once there is at least one ([] on timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            names = []
        if names or time.monotonic() > deadline:
            return [os.path.join(directory, n) for n in names]
        time.sleep(0.05)


_ID_LINE = re.compile(r"^(?P<qid>[0-9A-Za-z]+)(?P<flag>[*! ]) *(?P<size>\d+) "
                      r"(?P<date>\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d) +(?P<sender>\S+)$")


def normalise_mailq(text: str) -> list[str]:
    """normalise_mailq - mailq lines with IDs, sizes, dates and blank runs normalised."""
    out = []
    for line in text.splitlines():
        m = _ID_LINE.match(line)
        if m:
            line = f"QID{m['flag'].strip() or '_'} SIZE DATE {m['sender']}"
        elif line.startswith("-Queue ID-") or line.startswith("----Queue ID"):
            line = "HEADER"
        else:
            line = re.sub(r"^-- \d+ Kbytes in", "-- N Kbytes in", line)
            line = re.sub(r" +", " ", line)
        out.append(line)
    return out


def mailq_blocks(text: str) -> dict[str, list[str]]:
    """mailq_blocks - normalised message blocks keyed by sender (header and trailer left out)."""
    blocks: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in normalise_mailq(text):
        if line.startswith("QID"):
            current = [line]
            blocks[line.split()[-1]] = current
        elif not line or line == "HEADER" or line.startswith("-- "):
            current = None
        elif current is not None:
            current.append(line)
    return blocks


def mailq_columns(text: str) -> dict[str, int]:
    """mailq_columns - where the layout puts things: size end, sender, recipient, reason end."""
    cols: dict[str, int] = {}
    for line in text.splitlines():
        m = _ID_LINE.match(line)
        if m:
            cols.setdefault("size_end", m.end("size"))
            cols.setdefault("sender", m.start("sender"))
        elif line.lstrip().startswith("("):
            cols.setdefault("reason_end", len(line))
        elif line.startswith(" ") and "@" in line:
            cols.setdefault("rcpt", len(line) - len(line.lstrip()))
    return cols


def qid_of(mailq_text: str, sender: str) -> str:
    """qid_of - the queue ID of the listed message from sender ("" when not listed)."""
    for line in mailq_text.splitlines():
        m = _ID_LINE.match(line)
        if m and m["sender"] == sender:
            return m["qid"]
    return ""


def postcat_sections(text: str) -> list[str]:
    """postcat_sections - the "*** ... ***" lines, queue file path reduced to its queue name."""
    out = []
    for line in text.splitlines():
        m = re.match(r"^\*\*\* (.+?) (\w+)/(?:\w/)*\w+ \*\*\*$", line)
        if m:
            out.append(f"*** {m[1]} {m[2]} ***")
    return out


def postcat_records(text: str) -> list[str]:
    """postcat_records - envelope record names in order; named_attribute as named_attribute:NAME."""
    out = []
    in_envelope = False
    for line in text.splitlines():
        if line.startswith("*** "):
            in_envelope = line.startswith("*** ENVELOPE RECORDS")
            continue
        m = re.match(r"^([a-z_]+): ?(.*)$", line)
        if in_envelope and m:
            if m[1] == "named_attribute":
                out.append("named_attribute:" + m[2].split("=", 1)[0])
            else:
                out.append(m[1])
    return out
