"""smtp(8) address verification (sendmail -bv): MAIL and RCPT only, never DATA."""

from __future__ import annotations

import os

from smtp_harness import Env
from test_smtp_scripted import Scripted, run

from postel.smtp import service

VERIFY = frozenset({"verify"})


def test_verify_probes_rcpt_without_data(tmp_path):
    env = Env(tmp_path)
    srv = Scripted(rcpt={"bad@x.example": "550 5.1.1 <bad@x.example>: User unknown",
                         "later@x.example": "451 4.3.0 try later"})
    dctx, qid = run(env, srv, ["ok@x.example", "bad@x.example", "later@x.example"], flags=VERIFY)
    assert dctx.status == ["sent", "bounced", "bounced"]
    verbs = [c.split(" ", 1)[0].upper() for c in srv.commands]
    assert "DATA" not in verbs and verbs.count("RCPT") == 3
    assert verbs[-1] in ("QUIT", "RSET")
    text = env.log_text()
    assert "to=<ok@x.example>, relay=127.0.0.1[127.0.0.1]" in text
    assert "dsn=2.1.5, status=deliverable (250 2.1.5 Ok)" in text
    assert ("dsn=5.1.1, status=undeliverable (host 127.0.0.1[127.0.0.1] said: 550 5.1.1 "
            "<bad@x.example>: User unknown (in reply to RCPT TO command))") in text
    assert "dsn=4.3.0, status=undeliverable (host 127.0.0.1[127.0.0.1] said: 451" in text
    assert env.done(qid) == [True, True, True]        # a probe is never retried
    assert not os.path.exists(env.qd.path("bounce", qid))
    assert not os.path.exists(env.qd.path("defer", qid))


def test_verify_pipelining_groups_mail_and_rcpt_only(tmp_path):
    env = Env(tmp_path)
    srv = Scripted()
    dctx, _ = run(env, srv, ["a@x.example", "b@x.example"], flags=VERIFY)
    assert dctx.status == ["sent", "sent"]
    group = next(r for r in srv.reads if r.startswith(b"MAIL FROM"))
    assert group.count(b"RCPT TO") == 2 and b"DATA" not in group


def test_verify_without_pipelining(tmp_path):
    env = Env(tmp_path)
    srv = Scripted(ehlo=("8BITMIME",))
    dctx, _ = run(env, srv, ["a@x.example"], flags=VERIFY)
    assert dctx.status == ["sent"]
    assert not any(b"DATA" in r for r in srv.reads)


def test_smtp_agent_handles_verify_itself():
    assert getattr(service.deliver, "handles_verify", False) is True
