"""Job.envelope reads the request in one pass: first values win, rcpt/orcpt/notify in order."""

from __future__ import annotations

import asyncio

from postel.cleanup import service as cs
from postel.config import load_config
from postel.ipc.attr import AttrList
from postel.queue import QueueDir


class FakeRewrite:
    async def rewrite_internal(self, rule, addr):
        return addr


def make_job(tmp_path):
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "main.cf").write_text(f"queue_directory = {tmp_path}/q\nmyhostname = mx.example.com\n"
                                  "enable_original_recipient = yes\n")
    QueueDir(f"{tmp_path}/q").create_dirs()
    svc = cs.CleanupService(load_config(str(conf)), f"{tmp_path}/q", rewrite_client=FakeRewrite())
    return svc, cs.Job(svc, cs.DEFAULT_FLAGS, cs.new_qid())


def test_envelope_request_fields(tmp_path):
    svc, job = make_job(tmp_path)
    req = AttrList([
        ("request", b"envelope"), ("sender", b"a@example.org"), ("client_name", b"c.example"),
        ("rcpt", b"x@example.com"), ("orcpt", b"rfc822;x@example.com"), ("notify", b"6"),
        ("helo_name", b""), ("sender", b"second@example.org"), ("rcpt", b"y@example.com"),
        ("orcpt", b""), ("notify", b"bad"), ("arrival_time", b"1700000000.25"),
        ("dsn_ret", b"hdrs"), ("dsn_envid", b"ENV1"), ("fullname", b"Al \xc3\xa9"),
        ("rewrite_context", b"local"), ("rewrite_context", b"remote"),
        ("client_name", b"ignored"), ("protocol", b"ESMTP")])
    asyncio.run(job.envelope(req))
    env = job.env
    assert env.sender == "a@example.org"
    assert env.attrs == {"client_name": "c.example", "protocol": "ESMTP",
                         "rewrite_context": "local"}
    assert job.context == "local"
    assert env.time == 1700000000.25 and env.dsn_ret == 2 and env.dsn_envid == "ENV1"
    assert env.full_name == "Al \u00e9"
    assert [(r.address, r.dsn_orcpt, r.dsn_notify, r.orig_rcpt) for r in job.rcpts] == [
        ("x@example.com", "rfc822;x@example.com", 6, "x@example.com"),
        ("y@example.com", "", 0, "y@example.com")]
    job.drop()
    svc.close()


def test_envelope_request_defaults(tmp_path):
    svc, job = make_job(tmp_path)
    asyncio.run(job.envelope(AttrList([("request", b"envelope"), ("arrival_time", b"x"),
                                       ("rcpt", b"z@example.com")])))
    env = job.env
    assert (env.sender, env.time, env.dsn_ret, env.dsn_envid, env.full_name, env.attrs) == \
        ("", 0.0, 0, "", "", {})
    assert job.context == "remote" and [r.address for r in job.rcpts] == ["z@example.com"]
    job.drop()
    svc.close()
