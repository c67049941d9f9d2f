"""The sans-IO scheduler: windows, feedback, round robin, recipient limits, dead sites."""

from __future__ import annotations

from postel.qmgr.sched import Msg, Scheduler, TransportParams, feedback_value
from postel.qmgr.service import backoff_time


def _sched(**kw):
    return Scheduler(lambda name: TransportParams(name, **kw))


def _msg(s, qid, rcpts, transport="smtp", nexthop="example.com", now=0.0):
    m = Msg(qid)
    s.add(m, [(transport, nexthop, r) for r in rcpts], now)
    return m


def test_feedback_values():
    assert feedback_value("1", 5) == 1.0
    assert feedback_value("1/4", 5) == 0.25
    assert feedback_value("1/concurrency", 5) == 0.2


def test_recipient_limit_splits_requests():
    s = _sched(recipient_limit=2)
    _msg(s, "A", ["r1", "r2", "r3", "r4", "r5"])
    jobs = s.jobs(0)
    assert [j.rcpts for j in jobs] == [["r1", "r2"], ["r3", "r4"], ["r5"]]


def test_initial_window_and_positive_feedback():
    s = _sched(recipient_limit=1, initial_concurrency=2, dest_concurrency_limit=4)
    # recipient_limit 1: the destination is the recipient, so use one address
    m = Msg("A")
    s.add(m, [("smtp", "x", "same")] * 10, 0, dest_key=lambda r: "d")
    first = s.jobs(0)
    assert len(first) == 2                       # initial window
    assert s.jobs(0) == []                       # window full
    s.done(first[0], ["sent"], now=1)            # +1: window 3
    assert len(s.jobs(1)) == 2
    q = first[0].queue
    assert q.window == 3


def test_window_never_exceeds_limit():
    s = _sched(recipient_limit=1, initial_concurrency=1, dest_concurrency_limit=2)
    m = Msg("A")
    s.add(m, [("smtp", "x", i) for i in range(100)], 0, dest_key=lambda r: "d")
    for _ in range(10):
        for job in s.jobs(0):
            s.done(job, ["sent"], now=0)
    busy = s.jobs(0)
    assert len(busy) == 2 and busy[0].queue.window == 2


def test_negative_feedback_and_dead_site():
    s = _sched(recipient_limit=1, initial_concurrency=2, failed_cohort_limit=1,
               min_backoff=300)
    m = Msg("A")
    s.add(m, [("smtp", "x", i) for i in range(6)], 0, dest_key=lambda r: "d")
    a, b = s.jobs(0)
    s.done(a, ["deferred"], site_dead=True, reason="connect refused", now=1)
    q = a.queue
    assert q.window == 1 and q.fail_cohorts == 0.5 and not q.dead(1)
    s.done(b, ["deferred"], site_dead=True, reason="connect refused", now=2)
    assert q.dead(2)                              # a whole cohort failed
    defers = s.take_defers()
    assert sum(len(d.rcpts) for d in defers) == 4  # everything waiting
    assert all("delivery temporarily suspended: connect refused" == d.reason for d in defers)
    assert s.take_finished() == [m] and m.deferred == 6
    # new mail for a dead destination is deferred at once
    m2 = Msg("B")
    s.add(m2, [("smtp", "x", "n")], 10, dest_key=lambda r: "d")
    assert s.jobs(10) == [] and len(s.take_defers()) == 1
    # finished once, not twice (the second finish found the file already moved)
    assert s.take_finished() == [m2]
    assert s.next_event(10) == 302
    # after minimal_backoff_time the destination lives again at the initial window
    m3 = Msg("C")
    s.add(m3, [("smtp", "x", i) for i in range(5)], 303, dest_key=lambda r: "d")
    assert len(s.jobs(303)) == 2


def test_positive_feedback_clears_cohorts():
    s = _sched(recipient_limit=1, initial_concurrency=2, failed_cohort_limit=1)
    m = Msg("A")
    s.add(m, [("smtp", "x", i) for i in range(4)], 0, dest_key=lambda r: "d")
    a, b = s.jobs(0)
    s.done(a, ["deferred"], site_dead=True, now=0)
    s.done(b, ["sent"], now=0)
    assert a.queue.fail_cohorts == 0 and not a.queue.dead(0)


def test_round_robin_destinations_and_transports():
    s = _sched(recipient_limit=10, initial_concurrency=1)
    for i in range(3):
        _msg(s, f"A{i}", ["a"], nexthop="a.example")
        _msg(s, f"B{i}", ["b"], nexthop="b.example")
    _msg(s, "L", ["l"], transport="local", nexthop="host")
    jobs = s.jobs(0)
    # one per destination (window 1), alternating transports
    assert sorted((j.transport.name, j.nexthop) for j in jobs) == \
        [("local", "host"), ("smtp", "a.example"), ("smtp", "b.example")]
    assert jobs[0].transport.name != jobs[1].transport.name


def test_process_limit():
    s = _sched(recipient_limit=1, initial_concurrency=10, process_limit=3)
    m = Msg("A")
    s.add(m, [("smtp", f"d{i}", i) for i in range(10)], 0)
    assert len(s.jobs(0)) == 3


def test_transport_dead_when_agent_fails():
    s = _sched(recipient_limit=1, initial_concurrency=1, retry_time=60, process_limit=1)
    m = Msg("A")
    s.add(m, [("smtp", f"d{i}", i) for i in range(3)], 0)
    jobs = s.jobs(0)
    s.done(jobs[0], None, reason="no agent", now=1)
    assert s.jobs(1) == []
    defers = s.take_defers()
    assert sum(len(d.rcpts) for d in defers) == 3
    assert s.take_finished() == [m] and m.deferred == 3 and m.pending == 0


def test_rate_delay():
    s = _sched(recipient_limit=1, initial_concurrency=5, rate_delay=10)
    m = Msg("A")
    s.add(m, [("smtp", "x", i) for i in range(3)], 0, dest_key=lambda r: "d")
    [j] = s.jobs(0)
    s.done(j, ["sent"], now=1)
    assert s.jobs(5) == []
    assert s.next_event(5) == 10
    assert len(s.jobs(10)) == 1


def test_message_finishes_with_counts():
    s = _sched()
    m = Msg("A")
    s.add(m, [("smtp", "x", 1), ("smtp", "x", 2), ("local", "h", 3)], 0, outcomes=["bounced"])
    for job in s.jobs(0):
        s.done(job, ["sent", "deferred"][:len(job.rcpts)], now=0)
    assert s.take_finished() == [m]
    assert m.deferred == 1 and m.pending == 0


def test_backoff_time():
    assert backoff_time(1000, 990, 300, 4000) == 1300
    assert backoff_time(100000, 0, 300, 4000) == 104000
    assert backoff_time(10000, 9000, 300, 4000) == 11000


def test_message_for_dead_destination_finishes_once():
    s = _sched(recipient_limit=1, initial_concurrency=1, failed_cohort_limit=1)
    m = Msg("A")
    s.add(m, [("smtp", "x", 0)], 0, dest_key=lambda r: "d")
    [job] = s.jobs(0)
    s.done(job, ["deferred"], site_dead=True, reason="connect refused", now=1)
    assert s.take_finished() == [m]
    m2 = Msg("B")
    s.add(m2, [("smtp", "x", i) for i in range(3)], 2, dest_key=lambda r: "d")
    assert s.take_finished() == [m2] and m2.pending == 0 and m2.deferred == 3
    empty = Msg("C")
    s.add(empty, [], 3)
    assert s.take_finished() == [empty]
