"""smtp(8)/lmtp(8) client against a scripted in-process server: per-recipient replies,
SIZE, SMTPUTF8, PIPELINING grouping, greeting rejection, EHLO fallback, time limits."""

from __future__ import annotations

import asyncio

from smtp_harness import Env

MSG = b"Subject: s\n\nbody\n"


class Scripted:
    """A tiny SMTP/LMTP server: replies chosen by rules, every read recorded."""

    def __init__(self, ehlo=("PIPELINING", "8BITMIME", "DSN"), greeting=b"220 ok\r\n",
                 rcpt=None, dot=None, lmtp=False, ehlo_reply=None, silent_after=None,
                 rset="250 2.0.0 Ok"):
        self.ehlo = ehlo
        self.greeting = greeting
        self.rcpt = rcpt or {}
        self.dot = dot
        self.lmtp = lmtp
        self.ehlo_reply = ehlo_reply
        self.silent_after = silent_after
        self.rset = rset
        self.reads: list[bytes] = []
        self.commands: list[str] = []
        self.sessions = 0

    async def start(self) -> int:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def handle(self, reader, writer):
        self.sessions += 1
        writer.write(self.greeting)
        if not self.greeting.startswith(b"220"):
            await writer.drain()
            writer.close()
            return
        rcpts: list[str] = []
        buf = b""
        in_data = False
        while True:
            data = await reader.read(65536)
            if not data:
                break
            self.reads.append(data)
            buf += data
            while True:
                if in_data:
                    i = buf.find(b"\r\n.\r\n")
                    if i < 0 and not buf.startswith(b".\r\n"):
                        break
                    buf = buf[i + 5:] if i >= 0 else buf[3:]
                    in_data = False
                    if self.silent_after == ".":
                        await asyncio.sleep(30)
                    for r in (rcpts if self.lmtp else rcpts[:1]):
                        reply = (self.dot or {}).get(r, "250 2.0.0 Ok: queued")
                        writer.write(reply.encode() + b"\r\n")
                    rcpts = []
                    continue
                i = buf.find(b"\r\n")
                if i < 0:
                    break
                line, buf = buf[:i].decode(), buf[i + 2:]
                self.commands.append(line)
                verb = line.split(" ", 1)[0].upper()
                if verb in ("EHLO", "LHLO"):
                    if self.ehlo_reply:
                        writer.write(self.ehlo_reply.encode() + b"\r\n")
                    else:
                        lines = ["250-test"] + [f"250-{k}" for k in self.ehlo[:-1]]
                        lines.append(f"250 {self.ehlo[-1]}" if self.ehlo else "250 test")
                        if not self.ehlo:
                            lines = ["250 test"]
                        writer.write(("\r\n".join(lines) + "\r\n").encode())
                elif verb == "HELO":
                    writer.write(b"250 test\r\n")
                elif verb == "MAIL":
                    rcpts = []
                    writer.write(b"250 2.1.0 Ok\r\n")
                elif verb == "RCPT":
                    addr = line[line.index("<") + 1:line.index(">")]
                    reply = self.rcpt.get(addr, "250 2.1.5 Ok")
                    if reply.startswith("2"):
                        rcpts.append(addr)
                    writer.write(reply.encode() + b"\r\n")
                elif verb == "DATA":
                    if rcpts:
                        writer.write(b"354 go\r\n")
                        in_data = True
                    else:
                        writer.write(b"554 5.5.1 no valid recipients\r\n")
                elif verb == "RSET":
                    rcpts = []
                    writer.write(self.rset.encode() + b"\r\n")
                elif verb == "QUIT":
                    writer.write(b"221 bye\r\n")
                    await writer.drain()
                    writer.close()
                    return
                else:
                    writer.write(b"502 5.5.2 what\r\n")
            await writer.drain()
        writer.close()


def run(env, server: Scripted, rcpts, content=MSG, lmtp=False, main_hop=None, **req_kw):
    """queue, start the server, deliver; returns (dctx, qid)."""
    qid = env.queue(content, rcpts, sender=req_kw.pop("sender", "s@example.org"))

    async def go():
        port = await server.start()
        client = env.client(lmtp)
        hop = main_hop(port) if main_hop else f"[127.0.0.1]:{port}"
        req = env.request(qid, hop, **req_kw)
        try:
            return await env.adeliver(client, req)
        finally:
            await client.cache.close_all()
            server.server.close()

    return asyncio.run(go()), qid


def test_scripted_mixed_rcpt_replies(tmp_path):
    env = Env(tmp_path)
    srv = Scripted(rcpt={"bad@x.example": "550 5.1.1 <bad@x.example>: Recipient address rejected",
                         "later@x.example": "451 4.2.0 try later"})
    dctx, qid = run(env, srv, ["ok@x.example", "bad@x.example", "later@x.example"])
    assert dctx.status == ["sent", "bounced", "deferred"]
    assert env.done(qid) == [True, True, False]
    text = env.log_text()
    assert ("dsn=5.1.1, status=bounced (host 127.0.0.1[127.0.0.1] said: 550 5.1.1 "
            "<bad@x.example>: Recipient address rejected (in reply to RCPT TO command))") in text
    assert "dsn=4.2.0, status=deferred (host 127.0.0.1[127.0.0.1] said: 451 4.2.0 try later" in text


def test_scripted_pipelining_one_write(tmp_path):
    env = Env(tmp_path)
    srv = Scripted()
    dctx, _ = run(env, srv, ["a@x.example", "b@x.example"])
    assert dctx.status == ["sent", "sent"]
    group = next(r for r in srv.reads if r.startswith(b"MAIL FROM"))
    assert group.count(b"RCPT TO") == 2 and group.endswith(b"DATA\r\n")


def test_scripted_no_pipelining_one_command_per_write(tmp_path):
    env = Env(tmp_path)
    srv = Scripted(ehlo=("8BITMIME",))
    dctx, _ = run(env, srv, ["a@x.example", "b@x.example"])
    assert dctx.status == ["sent", "sent"]
    assert b"MAIL FROM:<s@example.org>\r\n" in srv.reads
    assert not any(b"RCPT" in r and b"MAIL" in r for r in srv.reads)


def test_scripted_size_limit_bounces_534(tmp_path):
    env = Env(tmp_path)
    srv = Scripted(ehlo=("SIZE 10", "PIPELINING"))
    dctx, _ = run(env, srv, ["a@x.example"])
    assert dctx.status == ["bounced"]
    assert not any(c.startswith("MAIL") for c in srv.commands)
    assert "dsn=5.3.4" in env.log_text()
    assert "exceeds size limit 10 of server 127.0.0.1[127.0.0.1]" in env.log_text()


def test_scripted_size_param_sent(tmp_path):
    env = Env(tmp_path)
    srv = Scripted(ehlo=("SIZE 100000", "PIPELINING"))
    dctx, _ = run(env, srv, ["a@x.example"])
    assert dctx.status == ["sent"]
    assert any(c.startswith("MAIL FROM:<s@example.org> SIZE=") for c in srv.commands)


def test_scripted_smtputf8_required_bounces_567(tmp_path):
    env = Env(tmp_path)
    srv = Scripted(ehlo=("PIPELINING",))
    dctx, _ = run(env, srv, ["j\u00f6rg@x.example"], smtputf8=True)
    assert dctx.status == ["bounced"]
    assert ("dsn=5.6.7, status=bounced (SMTPUTF8 is required, but was not offered by host "
            "127.0.0.1[127.0.0.1])") in env.log_text()


def test_scripted_smtputf8_offered(tmp_path):
    env = Env(tmp_path)
    srv = Scripted(ehlo=("PIPELINING", "SMTPUTF8"))
    dctx, _ = run(env, srv, ["j\u00f6rg@x.example"], smtputf8=True)
    assert dctx.status == ["sent"]
    assert any(c.endswith(" SMTPUTF8") and c.startswith("MAIL") for c in srv.commands)


def test_scripted_smtputf8_flag_but_ascii_delivers(tmp_path):
    env = Env(tmp_path)
    srv = Scripted(ehlo=("PIPELINING",))
    dctx, _ = run(env, srv, ["plain@x.example"], smtputf8=True)
    assert dctx.status == ["sent"]


def test_scripted_greeting_554_deferred(tmp_path):
    env = Env(tmp_path)
    srv = Scripted(greeting=b"554 5.7.1 go away\r\n")
    dctx, _ = run(env, srv, ["a@x.example"])
    assert dctx.status == ["deferred"]
    assert "refused to talk to me: 554 5.7.1 go away" in env.log_text()


def test_scripted_greeting_554_hard_without_skip(tmp_path):
    env = Env(tmp_path, {"smtp_skip_5xx_greeting": "no"})
    srv = Scripted(greeting=b"554 5.7.1 go away\r\n")
    dctx, _ = run(env, srv, ["a@x.example"])
    assert dctx.status == ["bounced"]


def test_scripted_ehlo_rejected_falls_back_to_helo(tmp_path):
    env = Env(tmp_path)
    srv = Scripted(ehlo_reply="502 5.5.2 no EHLO here")
    dctx, _ = run(env, srv, ["a@x.example"])
    assert dctx.status == ["sent"]
    assert "HELO client.test.example" in srv.commands


def test_scripted_data_done_timeout(tmp_path):
    env = Env(tmp_path, {"smtp_data_done_timeout": "1s"})
    srv = Scripted(silent_after=".")
    dctx, _ = run(env, srv, ["a@x.example"])
    assert dctx.status == ["deferred"]
    assert ("conversation with 127.0.0.1[127.0.0.1] timed out while sending end of data -- "
            "message may be sent more than once") in env.log_text()


def test_scripted_lmtp_per_recipient_after_data(tmp_path):
    env = Env(tmp_path)
    srv = Scripted(ehlo=("PIPELINING", "8BITMIME"), lmtp=True,
                   dot={"full@x.example": "452 4.2.2 Mailbox full",
                        "gone@x.example": "550 5.1.1 No such user"})
    dctx, qid = run(env, srv, ["ok@x.example", "full@x.example", "gone@x.example"], lmtp=True,
                    main_hop=lambda p: f"inet:127.0.0.1:{p}")
    assert dctx.status == ["sent", "deferred", "bounced"]
    assert any(c.startswith("LHLO ") for c in srv.commands)
    text = env.log_text()
    assert "said: 452 4.2.2 Mailbox full (in reply to end of DATA command)" in text
    assert "said: 550 5.1.1 No such user (in reply to end of DATA command)" in text


def test_scripted_bad_nexthop_defers(tmp_path):
    env = Env(tmp_path)
    srv = Scripted()
    dctx, _ = run(env, srv, ["a@x.example"], main_hop=lambda p: "[127.0.0.1:bad")
    assert dctx.status == ["deferred"]
    assert "mail transport unavailable" in env.log_text()


def _twice(env, server: Scripted):
    """two messages, one after the other, through one client (connection cache)."""
    qids = [env.queue(MSG, ["a@x.example"]), env.queue(MSG, ["b@x.example"])]

    async def go():
        port = await server.start()
        client = env.client()
        try:
            return [await env.adeliver(client, env.request(q, f"[127.0.0.1]:{port}"))
                    for q in qids]
        finally:
            await client.cache.close_all()
            server.server.close()

    return asyncio.run(go())


def test_scripted_reuse_groups_rset_with_mail(tmp_path):
    env = Env(tmp_path)
    srv = Scripted()
    dctxs = _twice(env, srv)
    assert [d.status for d in dctxs] == [["sent"], ["sent"]]
    assert srv.sessions == 1
    group = next(r for r in srv.reads if r.startswith(b"RSET"))
    assert group.startswith(b"RSET\r\nMAIL FROM:<sender@example.org>")
    assert b"RCPT TO:<b@x.example>" in group and group.endswith(b"DATA\r\n")
    # the body and the end-of-data line went out in one write
    assert any(r.endswith(b"body\r\n.\r\n") and r.startswith(b"Subject") for r in srv.reads)


def test_scripted_reuse_rset_rejected_connects_afresh(tmp_path):
    env = Env(tmp_path)
    srv = Scripted(rset="421 4.3.2 going down")
    dctxs = _twice(env, srv)
    assert [d.status for d in dctxs] == [["sent"], ["sent"]]
    assert srv.sessions == 2                 # the cached connection was given up
    assert srv.commands.count("MAIL FROM:<sender@example.org>") == 3
    assert "going down" not in env.log_text()


def test_scripted_no_pipelining_reuse_lone_rset(tmp_path):
    env = Env(tmp_path)
    srv = Scripted(ehlo=("8BITMIME",))
    dctxs = _twice(env, srv)
    assert [d.status for d in dctxs] == [["sent"], ["sent"]]
    assert b"RSET\r\n" in srv.reads and srv.sessions == 1
