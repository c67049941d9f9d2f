"""replies - every SMTP reply that Postel's SMTP server sends, named once

SYNOPSIS
    from postel.protocol.replies import Reply, R250_OK, R221_BYE
    wire = R250_OK.to_bytes()
    wire = R421_TIMEOUT.format(host="mx.example").to_bytes()

DESCRIPTION
    A Reply is a value: a three-digit code, an enhanced status code (RFC
    3463, registry RFC 5248) and a text.  A text with "\\n" in it becomes a
    multi-line reply (RFC 5321 4.2.1): every line but the last is written
    "code-text", the last one "code text".  When the enhanced code is set it
    is repeated on every line, as Postfix does.

    Templates carry str.format() fields: {host} (myhostname), {rcpt},
    {sender}, {qid}, {size}, {name}, {detail}.  Reply.format() fills them in.

    The wording is Postfix's (smtpd(8)) wherever Postfix has one, so that
    scripts and humans who know Postfix's replies recognise Postel's.  A
    few Postfix replies have no enhanced status code (the greeting, HELO and
    EHLO replies, which RFC 2034 3 exempts, and some legacy ones such as
    "501 Syntax: HELO hostname"); they are kept as Postfix sends them.

STANDARDS
    RFC 5321 4.2 (replies), RFC 2034 (ENHANCEDSTATUSCODES), RFC 3463,
    RFC 5248 (enhanced status codes)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_ENHANCED = re.compile(r"[245]\.\d{1,3}\.\d{1,3}\Z")
_new_reply = object.__new__
_set = object.__setattr__

# Replies after which the server closes the connection (RFC 5321 3.8, 4.2.2:
# 221 after QUIT, 421 service shutting down; 521 per RFC 7504).
DISCONNECT_CODES = frozenset({221, 421, 521})


@dataclass(frozen=True, slots=True)
class Reply:
    """Reply - one SMTP reply: code, enhanced status code, text."""

    code: int
    enhanced: str
    text: str
    # The wire form, computed on first use (replies are constants, sent often).
    _wire: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        """check that the code and enhanced code are well-formed."""
        if not 200 <= self.code <= 599:
            raise ValueError(f"bad SMTP reply code: {self.code}")
        if self.enhanced and not _ENHANCED.match(self.enhanced):
            raise ValueError(f"bad enhanced status code: {self.enhanced!r}")
        if self.enhanced and self.enhanced[0] != str(self.code)[0]:
            raise ValueError(f"enhanced code {self.enhanced} does not match {self.code}")

    @property
    def positive(self) -> bool:
        """True for 2xx and 3xx replies."""
        return self.code < 400

    @property
    def disconnects(self) -> bool:
        """True when the server hangs up after sending this reply."""
        return self.code in DISCONNECT_CODES

    def format(self, **fields: object) -> Reply:
        """fill in the template fields of the text."""
        # code and enhanced code are this (checked) reply's: no second check.
        r = _new_reply(Reply)
        _set(r, "code", self.code)
        _set(r, "enhanced", self.enhanced)
        _set(r, "text", self.text.format(**fields))
        _set(r, "_wire", None)
        return r

    def with_code(self, code: int) -> Reply:
        """the same reply with another code (for configurable reject codes)."""
        enhanced = self.enhanced
        if enhanced and enhanced[0] != str(code)[0]:
            enhanced = str(code)[0] + enhanced[1:]
        return Reply(code, enhanced, self.text)

    def lines(self) -> list[str]:
        """the text lines, one per reply line."""
        return self.text.split("\n") if self.text else [""]

    def to_bytes(self) -> bytes:
        """the reply as it goes on the wire, CRLF-terminated."""
        wire = self._wire
        if wire is None:
            wire = self._encode()
            object.__setattr__(self, "_wire", wire)
        return wire

    def _encode(self) -> bytes:
        """the wire form, built from code, enhanced code and text."""
        text = self.text
        if text and "\n" not in text and text[-1] != " ":
            # one line, nothing to strip: the usual reply
            if self.enhanced:
                return f"{self.code} {self.enhanced} {text}\r\n".encode("utf-8")
            return f"{self.code} {text}\r\n".encode("utf-8")
        out = []
        lines = self.lines()
        prefix = f"{self.enhanced} " if self.enhanced else ""
        for i, line in enumerate(lines):
            sep = " " if i == len(lines) - 1 else "-"
            text = f"{prefix}{line}" if line or prefix else ""
            out.append(f"{self.code}{sep}{text}".rstrip(" ") + "\r\n")
        return "".join(out).encode("utf-8")

    def __str__(self) -> str:
        """the reply as it appears in log lines (first line only)."""
        return self.to_bytes().decode("utf-8").split("\r\n")[0]


# --- Connection set-up and tear-down --------------------------------------
R220_BANNER = Reply(220, "", "{host} ESMTP {name}")
R221_BYE = Reply(221, "2.0.0", "Bye")
R221_NON_SMTP = Reply(221, "2.7.0", "Error: I can break rules, too. Goodbye.")
R421_TIMEOUT = Reply(421, "4.4.2", "{host} Error: timeout exceeded")
R421_TOO_MANY_ERRORS = Reply(421, "4.7.0", "{host} Error: too many errors")
R421_SERVICE_UNAVAILABLE = Reply(421, "", "{host} Service unavailable - try again later")
R421_LOCAL_ERROR = Reply(421, "4.3.0", "{host} Server local error")
R421_CLOSING = Reply(421, "4.7.0", "Server closing connection")
R421_TOO_MANY_CONNECTIONS = Reply(421, "4.7.0", "{host} Error: too many connections from {name}")
R554_NO_SERVICE = Reply(554, "", "{host} ESMTP not accepting connections")
R554_SYNC = Reply(554, "5.5.0", "Error: SMTP protocol synchronization")

# --- Generic positive ------------------------------------------------------
R250_OK = Reply(250, "2.0.0", "Ok")
R250_SENDER_OK = Reply(250, "2.1.0", "Ok")
R250_RCPT_OK = Reply(250, "2.1.5", "Ok")
R250_HELO = Reply(250, "", "{host}")
R250_QUEUED = Reply(250, "2.0.0", "Ok: queued as {qid}")
R250_BDAT_OK = Reply(250, "2.0.0", "Ok: {size} bytes")
R250_BDAT_QUEUED = Reply(250, "2.0.0", "Ok: {size} bytes queued as {qid}")
R250_ETRN = Reply(250, "", "Queuing started")
R252_VRFY = Reply(252, "2.0.0", "{rcpt}")
R354_DATA = Reply(354, "", "End data with <CR><LF>.<CR><LF>")
R220_STARTTLS = Reply(220, "2.0.0", "Ready to start TLS")
R235_AUTH_OK = Reply(235, "2.7.0", "Authentication successful")
R214_HELP = Reply(214, "2.0.0", "See https://www.rfc-editor.org/rfc/rfc5321")

# --- Temporary failures ----------------------------------------------------
R450_SERVICE_UNAVAILABLE = Reply(450, "4.7.1", "Service unavailable")
R451_LOCAL_ERROR = Reply(451, "4.3.0", "Error: queue file write error")
R451_QUEUE_WRITE = Reply(451, "4.3.0", "Queue file write error")
R451_TEMP_LOOKUP = Reply(451, "4.3.0", "Temporary lookup error")
R451_CONFIG = Reply(451, "4.3.5", "Server configuration error")
R452_INSUFFICIENT_STORAGE = Reply(452, "4.3.1", "Insufficient system storage")
R452_TOO_MANY_RECIPIENTS = Reply(452, "4.5.3", "Error: too many recipients")
R454_TLS_UNAVAILABLE = Reply(454, "4.7.0", "TLS not available due to local problem")
R454_TRY_AGAIN = Reply(454, "4.3.0", "Try again later")
R454_AUTH_TEMP = Reply(454, "4.7.0", "Temporary authentication failure: {detail}")
R458_ETRN_UNABLE = Reply(458, "", "Unable to queue messages")
R459_ETRN_UNAVAILABLE = Reply(459, "", "<{name}>: service unavailable")

# --- Syntax and sequence errors (peer mistakes) ---------------------------
R500_BAD_SYNTAX = Reply(500, "5.5.2", "Error: bad syntax")
R500_NOT_RECOGNIZED = Reply(500, "5.5.2", "Error: command not recognized")
R500_LINE_TOO_LONG = Reply(500, "5.5.2", "Error: line too long")
R500_BAD_UTF8 = Reply(500, "5.5.2", "Error: bad UTF-8 syntax")
R500_SASL_LIMIT = Reply(500, "5.5.6", "SASL response limit exceeded")
R500_ETRN_SYNTAX = Reply(500, "", "Syntax: ETRN domain")
R501_HELO_SYNTAX = Reply(501, "", "Syntax: HELO hostname")
R501_EHLO_SYNTAX = Reply(501, "", "Syntax: EHLO hostname")
R501_MAIL_SYNTAX = Reply(501, "5.5.4", "Syntax: MAIL FROM:<address>")
R501_RCPT_SYNTAX = Reply(501, "5.5.4", "Syntax: RCPT TO:<address>")
R501_DATA_SYNTAX = Reply(501, "5.5.4", "Syntax: DATA")
R501_RSET_SYNTAX = Reply(501, "5.5.4", "Syntax: RSET")
R501_STARTTLS_SYNTAX = Reply(501, "5.5.4", "Syntax: STARTTLS")
R501_VRFY_SYNTAX = Reply(501, "5.5.4", "Syntax: VRFY address")
R501_AUTH_SYNTAX = Reply(501, "5.5.4", "Syntax: AUTH mechanism")
R501_AUTH_ABORTED = Reply(501, "5.7.0", "Authentication aborted")
R501_BAD_SENDER = Reply(501, "5.1.7", "Bad sender address syntax")
R501_BAD_RCPT = Reply(501, "5.1.3", "Bad recipient address syntax")
R501_SIZE_SYNTAX = Reply(501, "5.5.4", "Bad message size syntax")
R501_RET_SYNTAX = Reply(501, "5.5.4", "Bad RET parameter syntax")
R501_ENVID_SYNTAX = Reply(501, "5.5.4", "Bad ENVID parameter syntax")
R501_NOTIFY_SYNTAX = Reply(501, "5.5.4", "Error: Bad NOTIFY parameter syntax")
R501_ORCPT_SYNTAX = Reply(501, "5.5.4", "Error: Bad ORCPT parameter syntax")
R501_PARAM_SYNTAX = Reply(501, "5.5.4", "Error: invalid parameter syntax")
R501_DSN_DISABLED = Reply(501, "5.7.1", "DSN support is disabled")
R501_ATTR_SYNTAX = Reply(501, "5.5.4", "Syntax: {name} attribute=value...")
R501_ATTR_EXPECTED = Reply(501, "5.5.4", "Error: attribute=value expected")
R501_ATTR_TOO_LONG = Reply(501, "5.5.4", "Error: attribute value too long")
R501_ATTR_NAME = Reply(501, "5.5.4", "Bad {name} attribute name: {detail}")
R501_ATTR_VALUE = Reply(501, "5.5.4", "Bad {name} syntax: {detail}")
R502_NOT_IMPLEMENTED = Reply(502, "5.5.1", "Error: command not implemented")
R502_VRFY_DISABLED = Reply(502, "5.5.1", "VRFY command is disabled")
R503_HELO_FIRST = Reply(503, "5.5.1", "Error: send HELO/EHLO first")
R503_NEED_MAIL = Reply(503, "5.5.1", "Error: need MAIL command")
R503_NEED_RCPT = Reply(503, "5.5.1", "Error: need RCPT command")
R503_NESTED_MAIL = Reply(503, "5.5.1", "Error: nested MAIL command")
R503_MAIL_AFTER_BDAT = Reply(503, "5.5.1", "Error: MAIL after BDAT")
R503_RCPT_AFTER_BDAT = Reply(503, "5.5.1", "Error: RCPT after BDAT")
R503_DATA_AFTER_BDAT = Reply(503, "5.5.1", "Error: DATA after BDAT")
R503_IN_TRANSACTION = Reply(503, "5.5.1", "Error: MAIL transaction in progress")
R503_AUTH_NOT_ENABLED = Reply(503, "5.5.1", "Error: authentication not enabled")
R503_ALREADY_AUTH = Reply(503, "5.5.1", "Error: already authenticated")
R503_MULTIPLE_AUTH = Reply(503, "5.5.4", "Error: multiple AUTH= options")
R503_NEEDS_SENDER = Reply(503, "5.5.4", "Error: {name} requires non-null sender")
R503_REFUSED = Reply(503, "5.5.1", "Error: no SMTP service here, send QUIT")
# RFC 3030 3: DATA MUST NOT be used with BODY=BINARYMIME.  Postel's text.
R503_BINARYMIME_DATA = Reply(503, "5.5.1", "Error: BINARYMIME requires BDAT")
R521_BARE_LF = Reply(521, "5.5.2", "{host} Error: bare <LF> received")
R521_NOT_IMPLEMENTED = Reply(521, "5.5.1", "Error: command not implemented")
R521_BDAT_SYNTAX = Reply(521, "5.5.4", "Syntax: BDAT count [LAST]")
R530_STARTTLS_FIRST = Reply(530, "5.7.0", "Must issue a STARTTLS command first")
R535_AUTH_FAILED = Reply(535, "5.7.8", "Error: authentication failed: {detail}")
R550_INSUFFICIENT_AUTH = Reply(550, "5.7.0", "Error: insufficient authorization")
R551_BDAT_DISCARDED = Reply(551, "5.0.0", "Discarded {size} bytes after earlier error")
R551_NULL_BDAT = Reply(551, "5.7.1", "Null BDAT request")
R552_SIZE = Reply(552, "5.3.4", "Message size exceeds fixed limit")
R552_CHUNK_SIZE = Reply(552, "5.3.4", "Chunk exceeds message size limit")
R552_TOO_BIG = Reply(552, "5.3.4", "Message file too big")
R553_SMTPUTF8_REQUIRED = Reply(553, "5.6.7", "Must declare SMTPUTF8 to send unicode address")
R554_NO_VALID_RCPT = Reply(554, "5.5.1", "Error: no valid recipients")
R554_TLS_ACTIVE = Reply(554, "5.5.1", "Error: TLS already active")
R555_UNSUPPORTED_OPTION = Reply(555, "5.5.4", "Unsupported option: {name}")

# --- Policy rejections (decided by the shell, worded here) -----------------
# relay_domains_reject_code defaults to 554 in Postfix.
R550_RELAY_DENIED = Reply(554, "5.7.1", "<{rcpt}>: Relay access denied")
R550_USER_UNKNOWN = Reply(550, "5.1.1", "<{rcpt}>: Recipient address rejected: User unknown in local recipient table")
R554_ACCESS_DENIED = Reply(554, "5.7.1", "<{name}>: {detail}")


def bare_lf_reply(code: int, host: str) -> Reply:
    """the "bare <LF> received" reply with smtpd_forbid_bare_newline_reject_code."""
    return R521_BARE_LF.with_code(code).format(host=host)
