"""sched - the queue manager's scheduler, without I/O

SYNOPSIS
    from postel.qmgr.sched import Scheduler, TransportParams, Msg

    s = Scheduler(lambda name: TransportParams(name))
    m = Msg("QID")
    s.add(m, [("smtp", "example.com", rcpt), ...], now)
    for job in s.jobs(now):              # what to send to the agents now
        ... send job.rcpts of job.msg to transport job.transport.name, nexthop job.nexthop
        s.done(job, ["sent", "deferred"], site_dead=False, reason="", now=later)
    s.take_defers()      # recipients qmgr itself defers (dead destination/transport)
    s.take_finished()    # messages whose recipients all have an outcome
    s.next_event(now)    # when a timer (dead site, rate delay) needs a look

DESCRIPTION
    A sans-IO model of Postfix's queue manager scheduler (qmgr(8),
    SCHEDULER_README), so that it can be tested without sockets or clocks;
    the service shell (service.py) feeds it messages and agent replies.

    Recipients of a message are grouped by (transport, destination); a
    destination is the next-hop, or the recipient itself when the
    transport's destination_recipient_limit is 1 (as Postfix does).  Each
    group is cut into entries of at most destination_recipient_limit
    recipients; an entry becomes one delivery request.  Entries wait in the
    destination's queue in arrival order.

    Concurrency (per destination):
      * the window starts at initial_destination_concurrency and never
        exceeds destination_concurrency_limit (0: no limit);
      * positive feedback: after a delivery request completed without
        site_dead, success += positive_feedback; each whole unit of
        success opens the window by one;
      * negative feedback: after a request with site_dead (the site could
        not be reached), failure accumulates negative_feedback and each
        whole unit closes the window by one (never below 1); and
        fail_cohorts += 1/window.  When fail_cohorts reaches
        destination_concurrency_failed_cohort_limit (0: never) the
        destination is dead: its waiting recipients are deferred by qmgr
        ("delivery temporarily suspended: REASON"), new ones too, until
        minimal_backoff_time has passed; then the window restarts at the
        initial concurrency.  A positive feedback clears fail_cohorts.
      * feedback values are "N", "1/N" or "1/concurrency" (divided by the
        current window), as in Postfix;
      * destination_rate_delay > 0: window 1, and at least that long
        between two deliveries to the destination.

    Per transport: at most process_limit requests in flight (the agents'
    master.cf process limit).  A transport whose agent cannot be reached
    is dead for transport_retry_time: its recipients are deferred
    ("delivery temporarily suspended: ...").

    Selection is round robin: across transports, one request each in
    turn; within a transport, across its destinations with work.  Within
    a destination, first in, first out.

    A message is finished when every recipient it handed to the scheduler
    has an outcome; Msg.deferred counts the deferred ones.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

__all__ = ["Scheduler", "TransportParams", "Msg", "Job", "DestQueue", "Transport",
           "QmgrDefer", "feedback_value"]

SENT, BOUNCED, DEFERRED = "sent", "bounced", "deferred"


def feedback_value(spec: str, window: int) -> float:
    """feedback_value - one feedback amount: "N", "1/N" or "1/concurrency"."""
    spec = spec.strip().replace(" ", "")
    if "/" in spec:
        num, den = spec.split("/", 1)
        n = float(num or 1)
        if den == "concurrency":
            return n / max(1, window)
        return n / max(1.0, float(den))
    return float(spec or 1)


@dataclass(slots=True)
class TransportParams:
    """The scheduling parameters of one transport (master.cf service)."""

    name: str
    dest_concurrency_limit: int = 20
    initial_concurrency: int = 5
    recipient_limit: int = 50
    positive_feedback: str = "1"
    negative_feedback: str = "1"
    failed_cohort_limit: int = 1
    rate_delay: float = 0.0
    process_limit: int = 100
    min_backoff: float = 300.0
    retry_time: float = 60.0


@dataclass(slots=True, eq=False)
class Msg:
    """A message in the active queue, as the scheduler sees it."""

    qid: str
    pending: int = 0                # recipients without an outcome
    deferred: int = 0               # recipients deferred in this pass
    data: object = None             # the shell's own record


@dataclass(slots=True, eq=False)
class Entry:
    """Recipients of one message for one destination (one delivery request)."""

    msg: Msg
    nexthop: str
    rcpts: list


@dataclass(slots=True, eq=False)
class DestQueue:
    """One destination of one transport: its window and waiting entries."""

    name: str
    transport: Transport
    window: int
    todo: deque = field(default_factory=deque)
    busy: int = 0
    success: float = 0.0
    failure: float = 0.0
    fail_cohorts: float = 0.0
    dead_until: float = 0.0
    dead_reason: str = ""
    next_time: float = 0.0          # rate delay: not before this time
    in_ring: bool = False

    def dead(self, now: float) -> bool:
        """dead - is the destination throttled to zero?"""
        return self.dead_until > now


@dataclass(slots=True, eq=False)
class Transport:
    """One transport: parameters, destinations, in-flight count."""

    params: TransportParams
    queues: dict = field(default_factory=dict)
    ring: deque = field(default_factory=deque)     # destinations with todo
    busy: int = 0
    dead_until: float = 0.0
    dead_reason: str = ""

    @property
    def name(self) -> str:
        return self.params.name


@dataclass(slots=True, eq=False)
class Job:
    """One delivery request to send."""

    transport: Transport
    queue: DestQueue
    msg: Msg
    nexthop: str
    rcpts: list


@dataclass(slots=True)
class QmgrDefer:
    """Recipients the queue manager defers itself (dead destination or transport)."""

    msg: Msg
    transport: str
    nexthop: str
    rcpts: list
    dsn: str
    reason: str


class Scheduler:
    """Destinations, windows, feedback and round robin (see the module page)."""

    def __init__(self, params_for: Callable[[str], TransportParams]) -> None:
        self.params_for = params_for
        self.transports: dict[str, Transport] = {}
        self.tring: deque[Transport] = deque()
        self._defers: list[QmgrDefer] = []
        self._finished: list[Msg] = []

    # -- input

    def transport(self, name: str) -> Transport:
        """transport - the Transport record of name (created on first use)."""
        t = self.transports.get(name)
        if t is None:
            t = self.transports[name] = Transport(self.params_for(name))
            self.tring.append(t)
        return t

    def _queue(self, t: Transport, name: str) -> DestQueue:
        """_queue - the destination queue (created on first use)."""
        q = t.queues.get(name)
        if q is None:
            window = 1 if t.params.rate_delay > 0 else max(1, t.params.initial_concurrency)
            q = t.queues[name] = DestQueue(name, t, window)
        return q

    def add(self, msg: Msg, routes: Iterable[tuple[str, str, object]], now: float,
            dest_key: Callable[[object], str] | None = None, outcomes: Iterable[str] = ()
            ) -> None:
        """add - queue a message's recipients: (transport, nexthop, rcpt) each.

        outcomes: statuses of recipients the caller already finished itself
        (e.g. an unresolvable address), counted for the message's completion.
        """
        msg.deferred += sum(1 for o in outcomes if o == DEFERRED)
        groups: dict[tuple[str, str], list] = {}
        for tname, nexthop, rcpt in routes:
            t = self.transport(tname)
            if t.params.recipient_limit == 1:
                key = dest_key(rcpt) if dest_key else str(getattr(rcpt, "address", rcpt))
            else:
                key = nexthop
            groups.setdefault((tname, key, nexthop), []).append(rcpt)
            msg.pending += 1
        for (tname, key, nexthop), rcpts in groups.items():
            t = self.transports[tname]
            q = self._queue(t, key)
            limit = max(1, t.params.recipient_limit)
            for i in range(0, len(rcpts), limit):
                entry = Entry(msg, nexthop, rcpts[i:i + limit])
                if t.dead_until > now:
                    self._defer(entry, tname, t.dead_reason)
                elif q.dead(now):
                    self._defer(entry, tname, q.dead_reason)
                else:
                    q.todo.append(entry)
            self._ring(q)
            self._maybe_drop(q)
        # With recipients, _outcome() finishes the message when the last one is
        # deferred here (dead destination); only a message with none ends here.
        if not groups and msg.pending == 0:
            self._finished.append(msg)

    # -- selection

    def _ring(self, q: DestQueue) -> None:
        """_ring - make sure a queue with work is in its transport's ring."""
        if q.todo and not q.in_ring:
            q.in_ring = True
            q.transport.ring.append(q)

    def _ready(self, q: DestQueue, now: float) -> bool:
        """_ready - may this destination take one more request now?"""
        t = q.transport
        limit = t.params.dest_concurrency_limit
        window = q.window if limit <= 0 else min(q.window, limit)
        if q.busy >= window:
            return False
        return not (t.params.rate_delay > 0 and now < q.next_time)

    def _pick(self, t: Transport, now: float) -> Job | None:
        """_pick - the next job of one transport, round robin over destinations."""
        if t.busy >= max(1, t.params.process_limit):
            return None
        if t.dead_until > now:
            self._flush_transport(t, now)
            return None
        for _ in range(len(t.ring)):
            q = t.ring.popleft()
            if q.dead(now):
                self._flush_queue(q)
                q.in_ring = False
                self._maybe_drop(q)
                continue
            if not self._ready(q, now):
                t.ring.append(q)
                continue
            entry = q.todo.popleft()
            if q.todo:
                t.ring.append(q)
            else:
                q.in_ring = False
            q.busy += 1
            t.busy += 1
            if t.params.rate_delay > 0:
                q.next_time = now + t.params.rate_delay
            return Job(t, q, entry.msg, entry.nexthop, entry.rcpts)
        return None

    def jobs(self, now: float, limit: int = 1_000_000) -> list[Job]:
        """jobs - delivery requests to send now, round robin across transports."""
        self.expire_dead(now)
        out: list[Job] = []
        while len(out) < limit:
            progress = False
            for _ in range(len(self.tring)):
                t = self.tring[0]
                self.tring.rotate(-1)
                job = self._pick(t, now)
                if job is not None:
                    out.append(job)
                    progress = True
                    if len(out) >= limit:
                        break
            if not progress:
                break
        return out

    # -- feedback

    def done(self, job: Job, statuses: list[str] | None, site_dead: bool = False,
             reason: str = "", now: float = 0.0) -> None:
        """done - an agent's reply (None: the agent could not be reached or failed)."""
        q, t, msg = job.queue, job.transport, job.msg
        q.busy -= 1
        t.busy -= 1
        if statuses is None:
            self._transport_dead(t, reason or "unknown mail transport error", now)
            self._defer(Entry(msg, job.nexthop, job.rcpts), t.name,
                        t.dead_reason, count_only=False)
        else:
            for st in statuses[:len(job.rcpts)] + [DEFERRED] * (len(job.rcpts) - len(statuses)):
                self._outcome(msg, st)
            if site_dead:
                self._negative(q, reason or "destination not reachable", now)
            else:
                self._positive(q)
        self._ring(q)
        self._maybe_drop(q)

    def _outcome(self, msg: Msg, status: str) -> None:
        """_outcome - one recipient of msg has an outcome."""
        msg.pending -= 1
        if status == DEFERRED:
            msg.deferred += 1
        if msg.pending == 0:
            self._finished.append(msg)

    def _positive(self, q: DestQueue) -> None:
        """_positive - Postfix's unthrottle: open the window on success."""
        p = q.transport.params
        q.fail_cohorts = 0.0
        if p.rate_delay > 0:
            return
        if p.dest_concurrency_limit <= 0 or q.window < p.dest_concurrency_limit:
            q.success += feedback_value(p.positive_feedback, q.window)
            while q.success >= 1:
                q.window += 1
                q.success -= 1
                q.failure = 0.0

    def _negative(self, q: DestQueue, reason: str, now: float) -> None:
        """_negative - Postfix's throttle: close the window; a failed cohort kills it."""
        p = q.transport.params
        q.fail_cohorts += 1.0 / max(1, q.window)
        if p.failed_cohort_limit > 0 and q.fail_cohorts >= p.failed_cohort_limit:
            q.dead_until = now + p.min_backoff
            q.dead_reason = reason
            self._flush_queue(q)
            return
        if p.rate_delay > 0:
            return
        q.failure -= feedback_value(p.negative_feedback, q.window)
        while q.failure <= -1:
            q.window -= 1
            q.failure += 1
            q.success = 0.0
        q.window = max(1, q.window)

    def _transport_dead(self, t: Transport, reason: str, now: float) -> None:
        """_transport_dead - throttle a transport whose agent fails."""
        t.dead_until = now + t.params.retry_time
        t.dead_reason = reason
        self._flush_transport(t, now)

    # -- deferral by qmgr

    def _defer(self, entry: Entry, tname: str, reason: str, count_only: bool = False) -> None:
        """_defer - qmgr defers an entry itself."""
        del count_only
        self._defers.append(QmgrDefer(entry.msg, tname, entry.nexthop, entry.rcpts, "4.4.1"
                                      if "reach" in reason or "connect" in reason else "4.3.0",
                                      f"delivery temporarily suspended: {reason}"))
        for _ in entry.rcpts:
            self._outcome(entry.msg, DEFERRED)

    def _flush_queue(self, q: DestQueue) -> None:
        """_flush_queue - defer every waiting entry of a dead destination."""
        while q.todo:
            self._defer(q.todo.popleft(), q.transport.name, q.dead_reason)

    def _flush_transport(self, t: Transport, now: float) -> None:
        """_flush_transport - defer every waiting entry of a dead transport."""
        for q in list(t.queues.values()):
            while q.todo:
                self._defer(q.todo.popleft(), t.name, t.dead_reason)
            q.in_ring = False
            self._maybe_drop(q)
        t.ring.clear()

    def _maybe_drop(self, q: DestQueue) -> None:
        """_maybe_drop - forget an idle, healthy destination (Postfix deletes empty queues)."""
        if not q.todo and q.busy == 0 and q.dead_until == 0.0 and not q.in_ring \
                and q.transport.params.rate_delay <= 0:
            q.transport.queues.pop(q.name, None)

    # -- control

    def expire_dead(self, now: float) -> None:
        """expire_dead - revive destinations whose back-off is over."""
        for t in self.transports.values():
            if t.dead_until and t.dead_until <= now:
                t.dead_until, t.dead_reason = 0.0, ""
            for q in list(t.queues.values()):
                if q.dead_until and q.dead_until <= now:
                    self._revive(q)

    def _revive(self, q: DestQueue) -> None:
        """_revive - a dead destination starts again at the initial window."""
        p = q.transport.params
        q.dead_until, q.dead_reason = 0.0, ""
        q.fail_cohorts = q.success = q.failure = 0.0
        q.window = 1 if p.rate_delay > 0 else max(1, p.initial_concurrency)
        self._maybe_drop(q)

    def flush_dead(self) -> None:
        """flush_dead - forget all dead destination and transport state (trigger F)."""
        for t in self.transports.values():
            t.dead_until, t.dead_reason = 0.0, ""
            for q in list(t.queues.values()):
                if q.dead_until:
                    self._revive(q)

    def next_event(self, now: float) -> float | None:
        """next_event - the earliest time a timer needs attention, or None."""
        times = []
        for t in self.transports.values():
            if t.dead_until > now:
                times.append(t.dead_until)
            for q in t.queues.values():
                if q.dead_until > now:
                    times.append(q.dead_until)
                if q.todo and q.next_time > now:
                    times.append(q.next_time)
        return min(times) if times else None

    def backlog(self) -> bool:
        """backlog - are there defers or finished messages not yet taken?"""
        return bool(self._defers or self._finished)

    def take_defers(self) -> list[QmgrDefer]:
        """take_defers - recipients deferred by qmgr since the last call."""
        out, self._defers = self._defers, []
        return out

    def take_finished(self) -> list[Msg]:
        """take_finished - messages finished since the last call."""
        out, self._finished = self._finished, []
        return out

    def waiting(self) -> int:
        """waiting - entries not yet sent."""
        return sum(len(q.todo) for t in self.transports.values() for q in t.queues.values())
