"""Client pieces, xtext, replies: round trips through the server machine."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from protocol_driver import Driver

from postel.protocol import events as E
from postel.protocol import replies as R
from postel.protocol.esmtp import ParamError, is_mailbox, parse_attrs, xtext_decode, xtext_encode
from postel.protocol.smtp_client import (
    DotStuffer,
    LmtpReplies,
    ReplyError,
    ReplyParser,
    ServerReply,
    dot_stuff,
    mail_command,
    orcpt_param,
    parse_ehlo,
    rcpt_command,
    xclient_command,
)
from postel.protocol.smtp_server import ServerConfig


@given(st.text())
def test_protocol_xtext_round_trip(text):
    enc = xtext_encode(text)
    assert all(33 <= ord(c) <= 126 and c != "=" for c in enc)
    assert xtext_decode(enc) == text


@pytest.mark.parametrize("bad", ["a+", "a+G0", "a b", "a=b", "\u00e9"])
def test_protocol_xtext_bad(bad):
    with pytest.raises(ValueError):
        xtext_decode(bad)


def _normalize(content: bytes) -> bytes:
    """what the server makes of content: bare LF -> CRLF, final line ended."""
    out = content.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if not out.endswith(b"\r\n"):
        out += b"\r\n"
    return out


CONTENT = st.binary(max_size=400).map(lambda b: b.replace(b"\n.", b"\n.").replace(b"x", b"\n.")) | \
    st.lists(st.sampled_from([b".", b"\r", b"\n", b"\r\n", b"a", b"..", b"\r\n.\r\n", b"x" * 120]),
             max_size=40).map(b"".join)


@given(CONTENT, st.lists(st.integers(0, 500), max_size=6), st.lists(st.integers(0, 600), max_size=6))
@settings(max_examples=300, deadline=None)
def test_protocol_dot_stuffing_round_trip(content, client_cuts, server_cuts):
    """DotStuffer output, fed to the server in any pieces, gives back the content."""
    stuffer = DotStuffer()
    wire = bytearray()
    prev = 0
    for cut in sorted(c for c in client_cuts if c <= len(content)) + [len(content)]:
        wire += stuffer.feed(content[prev:cut])
        prev = cut
    wire += stuffer.end()
    assert bytes(wire) == dot_stuff(content)
    d = Driver(ServerConfig(line_length_limit=100))
    d.feed(b"EHLO c\r\nMAIL FROM:<s@x>\r\nRCPT TO:<r@x>\r\nDATA\r\n")
    prev = 0
    for cut in sorted(c for c in server_cuts if c <= len(wire)) + [len(wire)]:
        d.feed(bytes(wire[prev:cut]))
        prev = cut
    assert len(d.of(E.DataEnd)) == 1
    expected = _normalize(content) if content else b""
    assert d.content() == expected
    assert d.conn.buffered() == 0


def test_protocol_dot_stuff_examples():
    assert dot_stuff(b".a\r\nb\n.") == b"..a\r\nb\r\n..\r\n.\r\n"
    assert dot_stuff(b"") == b".\r\n"
    assert dot_stuff(b"x\r") == b"x\r\r\n.\r\n"


def test_protocol_reply_parser_multiline_and_split():
    data = b"250-mx.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n"
    parser = ReplyParser()
    replies = []
    for i in range(len(data)):
        replies += parser.feed(data[i:i + 1])
    assert len(replies) == 1
    assert parse_ehlo(replies[0]) == {"PIPELINING": "", "SIZE": "10240000",
                                      "AUTH": "PLAIN LOGIN", "8BITMIME": ""}
    r = ReplyParser().feed(b"550-5.1.1 <a@b>: no\r\n550 5.1.1 such user\r\n250 2.0.0 Ok\r\n")
    assert [(x.code, x.enhanced, x.lines) for x in r] == [
        (550, "5.1.1", ["<a@b>: no", "such user"]), (250, "2.0.0", ["Ok"])]
    assert str(r[1]) == "250 2.0.0 Ok"


@pytest.mark.parametrize("bad", [b"hello\r\n", b"25 x\r\n", b"250-a\r\n251 b\r\n", b"600 x\r\n",
                                 b"2" * 5000])
def test_protocol_reply_parser_errors(bad):
    with pytest.raises(ReplyError):
        ReplyParser().feed(bad)


@given(st.sampled_from([R.R250_OK, R.R221_BYE, R.R354_DATA, R.R552_SIZE,
                        R.R421_TIMEOUT.format(host="h")]),
       st.lists(st.text(alphabet="abc <>@.", min_size=1, max_size=20), max_size=3))
def test_protocol_reply_round_trip(reply, extra):
    """Reply.to_bytes() parsed by ReplyParser gives code, enhanced code and lines back."""
    r = R.Reply(reply.code, reply.enhanced, "\n".join([reply.text, *extra]))
    (parsed,) = ReplyParser().feed(r.to_bytes())
    assert (parsed.code, parsed.enhanced) == (r.code, r.enhanced)
    assert [line.strip() for line in parsed.lines] == [line.strip() for line in r.lines()]


def test_protocol_reply_values():
    assert R.R354_DATA.to_bytes() == b"354 End data with <CR><LF>.<CR><LF>\r\n"
    assert R.R421_TIMEOUT.format(host="mx").to_bytes() == b"421 4.4.2 mx Error: timeout exceeded\r\n"
    assert R.bare_lf_reply(550, "mx").to_bytes() == b"550 5.5.2 mx Error: bare <LF> received\r\n"
    assert R.Reply(250, "2.0.0", "a\nb").to_bytes() == b"250-2.0.0 a\r\n250 2.0.0 b\r\n"
    assert R.R221_BYE.disconnects and not R.R250_OK.disconnects
    with pytest.raises(ValueError):
        R.Reply(250, "5.0.0", "x")
    with pytest.raises(ValueError):
        R.Reply(700, "", "x")


def test_protocol_every_error_reply_has_enhanced_code():
    """all named 4xx/5xx replies carry an enhanced code, except Postfix's legacy ones."""
    legacy = {"R421_SERVICE_UNAVAILABLE", "R458_ETRN_UNABLE", "R459_ETRN_UNAVAILABLE",
              "R500_ETRN_SYNTAX", "R501_HELO_SYNTAX", "R501_EHLO_SYNTAX", "R554_NO_SERVICE"}
    for name in dir(R):
        value = getattr(R, name)
        if isinstance(value, R.Reply) and value.code >= 400 and name not in legacy:
            assert value.enhanced, name


def test_protocol_command_builders_parse_back():
    wire = (b"EHLO c\r\n" + xclient_command({"NAME": "h.test", "HELO": "a b"}) + mail_command("s@x", {"SIZE": "10", "ENVID": xtext_encode("id+1 2")})
            + rcpt_command("r@x", {"NOTIFY": "SUCCESS,DELAY", "ORCPT": orcpt_param("r+1@x")}))
    d = Driver()
    d.feed(wire)
    mail, rcpt, xc = d.of(E.MailFrom)[0], d.of(E.RcptTo)[0], d.of(E.Xclient)[0]
    assert mail.params.envid == "id+1 2" and mail.params.size == 10
    assert rcpt.params.orcpt == ("rfc822", "r+1@x")
    assert rcpt.params.notify == ("SUCCESS", "DELAY")
    assert xc.attrs == {"NAME": "h.test", "HELO": "a b"}
    with pytest.raises(ValueError):
        mail_command("a@b\r\nRCPT TO:<x@y>")


def test_protocol_lmtp_replies():
    acc = LmtpReplies(["a@x", "b@x"])
    assert acc.expected() == 2
    assert acc.add(ServerReply(250, "2.1.5", ["ok"]))[0] == "a@x"
    assert acc.add(ServerReply(452, "4.2.2", ["full"])) == ("b@x", ServerReply(452, "4.2.2", ["full"]))
    assert acc.done
    with pytest.raises(ReplyError):
        acc.add(ServerReply(250, "", ["x"]))


@pytest.mark.parametrize("addr,ok", [("a@b.c", True), ('"a b"@c', True), ("a..b@c", False),
                                     ("a@[192.0.2.1]", True), ("@c", False), ("a@", False),
                                     ("\u00e9@b\u00e9.c", True), ("a@-b", False)])
def test_protocol_is_mailbox(addr, ok):
    assert is_mailbox(addr) is ok


def test_protocol_source_route_stripped():
    d = Driver()
    d.feed(b"EHLO c\r\nMAIL FROM:<@a.test,@b.test:s@x.test>\r\nRCPT TO:<\"q >\"@x>\r\n")
    assert d.of(E.MailFrom)[0].address == "s@x.test"
    assert d.of(E.RcptTo)[0].address == '"q >"@x'


def test_protocol_attr_value_too_long():
    with pytest.raises(ParamError) as info:
        parse_attrs("XCLIENT", "NAME=" + "a" * 300, frozenset({"NAME"}))
    assert info.value.reply == R.R501_ATTR_TOO_LONG
