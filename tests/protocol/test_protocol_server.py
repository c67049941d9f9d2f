"""SMTP server state machine: the state table, sequencing, limits, DATA/BDAT."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from protocol_driver import Driver, default_reply

from postel.protocol import events as E
from postel.protocol import replies as R
from postel.protocol.events import NEED_DATA, LocalProtocolError
from postel.protocol.smtp_server import (
    NEGATIVE_TRANSITIONS,
    SEQUENCE_ERRORS,
    TRANSITIONS,
    ServerConfig,
    SMTPServerConnection,
    State,
    ehlo_reply,
)

# Commands that produce each command event type.
COMMAND_OF = {
    E.Helo: b"HELO client.test\r\n",
    E.Ehlo: b"EHLO client.test\r\n",
    E.MailFrom: b"MAIL FROM:<s@example.com>\r\n",
    E.RcptTo: b"RCPT TO:<r@example.com>\r\n",
    E.Data: b"DATA\r\n",
    E.Rset: b"RSET\r\n",
    E.Noop: b"NOOP\r\n",
    E.Quit: b"QUIT\r\n",
    E.Vrfy: b"VRFY postmaster\r\n",
    E.Etrn: b"ETRN example.com\r\n",
    E.Help: b"HELP\r\n",
    E.StartTls: b"STARTTLS\r\n",
    E.Auth: b"AUTH PLAIN\r\n",
    E.Xclient: b"XCLIENT NAME=x.test ADDR=192.0.2.1\r\n",
    E.Xforward: b"XFORWARD NAME=x.test\r\n",
}

# Input that brings a fresh greeted session to each command state.
REACH = {
    State.IDLE: b"",
    State.READY: b"EHLO c\r\n",
    State.MAIL: b"EHLO c\r\nMAIL FROM:<s@x>\r\n",
    State.RCPT: b"EHLO c\r\nMAIL FROM:<s@x>\r\nRCPT TO:<r@x>\r\n",
    State.BDAT: b"EHLO c\r\nMAIL FROM:<s@x>\r\nRCPT TO:<r@x>\r\nBDAT 2\r\nab",
    State.AUTH: b"EHLO c\r\nAUTH PLAIN\r\n",
}

CONFIG = dict(myhostname="mx.test", starttls=True, auth=True)


def session(state: State) -> Driver:
    """a driver whose connection is in state."""
    d = Driver(ServerConfig(**CONFIG))
    d.feed(REACH[state])
    assert d.conn.state is state
    return d


@pytest.mark.parametrize("state", [s for s in REACH if s is not State.AUTH])
@pytest.mark.parametrize("etype", list(COMMAND_OF))
def test_protocol_state_table_row(state, etype):
    """every (state, command): the table's move, or the named 503-style refusal."""
    d = session(state)
    new = d.feed(COMMAND_OF[etype])
    ev = new[0]
    allowed = TRANSITIONS[state].get(etype)
    if etype is E.Auth and state is State.IDLE:
        allowed = None  # AUTH needs EHLO first
    if allowed is not None and not (etype is E.Data and state is not State.RCPT):
        assert isinstance(ev, etype), ev
        assert d.conn.state is allowed or (etype is E.Auth and d.conn.state is State.AUTH) \
            or (etype is E.Data and d.conn.state is State.DATA)
    else:
        assert isinstance(ev, E.ProtocolError), ev
        expected = SEQUENCE_ERRORS.get(state, {}).get(etype)
        if expected is not None:
            assert ev.reply == expected
        assert ev.reply.code in (502, 503, 554)
        assert d.conn.state is state


def test_protocol_table_covers_every_state():
    """every state has a row, and negative moves only exist for message ends."""
    assert set(TRANSITIONS) == set(State)
    for row in NEGATIVE_TRANSITIONS.values():
        assert set(row) <= {E.Connected, E.DataEnd, E.BdatChunkEnd, E.AuthResponse}


def test_protocol_negative_reply_keeps_state():
    """a rejected RCPT leaves the session in MAIL, DATA then says no valid rcpts."""
    def policy(conn, ev):
        return R.R550_RELAY_DENIED.format(rcpt="r@x") if isinstance(ev, E.RcptTo) else default_reply(conn, ev)
    d = Driver(policy=policy)
    d.feed(b"EHLO c\r\nMAIL FROM:<s@x>\r\nRCPT TO:<r@x>\r\nDATA\r\n")
    assert d.conn.state is State.MAIL
    assert d.events[-1].reply == R.R554_NO_VALID_RCPT
    assert d.output.endswith(b"554 5.5.1 Error: no valid recipients\r\n")
    assert d.conn.error_count == 2


def test_protocol_reply_required_before_next_event():
    """the shell must answer before taking the next event (our bug, not the peer's)."""
    conn = SMTPServerConnection()
    assert isinstance(conn.next_event(), E.Connected)
    with pytest.raises(LocalProtocolError):
        conn.next_event()
    conn.send_reply(R.R220_BANNER.format(host="h", name="n"))
    with pytest.raises(LocalProtocolError):
        conn.send_reply(R.R250_OK)
    assert conn.next_event() is NEED_DATA


def test_protocol_early_talker_and_pipelining_flag():
    """bytes before the greeting are flagged; pending input is visible."""
    conn = SMTPServerConnection()
    conn.receive_data(b"EHLO x\r\nMAIL FROM:<a@b>\r\n")
    assert conn.early_talker
    conn.next_event()
    conn.send_reply(R.R220_BANNER.format(host="h", name="n"))
    assert isinstance(conn.next_event(), E.Ehlo)
    assert conn.has_pending_input()


def test_protocol_negative_greeting_refuses_commands():
    """after a 554 greeting only QUIT/NOOP/RSET work (RFC 5321 3.1)."""
    d = Driver(greet=False, policy=lambda c, ev: R.R554_NO_SERVICE.format(host="h")
               if isinstance(ev, E.Connected) else default_reply(c, ev))
    d.feed(b"EHLO x\r\nMAIL FROM:<a@b>\r\nQUIT\r\n")
    assert d.output.splitlines()[1:] == [b"503 5.5.1 Error: no SMTP service here, send QUIT"] * 2 + [b"221 2.0.0 Bye"]
    assert d.conn.state is State.CLOSED


def test_protocol_quit_closes():
    d = Driver()
    d.feed(b"QUIT\r\nNOOP\r\n")
    assert d.conn.state is State.CLOSED
    assert d.conn.next_event() is E.CLOSED
    assert not d.of(E.Noop)


def test_protocol_full_transaction_content():
    d = Driver()
    d.feed(b"EHLO c\r\nMAIL FROM:<s@x> SIZE=100 BODY=8BITMIME\r\nRCPT TO:<r@x>\r\n"
           b"DATA\r\nSubject: t\r\n\r\n..dot\r\n.\r\nQUIT\r\n")
    assert d.content() == b"Subject: t\r\n\r\n.dot\r\n"
    end = d.of(E.DataEnd)[0]
    assert end.size == len(b"Subject: t\r\n\r\n.dot\r\n") and not end.too_big
    assert b"250 2.0.0 Ok: queued as 4ABC\r\n" in d.output
    assert d.output.endswith(b"221 2.0.0 Bye\r\n")


SMUGGLE = [b"\n.\n", b"\n.\r\n", b"\r.\r", b"\r\n.\r", b"\r.\r\n", b"\n.\r", b"\r\n.\n",
           b"\r\n.\r\r\n", b"\r\n\x00.\r\n"]


@pytest.mark.parametrize("mode", ["no", "normalize", "yes", "reject"])
@pytest.mark.parametrize("seq", SMUGGLE)
def test_protocol_smuggling_sequence_does_not_end_data(mode, seq):
    """only <CR><LF>.<CR><LF> ends DATA: one DataEnd, smuggled command is content."""
    d = Driver(ServerConfig(smtpd_forbid_bare_newline=mode))
    d.feed(b"EHLO c\r\nMAIL FROM:<s@x>\r\nRCPT TO:<r@x>\r\nDATA\r\n")
    d.feed(b"hello" + seq + b"MAIL FROM:<evil@x>\r\nRCPT TO:<v@x>\r\nDATA\r\nbad\r\n.\r\n")
    assert len(d.of(E.DataEnd)) == 1
    assert len(d.of(E.MailFrom)) == 1
    assert b"MAIL FROM:<evil@x>" in d.content()
    assert d.of(E.DataEnd)[0].bare_lf_seen == (b"\n" in seq.replace(b"\r\n", b""))


def test_protocol_bare_lf_normalized_in_content():
    d = Driver(ServerConfig(smtpd_forbid_bare_newline="normalize"))
    d.feed(b"EHLO c\nMAIL FROM:<s@x>\nRCPT TO:<r@x>\r\nDATA\r\na\nb\r\n.\r\n")
    assert d.content() == b"a\r\nb\r\n"
    assert d.conn.bare_lf_count == 3


def test_protocol_bare_lf_reject_mode():
    """reject: a command with bare LF fails with the configured code."""
    d = Driver(ServerConfig(myhostname="mx.test", smtpd_forbid_bare_newline="reject",
                            smtpd_forbid_bare_newline_reject_code=521))
    d.feed(b"EHLO c\nNOOP\r\n")
    assert d.output.endswith(b"521 5.5.2 mx.test Error: bare <LF> received\r\n")
    assert d.conn.state is State.CLOSED


def test_protocol_data_end_right_after_data_command():
    """an empty message: DATA<CRLF>.<CRLF>; but DATA<LF>.<CRLF> is not the end."""
    d = Driver()
    d.feed(b"EHLO c\r\nMAIL FROM:<s@x>\r\nRCPT TO:<r@x>\r\nDATA\r\n.\r\n")
    assert d.of(E.DataEnd)[0].size == 0
    d = Driver()
    d.feed(b"EHLO c\r\nMAIL FROM:<s@x>\r\nRCPT TO:<r@x>\r\nDATA\n.\r\nx\r\n.\r\n")
    assert d.content() == b"\r\nx\r\n"


def test_protocol_size_limit_discards_without_buffering():
    """50 MB in 64 KiB pieces against a 1 MB limit: bounded buffers, too_big."""
    limit = 1_000_000
    d = Driver(ServerConfig(message_size_limit=limit))
    d.feed(b"EHLO c\r\nMAIL FROM:<s@x>\r\nRCPT TO:<r@x>\r\nDATA\r\n")
    line = b"x" * 78 + b"\r\n"
    piece = line * (65536 // len(line))
    received = 0
    for _ in range(50 * 1024 * 1024 // len(piece)):
        for ev in d.feed(piece):
            if isinstance(ev, E.DataChunk):
                received += len(ev.data)
        assert d.conn.buffered() < d.conn.config.line_length_limit + 2
    d.events.clear()
    d.feed(b".\r\n")
    end = d.of(E.DataEnd)[0]
    assert end.too_big and end.size > 50_000_000
    assert received <= limit
    assert b"552 5.3.4 Message size exceeds fixed limit" in d.output


def test_protocol_long_data_line_split_into_pieces():
    """a line over line_length_limit is passed on in pieces, bytes intact."""
    d = Driver(ServerConfig(line_length_limit=100))
    d.feed(b"EHLO c\r\nMAIL FROM:<s@x>\r\nRCPT TO:<r@x>\r\nDATA\r\n")
    body = b"." + b"a" * 1000 + b"\r\n.b\r\n"
    d.feed(body)
    assert d.conn.buffered() <= 102
    d.feed(b".\r\n")
    assert d.content() == b"a" * 1000 + b"\r\nb\r\n"


def test_protocol_long_command_line():
    d = Driver(ServerConfig(smtpd_command_line_limit=512))
    d.feed(b"NOOP " + b"x" * 600)
    assert d.conn.buffered() == 0
    d.feed(b"yyy\r\nNOOP\r\n")
    assert d.output.splitlines()[1:] == [b"500 5.5.2 Error: line too long", b"250 2.0.0 Ok"]


def test_protocol_recipient_limit():
    d = Driver(ServerConfig(smtpd_recipient_limit=2))
    d.feed(b"EHLO c\r\nMAIL FROM:<s@x>\r\n" + b"RCPT TO:<r@x>\r\n" * 3)
    assert d.output.endswith(b"452 4.5.3 Error: too many recipients\r\n")
    assert d.conn.session.rcpt_count == 2


def test_protocol_bdat_transaction():
    d = Driver()
    d.feed(b"EHLO c\r\nMAIL FROM:<s@x>\r\nRCPT TO:<r@x>\r\nBDAT 5\r\n\r\n.\r\nBDAT 3 LAST\r\nabcQUIT\r\n")
    assert d.content() == b"\r\n.\r\nabc"
    assert [type(e) for e in d.events if not isinstance(e, E.DataChunk)][-5:] == [
        E.Bdat, E.BdatChunkEnd, E.Bdat, E.DataEnd, E.Quit]
    assert b"250 2.0.0 Ok: 5 bytes\r\n" in d.output
    assert d.of(E.DataEnd)[0].size == 8


def test_protocol_bdat_zero_last_and_errors():
    d = Driver()
    d.feed(b"EHLO c\r\nBDAT 4\r\nQUITNOOP\r\n")
    assert d.of(E.ProtocolError)[0].reply == R.R503_NEED_MAIL
    assert d.of(E.Noop) and not d.of(E.Quit)
    d.feed(b"MAIL FROM:<s@x>\r\nRCPT TO:<r@x>\r\nBDAT 1\r\nxDATA\r\nMAIL FROM:<a@b>\r\nBDAT 0 LAST\r\n")
    replies = [e.reply for e in d.of(E.ProtocolError)]
    assert R.R503_DATA_AFTER_BDAT in replies and R.R503_MAIL_AFTER_BDAT in replies
    assert d.of(E.DataEnd)[0].size == 1
    d.feed(b"BDAT x\r\n")
    assert d.output.endswith(b"521 5.5.4 Syntax: BDAT count [LAST]\r\n")
    assert d.conn.state is State.CLOSED


def test_protocol_bdat_size_limit():
    d = Driver(ServerConfig(message_size_limit=10))
    d.feed(b"EHLO c\r\nMAIL FROM:<s@x>\r\nRCPT TO:<r@x>\r\nBDAT 20 LAST\r\n" + b"y" * 20)
    assert d.of(E.DataEnd)[0].too_big
    assert len(d.content()) <= 10


def test_protocol_bdat_disabled_disconnects():
    d = Driver(ServerConfig(chunking=False))
    d.feed(b"EHLO c\r\nBDAT 3\r\nabc")
    assert d.output.endswith(b"521 5.5.1 Error: command not implemented\r\n")
    assert d.conn.state is State.CLOSED


def test_protocol_starttls_discards_injected_commands():
    d = Driver(ServerConfig(starttls=True))
    d.feed(b"EHLO c\r\nSTARTTLS\r\nMAIL FROM:<evil@x>\r\n")
    assert d.conn.state is State.IDLE and d.conn.session.tls_active
    assert d.conn.discarded_after_starttls == len(b"MAIL FROM:<evil@x>\r\n")
    assert not d.of(E.MailFrom)
    d.feed(b"EHLO c\r\nSTARTTLS\r\n")
    assert d.output.endswith(b"554 5.5.1 Error: TLS already active\r\n")


def test_protocol_auth_exchange():
    d = Driver(ServerConfig(auth=True))
    d.feed(b"EHLO c\r\nAUTH PLAIN\r\nAGEAYg==\r\nAUTH PLAIN\r\n")
    assert d.of(E.AuthResponse)[0].line == "AGEAYg=="
    assert "AGEAYg" not in repr(d.of(E.AuthResponse)[0])
    assert d.conn.session.authenticated and d.conn.state is State.READY
    assert d.output.endswith(b"503 5.5.1 Error: already authenticated\r\n")
    d = Driver()
    d.feed(b"EHLO c\r\nAUTH PLAIN\r\n")
    assert d.output.endswith(b"503 5.5.1 Error: authentication not enabled\r\n")


@pytest.mark.parametrize("line", [b"GET / HTTP/1.0", b"POST /x HTTP/1.1", b"CONNECT a:25",
                                  b"Host: example.com", b"User-Agent: curl", b"<html>"])
def test_protocol_non_smtp_command(line):
    d = Driver()
    d.feed(line + b"\r\nNOOP\r\n")
    assert isinstance(d.events[-1], E.NonSmtpCommand)
    assert d.output.endswith(b"221 2.7.0 Error: I can break rules, too. Goodbye.\r\n")
    assert d.conn.state is State.CLOSED


@pytest.mark.parametrize("line,reply", [
    (b"FOO", R.R500_NOT_RECOGNIZED), (b"", R.R500_BAD_SYNTAX),
    (b"HELO", R.R501_HELO_SYNTAX), (b"EHLO", R.R501_EHLO_SYNTAX),
    (b"MAIL TO:<a@b>", R.R501_MAIL_SYNTAX), (b"MAIL FROM:<a@b", R.R501_MAIL_SYNTAX),
    (b"MAIL FROM:<a b@c>", R.R501_BAD_SENDER), (b"MAIL FROM:<a@b> SIZE=x", R.R501_SIZE_SYNTAX),
    (b"MAIL FROM:<a@b> SIZE=99999999999", R.R552_SIZE),
    (b"MAIL FROM:<a@b> FOO=bar", R.R555_UNSUPPORTED_OPTION.format(name="FOO=bar")),
    (b"MAIL FROM:<a@b> RET=ALL", R.R501_RET_SYNTAX),
    (b"MAIL FROM:<a@b> ENVID=a+zz", R.R501_ENVID_SYNTAX),
    (b"MAIL FROM:<\xc3\xa9@b>", R.R553_SMTPUTF8_REQUIRED),
    (b"MAIL FROM:<a@b> \xff", R.R500_BAD_UTF8),
    (b"VRFY", R.R501_VRFY_SYNTAX), (b"RSET x", R.R501_RSET_SYNTAX),
    (b"ETRN", R.R500_ETRN_SYNTAX), (b"XCLIENT", R.R501_ATTR_SYNTAX.format(name="XCLIENT")),
    (b"XCLIENT FOO=1", R.R501_ATTR_NAME.format(name="XCLIENT", detail="FOO")),
    (b"XCLIENT NAME", R.R501_ATTR_EXPECTED),
])
def test_protocol_command_syntax_errors(line, reply):
    d = Driver()
    d.feed(b"EHLO c\r\n" + line + b"\r\n")
    assert d.events[-1].reply == reply
    assert d.output.endswith(reply.to_bytes())


def test_protocol_data_syntax_after_sequence():
    """sequence errors come before syntax errors, as in Postfix."""
    d = Driver()
    d.feed(b"EHLO c\r\nDATA x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA x\r\n")
    assert [e.reply for e in d.events if hasattr(e, "reply")] == [R.R503_NEED_RCPT,
                                                                 R.R501_DATA_SYNTAX]


def test_protocol_rcpt_syntax_errors():
    d = Driver()
    d.feed(b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<>\r\nRCPT TO:<a@b> NOTIFY=NEVER,SUCCESS\r\n"
           b"RCPT TO:<a@b> ORCPT=foo\r\nRCPT TO:<a@b> NOTIFY=DELAY ORCPT=rfc822;a+40b\r\n")
    replies = [e.reply for e in d.events if isinstance(e, E.BadSyntax)]
    assert replies == [R.R501_BAD_RCPT, R.R501_NOTIFY_SYNTAX, R.R501_ORCPT_SYNTAX]
    rcpt = d.of(E.RcptTo)[0]
    assert rcpt.params.notify == ("DELAY",) and rcpt.params.orcpt == ("rfc822", "a@b")
    assert d.of(E.MailFrom)[0].address == ""


def test_protocol_strict_envelopes():
    d = Driver(ServerConfig(smtpd_strict_rfc821_envelopes=True))
    d.feed(b"EHLO c\r\nMAIL FROM:a@b\r\nMAIL FROM: <a@b>\r\nMAIL FROM:<a@@b>\r\n")
    assert [e.reply for e in d.events[2:]] == [R.R501_MAIL_SYNTAX, R.R501_MAIL_SYNTAX,
                                                R.R501_BAD_SENDER]
    d = Driver()
    d.feed(b"EHLO c\r\nMAIL FROM: a@b SIZE=5\r\n")
    assert d.of(E.MailFrom)[0].address == "a@b"


def test_protocol_helo_required():
    d = Driver(ServerConfig(smtpd_helo_required=True))
    d.feed(b"MAIL FROM:<a@b>\r\n")
    assert d.events[-1].reply == R.R503_HELO_FIRST


def test_protocol_xclient_resets_session():
    d = Driver()
    d.feed(b"EHLO c\r\nXCLIENT NAME=spike.porcupine.org ADDR=168.100.189.2 LOGIN=[UNAVAILABLE]\r\n")
    ev = d.of(E.Xclient)[0]
    assert ev.attrs == {"NAME": "spike.porcupine.org", "ADDR": "168.100.189.2",
                        "LOGIN": "[UNAVAILABLE]"}
    assert d.conn.state is State.IDLE and d.conn.session.helo_name is None


def test_protocol_ehlo_reply_order_and_discard():
    r = ehlo_reply("mx", 1000, ["chunking", "pipelining", "SIZE", "DSN", "STARTTLS", "AUTH",
                                "8BITMIME", "ENHANCEDSTATUSCODES", "VRFY", "ETRN", "SMTPUTF8"],
                   discard=["VRFY", "silent-discard"], auth_mechanisms=["PLAIN", "LOGIN"])
    assert r.to_bytes() == (b"250-mx\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-ETRN\r\n"
                            b"250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n250-ENHANCEDSTATUSCODES\r\n"
                            b"250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n")
    assert ehlo_reply("mx", 0, ["SIZE"]).to_bytes() == b"250-mx\r\n250 SIZE\r\n"


PIPELINE = (b"EHLO c\r\nMAIL FROM:<s@x> SIZE=10\r\nRCPT TO:<r@x>\r\nRCPT TO:<q@x> NOTIFY=NEVER\r\n"
            b"DATA\r\nline1\r\n..line2\r\n" + b"z" * 300 + b"\r\n.\r\nRSET\r\nMAIL FROM:<s@x>\r\n"
            b"RCPT TO:<r@x>\r\nBDAT 7\r\nabc\r\n.\rBDAT 2 LAST\r\nxyNOOP\r\nQUIT\r\n")


def _run_split(cuts: list[int]):
    d = Driver(ServerConfig(line_length_limit=100))
    prev = 0
    for cut in sorted(cuts) + [len(PIPELINE)]:
        d.feed(PIPELINE[prev:cut])
        prev = cut
    events = [e for e in d.events if not isinstance(e, E.DataChunk)]
    return events, d.content(), bytes(d.output)


REFERENCE = _run_split([])


@given(st.lists(st.integers(0, len(PIPELINE)), max_size=8))
@settings(max_examples=200, deadline=None)
def test_protocol_pipelined_input_split_anywhere(cuts):
    """input split at any byte boundaries gives the same events, content and replies."""
    assert _run_split(cuts) == REFERENCE


def test_protocol_pipelined_input_every_single_boundary():
    for cut in range(len(PIPELINE) + 1):
        assert _run_split([cut]) == REFERENCE
    assert len(REFERENCE[0]) == 16


def test_protocol_smtplib_output_as_input():
    """what Python's smtplib writes is parsed into the expected events."""
    import smtplib

    class FakeSock:
        def __init__(self):
            self.sent = bytearray()
            self.replies = [b"220 mx ESMTP\r\n", b"250-mx\r\n250-SIZE 1000\r\n250 8BITMIME\r\n",
                            b"250 ok\r\n", b"250 ok\r\n", b"354 go\r\n", b"250 ok\r\n", b"221 bye\r\n"]

        def makefile(self, mode):
            import io
            return io.BufferedReader(io.BytesIO(b"".join(self.replies)))

        def sendall(self, data):
            self.sent += data

        def close(self):
            pass

    fake = FakeSock()
    client = smtplib.SMTP()
    client.sock = fake
    client.file = fake.makefile("rb")
    client.getreply()
    client.ehlo("client.test")
    client.sendmail("a@b.test", ["c@d.test"], b"Subject: x\r\n\r\n.hidden\r\nbye\n")
    client.quit()
    d = Driver()
    d.feed(bytes(fake.sent))
    assert [type(e) for e in d.events if not isinstance(e, E.DataChunk)][1:] == [
        E.Ehlo, E.MailFrom, E.RcptTo, E.Data, E.DataEnd, E.Quit]
    assert d.of(E.MailFrom)[0].params.size is not None
    # smtplib sends bytes as given: "bye<LF>" then its own <CR><LF>.<CR><LF>;
    # the bare LF is normalized and the client's CRLF stays part of the content.
    assert d.content() == b"Subject: x\r\n\r\n.hidden\r\nbye\r\n\r\n"


FUZZ_WORDS = [b"EHLO x", b"HELO", b"MAIL FROM:<a@b>", b"MAIL FROM:", b"RCPT TO:<c@d>", b"DATA",
              b"BDAT 3", b"BDAT 0 LAST", b"BDAT 2 LAST", b"RSET", b"NOOP", b"QUIT", b".", b"..",
              b"AUTH PLAIN", b"*", b"STARTTLS", b"XCLIENT NAME=a", b"VRFY", b"\xff\xfe", b"GET /",
              b"MAIL FROM:<\"a\\", b"RCPT TO:<a@b> NOTIFY=", b"x" * 3000]


@given(st.lists(st.sampled_from(FUZZ_WORDS) | st.binary(max_size=20), max_size=30),
       st.lists(st.sampled_from([b"\r\n", b"\n", b"\r", b""]), min_size=30, max_size=30),
       st.sampled_from(["normalize", "reject"]))
@settings(max_examples=300, deadline=None)
def test_protocol_fuzz_never_raises(words, ends, mode):
    """arbitrary input never raises, and buffers stay bounded."""
    d = Driver(ServerConfig(smtpd_forbid_bare_newline=mode, starttls=True, auth=True))
    for word, end in zip(words, ends, strict=False):
        d.feed(word + end)
        assert d.conn.buffered() <= 2 * 2048 + 40
