"""Job.envelope: recipients rewritten together (rewrite_internal_many) = one by one."""

from __future__ import annotations

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postel.cleanup import service as cs
from postel.config import load_config
from postel.ipc.attr import AttrList
from postel.queue import QueueDir


def _rw(rule: str, addr: str) -> str:
    """A rewrite that depends on rule and address (as trivial-rewrite's would)."""
    if "@" not in addr:
        return f"{addr}@{'local' if rule == 'local' else 'remote'}.example"
    return addr.lower()


class OneByOne:
    def __init__(self) -> None:
        self.asked: list[str] = []

    async def rewrite_internal(self, rule, addr):
        self.asked.append(addr)
        if addr == "down":
            raise OSError("rewrite service down")
        return _rw(rule, addr)


class Many(OneByOne):
    def __init__(self) -> None:
        super().__init__()
        self.batches = 0

    async def rewrite_internal_many(self, rule, addrs):
        self.batches += 1
        return [await self.rewrite_internal(rule, a) for a in addrs]


def make_job(tmp_path, client):
    conf = tmp_path / "conf"
    conf.mkdir(exist_ok=True)
    (conf / "main.cf").write_text(f"queue_directory = {tmp_path}/q\nmyhostname = mx.example.com\n"
                                  "enable_original_recipient = yes\n")
    QueueDir(f"{tmp_path}/q").create_dirs()
    svc = cs.CleanupService(load_config(str(conf)), f"{tmp_path}/q", rewrite_client=client)
    return svc, cs.Job(svc, cs.DEFAULT_FLAGS, cs.new_qid())


def _result(tmp_path, client, rcpts, context):
    svc, job = make_job(tmp_path, client)
    pairs = [("request", b"envelope"), ("sender", b"a@example.org"),
             ("rewrite_context", context.encode())]
    for i, r in enumerate(rcpts):
        pairs += [("rcpt", r.encode()), ("orcpt", f"rfc822;{r}".encode() if i % 2 else b""),
                  ("notify", str(i % 16).encode())]
    try:
        asyncio.run(job.envelope(AttrList(pairs)))
        return ([(r.address, r.orig_rcpt, r.dsn_notify, r.dsn_orcpt) for r in job.rcpts],
                job.status)
    finally:
        job.drop()
        svc.close()


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rcpts=st.lists(st.sampled_from(["joe", "Joe@Example.COM", "", "x@y", "joe", "down",
                                       "u1@d1.example", "U1@D1.example"]), max_size=12),
       context=st.sampled_from(["local", "remote"]))
def test_many_equals_one_by_one(tmp_path, rcpts, context):
    one, many = OneByOne(), Many()
    assert _result(tmp_path, many, rcpts, context) == _result(tmp_path, one, rcpts, context)
    assert many.batches == (1 if len(rcpts) >= 2 and any(rcpts) else 0)
    assert "" not in many.asked               # an empty address is never sent
