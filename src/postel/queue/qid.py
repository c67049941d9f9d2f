"""qid - Postel queue IDs

SYNOPSIS
    from postel.queue import new_qid, qid_time
    qid = new_qid()            # "6Lm3Q0B9cFz00Nq00A"
    qid_time(qid)              # 1716282727.548311
    qid_ok(qid), qid_hash(qid, depth)

DESCRIPTION
    A queue ID names one message for its whole life: it is the file name in
    every queue directory and the prefix of every log line about the message.
    Postel uses one format, modelled on Postfix's long queue IDs
    (enable_long_queue_ids = yes):

        SSSSSS UUUU z PPPP CCC        (18 characters, no spaces)

    SSSSSS  arrival time, whole seconds since the epoch, base 52, 6 digits
    UUUU    the microseconds of that second, base 52, 4 digits
    z       a separator, as in Postfix (never a base-52 digit)
    PPPP    the process ID of the creating process, base 52, 4 digits
    CCC     a per-process counter, base 52, 3 digits (wraps at 140608)

    The base-52 digits are 0-9 A-Z a-p, a subset of ASCII in ascending
    order, so that IDs sort as strings in order of creation time (to the
    microsecond), are valid file names everywhere and never need quoting.
    Where Postfix uses the file's inode number to make the ID unique, Postel
    uses process ID and counter: two processes never share a process ID at
    the same moment, and one process never hands out the same (time, counter)
    pair twice, because its clock is made monotonic (a clock step backwards
    reuses the last time) and the counter advances on every call.  Within one
    process IDs are strictly increasing as strings.

    qid_hash() gives the hashed subdirectory names for hash_queue_names:
    one upper-case hex digit per level, taken from the microseconds field
    (the least significant nibble first), which is evenly spread.  Postfix
    also hashes long queue IDs on their time part.
"""

from __future__ import annotations

import os
import re
import time

DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnop"
BASE = len(DIGITS)  # 52
SEPARATOR = "z"
SEC_WIDTH, USEC_WIDTH, PID_WIDTH, COUNT_WIDTH = 6, 4, 4, 3
QID_LEN = SEC_WIDTH + USEC_WIDTH + 1 + PID_WIDTH + COUNT_WIDTH
MAX_HASH_DEPTH = 5  # the microseconds field has 20 bits = 5 nibbles

_QID_RE = re.compile(r"[0-9A-Za-p]{10}z[0-9A-Za-p]{7}\Z")
_VALUE = {c: i for i, c in enumerate(DIGITS)}
_COUNT_MOD = BASE ** COUNT_WIDTH
assert BASE == 52 and USEC_WIDTH == 4 and COUNT_WIDTH == 3    # new_qid() unrolls these


class _State:
    last_us = 0
    counter = 0
    sec = -1            # the second whose digits are in sec_text
    sec_text = ""
    pid_text = ""       # the process ID part, made once per process


_state = _State()


def _forget_pid() -> None:
    """_forget_pid - a forked child has another process ID."""
    _state.pid_text = ""


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pid)


def _encode(value: int, width: int) -> str:
    """_encode - value in base 52, zero-padded to width (truncated modulo)."""
    out = []
    for _ in range(width):
        value, digit = divmod(value, BASE)
        out.append(DIGITS[digit])
    return "".join(reversed(out))


def _decode(text: str) -> int:
    """_decode - a base-52 digit string as integer."""
    value = 0
    for c in text:
        value = value * BASE + _VALUE[c]
    return value


def new_qid(now: float | None = None) -> str:
    """new_qid - a fresh queue ID, unique across processes, sortable by time."""
    now_us = time.time_ns() // 1000 if now is None else int(now * 1_000_000)
    if now is None:
        # Monotonic per process: a clock step back must not reorder IDs.
        if now_us < _state.last_us:
            now_us = _state.last_us
        _state.last_us = now_us
    state = _state
    state.counter = count = (state.counter + 1) % _COUNT_MOD
    sec, usec = divmod(now_us, 1_000_000)
    if sec != state.sec:
        state.sec_text = _encode(sec, SEC_WIDTH)
        state.sec = sec
    if not state.pid_text:
        state.pid_text = SEPARATOR + _encode(os.getpid(), PID_WIDTH)
    # The fixed-width usec (4 digits) and counter (3 digits) parts, unrolled.
    d = DIGITS
    return (state.sec_text + d[usec // 140608 % 52] + d[usec // 2704 % 52] + d[usec // 52 % 52]
            + d[usec % 52] + state.pid_text + d[count // 2704] + d[count // 52 % 52]
            + d[count % 52])


def qid_ok(qid: str) -> bool:
    """qid_ok - is this a well-formed Postel queue ID?"""
    return isinstance(qid, str) and _QID_RE.match(qid) is not None


def qid_time(qid: str) -> float:
    """qid_time - the creation time encoded in a queue ID (ValueError if malformed)."""
    if not qid_ok(qid):
        raise ValueError(f"malformed queue ID: {qid!r}")
    sec = _decode(qid[:SEC_WIDTH])
    usec = _decode(qid[SEC_WIDTH:SEC_WIDTH + USEC_WIDTH])
    return sec + usec / 1_000_000


def qid_hash(qid: str, depth: int) -> list[str]:
    """qid_hash - the hashed subdirectory names (one hex digit per level)."""
    if not qid_ok(qid):
        raise ValueError(f"malformed queue ID: {qid!r}")
    usec = _decode(qid[SEC_WIDTH:SEC_WIDTH + USEC_WIDTH])
    return [f"{(usec >> (4 * level)) & 0xF:X}" for level in range(depth)]
