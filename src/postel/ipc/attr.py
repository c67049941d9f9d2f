"""attr - the internal attribute-list protocol

SYNOPSIS
    from postel.ipc.attr import (encode, AttrDecoder, AttrError, AttrList, Limits,
                                 DEFAULT_LIMITS, read_attrs, write_attrs, serve_requests)

    await write_attrs(writer, {"request": "resolve", "address": "user@example.com"})
    reply = await read_attrs(reader, timeout=10)
    reply.get("transport"), reply.get_int("flags", 0), reply.getall("rcpt")

DESCRIPTION
    Postel services talk to each other over UNIX-domain stream sockets in
    $queue_directory/public and $queue_directory/private.  Every request and
    every reply is an attribute list: an ordered sequence of name/value pairs
    (a name may repeat) followed by a terminator.  This module is the only
    writer and reader of that format.

    Wire grammar (ABNF, RFC 5234):

        attr-list  = *attribute LF          ; a lone LF ends the list
        attribute  = name "=" length ":" value ","
        name       = 1*64( %x61-7A / DIGIT / "_" )    ; [a-z0-9_]{1,64}
        length     = "0" / %x31-39 *9DIGIT            ; value size in octets
        value      = *OCTET                           ; exactly `length` octets

    Example, one request:   request=7:resolve,address=16:user@example.com,\\n

    Values are binary-safe and are never escaped: the length prefix says how
    many octets follow, so message content of any size travels with a fixed
    overhead of a dozen bytes, and the reader slices it out with no per-line
    work.  Text values are UTF-8 (errors="surrogateescape" both ways, so
    8-bit garbage from the network survives a round trip unchanged); integers
    are decimal text.

    Large content may be sent as one big value (the reader must then raise
    Limits.max_value, e.g. to message_size_limit plus slack) or as a stream
    of chunks: consecutive lists each holding one "data" attribute of at most
    CHUNK_SIZE octets, ended by a list holding "eof" (see write_chunks() and
    read_chunks()).  The chunked form keeps every single list small.

    Hard limits (class Limits) are enforced while bytes arrive, before a value
    is buffered: name length, value length, attributes per list and octets
    per list.  Any violation, and any byte that does not fit the grammar,
    raises AttrError, whose message names the problem, the attribute, and the
    stream offset.  A decoder that raised stays failed: the stream position
    is lost, so the caller must close the connection.

    AttrDecoder is sans-IO (bytes in, lists out).  read_attrs() drives one
    decoder per StreamReader (kept on the reader), so bytes read ahead of one
    list are kept for the next call; once read_attrs() has been used on a
    stream, only read_attrs() may read from it.

    serve_requests() is the server side loop: read a request, call the
    handler, write its reply, until the client closes or goes idle.

DIAGNOSTICS
    AttrError for malformed input or a limit exceeded; EOFError from
    read_attrs() on a clean end of stream before any byte of a list;
    TimeoutError (asyncio.TimeoutError) when the caller's timeout expires;
    ConnectionError from the transport as it comes (a reset peer).
    TypeError/ValueError from encode() for a caller's bug (bad name or type).
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass

from postel import lazy_import

# asyncio only when a coroutine runs: a command that merely decodes (postqueue)
# does not pay its import.
asyncio = lazy_import("asyncio", globals())

__all__ = [
    "AttrError", "Limits", "DEFAULT_LIMITS", "AttrList", "AttrDecoder", "encode",
    "read_attrs", "write_attrs", "serve_requests", "write_chunks", "read_chunks",
    "CHUNK_SIZE", "Attrs", "wait_coarse",
]

# Value types encode() accepts.  bool is written as 1/0.
Value = str | bytes | bytearray | memoryview | int
# Attrs (what encode() takes: dict, list, tuple or AttrList) follows AttrList.

CHUNK_SIZE = 64 * 1024          # largest "data" value write_chunks() sends
_LF = 0x0A
_COMMA = 0x2C
_NAME_RE = re.compile(r"[a-z0-9_]{1,64}\Z")
_NAME_BYTES = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789_")
_DIGITS = frozenset(b"0123456789")
_MAX_LEN_DIGITS = 10


class AttrError(Exception):
    """AttrError - malformed attribute list, or a limit exceeded."""


@dataclass(slots=True, frozen=True)
class Limits:
    """Limits - hard limits one decoder enforces on each attribute list."""

    max_name: int = 64              # octets in a name (the grammar allows <= 64)
    max_value: int = 1024 * 1024    # octets in one value
    max_count: int = 1024           # attributes in one list
    max_total: int = 4 * 1024 * 1024  # octets in one list, framing included


DEFAULT_LIMITS = Limits()


class AttrList:
    """AttrList - one decoded attribute list: an ordered multi-valued mapping."""

    __slots__ = ("_items", "_first")

    def __init__(self, items: Iterable[tuple[str, bytes]] = ()) -> None:
        self._items: list[tuple[str, bytes]] = list(items)
        self._first: dict[str, bytes] | None = None

    def _index(self) -> dict[str, bytes]:
        """_index - name -> first value, built on first use."""
        first = self._first
        if first is None:
            first = self._first = dict(reversed(self._items))
        return first

    def get(self, name: str, default: str | None = None) -> str | None:
        """get - the first value of name as text, or default."""
        first = self._first
        if first is None:
            first = self._first = dict(reversed(self._items))
        v = first.get(name)
        if v is None:
            return default
        return v.decode("utf-8", "surrogateescape")

    def get_bytes(self, name: str, default: bytes | None = None) -> bytes | None:
        """get_bytes - the first value of name as bytes, or default."""
        first = self._first
        if first is None:
            first = self._first = dict(reversed(self._items))
        return first.get(name, default)

    def get_int(self, name: str, default: int | None = None) -> int | None:
        """get_int - the first value of name as an integer; AttrError if not one."""
        v = self._index().get(name)
        if v is None:
            return default
        try:
            # int() would accept " 1", "1_0" and "+1": require plain digits.
            body = v[1:] if v[:1] == b"-" else v
            if not body.isdigit():
                raise ValueError
            return int(v)
        except ValueError:
            raise AttrError(f"attribute {name}: bad integer value {v[:40]!r}") from None

    def getall(self, name: str) -> list[bytes]:
        """getall - every value of name, in order, as bytes."""
        return [v for n, v in self._items if n == name]

    def items(self) -> list[tuple[str, bytes]]:
        """items - all (name, value) pairs in wire order."""
        return list(self._items)

    def names(self) -> list[str]:
        """names - all names in wire order (repeats included)."""
        return [n for n, _ in self._items]

    def as_dict(self) -> dict[str, str]:
        """as_dict - name -> first value as text (for logging and tests)."""
        return {n: v.decode("utf-8", "surrogateescape") for n, v in self._index().items()}

    def __contains__(self, name: object) -> bool:
        return name in self._index()

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[tuple[str, bytes]]:
        return iter(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, AttrList):
            return self._items == other._items
        return NotImplemented

    def __repr__(self) -> str:
        return f"AttrList({self._items!r})"


_new_list = AttrList.__new__      # the decoder fills the slots itself


# ---------------------------------------------------------------- encoding

# name -> b"name=", so that each name is checked once per process.  Bounded:
# names come from our own code, but a proxy could pass peers' names through.
_PREFIX: dict[str, bytes] = {}


def _prefix(name: str) -> bytes:
    """_prefix - validated b"name=" for an attribute name."""
    p = _PREFIX.get(name)
    if p is None:
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise ValueError(f"bad attribute name {name!r}: want [a-z0-9_]{{1,64}}")
        p = name.encode("ascii") + b"="
        if len(_PREFIX) < 4096:
            _PREFIX[name] = p
    return p


def _value_bytes(name: str, value: object) -> bytes:
    """_value_bytes - the wire form of one value."""
    t = type(value)
    if t is bytes:
        return value  # type: ignore[return-value]
    if t is str:
        return value.encode("utf-8", "surrogateescape")  # type: ignore[union-attr]
    if t is bool:
        return b"1" if value else b"0"
    if t is int:
        return b"%d" % value  # type: ignore[str-format]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    if isinstance(value, int):
        return b"%d" % int(value)
    raise TypeError(f"attribute {name}: cannot encode value of type {t.__name__}")


# What encode() and write_attrs() take (PEP 604 union: no typing import at start-up).
Attrs = dict | list | tuple | AttrList


def _pairs(attrs: Attrs) -> Iterable:
    """_pairs - (name, value) pairs of a dict, AttrList or sequence of pairs."""
    if isinstance(attrs, dict):
        return attrs.items()
    if isinstance(attrs, AttrList):
        return attrs._items
    if isinstance(attrs, (list, tuple)):
        return attrs
    return list(attrs)          # an iterator: encode() may walk the pairs twice


# name -> "name=" for the text fast path of encode() (names checked by _prefix).
_TEXT_PREFIX: dict[str, str] = {}


def _text_prefix(name: str) -> str:
    """_text_prefix - validated "name=" for an attribute name."""
    p = _prefix(name).decode("ascii")
    if len(_TEXT_PREFIX) < 4096:
        _TEXT_PREFIX[name] = p
    return p


def _encode_text(pairs: Iterable) -> bytes | None:
    """_encode_text - the wire form when every value is ASCII text or an int, else None.

    Requests and replies are mostly short ASCII strings: for those the
    length of the text is the length in octets, so the whole list is built
    as one str and encoded once.
    """
    parts: list[str] = []
    append = parts.append
    get = _TEXT_PREFIX.get
    for name, value in pairs:
        t = type(value)
        if t is str:
            if not value.isascii():
                return None
        elif t is int:
            value = str(value)
        elif t is list or t is tuple:           # a repeated name
            p = get(name) or _text_prefix(name)
            for v in value:
                tv = type(v)
                if tv is int:
                    v = str(v)
                elif tv is not str or not v.isascii():
                    return None
                append(f"{p}{len(v)}:{v},")
            continue
        else:
            return None
        append(f"{get(name) or _text_prefix(name)}{len(value)}:{value},")
    append("\n")
    return "".join(parts).encode("ascii")


def encode(attrs: Attrs) -> bytes:
    """encode - one attribute list, terminator included, as bytes.

    attrs is a dict (a list or tuple value there means a repeated name), an
    AttrList, or a sequence of (name, value) pairs.
    """
    pairs = _pairs(attrs)
    wire = _encode_text(pairs)
    if wire is not None:
        return wire
    out: list[bytes] = []
    extend = out.extend
    prefix_get = _PREFIX.get
    for name, value in pairs:
        t = type(value)
        # The common types inline; values are never copied into a temporary.
        if t is str:
            b = value.encode("utf-8", "surrogateescape")
        elif t is bytes:
            b = value
        elif t is list or t is tuple:
            p = _prefix(name)
            for v in value:
                b = _value_bytes(name, v)
                extend((p, str(len(b)).encode(), b":", b, b","))
            continue
        else:
            b = _value_bytes(name, value)
        extend((prefix_get(name) or _prefix(name), str(len(b)).encode(), b":", b, b","))
    out.append(b"\n")
    return b"".join(out)


# ---------------------------------------------------------------- decoding

# name bytes -> str, shared by all decoders; bounded against hostile peers.
_NAMES: dict[bytes, str] = {}


def _name_str(nb: bytes) -> str:
    """_name_str - the (cached) text form of a wire name."""
    s = _NAMES.get(nb)
    if s is None:
        s = nb.decode("ascii")
        if len(_NAMES) < 4096:
            _NAMES[nb] = s
    return s


_HEAD_CACHE: dict[int, re.Pattern[bytes]] = {}


def _head_re(max_name: int) -> re.Pattern[bytes]:
    """_head_re - the compiled `name=length:` pattern for a name limit."""
    r = _HEAD_CACHE.get(max_name)
    if r is None:
        r = re.compile(rb"([a-z0-9_]{1,%d})=(0|[1-9][0-9]{0,%d}):"
                       % (max_name, _MAX_LEN_DIGITS - 1))
        _HEAD_CACHE[max_name] = r
    return r


# Heads seen before: b"name=length:" -> (name, length), one table per name
# limit.  A head is the same bytes in every request of a kind ("request=4:",
# "status=1:", "rcpt=16:"), and a table look-up costs half of a regex match
# plus taking the groups apart.  Only heads the regex accepted are stored, so
# a hit is exactly a valid head; bounded against hostile peers (a head not
# stored is parsed with the regex as before).
_HEAD_TABLES: dict[int, dict[bytes, tuple[str, int]]] = {}
_MAX_HEADS = 4096


def _heads_for(max_name: int) -> dict[bytes, tuple[str, int]]:
    """_heads_for - the table of known heads for a name limit."""
    t = _HEAD_TABLES.get(max_name)
    if t is None:
        t = _HEAD_TABLES[max_name] = {}
    return t


class AttrDecoder:
    """AttrDecoder - incremental sans-IO decoder: bytes in, AttrLists out."""

    __slots__ = ("limits", "_buf", "_pos", "_chunks", "_avail", "_need",
                 "_items", "_total", "_offset", "_error", "_head", "_heads")

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        if not 1 <= limits.max_name <= 64:
            raise ValueError("Limits.max_name must be within 1..64")
        self.limits = limits
        self._head = _head_re(limits.max_name)
        self._heads = _heads_for(limits.max_name)
        self._buf = b""            # bytes being parsed
        self._pos = 0              # parse position in _buf
        self._chunks: list[bytes] = []  # data fed while waiting for _need octets
        self._avail = 0            # len(_buf) - _pos + sum(len(_chunks))
        self._need = 1             # octets from _pos needed before parsing resumes
        self._items: list[tuple[str, bytes]] = []  # the list being received
        self._total = 0            # octets of the list being received
        self._offset = 0           # stream offset of _buf[0]
        self._error: str | None = None

    def set_limits(self, limits: Limits) -> None:
        """set_limits - apply other limits from the next attribute parsed on."""
        if limits is not self.limits:
            if not 1 <= limits.max_name <= 64:
                raise ValueError("Limits.max_name must be within 1..64")
            self.limits = limits
            self._head = _head_re(limits.max_name)
            self._heads = _heads_for(limits.max_name)

    def feed(self, data: bytes) -> list[AttrList]:
        """feed - add bytes; return every attribute list they complete."""
        self.append(data)
        out = []
        while (lst := self.next_list()) is not None:
            out.append(lst)
        return out

    def append(self, data: bytes) -> None:
        """append - add bytes without parsing (see next_list)."""
        if self._error is not None:
            raise AttrError(self._error)
        if data:
            self._chunks.append(bytes(data))
            self._avail += len(data)

    def pending(self) -> bool:
        """pending - true when part of a list has been received."""
        return self._avail > 0 or bool(self._items)

    def buffered(self) -> int:
        """buffered - octets received but not yet returned in a list."""
        return self._avail + self._total

    def eof(self) -> None:
        """eof - the stream ended: AttrError if it ended inside a list."""
        if self._error is not None:
            raise AttrError(self._error)
        if self.pending():
            self._fail(f"truncated attribute list: end of stream after "
                       f"{self.buffered()} octets of an unfinished list")

    def _fail(self, why: str) -> None:
        """_fail - record the error with its stream offset and raise it."""
        self._error = f"{why} (stream offset {self._offset + self._pos})"
        self._chunks = []
        self._buf = b""
        raise AttrError(self._error)

    def next_list(self) -> AttrList | None:
        """next_list - parse and return one complete list, or None for more data."""
        if self._error is not None:
            raise AttrError(self._error)
        if self._avail < self._need:
            return None
        if self._chunks:
            # Join once per wake-up, not per chunk: a large value costs O(n).
            rest = self._buf[self._pos:]
            self._offset += self._pos
            self._buf = rest + b"".join(self._chunks) if rest else b"".join(self._chunks)
            self._chunks = []
            self._pos = 0
        buf = self._buf
        pos = start_pos = self._pos
        n = len(buf)
        items = self._items
        count = len(items)
        limits = self.limits
        max_value, max_count, max_total = limits.max_value, limits.max_count, limits.max_total
        head_max = limits.max_name + _MAX_LEN_DIGITS + 2     # name "=" digits ":"
        total = self._total
        match = self._head.match
        heads = self._heads
        heads_get = heads.get
        find = buf.find
        while pos < n:
            if buf[pos] == _LF:
                pos += 1
                self._avail -= pos - start_pos
                self._pos = pos
                self._total = 0
                self._need = 1
                self._items = []
                lst = _new_list(AttrList)
                lst._items = items
                lst._first = None
                return lst
            # A valid head holds no ":" before its own: the first one ends it.
            colon = find(b":", pos, pos + head_max)
            known = heads_get(buf[pos:colon + 1]) if colon > pos else None
            if known is None:
                m = match(buf, pos)
                if m is None:
                    self._avail -= pos - start_pos
                    self._pos = pos
                    self._total = total
                    self._need = self._diagnose(buf, pos)
                    return None
                name_b, len_b = m.group(1, 2)
                name = _NAMES.get(name_b) or _name_str(name_b)
                vlen = int(len_b)
                start = m.end()
                if len(heads) < _MAX_HEADS:
                    heads[buf[pos:start]] = (name, vlen)
            else:
                name, vlen = known
                start = colon + 1
            end = start + vlen
            size = end + 1 - pos
            if vlen > max_value or count >= max_count or total + size > max_total:
                self._pos = pos
                self._over_limit(name, vlen, count, total + size)
            if end >= n:
                self._need = size
                break
            if buf[end] != _COMMA:
                self._pos = end
                self._fail(f"attribute {name}: expected ',' after "
                           f"{vlen}-octet value, found {buf[end:end + 1]!r}")
            items.append((name, buf[start:end]))
            count += 1
            total += size
            pos = end + 1
        else:
            self._need = 1
        self._avail -= pos - start_pos
        self._pos = pos
        self._total = total
        return None

    def _over_limit(self, name: str, vlen: int, count: int, total: int) -> None:
        """_over_limit - raise for whichever limit the next attribute breaks."""
        limits = self.limits
        if vlen > limits.max_value:
            self._fail(f"attribute {name}: value length {vlen} exceeds limit {limits.max_value}")
        if count >= limits.max_count:
            self._fail(f"attribute list has more than {limits.max_count} attributes")
        self._fail(f"attribute list longer than {limits.max_total} octets (at attribute {name})")

    def _diagnose(self, buf: bytes, pos: int) -> int:
        """_diagnose - why `name=length:` failed to match: raise, or octets needed."""
        limits = self.limits
        n = len(buf)
        i = pos
        while i < n and buf[i] in _NAME_BYTES and i - pos <= limits.max_name:
            i += 1
        nlen = i - pos
        if nlen > limits.max_name:
            self._fail(f"attribute name {buf[pos:pos + 20]!r}... longer than "
                       f"{limits.max_name} octets")
        if i == n:
            return n - pos + 1
        if nlen == 0:
            self._fail(f"bad attribute name: unexpected octet {buf[i:i + 1]!r}")
        name = buf[pos:i].decode()
        if buf[i] != 0x3D:  # "="
            self._fail(f"attribute {name}: bad octet {buf[i:i + 1]!r} in name "
                       f"(want [a-z0-9_] or '=')")
        j = i + 1
        while j < n and buf[j] in _DIGITS and j - i - 1 <= _MAX_LEN_DIGITS:
            j += 1
        dlen = j - i - 1
        if dlen > _MAX_LEN_DIGITS:
            self._fail(f"attribute {name}: value length has more than "
                       f"{_MAX_LEN_DIGITS} digits")
        if dlen > 1 and buf[i + 1] == 0x30:
            self._fail(f"attribute {name}: value length has a leading zero")
        # Check the total so far before waiting for the rest of the header.
        if self._total + (j - pos) > limits.max_total:
            self._fail(f"attribute list longer than {limits.max_total} octets")
        if j == n:
            return n - pos + 1
        if dlen == 0:
            self._fail(f"attribute {name}: missing value length after '='")
        self._fail(f"attribute {name}: expected ':' after value length, "
                   f"found {buf[j:j + 1]!r}")
        raise AssertionError("not reached")  # pragma: no cover


# ---------------------------------------------------------------- stream I/O

_DEC_ATTR = "_postel_attr_decoder"
_DECODERS: weakref.WeakKeyDictionary[asyncio.StreamReader, AttrDecoder] = \
    weakref.WeakKeyDictionary()
_READ_SIZE = 64 * 1024
_MAX_READ = 4 * 1024 * 1024


def _decoder_for(reader: asyncio.StreamReader, limits: Limits) -> AttrDecoder:
    """_decoder_for - the decoder that owns this reader's read-ahead bytes.

    It is kept on the reader itself (a StreamReader takes attributes), so
    finding it is an attribute load instead of a WeakKeyDictionary look-up
    (a Python-level call); readers that refuse attributes use the weak map.
    """
    dec = getattr(reader, _DEC_ATTR, None) or _DECODERS.get(reader)
    if dec is None:
        dec = AttrDecoder(limits)
        try:
            setattr(reader, _DEC_ATTR, dec)
        except AttributeError:
            _DECODERS[reader] = dec
    elif limits is not dec.limits:
        dec.set_limits(limits)
    return dec


async def _read_list(reader: asyncio.StreamReader, dec: AttrDecoder) -> AttrList:
    """_read_list - read until the decoder completes one list (none is buffered)."""
    while True:
        want = min(max(_READ_SIZE, dec._need - dec._avail), _MAX_READ)
        data = await reader.read(want)
        if not data:
            if not dec.pending():
                raise EOFError("end of stream")
            dec.eof()
        dec.append(data)
        lst = dec.next_list()
        if lst is not None:
            return lst


# ---------------------------------------------------------------- deadlines

# asyncio.timeout() costs a Timeout object, a TimerHandle pushed on the
# loop's heap and cancelled again, and two coroutine calls: about 6 us, more
# than decoding a whole request.  Long limits (ipc_timeout 3600s, the
# services' idle limits) need no millisecond precision, so they are checked
# by one periodic watchdog per event loop instead: arming a deadline is an
# object in a set.  A deadline of COARSE_MIN seconds or more fires at most
# COARSE_TICK seconds late; shorter ones use asyncio.timeout().
COARSE_TICK = 1.0
COARSE_MIN = 30.0


class _Deadline:
    """_Deadline - one armed deadline: the task to cancel, and when."""

    __slots__ = ("task", "when", "cancelling", "expired")

    def __init__(self, task: asyncio.Task, when: float) -> None:
        self.task = task
        self.when = when
        self.cancelling = task.cancelling()
        self.expired = False


class _Watchdog:
    """_Watchdog - cancel the tasks whose coarse deadline passed (one per loop)."""

    __slots__ = ("loop", "armed", "handle")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.armed: set[_Deadline] = set()
        self.handle: asyncio.TimerHandle | None = None

    def arm(self, task: asyncio.Task, timeout: float) -> _Deadline:
        """arm - a deadline timeout seconds from now for task."""
        d = _Deadline(task, self.loop.time() + timeout)
        self.armed.add(d)
        if self.handle is None:
            self.handle = self.loop.call_later(COARSE_TICK, self._check)
        return d

    def _check(self) -> None:
        """_check - the periodic tick: expire what is due, re-arm while needed."""
        now = self.loop.time()
        for d in [d for d in self.armed if d.when <= now]:
            self.armed.discard(d)
            d.expired = True
            d.task.cancel()
        self.handle = self.loop.call_later(COARSE_TICK, self._check) if self.armed else None


# The watchdog of the loop that used one last (a process has one loop; a
# loop that is not the last one's gets a new watchdog, the old one keeps
# serving its own loop through its timer).
_WATCHDOG: _Watchdog | None = None


def _watchdog(loop: asyncio.AbstractEventLoop) -> _Watchdog:
    """_watchdog - a watchdog for this loop."""
    global _WATCHDOG
    w = _WATCHDOG
    if w is None or w.loop is not loop:
        w = _WATCHDOG = _Watchdog(loop)
    return w


async def wait_coarse(aw: Awaitable, timeout: float | None):
    """wait_coarse - await aw within timeout seconds (TimeoutError), cheaply.

    Behaves as "async with asyncio.timeout(timeout): return await aw"; a
    limit of COARSE_MIN seconds or more may fire up to COARSE_TICK late.
    """
    if timeout is None:
        return await aw
    if timeout < COARSE_MIN:
        async with asyncio.timeout(timeout):
            return await aw
    loop = asyncio.get_running_loop()
    task = asyncio.current_task(loop)
    if task is None:                # pragma: no cover - awaiting needs a task
        async with asyncio.timeout(timeout):
            return await aw
    w = _WATCHDOG
    if w is None or w.loop is not loop:
        w = _watchdog(loop)
    d = w.arm(task, timeout)
    try:
        return await aw
    except asyncio.CancelledError:
        # As asyncio.timeout: only our own cancellation becomes TimeoutError.
        if d.expired and task.uncancel() <= d.cancelling:
            raise TimeoutError from None
        raise
    finally:
        w.armed.discard(d)


async def read_attrs(reader: asyncio.StreamReader, limits: Limits = DEFAULT_LIMITS,
                     timeout: float | None = None) -> AttrList:
    """read_attrs - read one attribute list from a stream, within timeout seconds."""
    dec = getattr(reader, _DEC_ATTR, None)
    if dec is None or limits is not dec.limits:
        dec = _decoder_for(reader, limits)
    lst = dec.next_list()           # already buffered: no await, no timer
    if lst is not None:
        return lst
    if timeout is None:
        return await _read_list(reader, dec)
    return await wait_coarse(_read_list(reader, dec), timeout)


async def write_attrs(writer: asyncio.StreamWriter, attrs: Attrs) -> None:
    """write_attrs - send one attribute list and wait for the buffer to drain."""
    writer.write(encode(attrs))
    await writer.drain()


Handler = Callable[[AttrList], Awaitable["Attrs | None"]]


async def serve_requests(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                         handler: Handler, *, limits: Limits = DEFAULT_LIMITS,
                         idle_timeout: float | None = None) -> int:
    """serve_requests - answer requests until EOF or idle; return how many.

    Each request is passed to handler; a non-None result is written back as
    the reply.  AttrError propagates (the caller logs it and closes); the
    loop ends quietly on a clean EOF or after idle_timeout seconds without a
    request (Postfix's ipc_idle on the server side).
    """
    served = 0
    while True:
        try:
            request = await read_attrs(reader, limits, idle_timeout)
        except (EOFError, TimeoutError, ConnectionResetError):
            return served
        reply = await handler(request)
        served += 1
        if reply is not None:
            await write_attrs(writer, reply)


async def write_chunks(writer: asyncio.StreamWriter, content: bytes,
                       chunk_size: int = CHUNK_SIZE) -> None:
    """write_chunks - send content as "data" lists and a final "eof" list."""
    parts = []
    mv = memoryview(content)
    for i in range(0, len(content), chunk_size):
        chunk = bytes(mv[i:i + chunk_size])
        parts.append(b"data=%d:%s,\n" % (len(chunk), chunk))
    parts.append(b"eof=0:,\n")
    writer.write(b"".join(parts))
    await writer.drain()


async def read_chunks(reader: asyncio.StreamReader, max_size: int,
                      limits: Limits = DEFAULT_LIMITS,
                      timeout: float | None = None) -> bytes:
    """read_chunks - collect "data" lists up to the "eof" list; AttrError past max_size."""
    parts: list[bytes] = []
    size = 0
    while True:
        lst = await read_attrs(reader, limits, timeout)
        if "eof" in lst:
            return b"".join(parts)
        for v in lst.getall("data"):
            size += len(v)
            if size > max_size:
                raise AttrError(f"chunked content exceeds {max_size} octets")
            parts.append(v)
        if "data" not in lst:
            raise AttrError(f"chunked content: list without data or eof: {lst.names()}")
