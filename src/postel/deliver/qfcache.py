"""qfcache - delivery agents' queue file reader that remembers big envelopes

SYNOPSIS
    from postel.deliver.qfcache import CachingReader
    qf = CachingReader(path)        # a QueueFileReader

DESCRIPTION
    qmgr(8) splits a message with many recipients into one delivery
    request per destination and per $TRANSPORT_destination_recipient_limit
    recipients: one message to 1000 recipients in 50 domains is 50
    requests, and every one opens the same queue file.  The reader checks
    and parses the whole envelope at each open (all 1000 recipient
    records: about 4 ms of Python each time, 50 times).

    CachingReader is a QueueFileReader that keeps the parse of envelopes
    with at least MIN_RECIPIENTS recipients (the last CACHE_SIZE files of
    this process).  At the next open of the same path it compares the
    envelope bytes just read with the cached ones, the mutable bytes
    excepted (the R/D type byte of each recipient record, which agents
    flip as they mark recipients done, and the delay warning time that
    qmgr rewrites).  When they are equal the parse is a copy of the
    cached one, with the done flags and the warning time read from the
    new bytes; the checksum is the same because it is computed over the
    same normalised bytes.  Any other difference (another file at that
    path, a corrupt byte, a mutable byte that is neither R nor D) takes
    the full parse, which reports corruption as before.  The size record,
    the content and the extracted segment are checked at every open as
    before.

SEE ALSO
    postel.queue.file (QueueFileReader), postel.deliver.agent
"""

from __future__ import annotations

from collections import OrderedDict
from operator import itemgetter

from postel.queue import Envelope, QueueFileReader
from postel.queue import records as rec

MIN_RECIPIENTS = 20         # smaller envelopes parse fast enough; not cached
CACHE_SIZE = 8              # files remembered per process
MAX_ENVELOPE = 1 << 20      # bytes; a bigger envelope is not kept in memory

_R, _D = ord("R"), ord("D")
_WARN = rec.WARN_WIDTH


class _Entry:
    """_Entry - the parse of one envelope segment and what it was parsed from."""

    __slots__ = ("data", "base", "limits", "rels", "getter", "vals", "warn_rel", "env",
                 "objs", "by_offset", "crc")

    def __init__(self, data: bytes, base: int, limits: tuple, env: Envelope, warn_offset: int,
                 crc: int) -> None:
        self.data = data
        self.base = base
        self.limits = limits
        self.objs = list(env.recipients)     # shared by the readers of this file
        self.by_offset = {r.offset: r for r in self.objs}
        self.rels = [r.offset - base for r in self.objs]
        self.getter = itemgetter(*self.rels)
        self.vals = bytes(self.getter(data))
        self.warn_rel = warn_offset - base if warn_offset >= 0 else -1
        self.env = (env.sender, env.time, dict(env.attrs), env.dsn_envid, env.dsn_ret,
                    env.full_name, env.content_filter)
        self.crc = crc

    def changed(self, vals: bytes) -> list[int]:
        """changed - the indexes of the recipients whose R/D byte is not the cached one."""
        if vals == self.vals:
            return []
        return [i for i, (v, o) in enumerate(zip(vals, self.vals, strict=True)) if v != o]

    def same(self, data: bytes, changed: list[int]) -> bool:
        """same - are data the cached bytes but for R/D bytes and the warning time?"""
        w = self.warn_rel
        if not changed and (w < 0 or data[w:w + _WARN] == self.data[w:w + _WARN]):
            return data == self.data
        buf = bytearray(data)
        old, rels = self.vals, self.rels
        for i in changed:
            buf[rels[i]] = old[i]
        if w >= 0:
            buf[w:w + _WARN] = self.data[w:w + _WARN]
        return buf == self.data


class CachingReader(QueueFileReader):
    """A QueueFileReader that reuses the parse of a big envelope it read before.

    On a cache hit the Recipient objects are those of the cached parse,
    shared by every reader of that file in this process (the lists are the
    reader's own).  Their done flags are set from the bytes read at each
    open; mark_done() sets one after the D byte is written, so a reader may
    see a recipient that another delivery of this process finished after
    it opened the file as done: the file says so too."""

    _cache: OrderedDict[str, _Entry] = OrderedDict()

    def _parse_envelope(self, data: bytes, base: int) -> int:
        """_parse_envelope - the cached parse when only mutable bytes changed, else parse."""
        cache = self._cache
        ent = cache.get(self.path)
        limits = (self.max_recipients, self.max_attrs)
        if ent is not None and ent.base == base and ent.limits == limits \
                and len(data) == len(ent.data):
            vals = bytes(ent.getter(data))
            if not vals.translate(None, b"RD") and self._warn_ok(data, ent.warn_rel):
                changed = ent.changed(vals)
                if ent.same(data, changed):
                    cache.move_to_end(self.path)
                    return self._restore(ent, data, vals, changed)
        crc = super()._parse_envelope(data, base)
        env = self.envelope
        if len(env.recipients) >= MIN_RECIPIENTS and len(data) <= MAX_ENVELOPE:
            cache[self.path] = _Entry(data, base, limits, env, self.warn_offset, crc)
            cache.move_to_end(self.path)
            while len(cache) > CACHE_SIZE:
                cache.popitem(last=False)
        else:
            cache.pop(self.path, None)
        return crc

    def _parse_extracted(self, data: bytes, base: int, crc: int) -> int:
        """_parse_extracted - as QueueFileReader's; recipients found there void the shared map."""
        crc = super()._parse_extracted(data, base, crc)
        if self._by_offset is not None and len(self.recipients) != len(self.envelope.recipients):
            self._by_offset = None          # mark_done builds this reader's own
        return crc

    @staticmethod
    def _warn_ok(data: bytes, w: int) -> bool:
        """_warn_ok - the delay warning time (when there is one) is 12 digits."""
        return w < 0 or data[w:w + _WARN].isdigit()

    def _restore(self, ent: _Entry, data: bytes, vals: bytes, changed: list[int]) -> int:
        """_restore - envelope, recipients and warning offset from the cache entry."""
        env = self.envelope
        (env.sender, env.time, attrs, env.dsn_envid, env.dsn_ret, env.full_name,
         env.content_filter) = ent.env
        env.attrs = dict(attrs)
        objs = ent.objs
        for i in changed:                   # done flags as the file has them now
            objs[i].done = vals[i] == _D
        env.recipients = list(objs)
        self.recipients.extend(objs)
        self._by_offset = ent.by_offset     # offset -> Recipient, for mark_done
        w = ent.warn_rel
        if w >= 0:
            self.warn_offset = ent.base + w
            env.warn_time = int(data[w:w + _WARN])
        return ent.crc


def forget() -> None:
    """forget - drop every cached envelope (tests)."""
    CachingReader._cache.clear()
