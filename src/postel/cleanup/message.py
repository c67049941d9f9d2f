"""message - sans-IO message content processing for cleanup(8)

SYNOPSIS
    from postel.cleanup.message import MessageState, Settings, Result

    st = MessageState(settings, qid, sender=..., recipients=..., attrs=...)
    st.feed(chunk)              # any number of times; bytes, CRLF or LF
    st.finish()                 # end of content
    records = st.take_records() # [(b"N" | b"L", line_bytes), ...] to store
    runs = st.take_runs()       # the same, with runs of N lines as lists
    st.result()                 # Result(status, dsn, reason)

DESCRIPTION
    MessageState turns the raw message content, as the client streamed it,
    into the lines that cleanup(8) stores in the queue file.  It does no
    I/O: bytes go in, content records and a verdict come out, so that every
    rule can be tested without a socket.

    Line handling.  CRLF and bare LF both end a line; the stored line has no
    line terminator.  A line longer than line_length_limit is cut into
    pieces: every piece but the last is a continuation record ("L"), the last
    one a normal record ("N"), as Postfix's REC_TYPE_CONT/REC_TYPE_NORM.

    Headers.  Header lines are collected into logical headers (RFC 5322
    2.2.3 folding).  A logical header longer than header_size_limit keeps its
    first header_size_limit octets; the excess is discarded.  When the
    primary header block ends with a line that is not empty, an empty line is
    inserted so that the body stays a body.

    MIME.  The processor follows multipart boundaries and message/rfc822
    attachments (RFC 2046 5.1.1, 5.2.1) while the content streams past, with
    no buffering of parts: it knows at every line whether it sees primary
    message headers, MIME part headers, headers of an attached message, or
    body text, and runs header_checks, mime_header_checks,
    nested_header_checks or body_checks accordingly (header_checks(5)).
    body_checks see at most body_checks_size_limit octets of each body part.
    Content-Type parameters are parsed by the standard library's email
    package.

    Header completion, for mail whose client matched
    local_header_rewrite_clients (rewrite_context=local) or with
    always_add_missing_headers=yes: (Resent-)From:, (Resent-)Date:,
    (Resent-)Message-ID:, and, when there is no To:/Cc: and
    undisclosed_recipients_header is not empty, that header.  The Resent-
    variants are completed when the message has any Resent- header.
    Headers in message_drop_headers are removed (Bcc, Content-Length,
    Resent-Bcc, Return-Path by default).

    Recipient extraction (sendmail -t, flag extract_recipients): the
    addresses in (Resent-)To:, (Resent-)Cc: and (Resent-)Bcc: become
    envelope recipients, the Resent- ones when any Resent- header exists.

    Limits: message_size_limit (552 5.3.4), hopcount_limit (Received: and
    Delivered-To: headers, 554 5.4.0).

    The first error wins; after it, content is still consumed (the client
    streams on) but nothing more is stored.

CONFIGURATION PARAMETERS
    See Settings: message_size_limit, header_size_limit, line_length_limit,
    hopcount_limit, body_checks_size_limit, always_add_missing_headers,
    undisclosed_recipients_header, message_drop_headers, header_from_format,
    myhostname.
"""

from __future__ import annotations

import email.message
import email.utils
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from postel import log
from postel.cleanup.checks import Action, CheckTables
from postel.mail.lines import has_long_line

# One header name: printable ASCII except ":" (RFC 5322 2.2 ftext).
_HEADER_RE = re.compile(rb"[!-9;-~]+:")
MIME_NESTING_LIMIT = 100

R_OK = (0, "2.0.0", "")
R_SIZE = (552, "5.3.4", "Message size exceeds fixed limit")
R_HOPS = (554, "5.4.0", "Error: too many hops")
R_TABLE = (451, "4.3.0", "Error: queue file write error")
R_REJECT_DEFAULT = "Message content rejected"
R_DEFER_DEFAULT = "Service unavailable"

SENDER_HEADERS = frozenset({
    "from", "sender", "reply-to", "errors-to", "return-receipt-to",
    "disposition-notification-to", "mail-followup-to", "resent-from",
    "resent-sender", "resent-reply-to",
})
RECIPIENT_HEADERS = frozenset({
    "to", "cc", "bcc", "apparently-to", "resent-to", "resent-cc", "resent-bcc",
})

# The common shapes of an address header value, "user@domain", "<user@domain>",
# "Name <user@domain>" and '"Name" <user@domain>' (RFC 5322 3.4), all ASCII on
# one line: header_addrs() takes the address from here without the full parser.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_ADDR = rf"{_ATOM}(?:\.{_ATOM})*(?:@{_ATOM}(?:\.{_ATOM})*)?"
_WORD = r"[!#-'*+\-./0-9=?A-Z^-~]+"
_PHRASE = rf'(?:{_WORD}(?:[ \t]+{_WORD})*|"[ !#-\[\]-~]*")'
_SIMPLE_ADDR_RE = re.compile(rf"[ \t]*(?:({_ADDR})|(?:{_PHRASE}[ \t]*)?<({_ADDR})>)[ \t]*\Z")

# Primary headers without header checks go through _bulk_headers() (tests turn
# this off to compare it with the per-line path).
_BULK_HEADERS = True

# Address rewriting callback: (address, header_class) -> rewritten address,
# where header_class is "header_sender" or "header_recipient".
Rewriter = Callable[[str, str], str]


@dataclass(slots=True)
class Settings:
    """Settings - the parameters cleanup reads, resolved once per process."""

    myhostname: str = "localhost"
    message_size_limit: int = 10240000
    header_size_limit: int = 102400
    line_length_limit: int = 2048
    hopcount_limit: int = 50
    body_checks_size_limit: int = 51200
    always_add_missing_headers: bool = False
    undisclosed_recipients_header: str = ""
    message_drop_headers: frozenset = frozenset({"bcc", "content-length", "resent-bcc",
                                                  "return-path"})
    header_from_format: str = "standard"
    header_checks: CheckTables | None = None
    mime_header_checks: CheckTables | None = None
    nested_header_checks: CheckTables | None = None
    body_checks: CheckTables | None = None


@dataclass(slots=True)
class Result:
    """Result - the verdict on one message."""

    status: int = 0
    dsn: str = "2.0.0"
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 0


# Parser states.
PRIMARY, MIME_HDR, NESTED_HDR, BODY = range(4)


@dataclass(slots=True)
class _Part:
    """_Part - one open multipart level: its boundary marker."""

    dash: bytes            # b"--" + boundary


@dataclass(slots=True)
class MessageState:
    """MessageState - one message being cleaned up (sans-IO)."""

    settings: Settings
    qid: str
    sender: str = ""
    fullname: str = ""
    attrs: dict = field(default_factory=dict)
    local: bool = False               # header rewriting context is local
    extract: bool = False             # sendmail -t
    first_rcpt: str = ""              # for log lines
    rewrite: Rewriter | None = None   # header address rewriting
    now: float | None = None
    # outputs
    records: list = field(default_factory=list)
    extracted: list = field(default_factory=list)      # -t recipients
    resent_extracted: list = field(default_factory=list)
    bcc: list = field(default_factory=list)            # BCC actions
    redirect: str = ""
    filter: str = ""
    hold: bool = False
    hold_reason: str = ""
    discard: bool = False
    message_id: str = ""
    size: int = 0
    hop_count: int = 0
    conts: int = 0                    # L records made (_out is the only place)
    status: tuple = R_OK
    # parser state
    _state: int = PRIMARY
    _partial: bytearray = field(default_factory=bytearray)
    _hdr: bytearray = field(default_factory=bytearray)
    _hdr_truncated: bool = False
    _block: list = field(default_factory=list)         # headers of the current block
    _stack: list = field(default_factory=list)         # open _Part levels
    _next_nested: bool = False
    _body_checked: int = 0
    _seen: set = field(default_factory=set)
    _resent: bool = False
    _finished: bool = False

    # ------------------------------------------------------------ input

    def feed(self, data: bytes) -> None:
        """feed - add raw content; complete lines are processed at once."""
        if not data:
            return
        buf = self._partial
        limit = self.settings.line_length_limit
        start = 0
        n = len(data)
        while start < n:
            if self._state == BODY and not buf and self._plain_body():
                start = self._bulk_body(data, start)
                if start >= n:
                    return
            elif self._state == PRIMARY and not buf and not self._piece_open and \
                    self._plain_headers():
                start = self._bulk_headers(data, start)
                if start >= n:
                    return
            nl = data.find(b"\n", start)
            if nl < 0:
                buf += data[start:]
                while len(buf) > limit + (buf[-1:] == b"\r"):
                    # Keep a trailing CR with its LF; cut the rest as continuation.
                    piece = bytes(buf[:limit])
                    del buf[:limit]
                    self._record(piece, cont=True)
                return
            end = nl
            if buf:
                buf += data[start:end]
                line = bytes(buf)
                buf.clear()
            else:
                line = data[start:end]
            start = nl + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            while len(line) > limit:
                self._record(line[:limit], cont=True)
                line = line[limit:]
            self._record(line, cont=False)

    def _plain_body(self) -> bool:
        """_plain_body - body lines need no work: no MIME boundaries, no body_checks."""
        return not self._stack and (not self.settings.body_checks or self.status[0] != 0
                                    or self._body_checked >= self.settings.body_checks_size_limit)

    def _plain_headers(self) -> bool:
        """_plain_headers - primary header lines need no checks (header_checks,
        mime_header_checks) and may take the bulk path."""
        settings = self.settings
        return _BULK_HEADERS and not (settings.header_checks or settings.mime_header_checks)

    def _bulk_headers(self, data: bytes, start: int) -> int:
        """_bulk_headers - primary header lines from start, as _record() would handle
        them, without its per-line calls; returns the offset of the first line left
        to feed(): an incomplete line, the end of the header block, a line longer
        than line_length_limit, or a header that would exceed header_size_limit."""
        limit = self.settings.line_length_limit
        hlimit = self.settings.header_size_limit
        hdr = self._hdr
        find = data.find
        match = _HEADER_RE.match
        while True:
            nl = find(b"\n", start)
            if nl < 0:
                return start
            end = nl - 1 if nl > start and data[nl - 1] == 13 else nl
            if end - start > limit:
                return start
            first = data[start] if end > start else -1
            if first == 32 or first == 9:             # folded (RFC 5322 2.2.3)
                if not hdr or len(hdr) + 1 + end - start > hlimit:
                    return start
                hdr += b"\n"
                hdr += data[start:end]
            elif match(data, start, end) is not None and end - start <= hlimit:
                if hdr:
                    self._flush_plain()
                hdr += data[start:end]
            else:
                return start
            start = nl + 1

    def _flush_plain(self) -> None:
        """_flush_plain - _flush_header() for a primary header when no checks apply."""
        raw = bytes(self._hdr)
        lines = raw.split(b"\n")
        if self._hdr_truncated or max(map(len, lines)) > self.settings.line_length_limit:
            self._flush_header()         # begun on the per-line path: cut or truncated
            return
        self._hdr.clear()
        text = raw.decode("utf-8", "surrogateescape")
        head, _, value = text.partition(":")
        name = head.strip().lower()
        self._block.append((name, value.strip()))
        new = self._primary_header(name, text)
        if new is None:
            return
        if new != text:
            self._emit_header(new)
            return
        # Unchanged: its lines are those of raw (the decode is lossless).
        records = self.records
        size_limit = self.settings.message_size_limit
        for line in lines:
            self.size += len(line) + 1
            if self.size > size_limit:
                self._fail(R_SIZE)
            if self.status[0] == 0:
                records.append((b"N", line))

    def _bulk_body(self, data: bytes, start: int) -> int:
        """_bulk_body - store all complete body lines from start at once; the next offset."""
        last = data.rfind(b"\n", start)
        if last < 0:
            return start
        # One CR before each LF goes, as in feed(); split() gives a trailing "".
        seg = data[start:last + 1]
        lines = seg.split(b"\r\n")
        if b"\n" in b"".join(lines):
            # A bare LF: the general split.  (The join and the memchr() of
            # "in" cost less than counting LFs and CRLFs over the segment.)
            seg = seg.replace(b"\r\n", b"\n")
            lines = seg.split(b"\n")
            stored = len(seg)            # the lines and one LF each
            width = self.settings.line_length_limit + 1
        else:
            stored = len(seg) - len(lines) + 1       # each CRLF counts as one LF
            width = self.settings.line_length_limit + 2
        lines.pop()
        limit = self.settings.line_length_limit
        if has_long_line(seg, width):
            for line in lines:           # rare: cut long lines as feed() does
                while len(line) > limit:
                    self._record(line[:limit], cont=True)
                    line = line[limit:]
                self._record(line, cont=False)
            return last + 1
        self.size += stored
        if self.size > self.settings.message_size_limit:
            self._fail(R_SIZE)
        if self.status[0] == 0 and lines:
            # One run entry for all these N records (take_records() expands it).
            self.records.append(lines)
        return last + 1

    def finish(self) -> None:
        """finish - the content has ended; flush state, add missing headers."""
        if self._finished:
            return
        self._finished = True
        if self._partial:
            line = bytes(self._partial)
            self._partial.clear()
            if line.endswith(b"\r"):
                line = line[:-1]
            self._record(line, cont=False)
        if self._hdr:
            self._flush_header()
        if self._state == PRIMARY:
            self._end_primary(None)

    # ------------------------------------------------------------ output

    def take_records(self) -> list:
        """take_records - the content records produced so far (and forget them)."""
        out = []
        for entry in self.take_runs():
            if type(entry) is list:
                out += [(b"N", line) for line in entry]
            else:
                out.append(entry)
        return out

    def take_runs(self) -> list:
        """take_runs - take_records() with runs of N records unexpanded.

        Each entry is a (b"N" | b"L", line) record or a list of lines, a run
        of N records (bulk body lines: no tuple per line)."""
        out = self.records
        self.records = []
        return out

    def result(self) -> Result:
        """result - the verdict: status, dsn, reason."""
        status, dsn, reason = self.status
        return Result(status, dsn, reason)

    def recipients_extracted(self) -> list[str]:
        """recipients_extracted - the -t recipients (Resent- ones when present)."""
        return list(self.resent_extracted if self._resent else self.extracted)

    def _fail(self, status: tuple) -> None:
        """_fail - remember the first error; store nothing after it."""
        if self.status[0] == 0:
            self.status = status
            self.records.clear()

    def _out(self, line: bytes, cont: bool = False) -> None:
        """_out - store one content record (unless the message failed)."""
        if cont:
            self.conts += 1
        self.size += len(line) + (0 if cont else 1)
        if self.size > self.settings.message_size_limit:
            self._fail(R_SIZE)
        if self.status[0] == 0:
            self.records.append((b"L" if cont else b"N", line))

    # ------------------------------------------------------------ lines

    def _record(self, line: bytes, cont: bool) -> None:
        """_record - dispatch one line or line piece by parser state."""
        if self._state == BODY:
            self._body_line(line, cont)
            return
        if cont or self._cont_pending():
            # A long header line: collect the pieces into the header buffer.
            if self._hdr:
                self._hdr_append(line, newline=not self._piece_open)
                self._piece_open = cont
                return
        self._header_line(line, cont)

    # _piece_open: the header buffer ends in the middle of a cut line.
    _piece_open: bool = False

    def _cont_pending(self) -> bool:
        return self._piece_open

    def _hdr_append(self, line: bytes, newline: bool) -> None:
        """_hdr_append - add text to the logical header within header_size_limit."""
        add = (b"\n" + line) if newline else line
        room = self.settings.header_size_limit - len(self._hdr)
        if len(add) > room:
            if not self._hdr_truncated:
                self._hdr_truncated = True
            add = add[:max(room, 0)]
        self._hdr += add

    def _header_line(self, line: bytes, cont: bool) -> None:
        """_header_line - one line while in a header block."""
        if line[:1] in (b" ", b"\t") and self._hdr:
            self._hdr_append(line, newline=True)
            self._piece_open = cont
            return
        if _HEADER_RE.match(line):
            if self._hdr:
                self._flush_header()
            self._hdr += line[: self.settings.header_size_limit]
            self._piece_open = cont
            return
        # Not a header: the header block ends here.
        if self._hdr:
            self._flush_header()
        state = self._state
        if state == PRIMARY:
            self._end_primary(line)
            if line:
                self._out(b"")       # keep the body a body
        else:
            self._end_block()
        self._state = BODY
        self._body_checked = 0
        if not line and not cont:
            self._out(line)                  # the separator line
            if self._next_nested:
                # RFC 2046 5.2.1: the attached message's headers start now.
                self._next_nested = False
                self._state = NESTED_HDR
            return
        self._next_nested = False
        self._body_line(line, cont)

    def _end_block(self) -> None:
        """_end_block - decide what follows a header block from its Content-Type."""
        ctype = None
        for name, value in self._block:
            if name == "content-type":
                ctype = value
        self._block = []
        self._next_nested = False
        if ctype is None:
            return
        msg = email.message.Message()
        try:
            msg["Content-Type"] = ctype
            maintype = msg.get_content_maintype()
            subtype = msg.get_content_subtype()
            boundary = msg.get_boundary()
        except Exception:  # malformed parameters: treat as text  # noqa: BLE001
            return
        if maintype == "multipart" and boundary and len(self._stack) < MIME_NESTING_LIMIT:
            self._stack.append(_Part(b"--" + boundary.encode("utf-8", "surrogateescape")))
        elif maintype == "message" and subtype in ("rfc822", "global"):
            self._next_nested = True

    def _body_line(self, line: bytes, cont: bool) -> None:
        """_body_line - one body line: boundaries, body_checks, output."""
        if self._stack and line[:2] == b"--" and not cont:
            level = self._match_boundary(line)
            if level is not None:
                part = self._stack[level]
                del self._stack[level + 1:]
                self._out(line)
                if line.rstrip()[len(part.dash):len(part.dash) + 2] == b"--":
                    self._stack.pop()          # close delimiter: epilogue follows
                    self._state = BODY
                else:
                    self._state = MIME_HDR
                self._body_checked = 0
                return
        checks = self.settings.body_checks
        if checks and self._body_checked < self.settings.body_checks_size_limit \
                and self.status[0] == 0:
            self._body_checked += len(line)
            text = line.decode("utf-8", "surrogateescape")
            act = checks.lookup(text)
            if act is not None:
                out = self._apply(act, "body", text)
                if out is None:
                    return
                if out is not _KEEP:
                    for extra in out:
                        self._out(extra.encode("utf-8", "surrogateescape"))
        self._out(line, cont)

    def _match_boundary(self, line: bytes) -> int | None:
        """_match_boundary - the stack level whose boundary starts line, or None."""
        for level in range(len(self._stack) - 1, -1, -1):
            if line.startswith(self._stack[level].dash):
                return level
        return None

    # ------------------------------------------------------------ headers

    def _flush_header(self) -> None:
        """_flush_header - process one complete logical header."""
        raw = bytes(self._hdr)
        self._hdr.clear()
        self._piece_open = False
        if self._hdr_truncated:
            self._hdr_truncated = False
            log.warning("%s: header too long; excess discarded (header_size_limit=%d)",
                        self.qid, self.settings.header_size_limit)
        text = raw.decode("utf-8", "surrogateescape")
        name = text.partition(":")[0].strip().lower()
        state = self._state
        is_mime = name.startswith("content-") or name == "mime-version"
        if state == PRIMARY:
            checks = self.settings.mime_header_checks if is_mime else self.settings.header_checks
            where = "header"
        elif state == MIME_HDR:
            checks = self.settings.mime_header_checks
            where = "header"
        else:
            checks = self.settings.mime_header_checks if is_mime else \
                self.settings.nested_header_checks
            where = "header"
        self._block.append((name, text.partition(":")[2].strip()))
        if checks and self.status[0] == 0:
            act = checks.lookup(text.replace("\n", ""))
            if act is not None:
                out = self._apply(act, where, text)
                if out is None:
                    return
                if out is not _KEEP:
                    # PREPEND gives [new, old]; REPLACE gives [new].
                    for h in out[:-1]:
                        self._emit_header(h)
                    text = out[-1]
                    name = text.partition(":")[0].strip().lower()
        if state == PRIMARY:
            text = self._primary_header(name, text)
            if text is None:
                return
        self._emit_header(text)

    def _emit_header(self, text: str) -> None:
        """_emit_header - store a logical header, one record per line."""
        limit = self.settings.line_length_limit
        for line in text.encode("utf-8", "surrogateescape").split(b"\n"):
            while len(line) > limit:
                self._out(line[:limit], cont=True)
                line = line[limit:]
            self._out(line)

    def _primary_header(self, name: str, text: str) -> str | None:
        """_primary_header - cleanup's own work on one primary header."""
        if name.startswith("resent-"):
            self._resent = True
        self._seen.add(name)
        if name in ("received", "delivered-to"):
            self.hop_count += 1
            if self.hop_count >= self.settings.hopcount_limit and self.status[0] == 0:
                log.warning("%s: message rejected: hopcount exceeded", self.qid)
                self._fail(R_HOPS)
        elif name == "message-id":
            self.message_id = text.partition(":")[2].strip()
            log.info("%s: message-id=%s", self.qid, self.message_id)
        elif name == "resent-message-id":
            log.info("%s: resent-message-id=%s", self.qid, text.partition(":")[2].strip())
        if self.extract and name in ("to", "cc", "bcc", "resent-to", "resent-cc",
                                     "resent-bcc"):
            dest = self.resent_extracted if name.startswith("resent-") else self.extracted
            for addr in header_addrs(text.partition(":")[2]):
                dest.append(self._rewrite(addr, "header_recipient"))
        if name in self.settings.message_drop_headers:
            return None
        if self.rewrite is not None and (name in SENDER_HEADERS or name in RECIPIENT_HEADERS):
            text = self._rewrite_header(name, text)
        return text

    def _rewrite(self, addr: str, hclass: str) -> str:
        """_rewrite - one header address through the rewriter, if any."""
        if self.rewrite is None:
            return addr
        return self.rewrite(addr, hclass)

    def _rewrite_header(self, name: str, text: str) -> str:
        """_rewrite_header - rewrite the addresses inside an address header.

        Only the address specifications change; comments, phrases and
        folding are kept as they were.
        """
        hclass = "header_sender" if name in SENDER_HEADERS else "header_recipient"
        head, colon, value = text.partition(":")
        for addr in header_addrs(value):
            new = self._rewrite(addr, hclass)
            if new != addr:
                value = _replace_addr(value, addr, new)
        return head + colon + value

    def _end_primary(self, line: bytes | None) -> None:
        """_end_primary - the primary headers ended: add what is missing."""
        self._end_block()
        if not (self.local or self.settings.always_add_missing_headers):
            return
        rs = "resent-" if self._resent else ""
        prefix = "Resent-" if self._resent else ""
        if rs + "from" not in self._seen:
            self._emit_header(f"{prefix}From: {self._from_value()}")
        if rs + "date" not in self._seen:
            self._emit_header(f"{prefix}Date: {self._date()}")
        if rs + "message-id" not in self._seen:
            mid = f"<{time.strftime('%Y%m%d%H%M%S', time.gmtime(self._now()))}." \
                  f"{self.qid}@{self.settings.myhostname}>"
            self.message_id = mid
            log.info("%s: %smessage-id=%s", self.qid, rs, mid)
            self._emit_header(f"{prefix}Message-Id: {mid}")
        if not ({rs + "to", rs + "cc", rs + "bcc"} & self._seen) and \
                self.settings.undisclosed_recipients_header:
            self._emit_header(self.settings.undisclosed_recipients_header)

    def _now(self) -> float:
        return self.now if self.now is not None else time.time()

    def _date(self) -> str:
        """_date - an RFC 5322 3.3 date-time in local time."""
        return email.utils.formatdate(self._now(), localtime=True)

    def _from_value(self) -> str:
        """_from_value - the From: value Postfix makes from sender and full name."""
        if not self.sender:
            return "MAILER-DAEMON (Mail Delivery System)"
        addr = self.sender
        if not self.fullname:
            return addr
        if self.settings.header_from_format == "obsolete":
            return f"{addr} ({self.fullname})"
        return email.utils.formataddr((self.fullname, addr))

    # ------------------------------------------------------------ actions

    def _apply(self, act: Action, where: str, text: str):
        """_apply - run one check action; None drops the line, _KEEP keeps it,
        a list of texts replaces it (last element is the line itself)."""
        name = act.name
        if name in ("REJECT", "DEFER"):
            perm = name == "REJECT"
            reason = act.text or (R_REJECT_DEFAULT if perm else R_DEFER_DEFAULT)
            dsn = "5.7.1" if perm else "4.7.1"
            m = re.match(r"([245])\.\d{1,3}\.\d{1,3}\s+", reason)
            if m:
                dsn = reason[:m.end()].strip()
                reason = reason[m.end():]
            self._log_action("reject", where, text, f"{dsn} {reason}")
            self._fail((550 if perm else 451, dsn, reason))
            return _KEEP
        if name == "WARN":
            self._log_action("warning", where, text, act.text)
            return _KEEP
        if name == "INFO":
            self._log_action("info", where, text, act.text)
            return _KEEP
        if name == "DISCARD":
            self._log_action("discard", where, text, act.text)
            self.discard = True
            return _KEEP
        if name == "HOLD":
            self._log_action("hold", where, text, act.text)
            self.hold = True
            self.hold_reason = act.text
            return _KEEP
        if name == "IGNORE":
            return None
        if name == "REPLACE":
            self._log_action("replace", where, text, act.text)
            return [act.text]
        if name == "PREPEND":
            self._log_action("prepend", where, text, act.text)
            return [act.text, text]
        if name == "REDIRECT":
            self._log_action("redirect", where, text, act.text)
            self.redirect = act.text
            return _KEEP
        if name == "BCC":
            self._log_action("bcc", where, text, act.text)
            self.bcc.append(act.text)
            return _KEEP
        if name == "FILTER":
            self._log_action("filter", where, text, act.text)
            self.filter = act.text
            return _KEEP
        return _KEEP

    def _log_action(self, what: str, where: str, text: str, optional: str) -> None:
        """_log_action - Postfix's log line for a check action."""
        a = self.attrs
        client = f"{a.get('client_name', 'unknown')}[{a.get('client_address', 'unknown')}]"
        if not a.get("client_address"):
            client = "local"
        line = (f"{self.qid}: {what}: {where} {text.replace(chr(10), '')[:200]} from {client}; "
                f"from=<{self.sender}> to=<{self.first_rcpt}>")
        if a.get("protocol"):
            line += f" proto={a['protocol']}"
        if a.get("helo_name"):
            line += f" helo=<{a['helo_name']}>"
        if optional:
            line += f": {optional}"
        log.info("%s", line)


_KEEP = object()


def header_addrs(value: str) -> list[str]:
    """header_addrs - the addresses in an address header value, as email.utils finds them.

    One plain address (the usual From:/To:) is matched by a regular
    expression; anything else goes through email.utils.getaddresses().
    """
    m = _SIMPLE_ADDR_RE.match(value)
    if m is not None:
        return [m.group(1) or m.group(2)]
    return [addr for _, addr in email.utils.getaddresses([value]) if addr]


def _replace_addr(value: str, old: str, new: str) -> str:
    """_replace_addr - put new in place of the first bare occurrence of old."""
    idx = value.find(old)
    if idx < 0:
        return value
    return value[:idx] + new + value[idx + len(old):]
