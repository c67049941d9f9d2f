"""events - what the SMTP server state machine reports to its shell

SYNOPSIS
    from postel.protocol.events import MailFrom, DataChunk, NEED_DATA

DESCRIPTION
    One record per thing a client did.  Events marked "reply" must be
    answered with SMTPServerConnection.send_reply() before the next event
    is taken; Bdat and DataChunk need no answer.

    Peer mistakes are events too (BadSyntax, ProtocolError, UnknownCommand,
    NonSmtpCommand): each carries the reply Postfix would send, and the
    shell normally sends exactly that.  Our own bugs raise
    LocalProtocolError instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from postel.protocol.esmtp import MailParams, RcptParams
from postel.protocol.replies import Reply


class _Sentinel:
    """a named marker value."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return self.name


NEED_DATA = _Sentinel("NEED_DATA")   # feed more bytes with receive_data()
CLOSED = _Sentinel("CLOSED")         # the session is over; close the socket


class LocalProtocolError(Exception):
    """LocalProtocolError - the shell used the state machine wrongly (a bug)."""


class Event:
    """Event - base class; needs_reply says whether send_reply() must follow."""

    __slots__ = ()
    needs_reply = True


@dataclass(slots=True)
class Connected(Event):
    """Connected - a client connected; reply with the greeting (reply)."""


@dataclass(slots=True)
class Helo(Event):
    """Helo - HELO name (reply)."""

    name: str


@dataclass(slots=True)
class Ehlo(Event):
    """Ehlo - EHLO name (reply, normally ehlo_reply())."""

    name: str


@dataclass(slots=True)
class MailFrom(Event):
    """MailFrom - MAIL FROM:<address> with checked parameters (reply)."""

    address: str
    params: MailParams = field(default_factory=MailParams)
    raw_params: list[tuple[str, str | None]] = field(default_factory=list)


@dataclass(slots=True)
class RcptTo(Event):
    """RcptTo - RCPT TO:<address> with checked parameters (reply)."""

    address: str
    params: RcptParams = field(default_factory=RcptParams)
    raw_params: list[tuple[str, str | None]] = field(default_factory=list)


@dataclass(slots=True)
class Data(Event):
    """Data - DATA (reply: 354 to start the content)."""


@dataclass(slots=True)
class Bdat(Event):
    """Bdat - BDAT size [LAST]; DataChunk events follow (no reply)."""

    needs_reply = False
    size: int
    last: bool


@dataclass(slots=True)
class DataChunk(Event):
    """DataChunk - message content: dot-unstuffed, CRLF line ends (no reply)."""

    needs_reply = False
    data: bytes


@dataclass(slots=True)
class BdatChunkEnd(Event):
    """BdatChunkEnd - end of a non-LAST BDAT chunk (reply: 250 Ok: n bytes)."""

    size: int
    total: int
    too_big: bool = False
    bare_lf_seen: bool = False


@dataclass(slots=True)
class DataEnd(Event):
    """DataEnd - end of DATA content or of the LAST BDAT chunk (reply).

    size counts content octets after unstuffing (including discarded ones);
    too_big means content beyond message_size_limit was discarded.
    """

    size: int
    too_big: bool = False
    bare_lf_seen: bool = False
    bdat: bool = False


@dataclass(slots=True)
class Rset(Event):
    """Rset - RSET (reply)."""


@dataclass(slots=True)
class Noop(Event):
    """Noop - NOOP (reply)."""


@dataclass(slots=True)
class Quit(Event):
    """Quit - QUIT (reply 221)."""


@dataclass(slots=True)
class Vrfy(Event):
    """Vrfy - VRFY argument (reply)."""

    arg: str


@dataclass(slots=True)
class Etrn(Event):
    """Etrn - ETRN argument (reply)."""

    arg: str


@dataclass(slots=True)
class Help(Event):
    """Help - HELP [topic] (reply)."""

    arg: str


@dataclass(slots=True)
class StartTls(Event):
    """StartTls - STARTTLS (reply 220, then the shell starts TLS)."""


@dataclass(slots=True)
class Auth(Event):
    """Auth - AUTH mechanism [initial-response] (reply 334/235/5xx)."""

    mechanism: str
    initial_response: str | None


@dataclass(slots=True)
class AuthResponse(Event):
    """AuthResponse - one SASL client line after a 334 (reply)."""

    line: str

    def __repr__(self) -> str:
        return "AuthResponse(<hidden>)"  # AUTH payloads never reach the log


@dataclass(slots=True)
class Xclient(Event):
    """Xclient - XCLIENT attributes, xtext-decoded (reply 220 on success)."""

    attrs: dict[str, str]


@dataclass(slots=True)
class Xforward(Event):
    """Xforward - XFORWARD attributes, xtext-decoded (reply)."""

    attrs: dict[str, str]


@dataclass(slots=True)
class UnknownCommand(Event):
    """UnknownCommand - a verb Postel does not know (reply: .reply)."""

    line: str
    reply: Reply


@dataclass(slots=True)
class BadSyntax(Event):
    """BadSyntax - a known verb with a bad argument (reply: .reply)."""

    command: str
    reply: Reply


@dataclass(slots=True)
class ProtocolError(Event):
    """ProtocolError - a command out of sequence, too long, ... (reply: .reply)."""

    command: str
    reply: Reply


@dataclass(slots=True)
class NonSmtpCommand(Event):
    """NonSmtpCommand - GET/POST/CONNECT or a header line (reply .reply, disconnect)."""

    line: str
    reply: Reply
