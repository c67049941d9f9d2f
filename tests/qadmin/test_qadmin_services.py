"""showq and flush services through the skeleton's standalone mode."""

from __future__ import annotations

import os
import time

import pytest
from qadmin_helpers import BASE_TIME, add_defer_log, add_message, make_config

from postel.commands import postqueue
from postel.config import load_config
from postel.flush import service as flush_service
from postel.ipc import flush_client as fc
from postel.ipc.skeleton import run_standalone
from postel.showq import service as showq_service


@pytest.fixture
def showq(tmp_path):
    cfg_dir, qd = make_config(tmp_path)
    sock = os.path.join(qd.queue_directory, "public", "showq")
    srv = run_standalone("showq", [f"unix:{sock}"], handler=showq_service.serve_client,
                         config_dir=cfg_dir)
    try:
        yield cfg_dir, qd
    finally:
        srv.stop()


def test_showq_lists_through_service(showq):
    cfg_dir, qd = showq
    q1 = add_message(qd, "deferred", rcpts=("a@x.example", "b@x.example"))
    add_defer_log(qd, q1, [("b@x.example", "no route")])
    q2 = add_message(qd, "hold", when=BASE_TIME + 1)
    entries = list(postqueue.showq_entries(qd.queue_directory))
    assert [(e.queue_name, e.queue_id) for e in entries] == [("deferred", q1), ("hold", q2)]
    assert entries[0].recipients == [("b@x.example", "no route"), ("a@x.example", "")]
    one = list(postqueue.showq_entries(qd.queue_directory, queue_id=q2))
    assert [e.queue_id for e in one] == [q2]


def test_showq_streams_many(showq):
    cfg_dir, qd = showq
    n = showq_service.BATCH * 2 + 3
    for i in range(n):
        add_message(qd, "incoming", when=BASE_TIME + i)
    entries = list(postqueue.showq_entries(qd.queue_directory))
    assert len(entries) == n
    assert [e.arrival_time for e in entries] == sorted(e.arrival_time for e in entries)


def test_postqueue_uses_service_for_unprivileged(showq, capsys, monkeypatch):
    cfg_dir, qd = showq
    add_message(qd, "active")
    monkeypatch.setattr(postqueue, "privileged", lambda cfg: False)
    assert postqueue.main(["-p"], cfg_dir) == 0
    out = capsys.readouterr().out
    assert out.startswith("----Queue ID-----") and out.endswith("-- 0 Kbytes in 1 Request.\n")


@pytest.fixture
def flush(tmp_path):
    cfg_dir, qd = make_config(tmp_path, {"fast_flush_domains": "!bad.example.com, example.com"})
    sock = os.path.join(qd.queue_directory, "public", "flush")
    srv = run_standalone("flush", [f"unix:{sock}"], handler=flush_service.serve_client,
                         config_dir=cfg_dir, post_init=flush_service.setup)
    try:
        yield cfg_dir, qd
    finally:
        srv.stop()


def test_flush_add_and_send_site(flush):
    cfg_dir, qd = flush
    qid = add_message(qd, "deferred")
    path = qd.path("deferred", qid)
    os.utime(path, (BASE_TIME, BASE_TIME))
    d = qd.queue_directory
    assert fc.flush_add(d, "Example.COM", qid) == fc.FLUSH_STAT_OK
    assert fc.flush_add(d, "sub.example.com", qid) == fc.FLUSH_STAT_OK   # parent matches
    assert open(os.path.join(d, "flush", "example.com")).read() == qid + "\n"
    assert fc.flush_send_site(d, "example.com") == fc.FLUSH_STAT_OK
    assert os.stat(path).st_mtime > time.time() - 600          # eligible now
    assert os.path.getsize(os.path.join(d, "flush", "example.com")) == 0


def test_flush_status_codes(flush):
    cfg_dir, qd = flush
    d = qd.queue_directory
    assert fc.flush_add(d, "other.org", add_message(qd, "deferred")) == fc.FLUSH_STAT_DENY
    assert fc.flush_send_site(d, "bad.example.com") == fc.FLUSH_STAT_DENY
    assert fc.flush_add(d, "example.com", "nonsense") == fc.FLUSH_STAT_BAD
    assert fc.flush_send_site(d, "../etc") == fc.FLUSH_STAT_BAD
    assert fc.flush_send_file(d, "bogus") == fc.FLUSH_STAT_BAD
    assert fc.flush_refresh(d) == fc.FLUSH_STAT_OK
    assert fc.flush_purge(d) == fc.FLUSH_STAT_OK


def test_postqueue_site_and_file(flush, capsys):
    cfg_dir, qd = flush
    qid = add_message(qd, "deferred")
    os.utime(qd.path("deferred", qid), (BASE_TIME, BASE_TIME))
    assert postqueue.main(["-i", qid], cfg_dir) == 0
    assert os.stat(qd.path("deferred", qid)).st_mtime > BASE_TIME
    assert postqueue.main(["-s", "example.com"], cfg_dir) == 0
    assert postqueue.main(["-s", "other.org"], cfg_dir) == 69
    assert "not configured" in capsys.readouterr().err


def test_flush_unavailable(tmp_path):
    _, qd = make_config(tmp_path)
    assert fc.flush_send_site(qd.queue_directory, "example.com") == fc.FLUSH_STAT_FAIL


def test_refresh_ages(tmp_path):
    from postel.flush.logs import FlushLogs
    _, qd = make_config(tmp_path)
    logs = FlushLogs(qd, refresh_time=100, purge_time=1000)
    qid = add_message(qd, "deferred")
    logs.add("a.example", qid)
    open(os.path.join(qd.queue_directory, "flush", "b.example"), "w").close()
    now = time.time()
    assert logs.refresh(now) == 0                       # both fresh
    assert logs.refresh(now + 200) == 1                 # a.example sent
    assert os.path.exists(os.path.join(qd.queue_directory, "flush", "b.example"))
    logs.refresh(now + 2000)                            # empty logs purged
    assert sorted(s for s, _ in logs.sites()) == []


def test_site_list(tmp_path):
    """fast_flush_domains is a domain list: names, .subdomains, !negation, type:table."""
    cfg_dir, _ = make_config(tmp_path, {
        "fast_flush_domains": "!no.example.com, example.com, .sub.org, inline:{tab.example=x}",
        "parent_domain_matches_subdomains": ""})
    sl = flush_service.site_list(load_config(cfg_dir))
    assert sl.match("EXAMPLE.com.") and sl.match("a.sub.org") and sl.match("tab.example")
    assert not sl.match("sub.org") and not sl.match("x.example.com")
    assert not sl.match("no.example.com") and not sl.match("other.example")
    cfg_dir, _ = make_config(tmp_path, {"fast_flush_domains": "!no.example.com, example.com"})
    sl = flush_service.site_list(load_config(cfg_dir))
    assert sl.match("x.example.com") and not sl.match("no.example.com")


def test_site_list_bad_table_fails(tmp_path):
    """A table that cannot be opened makes site requests fail (temporary), not crash."""
    cfg_dir, _ = make_config(tmp_path, {"fast_flush_domains": "hash:/nonexistent/x"})
    sites = flush_service.site_list(load_config(cfg_dir))
    assert flush_service._site_status(sites, "example.com") == fc.FLUSH_STAT_FAIL


def test_showq_parallel_workers_same_listing(showq, monkeypatch):
    cfg_dir, qd = showq
    qids = [add_message(qd, "deferred", when=BASE_TIME + i) for i in range(9)]
    add_defer_log(qd, qids[3], [("r@example.org", "slow down")])
    serial = list(postqueue.showq_entries(qd.queue_directory))
    monkeypatch.setattr(showq_service, "PARALLEL_MIN", 5)
    monkeypatch.setattr(showq_service, "BLOCK", 2)
    monkeypatch.setattr(showq_service, "WORKERS", 3)
    parallel = list(postqueue.showq_entries(qd.queue_directory))
    assert parallel == serial and len(parallel) == 9
    assert parallel[3].recipients == [("r@example.org", "slow down")]


def test_showq_parallel_worker_failure_falls_back(showq, monkeypatch):
    cfg_dir, qd = showq
    for i in range(7):
        add_message(qd, "hold", when=BASE_TIME + i)
    serial = list(postqueue.showq_entries(qd.queue_directory))
    monkeypatch.setattr(showq_service, "PARALLEL_MIN", 1)
    monkeypatch.setattr(showq_service, "BLOCK", 2)
    monkeypatch.setattr(showq_service, "WORKERS", 2)
    monkeypatch.setattr(showq_service, "_worker", lambda *args: os._exit(3))
    assert list(postqueue.showq_entries(qd.queue_directory)) == serial


def test_mailq_text_through_showq_equals_direct(showq, capsys, monkeypatch):
    cfg_dir, qd = showq
    qids = [add_message(qd, "deferred", when=BASE_TIME + i, rcpts=("r@example.org",) * (1 + i % 2))
            for i in range(9)]
    add_message(qd, "hold", sender="", when=BASE_TIME + 99)
    add_defer_log(qd, qids[3], [("r@example.org", "slow d\u00f6wn")])
    monkeypatch.setattr(postqueue, "_showq_connect", _down)
    assert postqueue.main(["-p"], cfg_dir) == 0
    direct = capsys.readouterr().out
    assert direct.count("r@example.org") == 10 and "(slow d\u00f6wn)" in direct
    monkeypatch.undo()
    monkeypatch.setattr(postqueue, "privileged", lambda cfg: False)
    for parallel in (False, True):
        if parallel:
            monkeypatch.setattr(showq_service, "PARALLEL_MIN", 5)
            monkeypatch.setattr(showq_service, "BLOCK", 2)
            monkeypatch.setattr(showq_service, "WORKERS", 3)
        assert postqueue.main(["-p"], cfg_dir) == 0
        assert capsys.readouterr().out == direct


def _down(*args, **kwargs):
    from postel.ipc.client import ServiceUnavailable
    raise ServiceUnavailable("public/showq", "down for the test")


def test_mailq_client_reads_the_wire_form(showq, capsys, monkeypatch):
    """A showq that ignores format=mailq (the wire form): the client formats the text itself."""
    cfg_dir, qd = showq
    for i in range(3):
        add_message(qd, "deferred", when=BASE_TIME + i)
    assert postqueue.main(["-p"], cfg_dir) == 0
    want = capsys.readouterr().out
    monkeypatch.setitem(showq_service.ENCODERS, "mailq", showq_service._wire_block)
    monkeypatch.setattr(postqueue, "privileged", lambda cfg: False)
    assert postqueue.main(["-p"], cfg_dir) == 0
    assert capsys.readouterr().out == want and want.endswith("in 3 Requests.\n")
