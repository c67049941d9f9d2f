"""verify(8) standalone: queries, probes through a cleanup stand-in, updates, lmdb cache."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time

import pytest

from postel import log
from postel.config import load_config
from postel.ipc.attr import read_attrs, write_attrs
from postel.ipc.client import request_sync
from postel.ipc.skeleton import run_standalone
from postel.ipc.verify_client import (
    RCPT_STAT_BOUNCE,
    RCPT_STAT_OK,
    RCPT_STAT_TODO,
    VRFY_STAT_BAD,
    VRFY_STAT_FAIL,
    VRFY_STAT_OK,
    VerifyClient,
    verify_append,
)
from postel.smtpd.restrictions import CheckState, Restrictions
from postel.tables import close_all
from postel.verify import service


async def _fake_cleanup(reader, writer, ctx) -> None:
    """_fake_cleanup - speaks cleanup's protocol; records each envelope in ctx.state."""
    env: dict = {}
    while True:
        try:
            req = await read_attrs(reader, timeout=10)
        except (EOFError, TimeoutError):
            return
        what = req.get("request")
        if what == "open":
            env = {"flags": req.get("flags", "")}
            await write_attrs(writer, {"status": 0, "queue_id": "4PROBE"})
        elif what == "envelope":
            env.update(sender=req.get("sender"),
                       rcpt=[r.decode() if isinstance(r, bytes) else r for r in req.getall("rcpt")],
                       trace_flags=req.get("trace_flags", ""))
        elif what == "close":
            ctx.state.setdefault("probes", []).append(env)
            await write_attrs(writer, {"status": 0, "queue_id": "4PROBE"})


@pytest.fixture
def inst():
    top = tempfile.mkdtemp(prefix="vf", dir="/tmp")
    q = os.path.join(top, "q")
    os.makedirs(os.path.join(q, "private"))
    logfile = os.path.join(top, "log")
    with open(os.path.join(top, "main.cf"), "w") as fp:
        fp.write(f"queue_directory = {q}\nmaillog_file = {logfile}\n"
                 f"data_directory = {top}/data\n"
                 "address_verify_poll_count = 1\ndaemon_timeout = 1s\n")
    log.init("verify", maillog_file=logfile)
    cleanup = run_standalone("cleanup", [f"unix:{q}/private/cleanup"], handler=_fake_cleanup,
                             config_dir=top)
    verify = run_standalone("verify", [f"unix:{q}/private/verify"],
                            handler=service.serve_client, post_init=service.post_init,
                            config_dir=top)
    try:
        yield {"top": top, "q": q, "log": logfile, "cleanup": cleanup, "verify": verify}
    finally:
        verify.stop()
        cleanup.stop()
        close_all()
        shutil.rmtree(top, ignore_errors=True)


def _probes(inst, n: int) -> list:
    deadline = time.monotonic() + 10
    while len(inst["cleanup"].ctx.state.get("probes", [])) < n and time.monotonic() < deadline:
        time.sleep(0.02)
    return inst["cleanup"].ctx.state.get("probes", [])


def test_verify_query_probe_update_cycle(inst):
    q = inst["q"]
    r = request_sync(q, "private/verify", {"request": "query", "address": "User@Example.COM"})
    assert r.get_int("status") == VRFY_STAT_OK
    assert r.get_int("recipient_status") == RCPT_STAT_TODO
    assert r.get("reason") == "Address verification in progress"
    probes = _probes(inst, 1)
    assert len(probes) == 1
    assert probes[0]["sender"] == "double-bounce"
    assert probes[0]["rcpt"] == ["User@Example.COM"]
    assert probes[0]["trace_flags"] == "verify,record"
    # A second query while the probe is out sends no second probe.
    request_sync(q, "private/verify", {"request": "query", "address": "user@example.com"})
    time.sleep(0.1)
    assert len(_probes(inst, 1)) == 1
    # The delivery agent reports; the next query has the answer.
    assert verify_append(q, "user@example.com", "user@example.com", RCPT_STAT_BOUNCE,
                         "host mx said: 550 5.1.1 no such user")
    r = request_sync(q, "private/verify", {"request": "query", "address": "user@example.com"})
    assert r.get_int("recipient_status") == RCPT_STAT_BOUNCE
    assert r.get("reason") == "host mx said: 550 5.1.1 no such user"


def test_verify_cache_is_lmdb_and_survives_restart(inst):
    q = inst["q"]
    assert verify_append(q, "a@example.com", "b@example.com", RCPT_STAT_OK, "250 2.1.5 Ok")
    assert os.path.exists(os.path.join(inst["top"], "data", "verify_cache.lmdb"))
    inst["verify"].stop()
    close_all()
    again = run_standalone("verify", [f"unix:{q}/private/verify"], handler=service.serve_client,
                           post_init=service.post_init, config_dir=inst["top"])
    try:
        for addr in ("a@example.com", "b@example.com"):      # both were recorded
            r = request_sync(q, "private/verify", {"request": "query", "address": addr})
            assert r.get_int("recipient_status") == RCPT_STAT_OK
    finally:
        again.stop()


def test_verify_bad_requests(inst):
    q = inst["q"]
    assert request_sync(q, "private/verify", {"request": "frob"}).get_int("status") == VRFY_STAT_BAD
    r = request_sync(q, "private/verify", {"request": "update", "address": "x@y",
                                            "recipient_status": "7"})
    assert r.get_int("status") == VRFY_STAT_BAD
    r = request_sync(q, "private/verify", {"request": "update", "address": "x@y",
                                            "recipient_status": "abc"})
    assert r.get_int("status") == VRFY_STAT_BAD


def test_verify_client_reports_service_failure(tmp_path):
    vc = VerifyClient(str(tmp_path), f"{tmp_path}/nosuch", retry_for=0.1)
    assert asyncio.run(vc.query("a@b")).status == VRFY_STAT_FAIL
    assert not verify_append(str(tmp_path), "a@b", "a@b", RCPT_STAT_OK, "x",
                             endpoint=f"{tmp_path}/nosuch")


def _engine(top: str, q: str, **over) -> Restrictions:
    cfg = load_config(top).derive({"smtpd_recipient_restrictions": "reject_unverified_recipient",
                                   "smtpd_sender_restrictions": "reject_unverified_sender",
                                   **over})
    vc = VerifyClient(q)
    return Restrictions(cfg, verify=vc.query)


def _check(eng: Restrictions, sender: str, rcpt: str):
    st = CheckState(client_addr="192.0.2.1", client_name="c.example", sender=sender,
                    recipient=rcpt)
    return asyncio.run(eng.check_rcpt(st))


def test_verify_restrictions_with_real_service(inst):
    q, top = inst["q"], inst["top"]
    eng = _engine(top, q, smtpd_relay_restrictions="")
    v = _check(eng, "", "new@example.com")
    assert v.reply_line() == ("450 4.1.1 <new@example.com>: Recipient address rejected: "
                              "unverified address: Address verification in progress")
    verify_append(q, "new@example.com", "", RCPT_STAT_OK, "250 Ok")
    assert not _check(eng, "", "new@example.com").reject
    verify_append(q, "gone@example.com", "", RCPT_STAT_BOUNCE, "said: 550 5.1.1 unknown")
    v = _check(eng, "", "gone@example.com")
    assert v.reply_line() == ("450 4.1.1 <gone@example.com>: Recipient address rejected: "
                              "undeliverable address: said: 550 5.1.1 unknown")
    eng = _engine(top, q, smtpd_relay_restrictions="", unverified_recipient_reject_code="550",
                  unverified_recipient_reject_reason="Address lookup failed")
    assert _check(eng, "", "gone@example.com").reply_line() == (
        "550 5.1.1 <gone@example.com>: Recipient address rejected: "
        "undeliverable address: Address lookup failed")
    verify_append(q, "bad@sender.example", "", RCPT_STAT_BOUNCE, "no")
    v = _check(eng, "bad@sender.example", "new@example.com")
    assert v.reply_line().startswith("450 4.1.7 <bad@sender.example>: Sender address rejected: "
                                     "undeliverable address")


def test_verify_restrictions_tempfail_action(inst):
    q, top = inst["q"], inst["top"]
    # defer_if_permit (default): a later reject wins over the deferral.
    eng = _engine(top, q, smtpd_relay_restrictions="",
                  smtpd_recipient_restrictions="reject_unverified_recipient, reject")
    assert _check(eng, "", "x@example.com").code == 554
    eng = _engine(top, q, smtpd_relay_restrictions="",
                  smtpd_recipient_restrictions="reject_unverified_recipient, reject",
                  unverified_recipient_tempfail_action="defer")
    assert _check(eng, "", "x@example.com").code == 450


def test_verify_restrictions_service_down(tmp_path):
    (tmp_path / "main.cf").write_text(f"queue_directory = {tmp_path}\n")
    cfg = load_config(str(tmp_path)).derive({"smtpd_relay_restrictions": "",
                                             "smtpd_recipient_restrictions":
                                             "reject_unverified_recipient"})
    eng = Restrictions(cfg, verify=VerifyClient(str(tmp_path), retry_for=0.1).query)
    v = _check(eng, "", "x@example.com")
    assert v.reply_line() == ("450 4.1.1 <x@example.com>: Recipient address rejected: "
                              "address verification problem")
    assert not _check(Restrictions(cfg), "", "").reject     # no recipient: nothing to verify
