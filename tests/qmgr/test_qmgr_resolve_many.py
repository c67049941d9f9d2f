"""qmgr resolves a slice of recipients in one pipelined exchange; the routes are those of one by one."""

from __future__ import annotations

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postel.config import load_config
from postel.ipc.skeleton import ServiceContext
from postel.mail.resolve_types import Resolved
from postel.qmgr.sched import Msg
from postel.qmgr.service import MsgData, Qmgr
from postel.queue import QueueDir, QueueFileReader, QueueFileWriter
from postel.queue.envelope import Envelope, Recipient


def _answer(addr: str, sender: str) -> Resolved:
    domain = addr.rpartition("@")[2]
    return Resolved("smtp" if domain != "local" else "local", f"[{domain}]:25" + sender[:1],
                    addr.lower(), 0)


class OneByOne:
    def __init__(self) -> None:
        self.single = 0

    async def resolve(self, addr, sender=""):
        self.single += 1
        return _answer(addr, sender)


class Many(OneByOne):
    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.fail = fail
        self.batches = 0

    async def resolve_many(self, addrs, sender=""):
        self.batches += 1
        if self.fail:
            raise OSError("rewrite service down")
        return [_answer(a, sender) for a in addrs]


def _routes(tmp_path, client, rcpts: list[str]) -> tuple:
    (tmp_path / "main.cf").write_text(f"queue_directory = {tmp_path}/queue\n")
    QueueDir(f"{tmp_path}/queue").create_dirs()
    ctx = ServiceContext(cfg=load_config(str(tmp_path)), service_name="qmgr",
                         process_name="qmgr", config_dir=str(tmp_path),
                         queue_directory=f"{tmp_path}/queue", args=[])
    q = Qmgr(ctx)
    q.rewrite = client
    w = QueueFileWriter(q.qd, "active")
    w.write_envelope(Envelope("s@example.com", [Recipient(r) for r in rcpts]))
    w.write_content(b"Subject: x\n\nbody\n")
    w.commit_sync()
    got = []
    q.sched.add = lambda msg, routes, now, outcomes: got.append((routes, outcomes))
    msg = Msg(w.qid, data=MsgData(w.qid, "s@example.com", 0.0, 0.0, 0, {}))
    with QueueFileReader(q.qd.path("active", w.qid)) as qf:
        asyncio.run(q._schedule_slice(msg, qf, 0.0))
    (routes, outcomes), = got
    return [(t, n, r.address, r.offset) for t, n, r in routes], outcomes


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rcpts=st.lists(st.sampled_from(["a@x", "B@Y", "c@local", "a@x", "d@z.example"]),
                      min_size=1, max_size=30))
def test_batch_routes_equal_one_by_one(tmp_path, rcpts):
    one, many, failing = OneByOne(), Many(), Many(fail=True)
    results = []
    for name, client in (("1", one), ("2", many), ("3", failing)):
        (tmp_path / name).mkdir(exist_ok=True)
        results.append(_routes(tmp_path / name, client, rcpts))
    assert results[0] == results[1] == results[2]
    assert len(results[0][0]) == len(rcpts)
    assert one.single == len(rcpts)
    if len(rcpts) >= 2:
        assert many.batches == 1 and many.single == 0          # the pipelined path
        assert failing.single == len(rcpts)                    # fell back to one by one
