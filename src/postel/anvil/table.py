"""table - anvil's per-client counters (no I/O, the clock is passed in)

SYNOPSIS
    from postel.anvil.table import AnvilTable, Counts
    table = AnvilTable(rate_time_unit=60.0)
    counts = table.connect("smtp:192.0.2.1", now)      # Counts(count=1, rate=1)
    table.disconnect("smtp:192.0.2.1", now)
    rate = table.event("smtp:192.0.2.1", "message", now)

DESCRIPTION
    One entry per "service:address" ident, as in Postfix's anvil(8).  An
    entry holds the number of simultaneous connections and, for each rate
    kind (connect, message, rcpt, newtls, auth), the number of events seen
    in the current time unit.  A time unit starts at the first event after
    the previous unit has ended (anvil_rate_time_unit long); a rate is
    therefore "events in the last unit or less", as Postfix counts it.

    An entry whose connection count is zero and whose rate window has ended
    is removed by expire(), so memory follows the number of active clients.

    The table also keeps the statistics anvil logs: the largest connection
    count and connection/message/recipient/newtls/auth rate seen, with the
    ident and time, and the largest table size.
"""

from __future__ import annotations

from dataclasses import dataclass, field

RATE_KINDS = ("connect", "message", "rcpt", "newtls", "auth")


@dataclass(slots=True)
class Counts:
    """The answer to a connect request: concurrent count and connection rate."""

    count: int
    rate: int


@dataclass(slots=True)
class Entry:
    """One client ident: concurrency and per-kind rates in the current unit."""

    count: int = 0
    start: float = 0.0
    rates: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class Peak:
    """A maximum value seen, with the ident and time it was seen."""

    value: int = 0
    ident: str = ""
    when: float = 0.0


class AnvilTable:
    """AnvilTable - counters for every client ident."""

    def __init__(self, rate_time_unit: float = 60.0) -> None:
        self.unit = max(float(rate_time_unit), 1e-3)
        self.entries: dict[str, Entry] = {}
        self.peaks: dict[str, Peak] = {}
        self.max_size = Peak()

    def _entry(self, ident: str, now: float) -> Entry:
        """_entry - the entry for ident, with its rate window brought up to date."""
        ent = self.entries.get(ident)
        if ent is None:
            ent = self.entries[ident] = Entry(start=now)
            if len(self.entries) > self.max_size.value:
                self.max_size = Peak(len(self.entries), "", now)
        elif now - ent.start >= self.unit:
            ent.start = now
            ent.rates.clear()
        return ent

    def _peak(self, what: str, value: int, ident: str, now: float) -> None:
        """_peak - remember a new maximum for the statistics."""
        peak = self.peaks.get(what)
        if peak is None or value > peak.value:
            self.peaks[what] = Peak(value, ident, now)

    def _bump(self, ident: str, kind: str, now: float, n: int = 1) -> tuple[Entry, int]:
        """_bump - count n events of one kind; return the entry and the new rate."""
        ent = self._entry(ident, now)
        rate = ent.rates.get(kind, 0) + n
        ent.rates[kind] = rate
        self._peak(kind, rate, ident, now)
        return ent, rate

    def connect(self, ident: str, now: float) -> Counts:
        """connect - one more connection from ident; count and connection rate."""
        ent, rate = self._bump(ident, "connect", now)
        ent.count += 1
        self._peak("count", ent.count, ident, now)
        return Counts(ent.count, rate)

    def disconnect(self, ident: str, now: float) -> int:
        """disconnect - one connection from ident has ended; the remaining count."""
        ent = self.entries.get(ident)
        if ent is None:
            return 0
        ent.count = max(0, ent.count - 1)
        return ent.count

    def event(self, ident: str, kind: str, now: float, n: int = 1) -> int:
        """event - n message/rcpt/newtls/auth events from ident; the rate now."""
        if kind not in RATE_KINDS:
            raise ValueError(f"unknown rate kind {kind!r}")
        return self._bump(ident, kind, now, n)[1]

    def rate(self, ident: str, kind: str, now: float) -> int:
        """rate - the current rate of one kind without counting an event."""
        ent = self.entries.get(ident)
        if ent is None or now - ent.start >= self.unit:
            return 0
        return ent.rates.get(kind, 0)

    def lookup(self, ident: str, now: float) -> dict[str, int]:
        """lookup - every counter of ident (zeros when unknown)."""
        ent = self.entries.get(ident)
        out = {"count": ent.count if ent else 0}
        for kind in RATE_KINDS:
            out[f"{kind}_rate"] = self.rate(ident, kind, now)
        return out

    def expire(self, now: float) -> int:
        """expire - drop idle entries whose rate window has ended; how many."""
        gone = [i for i, e in self.entries.items() if e.count == 0 and now - e.start >= self.unit]
        for ident in gone:
            del self.entries[ident]
        return len(gone)

    def take_peaks(self) -> tuple[dict[str, Peak], Peak]:
        """take_peaks - the statistics since the last call, then start afresh."""
        peaks, size = self.peaks, self.max_size
        self.peaks = {}
        self.max_size = Peak(len(self.entries), "", size.when) if self.entries else Peak()
        return peaks, size
