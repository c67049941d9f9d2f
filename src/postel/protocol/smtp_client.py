"""smtp_client - sans-IO pieces of the SMTP/LMTP client

SYNOPSIS
    from postel.protocol.smtp_client import ReplyParser, DotStuffer
    parser = ReplyParser()
    for reply in parser.feed(data): ...
    wire = mail_command("a@b", {"SIZE": "100"}) + rcpt_command("c@d", {})
    stuffer = DotStuffer(); out = stuffer.feed(chunk) + ... + stuffer.end()

DESCRIPTION
    What the smtp(8)/lmtp(8) delivery agent needs to speak to a server,
    without doing any I/O:

    ReplyParser     turns server bytes into ServerReply values: multi-line
                    replies joined (RFC 5321 4.2.1), enhanced status codes
                    split off (RFC 2034), hard limits on line length and
                    line count.  A malformed reply raises ReplyError.
    parse_ehlo()    the keywords of an EHLO reply: {"SIZE": "10240000",
                    "PIPELINING": ""...}, keywords upper-case.
    mail_command(), rcpt_command(), ...
                    command builders; parameter values given as str are
                    written as is, use esmtp.xtext_encode() for ENVID,
                    ORCPT and AUTH values (orcpt_param() helps).
    DotStuffer      streaming DATA encoder: dot-stuffs lines that start
                    with "." (RFC 5321 4.5.2), writes every line end as
                    <CR><LF> (so that the server sees the one true end of
                    data), works across arbitrary chunk boundaries, and
                    end() appends the final <CR><LF>.<CR><LF>.
    LmtpReplies     after DATA, LMTP gives one reply per accepted
                    recipient, in RCPT order (RFC 2033 4.2); this class
                    pairs them up.

STANDARDS
    RFC 5321, RFC 2033 (LMTP), RFC 2034, RFC 3461 (xtext), RFC 2920
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from postel.protocol.esmtp import xtext_encode

# A reply line: 3 digits then "-" (more lines), " " or end of line.
_LINE = re.compile(rb"([2-5][0-9][0-9])([- ]|\Z)(.*)\Z", re.DOTALL)
_ENHANCED = re.compile(r"([245]\.\d{1,3}\.\d{1,3})(?: |\Z)")

# Hard limits against a misbehaving server.
REPLY_LINE_LIMIT = 4096
REPLY_LINES_LIMIT = 1000
# One-line replies seen before ("250 2.0.0 Ok", "354 ..."): line -> (code,
# enhanced, text), so that a repeated reply skips the regexes and decoding.
_ONE_LINE: dict[bytes, tuple[int, str, str]] = {}
_ONE_LINE_MAX = 256


class ReplyError(Exception):
    """ReplyError - the server sent something that is not an SMTP reply."""


@dataclass(slots=True)
class ServerReply:
    """ServerReply - one complete reply from a server."""

    code: int
    enhanced: str
    lines: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        """the text lines joined with newlines, enhanced codes removed."""
        return "\n".join(self.lines)

    @property
    def positive(self) -> bool:
        """True for 2xx and 3xx replies."""
        return self.code < 400

    def __str__(self) -> str:
        """the reply in log form: "250 2.0.0 Ok"."""
        head = f"{self.code} {self.enhanced} " if self.enhanced else f"{self.code} "
        return head + " ".join(self.lines)


class ReplyParser:
    """ReplyParser - server bytes in, ServerReply values out."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._lines: list[bytes] = []
        self._code: bytes | None = None

    def feed(self, data: bytes) -> list[ServerReply]:
        """feed - add bytes; returns the replies completed by them."""
        self._buf += data
        out = []
        while True:
            i = self._buf.find(b"\n")
            if i < 0:
                if len(self._buf) > REPLY_LINE_LIMIT:
                    raise ReplyError("reply line too long")
                return out
            line = bytes(self._buf[:i]).rstrip(b"\r")
            del self._buf[:i + 1]
            reply = self._line(line)
            if reply is not None:
                out.append(reply)

    def _line(self, line: bytes) -> ServerReply | None:
        """one reply line; a ServerReply when it was the last one."""
        if self._code is None:
            known = _ONE_LINE.get(line)
            if known is not None:
                return ServerReply(known[0], known[1], [known[2]])
        if len(line) > REPLY_LINE_LIMIT:
            raise ReplyError("reply line too long")
        m = _LINE.match(line)
        if not m:
            raise ReplyError(f"malformed reply line: {line[:100]!r}")
        code, sep, _ = m.groups()
        if self._code is not None and code != self._code:
            raise ReplyError(f"reply code changed within a reply: {line[:100]!r}")
        self._code = code
        self._lines.append(m.group(3))
        if len(self._lines) > REPLY_LINES_LIMIT:
            raise ReplyError("too many reply lines")
        if sep == b"-":
            return None
        lines = [raw.decode("utf-8", "replace") for raw in self._lines]
        self._lines, self._code = [], None
        reply = _make_reply(int(code), lines)
        if len(lines) == 1 and len(_ONE_LINE) < _ONE_LINE_MAX:
            _ONE_LINE[line] = (reply.code, reply.enhanced, reply.lines[0])
        return reply


def _make_reply(code: int, lines: list[str]) -> ServerReply:
    """split the enhanced status code off every line when the first has one."""
    m = _ENHANCED.match(lines[0])
    if not m or m.group(1)[0] != str(code)[0]:
        return ServerReply(code, "", lines)
    enhanced = m.group(1)
    stripped = []
    for line in lines:
        if line.startswith(enhanced):
            line = line[len(enhanced):].lstrip(" ")
        stripped.append(line)
    return ServerReply(code, enhanced, stripped)


def parse_ehlo(reply: ServerReply) -> dict[str, str]:
    """parse_ehlo - {KEYWORD: parameters} from an EHLO reply (RFC 5321 4.1.1.1)."""
    keywords: dict[str, str] = {}
    for line in reply.lines[1:]:
        word, _, params = line.strip().partition(" ")
        # Old servers wrote "AUTH=LOGIN"; treat it as "AUTH LOGIN".
        if "=" in word and word.upper().startswith("AUTH="):
            word, params = "AUTH", word[5:] + (" " + params if params else "")
        if word:
            keywords.setdefault(word.upper(), params.strip())
    return keywords


def _params(params: Mapping[str, str | None]) -> str:
    """render ESMTP parameters " KEY=value KEY"."""
    out = []
    for key, value in params.items():
        out.append(f" {key.upper()}" if value is None else f" {key.upper()}={value}")
    return "".join(out)


def _command(text: str) -> bytes:
    """one command line, refusing line breaks inside it."""
    if "\r" in text or "\n" in text:
        raise ValueError(f"line break in SMTP command: {text!r}")
    return (text + "\r\n").encode("utf-8")


def ehlo_command(name: str, lmtp: bool = False) -> bytes:
    """EHLO name (LHLO for LMTP, RFC 2033 4.1)."""
    return _command(("LHLO " if lmtp else "EHLO ") + name)


def helo_command(name: str) -> bytes:
    """HELO name."""
    return _command("HELO " + name)


def mail_command(sender: str, params: Mapping[str, str | None] | None = None) -> bytes:
    """MAIL FROM:<sender> params."""
    return _command(f"MAIL FROM:<{sender}>{_params(params or {})}")


def rcpt_command(rcpt: str, params: Mapping[str, str | None] | None = None) -> bytes:
    """RCPT TO:<rcpt> params."""
    return _command(f"RCPT TO:<{rcpt}>{_params(params or {})}")


def orcpt_param(address: str, addr_type: str = "rfc822") -> str:
    """the ORCPT value "addr-type;xtext" (RFC 3461 4.2)."""
    return f"{addr_type};{xtext_encode(address)}"


def bdat_command(size: int, last: bool) -> bytes:
    """BDAT size [LAST] (RFC 3030 2)."""
    return _command(f"BDAT {size}" + (" LAST" if last else ""))


def xclient_command(attrs: Mapping[str, str], verb: str = "XCLIENT") -> bytes:
    """XCLIENT/XFORWARD NAME=xtext ... (values xtext-encoded)."""
    words = " ".join(f"{k.upper()}={xtext_encode(v)}" for k, v in attrs.items())
    return _command(f"{verb} {words}")


DATA_COMMAND = b"DATA\r\n"
RSET_COMMAND = b"RSET\r\n"
QUIT_COMMAND = b"QUIT\r\n"
NOOP_COMMAND = b"NOOP\r\n"
STARTTLS_COMMAND = b"STARTTLS\r\n"


class DotStuffer:
    """DotStuffer - streaming DATA content encoder (RFC 5321 4.5.2)."""

    def __init__(self) -> None:
        self._at_line_start = True
        self._pending_cr = False

    def feed(self, data: bytes) -> bytes:
        """feed - encode a piece of content; returns bytes to send."""
        if not data:
            return b""
        out = bytearray()
        if self._pending_cr:
            self._pending_cr = False
            if data[:1] == b"\n":
                data = data[1:]
                out += b"\r\n"
                self._at_line_start = True
            else:
                out += b"\r"  # a bare CR is content
                self._at_line_start = False
            if not data:
                return bytes(out)
        # A trailing CR may be the first half of a CRLF: hold it back.
        if data[-1:] == b"\r":
            self._pending_cr = True
            data = data[:-1]
        if not data:
            return bytes(out)
        # Whole-chunk replaces: one CR before each LF goes, every line that
        # starts with "." gets one more (RFC 5321 4.5.2), LF becomes CRLF.
        if self._at_line_start and data[:1] == b".":
            out += b"."
        self._at_line_start = data[-1:] == b"\n"
        if data.count(b"\n") == data.count(b"\r\n"):
            # Already CRLF throughout (the usual case): only the dots change.
            stuffed = data.replace(b"\n.", b"\n..")
            if not out:
                return bytes(stuffed)        # no copy for bytes
            out += stuffed
            return bytes(out)
        text = data.replace(b"\r\n", b"\n")
        out += text.replace(b"\n.", b"\n..").replace(b"\n", b"\r\n")
        return bytes(out)

    def end(self) -> bytes:
        """end - finish the last line and add the end-of-data line."""
        out = b""
        if self._pending_cr:
            self._pending_cr = False
            out = b"\r"
            self._at_line_start = False
        if not self._at_line_start:
            out += b"\r\n"
        self._at_line_start = True
        return out + b".\r\n"


def dot_stuff(content: bytes) -> bytes:
    """dot_stuff - the whole DATA payload for content, end line included."""
    stuffer = DotStuffer()
    return stuffer.feed(content) + stuffer.end()


class LmtpReplies:
    """LmtpReplies - pair LMTP's per-recipient DATA replies with recipients."""

    def __init__(self, accepted_rcpts: Iterable[str]):
        self._rcpts = list(accepted_rcpts)
        self.results: list[tuple[str, ServerReply]] = []

    @property
    def done(self) -> bool:
        """True once every accepted recipient has its reply."""
        return len(self.results) == len(self._rcpts)

    def expected(self) -> int:
        """how many replies are still due."""
        return len(self._rcpts) - len(self.results)

    def add(self, reply: ServerReply) -> tuple[str, ServerReply]:
        """add - record the next reply; returns (rcpt, reply)."""
        if self.done:
            raise ReplyError("more LMTP replies than accepted recipients")
        pair = (self._rcpts[len(self.results)], reply)
        self.results.append(pair)
        return pair
