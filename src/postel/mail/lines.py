"""lines - whole-buffer checks on runs of message lines

SYNOPSIS
    from postel.mail.lines import has_long_line
    has_long_line(segment, width)

DESCRIPTION
    has_long_line() tells whether a run of complete LF-terminated lines
    holds one of `width` or more bytes before its LF.  It jumps from a
    line start to the last LF within the next `width` bytes: a few
    rfind() calls per 100 KiB of ordinary text, instead of a pass over
    every line or a regex trial at every byte.  Both the SMTP server's
    DATA reader (line_length_limit) and cleanup's bulk
    body path use it.
"""

from __future__ import annotations


def has_long_line(seg: bytes | bytearray, width: int) -> bool:
    """has_long_line - does a line of seg have width or more bytes before its LF?"""
    pos, n = 0, len(seg)
    while n - pos > width:
        j = seg.rfind(b"\n", pos, pos + width)
        if j < 0:
            return True
        pos = j + 1
    return False
