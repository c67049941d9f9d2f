"""smtp_server - sans-IO SMTP server protocol state machine

SYNOPSIS
    from postel.protocol.smtp_server import SMTPServerConnection, ServerConfig
    from postel.protocol.events import NEED_DATA, CLOSED

    conn = SMTPServerConnection(ServerConfig(myhostname="mx.example"))
    while True:
        event = conn.next_event()
        if event is NEED_DATA:
            sock_write(pending); conn.receive_data(sock_read())
        elif event is CLOSED:
            break
        elif event.needs_reply:
            pending += conn.send_reply(decide(event))

DESCRIPTION
    Bytes in, events out; reply values in, bytes out.  The machine parses
    commands and message content, enforces the protocol's own rules (command
    sequence, line and size limits, DATA termination, BDAT framing) and
    tracks the session state.  Policy (restrictions, the queue, TLS, SASL,
    who may use XCLIENT) belongs to the shell that drives it (smtpd).

    The state machine is the table TRANSITIONS: {state: {event type: next
    state}}, applied when the shell answers an event with a positive (2xx,
    3xx) reply; NEGATIVE_TRANSITIONS lists the moves that happen whatever
    the answer (the end of a message).  A command that the table does not
    allow in the current state becomes a ProtocolError event carrying
    Postfix's 503 reply (SEQUENCE_ERRORS).  Bdat moves at once to CHUNK.

    Commands are processed one at a time in arrival order, so pipelined
    input (RFC 2920) is never lost: the shell takes events until NEED_DATA
    and then flushes its replies.  has_pending_input() tells the shell
    whether more input followed the last command (for
    smtpd_forbid_unauth_pipelining); early_talker is set when a client sent
    data before the greeting was answered.

    After a positive reply to STARTTLS, input that was already buffered is
    discarded (RFC 3207 5, the CVE-2011-0411 plaintext injection), counted
    in discarded_after_starttls.

    DATA content ends only with <CR><LF>.<CR><LF> (RFC 5321 4.1.1.4), where
    the first <CR><LF> may be the one ending the DATA command.  The
    sequences used for SMTP smuggling (<LF>.<LF>, <LF>.<CR><LF>,
    <CR>.<CR>, <CR><LF>.<LF> ...) never end the content; this holds for
    every value of smtpd_forbid_bare_newline (see docs/smtp-protocol.md).
    A bare <LF> is turned into <CR><LF> in commands and content ("no",
    "normalize", "yes"), or makes the command fail and is reported in
    DataEnd.bare_lf_seen ("reject").  Lines longer than line_length_limit
    are passed on in pieces; content beyond message_size_limit is read and
    thrown away, and DataEnd.too_big tells the shell to answer 552.

STANDARDS
    RFC 5321 (SMTP), RFC 1870 (SIZE), RFC 2920 (PIPELINING), RFC 3030
    (CHUNKING, BINARYMIME), RFC 3207 (STARTTLS), RFC 3461 (DSN), RFC 4954
    (AUTH), RFC 6152 (8BITMIME), RFC 6531 (SMTPUTF8), Postfix
    XCLIENT_README and XFORWARD_README

CONFIGURATION PARAMETERS
    myhostname (localhost)                     name in replies
    message_size_limit (10240000)              content limit, 0 = none
    line_length_limit (2048)                   content line piece length
    smtpd_command_line_limit (2048)            command line limit (RFC min 512)
    smtpd_recipient_limit (1000)               recipients per message
    smtpd_forbid_bare_newline (normalize)      no, normalize, yes, reject
    smtpd_forbid_bare_newline_reject_code (550)
    smtpd_strict_rfc821_envelopes (no)         require <> around addresses
    smtpd_helo_required (no)                   HELO/EHLO before MAIL
    smtpd_forbidden_commands (CONNECT GET POST)
    disable_vrfy_command (no)
    smtputf8_enable (yes)

DIAGNOSTICS
    LocalProtocolError when the shell breaks the calling rules.  Peer errors
    are events, never exceptions.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from postel.mail.lines import has_long_line
from postel.protocol import esmtp
from postel.protocol import replies as R
from postel.protocol.esmtp import ParamError
from postel.protocol.events import (
    CLOSED,
    NEED_DATA,
    Auth,
    AuthResponse,
    BadSyntax,
    Bdat,
    BdatChunkEnd,
    Connected,
    Data,
    DataChunk,
    DataEnd,
    Ehlo,
    Etrn,
    Event,
    Helo,
    Help,
    LocalProtocolError,
    MailFrom,
    NonSmtpCommand,
    Noop,
    ProtocolError,
    Quit,
    RcptTo,
    Rset,
    StartTls,
    UnknownCommand,
    Vrfy,
    Xclient,
    Xforward,
)
from postel.protocol.replies import Reply

# RFC 4954 4: a SASL response line may be 12288 octets long.
AUTH_LINE_LIMIT = 12288
# RFC 1870 / RFC 3030: BDAT size is 1*DIGIT; bound it to 20 digits.
_BDAT = re.compile(r"(\d{1,20})(?: +(LAST))? *\Z", re.IGNORECASE)

BARE_NEWLINE_MODES = ("no", "normalize", "yes", "reject")


@dataclass(slots=True)
class ServerConfig:
    """ServerConfig - the parameters the state machine reads (Postfix names)."""

    myhostname: str = "localhost"
    message_size_limit: int = 10240000
    line_length_limit: int = 2048
    smtpd_command_line_limit: int = 2048
    smtpd_recipient_limit: int = 1000
    smtpd_forbid_bare_newline: str = "normalize"
    smtpd_forbid_bare_newline_reject_code: int = 550
    smtpd_strict_rfc821_envelopes: bool = False
    smtpd_helo_required: bool = False
    smtpd_forbidden_commands: tuple[str, ...] = ("CONNECT", "GET", "POST")
    disable_vrfy_command: bool = False
    smtputf8_enable: bool = True
    # Features the shell offers in EHLO (after smtpd_discard_ehlo_keywords).
    chunking: bool = True
    dsn: bool = True
    etrn: bool = True
    starttls: bool = False
    auth: bool = False

    def __post_init__(self) -> None:
        """check values that would make the machine misbehave."""
        self.smtpd_forbid_bare_newline = self.smtpd_forbid_bare_newline.lower()
        if self.smtpd_forbid_bare_newline not in BARE_NEWLINE_MODES:
            raise ValueError(f"bad smtpd_forbid_bare_newline value: {self.smtpd_forbid_bare_newline!r}")
        if self.line_length_limit < 2 or self.smtpd_command_line_limit < 16:
            raise ValueError("line_length_limit/smtpd_command_line_limit too small")


class State(enum.Enum):
    """State - where an SMTP session is."""

    START = "start"        # connected, greeting not yet answered
    REFUSED = "refused"    # negative greeting: only QUIT, NOOP, RSET (RFC 5321 3.1)
    IDLE = "idle"          # greeted, no HELO/EHLO yet
    READY = "ready"        # HELO/EHLO done, no transaction
    MAIL = "mail"          # MAIL accepted, no recipient yet
    RCPT = "rcpt"          # at least one recipient accepted
    DATA = "data"          # reading DATA content
    CHUNK = "chunk"        # reading a BDAT chunk
    BDAT = "bdat"          # between BDAT chunks
    AUTH = "auth"          # SASL exchange in progress
    CLOSED = "closed"      # QUIT answered, or a disconnecting reply sent

    # Members are singletons compared by identity: hash them by identity too
    # (C speed; Enum's own __hash__ is Python code, run at every table look-up).
    __hash__ = object.__hash__


S = State
_SESSION = {Rset: S.READY, Noop: S.READY, Vrfy: S.READY, Help: S.READY, Quit: S.CLOSED,
            Helo: S.READY, Ehlo: S.READY}

# {state: {event type: next state}} on a positive reply.
TRANSITIONS: dict[State, dict[type[Event], State]] = {
    S.START: {Connected: S.IDLE},
    S.REFUSED: {Quit: S.CLOSED, Noop: S.REFUSED, Rset: S.REFUSED},
    S.IDLE: {Helo: S.READY, Ehlo: S.READY, MailFrom: S.MAIL, Rset: S.IDLE, Noop: S.IDLE,
             Vrfy: S.IDLE, Etrn: S.IDLE, Help: S.IDLE, Quit: S.CLOSED, StartTls: S.IDLE,
             Xclient: S.IDLE, Xforward: S.IDLE},
    S.READY: {**_SESSION, MailFrom: S.MAIL, Etrn: S.READY, StartTls: S.IDLE, Auth: S.READY,
              Xclient: S.IDLE, Xforward: S.READY},
    S.MAIL: {**_SESSION, RcptTo: S.RCPT, Noop: S.MAIL, Vrfy: S.MAIL, Help: S.MAIL},
    S.RCPT: {**_SESSION, RcptTo: S.RCPT, Data: S.DATA, Bdat: S.CHUNK, Noop: S.RCPT,
             Vrfy: S.RCPT, Help: S.RCPT},
    S.DATA: {DataEnd: S.READY},
    S.CHUNK: {BdatChunkEnd: S.BDAT, DataEnd: S.READY},
    S.BDAT: {Bdat: S.CHUNK, Rset: S.READY, Noop: S.BDAT, Quit: S.CLOSED, Helo: S.READY,
             Ehlo: S.READY},
    S.AUTH: {AuthResponse: S.READY},
    S.CLOSED: {},
}

# Moves made whatever the reply (a message is over even when rejected).
NEGATIVE_TRANSITIONS: dict[State, dict[type[Event], State]] = {
    S.START: {Connected: S.REFUSED},
    S.DATA: {DataEnd: S.READY},
    S.CHUNK: {BdatChunkEnd: S.BDAT, DataEnd: S.READY},
    S.AUTH: {AuthResponse: S.READY},
}

_IN_TRANSACTION = {MailFrom: R.R503_NESTED_MAIL, Data: R.R503_NEED_RCPT, Bdat: R.R503_NEED_RCPT,
                   Etrn: R.R503_IN_TRANSACTION, StartTls: R.R503_IN_TRANSACTION,
                   Auth: R.R503_IN_TRANSACTION, Xclient: R.R503_IN_TRANSACTION,
                   Xforward: R.R503_IN_TRANSACTION}
_NO_TRANSACTION = {RcptTo: R.R503_NEED_MAIL, Data: R.R503_NEED_RCPT, Bdat: R.R503_NEED_MAIL}

# {state: {event type: reply}} for commands TRANSITIONS does not allow.
SEQUENCE_ERRORS: dict[State, dict[type[Event], Reply]] = {
    S.IDLE: {**_NO_TRANSACTION, Auth: R.R503_HELO_FIRST},
    S.READY: dict(_NO_TRANSACTION),
    S.MAIL: dict(_IN_TRANSACTION),
    S.RCPT: {**_IN_TRANSACTION, MailFrom: R.R503_NESTED_MAIL},
    S.BDAT: {**_IN_TRANSACTION, MailFrom: R.R503_MAIL_AFTER_BDAT,
             RcptTo: R.R503_RCPT_AFTER_BDAT, Data: R.R503_DATA_AFTER_BDAT},
    S.REFUSED: {},
}
DEFAULT_SEQUENCE_ERROR = R.R503_REFUSED

# Events that are answers to peer mistakes: valid in every command state.
_MISTAKES = (BadSyntax, ProtocolError, UnknownCommand, NonSmtpCommand)
_AUTH_EVENTS = (Auth, AuthResponse)
_HELLO_EVENTS = (Helo, Ehlo)
_RESET_EVENTS = (Rset, DataEnd)
_NO_MOVES: dict = {}


@dataclass(slots=True)
class _Content:
    """per-message content reader state."""

    size: int = 0
    too_big: bool = False
    bare_lf: bool = False
    at_line_start: bool = True
    prev_crlf: bool = True
    ended: bool = False
    chunk_left: int = 0
    chunk_size: int = 0
    chunk_last: bool = False
    prev_cr: bool = False


@dataclass(slots=True)
class _Session:
    """per-session facts learned from accepted commands."""

    helo_name: str | None = None
    esmtp: bool = False
    tls_active: bool = False
    authenticated: bool = False
    mail: MailFrom | None = None
    rcpt_count: int = 0
    rcpt_rejected: int = 0
    auth_return: State = S.READY
    extra: dict[str, object] = field(default_factory=dict)


class SMTPServerConnection:
    """SMTPServerConnection - one SMTP server session as a state machine."""

    def __init__(self, config: ServerConfig | None = None):
        self.config = config or ServerConfig()
        self.state = S.START
        self.session = _Session()
        # smtpd_forbid_bare_newline for this client; the shell sets "no" for
        # clients in smtpd_forbid_bare_newline_exclusions.
        self.forbid_bare_newline = self.config.smtpd_forbid_bare_newline
        self.error_count = 0
        self.junk_count = 0
        self.bare_lf_count = 0
        self.early_talker = False
        self.discarded_after_starttls = 0
        self._buf = bytearray()
        self._pending: Event | None = None
        self._connected_done = False
        self._skipping_line = False
        self._skip_bytes = 0
        self._after_skip: Event | None = None
        self._last_line_crlf = True
        self._content = _Content()
        # A content line longer than line_length_limit (plus CR) needs splitting.
        self._long_width = self.config.line_length_limit + 2

    # --- Input ------------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        """receive_data - append bytes read from the client."""
        if self.state is S.START:
            self.early_talker = self.early_talker or bool(data)
        if self.state is not S.CLOSED:
            self._buf += data

    def has_pending_input(self) -> bool:
        """has_pending_input - True when unprocessed client bytes are buffered."""
        return bool(self._buf)

    def buffered(self) -> int:
        """buffered - octets held in the input buffer (bounded by design)."""
        return len(self._buf)

    # --- Output -----------------------------------------------------------
    def next_event(self) -> Event | object:
        """next_event - the next event, NEED_DATA, or CLOSED."""
        if self._pending is not None:
            raise LocalProtocolError(f"answer {self._pending!r} with send_reply() first")
        if self.state is S.CLOSED:
            return CLOSED
        event = self._next()
        if isinstance(event, Event) and event.needs_reply:
            self._pending = event
        return event

    def send_reply(self, reply: Reply, *, close: bool = False) -> bytes:
        """send_reply - answer the pending event; returns the bytes to send."""
        event = self._pending
        if event is None:
            raise LocalProtocolError(f"no event to answer with {reply}")
        self._pending = None
        code = reply.code
        positive = code < 400           # Reply.positive
        if not positive:
            self.error_count += 1
            if isinstance(event, RcptTo):
                self.session.rcpt_rejected += 1
        if code in R.DISCONNECT_CODES or close:     # Reply.disconnects
            self.state = S.CLOSED
            return reply.to_bytes()
        if isinstance(event, _MISTAKES):
            return reply.to_bytes()
        if isinstance(event, _AUTH_EVENTS):
            self._auth_reply(reply)
            return reply.to_bytes()
        table = TRANSITIONS if positive else NEGATIVE_TRANSITIONS
        nxt = table.get(self.state, _NO_MOVES).get(type(event))
        if nxt is not None:
            self._enter(event, nxt, reply)
        return reply.to_bytes()

    def reject(self, reply: Reply) -> bytes:
        """reject - answer the pending event with an error reply."""
        if reply.positive:
            raise LocalProtocolError(f"reject() with a positive reply: {reply}")
        return self.send_reply(reply)

    def close(self) -> None:
        """close - the shell ends the session (timeout, too many errors)."""
        self._pending = None
        self.state = S.CLOSED

    # --- State changes ----------------------------------------------------
    def _auth_reply(self, reply: Reply) -> None:
        """track the SASL exchange (RFC 4954 4): 334 continues, others end it."""
        if reply.code == 334:
            if self.state is not S.AUTH:
                self.session.auth_return = self.state
            self.state = S.AUTH
            return
        if self.state is S.AUTH:
            self.state = self.session.auth_return
        if reply.positive:
            self.session.authenticated = True

    def _reset_transaction(self) -> None:
        """forget the mail transaction (RSET, HELO/EHLO, end of message)."""
        self.session.mail = None
        self.session.rcpt_count = 0
        self.session.rcpt_rejected = 0
        self._content = _Content()

    def _enter(self, event: Event, nxt: State, reply: Reply) -> None:
        """apply an accepted event's side effects and move to nxt."""
        s = self.session
        if isinstance(event, RcptTo):
            s.rcpt_count += 1
        elif isinstance(event, MailFrom):
            self._reset_transaction()
            s.mail = event
        elif isinstance(event, _HELLO_EVENTS):
            self._reset_transaction()
            s.helo_name, s.esmtp = event.name, isinstance(event, Ehlo)
        elif isinstance(event, _RESET_EVENTS):
            self._reset_transaction()
        elif isinstance(event, Data):
            self._content = _Content(prev_crlf=self._last_line_crlf)
        elif isinstance(event, StartTls):
            # RFC 3207 4.2, 5: forget everything, discard pipelined input.
            self.discarded_after_starttls += len(self._buf)
            self._buf.clear()
            self.session = _Session(tls_active=True)
        elif isinstance(event, Xclient):
            # XCLIENT_README: the session restarts with a new greeting.
            self.session = _Session(tls_active=s.tls_active)
        self.state = nxt

    # --- Parsing ----------------------------------------------------------
    def _next(self) -> Event | object:
        """produce the next event from the buffer."""
        if self.state is S.START:
            if self._connected_done:
                raise LocalProtocolError("greeting not answered")
            self._connected_done = True
            return Connected()
        if self._skip_bytes:
            take = min(self._skip_bytes, len(self._buf))
            del self._buf[:take]
            self._skip_bytes -= take
            if self._skip_bytes:
                return NEED_DATA
        if self._after_skip is not None:
            event, self._after_skip = self._after_skip, None
            return event
        if self.state is S.DATA:
            return self._data_event()
        if self.state is S.CHUNK:
            return self._chunk_event()
        limit = AUTH_LINE_LIMIT if self.state is S.AUTH else self.config.smtpd_command_line_limit
        line = self._read_line(limit)
        if not isinstance(line, bytes):
            return line
        if self.state is S.AUTH:
            return self._auth_line(line)
        return self._command(line)

    def _read_line(self, limit: int) -> bytes | Event | object:
        """one command line without its terminator, or NEED_DATA/an error event."""
        buf = self._buf
        if self._skipping_line:
            i = buf.find(b"\n")
            if i < 0:
                buf.clear()
                return NEED_DATA
            del buf[:i + 1]
            self._skipping_line = False
            # RFC 5321 4.5.3.1.4, 4.2.2: "500 Line too long".
            return ProtocolError("", R.R500_LINE_TOO_LONG)
        i = buf.find(b"\n", 0, limit)
        if i < 0:
            if len(buf) >= limit:
                self._skipping_line = True
                buf.clear()
            return NEED_DATA
        line = bytes(buf[:i])
        del buf[:i + 1]
        if line.endswith(b"\r"):
            self._last_line_crlf = True
            return line[:-1]
        self._last_line_crlf = False
        self.bare_lf_count += 1
        if self.forbid_bare_newline == "reject":
            return ProtocolError(line[:100].decode("utf-8", "replace"), self._bare_lf_reply())
        return line

    def _bare_lf_reply(self) -> Reply:
        """the bare <LF> rejection with the configured code."""
        return R.bare_lf_reply(self.config.smtpd_forbid_bare_newline_reject_code,
                               self.config.myhostname)

    def _auth_line(self, line: bytes) -> Event:
        """one SASL response line (RFC 4954 4)."""
        try:
            return AuthResponse(line.decode("ascii"))
        except UnicodeDecodeError:
            return ProtocolError("AUTH", R.R501_AUTH_ABORTED)

    def _command(self, line: bytes) -> Event | object:
        """turn one command line into an event."""
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            return ProtocolError(line[:100].decode("utf-8", "replace"), R.R500_BAD_UTF8)
        if not text.strip():
            return BadSyntax("", R.R500_BAD_SYNTAX)
        verb, _, arg = text.lstrip(" ").partition(" ")
        uverb = verb.upper()
        # smtpd_forbidden_commands, "Label:" header lines, non-letter verbs.
        if (uverb in self.config.smtpd_forbidden_commands or verb.endswith(":")
                or not ("A" <= uverb[:1] <= "Z")):
            return NonSmtpCommand(text, R.R221_NON_SMTP)
        entry = COMMANDS.get(uverb)
        if entry is None:
            self.junk_count += 1
            return UnknownCommand(text, R.R500_NOT_RECOGNIZED)
        etype, parse = entry
        if etype in (Noop, Vrfy, Etrn, Rset, Help):
            self.junk_count += 1
        arg = arg.strip(" \t")
        if etype is Bdat:
            return self._bdat(arg)
        refusal = self._check_sequence(etype)
        if refusal is not None:
            return ProtocolError(uverb, refusal)
        try:
            return parse(self, arg)
        except ParamError as exc:
            return BadSyntax(uverb, exc.reply)

    def _check_sequence(self, etype: type[Event]) -> Reply | None:
        """the reply refusing etype in this state, or None when allowed."""
        s, c = self.session, self.config
        if etype is Data and self.state is not S.RCPT:
            return self._data_refusal(Data)
        if etype not in TRANSITIONS[self.state]:
            return SEQUENCE_ERRORS.get(self.state, {}).get(etype, DEFAULT_SEQUENCE_ERROR)
        if self.state is S.IDLE and c.smtpd_helo_required and etype in (MailFrom, Etrn):
            return R.R503_HELO_FIRST
        if etype is RcptTo and s.rcpt_count >= c.smtpd_recipient_limit:
            return R.R452_TOO_MANY_RECIPIENTS
        if etype is Data and s.mail is not None and s.mail.params.body == "BINARYMIME":
            return R.R503_BINARYMIME_DATA
        if etype is Vrfy and c.disable_vrfy_command:
            return R.R502_VRFY_DISABLED
        if etype is Etrn and not c.etrn:
            return R.R502_NOT_IMPLEMENTED
        if etype is StartTls:
            if s.tls_active:
                return R.R554_TLS_ACTIVE
            if not c.starttls:
                return R.R502_NOT_IMPLEMENTED
        if etype is Auth:
            if not c.auth:
                return R.R503_AUTH_NOT_ENABLED
            if s.authenticated:
                return R.R503_ALREADY_AUTH
            if not s.esmtp:
                return R.R503_HELO_FIRST
        return None

    def _data_refusal(self, etype: type[Event]) -> Reply:
        """why DATA/BDAT is refused outside RCPT state."""
        if self.state is S.MAIL and self.session.rcpt_rejected:
            return R.R554_NO_VALID_RCPT
        return SEQUENCE_ERRORS.get(self.state, {}).get(etype, DEFAULT_SEQUENCE_ERROR)

    def _bdat(self, arg: str) -> Event | object:
        """BDAT size [LAST] (RFC 3030 2): read the chunk whatever the answer."""
        if not self.config.chunking:
            # The chunk's length is unknown to us: hang up (RFC 7504 521).
            return ProtocolError("BDAT", R.R521_NOT_IMPLEMENTED)
        m = _BDAT.match(arg)
        if not m:
            return ProtocolError("BDAT", R.R521_BDAT_SYNTAX)
        size, last = int(m.group(1)), m.group(2) is not None
        if self.state not in (S.RCPT, S.BDAT):
            refusal = self._data_refusal(Bdat)
            self._skip_bytes = size
            self._after_skip = ProtocolError("BDAT", refusal)
            return self._next()
        if size == 0 and not last:
            return ProtocolError("BDAT", R.R551_NULL_BDAT)
        c = self._content
        c.chunk_left, c.chunk_size, c.chunk_last = size, size, last
        self.state = S.CHUNK
        return Bdat(size, last)

    def _chunk_event(self) -> Event | object:
        """content of a BDAT chunk: binary-safe, no unstuffing (RFC 3030 3)."""
        c = self._content
        while c.chunk_left:
            if not self._buf:
                return NEED_DATA
            take = min(c.chunk_left, len(self._buf))
            piece = bytes(self._buf[:take])
            del self._buf[:take]
            c.chunk_left -= take
            if not c.bare_lf:
                bare = piece.count(b"\n") - piece.count(b"\r\n")
                if piece[:1] == b"\n" and c.prev_cr:
                    bare -= 1
                c.bare_lf = bare > 0
            c.prev_cr = piece.endswith(b"\r")
            c.size += take
            if self.config.message_size_limit and c.size > self.config.message_size_limit:
                c.too_big = True
            if not c.too_big:
                return DataChunk(piece)
        if c.chunk_last:
            return DataEnd(c.size, c.too_big, c.bare_lf, bdat=True)
        return BdatChunkEnd(c.chunk_size, c.size, c.too_big, c.bare_lf)

    def _data_event(self) -> Event | object:
        """DATA content: unstuff, normalize line ends, find the end (RFC 5321 4.5.2)."""
        c = self._content
        if c.ended:
            return DataEnd(c.size, c.too_big, c.bare_lf)
        buf, out, pos = self._buf, bytearray(), 0
        limit = self.config.line_length_limit
        size_limit = self.config.message_size_limit
        while True:
            if c.at_line_start and c.prev_crlf:
                # Fast path: plain CRLF lines up to the next line starting with
                # "." are copied as they are (no unstuffing, nothing to fix).
                k = buf.find(b"\n.", pos)
                end = k + 1 if k >= 0 else buf.rfind(b"\n") + 1
                if end > pos and buf[pos] != 0x2E:
                    seg = buf[pos:end]
                    if seg.count(b"\n") == seg.count(b"\r\n") and not has_long_line(seg, self._long_width):
                        pos = end
                        c.size += len(seg)
                        if size_limit and c.size > size_limit:
                            c.too_big = True
                        if not c.too_big:
                            out += seg
            j = buf.find(b"\n", pos, pos + limit + 2)
            if j < 0:
                if len(buf) - pos < limit + 2:
                    break
                # Over-long line: pass a piece on, keep a trailing CR for its LF.
                end = pos + limit
                if buf[end - 1] == 0x0D:
                    end -= 1
                piece = buf[pos:end]
                if c.at_line_start and piece[:1] == b".":
                    piece = piece[1:]
                c.at_line_start = False
                pos = end
                content, ending = piece, b""
            else:
                line = buf[pos:j]
                pos = j + 1
                crlf = line[-1:] == b"\r"
                content = line[:-1] if crlf else line
                if c.at_line_start:
                    # RFC 5321 4.1.1.4: only <CRLF>.<CRLF> ends the content.
                    if content == b"." and crlf and c.prev_crlf:
                        c.ended = True
                        break
                    if content[:1] == b".":
                        content = content[1:]
                if not crlf:
                    c.bare_lf = True
                    self.bare_lf_count += 1
                c.prev_crlf, c.at_line_start = crlf, True
                ending = b"\r\n"
            c.size += len(content) + len(ending)
            if size_limit and c.size > size_limit:
                c.too_big = True
            if not c.too_big:
                out += content
                out += ending
        del buf[:pos]
        if out:
            return DataChunk(bytes(out))
        if c.ended:
            return DataEnd(c.size, c.too_big, c.bare_lf)
        return NEED_DATA

    # --- Command parsers (one per verb, same signature) --------------------
    def _helo(self, arg: str) -> Event:
        """HELO hostname."""
        if not arg:
            return BadSyntax("HELO", R.R501_HELO_SYNTAX)
        return Helo(arg)

    def _ehlo(self, arg: str) -> Event:
        """EHLO hostname."""
        if not arg:
            return BadSyntax("EHLO", R.R501_EHLO_SYNTAX)
        return Ehlo(arg)

    def _mail(self, arg: str) -> Event:
        """MAIL FROM:<reverse-path> [params] (RFC 5321 4.1.1.2)."""
        c = self.config
        path = esmtp.parse_path(arg, "FROM", strict=c.smtpd_strict_rfc821_envelopes,
                                syntax=R.R501_MAIL_SYNTAX, bad_address=R.R501_BAD_SENDER,
                                allow_null=True)
        params = esmtp.parse_mail_params(path.params, dsn=c.dsn, smtputf8=c.smtputf8_enable,
                                         binarymime=c.chunking)
        if esmtp.has_8bit(path.address) and not params.smtputf8:
            return BadSyntax("MAIL", R.R553_SMTPUTF8_REQUIRED)
        # RFC 1870 6.1: refuse a declared size over the limit.
        if params.size is not None and c.message_size_limit and params.size > c.message_size_limit:
            return BadSyntax("MAIL", R.R552_SIZE)
        return MailFrom(path.address, params, path.params)

    def _rcpt(self, arg: str) -> Event:
        """RCPT TO:<forward-path> [params] (RFC 5321 4.1.1.3)."""
        c = self.config
        path = esmtp.parse_path(arg, "TO", strict=c.smtpd_strict_rfc821_envelopes,
                                syntax=R.R501_RCPT_SYNTAX, bad_address=R.R501_BAD_RCPT,
                                allow_null=False)
        params = esmtp.parse_rcpt_params(path.params, dsn=c.dsn)
        mail = self.session.mail
        if esmtp.has_8bit(path.address) and not (mail and mail.params.smtputf8):
            return BadSyntax("RCPT", R.R553_SMTPUTF8_REQUIRED)
        return RcptTo(path.address, params, path.params)

    def _data(self, arg: str) -> Event:
        """DATA (RFC 5321 4.1.1.4)."""
        return BadSyntax("DATA", R.R501_DATA_SYNTAX) if arg else Data()

    def _rset(self, arg: str) -> Event:
        """RSET (RFC 5321 4.1.1.5)."""
        return BadSyntax("RSET", R.R501_RSET_SYNTAX) if arg else Rset()

    def _noop(self, arg: str) -> Event:
        """NOOP [string] (RFC 5321 4.1.1.9)."""
        return Noop()

    def _quit(self, arg: str) -> Event:
        """QUIT (RFC 5321 4.1.1.10)."""
        return Quit()

    def _vrfy(self, arg: str) -> Event:
        """VRFY string (RFC 5321 4.1.1.6)."""
        return Vrfy(arg) if arg else BadSyntax("VRFY", R.R501_VRFY_SYNTAX)

    def _etrn(self, arg: str) -> Event:
        """ETRN node (RFC 1985)."""
        return Etrn(arg) if arg else BadSyntax("ETRN", R.R500_ETRN_SYNTAX)

    def _help(self, arg: str) -> Event:
        """HELP [topic] (RFC 5321 4.1.1.8)."""
        return Help(arg)

    def _starttls(self, arg: str) -> Event:
        """STARTTLS (RFC 3207 4)."""
        return BadSyntax("STARTTLS", R.R501_STARTTLS_SYNTAX) if arg else StartTls()

    def _auth(self, arg: str) -> Event:
        """AUTH mechanism [initial-response] (RFC 4954 4)."""
        words = arg.split()
        if not words or len(words) > 2:
            return BadSyntax("AUTH", R.R501_AUTH_SYNTAX)
        return Auth(words[0].upper(), words[1] if len(words) == 2 else None)

    def _xclient(self, arg: str) -> Event:
        """XCLIENT attr=value... (Postfix XCLIENT_README)."""
        return Xclient(esmtp.parse_attrs("XCLIENT", arg, esmtp.XCLIENT_ATTRS))

    def _xforward(self, arg: str) -> Event:
        """XFORWARD attr=value... (Postfix XFORWARD_README)."""
        return Xforward(esmtp.parse_attrs("XFORWARD", arg, esmtp.XFORWARD_ATTRS))


_Parser = Callable[[SMTPServerConnection, str], Event]

# verb -> (event type, parser): the one dispatch table.
COMMANDS: dict[str, tuple[type[Event], _Parser]] = {
    "HELO": (Helo, SMTPServerConnection._helo),
    "EHLO": (Ehlo, SMTPServerConnection._ehlo),
    "MAIL": (MailFrom, SMTPServerConnection._mail),
    "RCPT": (RcptTo, SMTPServerConnection._rcpt),
    "DATA": (Data, SMTPServerConnection._data),
    "BDAT": (Bdat, SMTPServerConnection._data),  # parsed by _bdat
    "RSET": (Rset, SMTPServerConnection._rset),
    "NOOP": (Noop, SMTPServerConnection._noop),
    "QUIT": (Quit, SMTPServerConnection._quit),
    "VRFY": (Vrfy, SMTPServerConnection._vrfy),
    "ETRN": (Etrn, SMTPServerConnection._etrn),
    "HELP": (Help, SMTPServerConnection._help),
    "STARTTLS": (StartTls, SMTPServerConnection._starttls),
    "AUTH": (Auth, SMTPServerConnection._auth),
    "XCLIENT": (Xclient, SMTPServerConnection._xclient),
    "XFORWARD": (Xforward, SMTPServerConnection._xforward),
}


# Postfix's EHLO keyword order.
EHLO_ORDER = ("PIPELINING", "SIZE", "VRFY", "ETRN", "STARTTLS", "AUTH",
              "ENHANCEDSTATUSCODES", "8BITMIME", "DSN", "SMTPUTF8", "CHUNKING")


def ehlo_reply(hostname: str, size_limit: int, keywords_enabled: Iterable[str],
               discard: Iterable[str] = (), auth_mechanisms: Sequence[str] = ()) -> Reply:
    """ehlo_reply - the 250 EHLO reply in Postfix's keyword order.

    keywords_enabled: keywords to offer (any case); discard: the
    smtpd_discard_ehlo_keywords list (any case; "silent-discard" ignored);
    auth_mechanisms: the SASL mechanisms listed after AUTH.
    """
    enabled = {k.upper() for k in keywords_enabled}
    dropped = {k.upper() for k in discard}
    lines = [hostname]
    for keyword in EHLO_ORDER:
        if keyword not in enabled or keyword in dropped:
            continue
        if keyword == "SIZE" and size_limit:
            lines.append(f"SIZE {size_limit}")
        elif keyword == "AUTH":
            if auth_mechanisms:
                lines.append("AUTH " + " ".join(auth_mechanisms))
        else:
            lines.append(keyword)
    return Reply(250, "", "\n".join(lines))


def enabled_keywords(config: ServerConfig) -> list[str]:
    """the EHLO keywords that a ServerConfig supports."""
    words = ["PIPELINING", "SIZE", "ENHANCEDSTATUSCODES", "8BITMIME"]
    if not config.disable_vrfy_command:
        words.append("VRFY")
    for flag, word in ((config.etrn, "ETRN"), (config.starttls, "STARTTLS"),
                       (config.auth, "AUTH"), (config.dsn, "DSN"),
                       (config.smtputf8_enable, "SMTPUTF8"), (config.chunking, "CHUNKING")):
        if flag:
            words.append(word)
    return words
