"""records - Postel queue file record format

SYNOPSIS
    from postel.queue import records
    records.encode(records.REC_TYPE_FROM, b"user@example.com")
    records.decode_length(buf, pos) -> (length, next_pos)

DESCRIPTION
    A queue file is a sequence of records.  A record is one type byte, the
    payload length as a variable-length integer (7 bits per byte, least
    significant group first, the high bit set on every byte but the last, as
    in Postfix's record(3)), then the payload bytes.  Text payloads are UTF-8
    (addresses and attribute values that were not valid UTF-8 on the wire are
    kept byte for byte with surrogateescape).

    The grammar of a whole file (one record per letter, see the table below):

        file       = size envelope content extracted end
        size       = C                           fixed length, always first
        envelope   = T [F] [W] S *env-info *rcpt-group
        env-info   = A | i | < | Y | unknown-printable
        rcpt-group = *(O | o | n) (R | D)        modifiers precede their R/D
        content    = M *(N | L)                  message header + body lines
        extracted  = X *(A | rcpt-group | unknown-printable)
        end        = E                           empty payload, always last

    Envelope records other than R/D may come in any order after T, but each
    of T F W S i < Y appears at most once, and T and S exactly once.  The
    content segment holds each line of the message without its terminator:
    N is a complete line, L a piece of a longer line that continues in the
    next record (a line longer than the writer's line_length_limit).

    The size record C is written first with zeros and rewritten in place
    when the file is complete (fixed width, so nothing moves).  Its fields:

        VV MMMMMMMMMMMM CCCCCCCCCCCC XXXXXXXXXXXX EEEEEEEEEEEE RRRRRRRRR hhhhhhhh kkkkkkkk

        VV   format version (01)
        M    message size: content bytes counting one LF per line
        C    offset of the M record (start of the content segment)
        X    offset of the X record (start of the extracted segment)
        E    offset just after the E record = the file size
        R    number of recipient records (R and D, both segments)
        h    CRC-32 of the envelope and extracted segments, hex
        k    CRC-32 of the content segment, hex

    A reader checks every one of these, so that a file that was not
    completely written (C still zero, size mismatch, E missing), or that was
    damaged (bad lengths, bad record types, flipped bits: CRC mismatch), is
    always reported as corrupt.  The only bytes that change after the file
    is complete are the mutable ones, which the CRC covers in a normalised
    form: the type byte of a recipient record (R becomes D when the
    recipient is done, see mark_done) and the fixed-width payload of W (the
    next delay-warning time).

    Record type codes are never reused.  Where Postfix gives one letter two
    meanings (L is both a content filter and a partial line), Postel picks a
    different letter for the envelope meaning.  In the envelope and extracted
    segments a reader skips record types it does not know if they are
    printable ASCII (a later version may add them; the CRC still covers
    them); any other byte, or an unknown type in the content segment, is
    corruption.

LIMITS
    MAX_RECORD_LEN     a record payload larger than this is corruption
    RCPT_LIMIT         default maximal number of recipients a reader accepts
    ATTR_COUNT_LIMIT   default maximal number of A records (Postfix's
                       queue_file_attribute_count_limit, 100)
"""

from __future__ import annotations

import re

# Record types.  One table; a code is never reused for another meaning.
REC_TYPE_SIZE = ord("C")         # size record, first in file, fixed width (see above)
REC_TYPE_TIME = ord("T")         # arrival time: "seconds.microseconds"
REC_TYPE_FULL = ord("F")         # sender full name
REC_TYPE_WARN = ord("W")         # next delay warning time, 12 digits, rewritten in place
REC_TYPE_FROM = ord("S")         # envelope sender ("" is the null sender)
REC_TYPE_ATTR = ord("A")         # named attribute: "name=value"
REC_TYPE_DSN_ENVID = ord("i")    # DSN ENVID (RFC 3461 4.4), xtext-decoded
REC_TYPE_DSN_RET = ord("<")      # DSN RET (RFC 3461 4.3): decimal DSN_RET_* value
REC_TYPE_FILT = ord("Y")         # content_filter "transport:nexthop" (Postfix uses L)
REC_TYPE_ORCP = ord("O")         # original recipient, before aliasing/rewriting
REC_TYPE_DSN_ORCPT = ord("o")    # DSN ORCPT (RFC 3461 4.2): "addr-type;address"
REC_TYPE_DSN_NOTIFY = ord("n")   # DSN NOTIFY (RFC 3461 4.1): decimal DSN_NOTIFY_* mask
REC_TYPE_RCPT = ord("R")         # recipient, still to be delivered
REC_TYPE_DONE = ord("D")         # recipient, done (an R whose type byte was rewritten)
REC_TYPE_MESG = ord("M")         # start of message content, empty payload
REC_TYPE_NORM = ord("N")         # one complete content line, no terminator
REC_TYPE_CONT = ord("L")         # piece of a long content line, continued in next record
REC_TYPE_XTRA = ord("X")         # start of extracted segment, empty payload
REC_TYPE_END = ord("E")          # end of file, empty payload

REC_TYPE_NAMES: dict[int, str] = {
    REC_TYPE_SIZE: "message_size", REC_TYPE_TIME: "message_arrival_time",
    REC_TYPE_FULL: "sender_fullname", REC_TYPE_WARN: "delay_warning_time",
    REC_TYPE_FROM: "sender", REC_TYPE_ATTR: "named_attribute",
    REC_TYPE_DSN_ENVID: "dsn_envelope_id", REC_TYPE_DSN_RET: "dsn_return",
    REC_TYPE_FILT: "content_filter", REC_TYPE_ORCP: "original_recipient",
    REC_TYPE_DSN_ORCPT: "dsn_orig_rcpt", REC_TYPE_DSN_NOTIFY: "dsn_notify_flags",
    REC_TYPE_RCPT: "recipient", REC_TYPE_DONE: "done_recipient",
    REC_TYPE_MESG: "message_content", REC_TYPE_NORM: "regular_text",
    REC_TYPE_CONT: "partial_text", REC_TYPE_XTRA: "extracted_info",
    REC_TYPE_END: "message_end",
}

# Records that may appear at most once in the envelope segment.
ENVELOPE_ONCE = frozenset({REC_TYPE_TIME, REC_TYPE_FULL, REC_TYPE_WARN, REC_TYPE_FROM,
                           REC_TYPE_DSN_ENVID, REC_TYPE_DSN_RET, REC_TYPE_FILT})
RCPT_MODIFIERS = frozenset({REC_TYPE_ORCP, REC_TYPE_DSN_ORCPT, REC_TYPE_DSN_NOTIFY})
RCPT_TYPES = frozenset({REC_TYPE_RCPT, REC_TYPE_DONE})
CONTENT_TYPES = frozenset({REC_TYPE_NORM, REC_TYPE_CONT})
# Known codes; anything else is "unknown" (skipped in envelope/extracted if printable).
KNOWN_TYPES = frozenset(REC_TYPE_NAMES)

# DSN values, as Postfix numbers them.
DSN_NOTIFY_NEVER = 1     # RFC 3461 4.1 NOTIFY=NEVER
DSN_NOTIFY_SUCCESS = 2   # NOTIFY=SUCCESS
DSN_NOTIFY_FAILURE = 4   # NOTIFY=FAILURE
DSN_NOTIFY_DELAY = 8     # NOTIFY=DELAY
DSN_RET_FULL = 1         # RFC 3461 4.3 RET=FULL
DSN_RET_HDRS = 2         # RET=HDRS

# Hard limits.
MAX_RECORD_LEN = 1 << 20          # 1 MiB: longer is corruption
MAX_LENGTH_BYTES = 4              # 7 * 4 = 28 bits > MAX_RECORD_LEN
RCPT_LIMIT = 1_000_000
ATTR_COUNT_LIMIT = 100

# The size record.
SIZE_VERSION = 1
_SIZE_FMT = "{:02d} {:012d} {:012d} {:012d} {:012d} {:09d} {:08x} {:08x}"
_SIZE_RE = re.compile(rb"(\d{2}) (\d{12}) (\d{12}) (\d{12}) (\d{12}) (\d{9}) "
                      rb"([0-9a-f]{8}) ([0-9a-f]{8})\Z")
SIZE_PAYLOAD_LEN = len(_SIZE_FMT.format(0, 0, 0, 0, 0, 0, 0, 0))
WARN_WIDTH = 12


def encode_length(length: int) -> bytes:
    """encode_length - a payload length as 7-bit groups, low group first."""
    out = bytearray()
    while True:
        byte = length & 0x7F
        length >>= 7
        if length:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_length(buf: bytes | bytearray | memoryview, pos: int) -> tuple[int, int]:
    """decode_length - (length, position after it); ValueError on a bad encoding."""
    length = 0
    shift = 0
    for i in range(MAX_LENGTH_BYTES):
        if pos + i >= len(buf):
            raise ValueError("truncated record length")
        byte = buf[pos + i]
        length |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if byte == 0 and i > 0:
                raise ValueError("non-canonical record length")
            if length > MAX_RECORD_LEN:
                raise ValueError(f"record length {length} exceeds limit {MAX_RECORD_LEN}")
            return length, pos + i + 1
        shift += 7
    raise ValueError("record length field too long")


def encode(rec_type: int, payload: bytes) -> bytes:
    """encode - one complete record."""
    if len(payload) > MAX_RECORD_LEN:
        raise ValueError(f"record payload of {len(payload)} bytes exceeds {MAX_RECORD_LEN}")
    return bytes((rec_type,)) + encode_length(len(payload)) + payload


def format_size(message_size: int, content_offset: int, extracted_offset: int,
                end_offset: int, rcpt_count: int, meta_crc: int, content_crc: int) -> bytes:
    """format_size - the fixed-width payload of the C record."""
    return _SIZE_FMT.format(SIZE_VERSION, message_size, content_offset, extracted_offset,
                            end_offset, rcpt_count, meta_crc, content_crc).encode("ascii")


def parse_size(payload: bytes) -> tuple[int, int, int, int, int, int, int]:
    """parse_size - (message_size, content_off, extracted_off, end_off, rcpts, meta_crc,
    content_crc); ValueError if malformed."""
    m = _SIZE_RE.match(payload)
    if m is None:
        raise ValueError("malformed size record")
    if int(m.group(1)) != SIZE_VERSION:
        raise ValueError(f"unsupported queue file version {int(m.group(1))}")
    return (int(m.group(2)), int(m.group(3)), int(m.group(4)), int(m.group(5)),
            int(m.group(6)), int(m.group(7), 16), int(m.group(8), 16))


SIZE_RECORD_LEN = len(encode(REC_TYPE_SIZE, b"0" * SIZE_PAYLOAD_LEN))


def text(value: str) -> bytes:
    """text - a str payload as bytes (UTF-8, surrogateescape for raw bytes)."""
    return value.encode("utf-8", "surrogateescape")


def untext(payload: bytes) -> str:
    """untext - the inverse of text()."""
    return payload.decode("utf-8", "surrogateescape")


def type_name(rec_type: int) -> str:
    """type_name - a printable name for a record type (for postcat and diagnostics)."""
    name = REC_TYPE_NAMES.get(rec_type)
    if name:
        return name
    if is_printable(rec_type):
        return f"unknown type {chr(rec_type)!r}"
    return f"unknown type 0x{rec_type:02x}"


def is_printable(rec_type: int) -> bool:
    """is_printable - may an unknown record of this type be skipped (envelope only)?"""
    return 32 < rec_type < 127
