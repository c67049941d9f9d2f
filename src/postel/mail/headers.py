"""headers - message header helpers: classes, address rewriting, Received, Date, Message-Id

SYNOPSIS
    from postel.mail import headers
    headers.header_class("Resent-From")            # "sender"
    headers.rewrite_addresses('Joe (x) <joe>, b', fn)   # fn(external addr) -> addr
    headers.received_header(helo=..., name=..., addr=..., myhostname=..., qid=...,
                            rcpts=["a@b"], now=t)
    headers.mail_date(t)                           # "Tue,  5 Mar 2024 10:00:00 +0100 (CET)"
    headers.message_id(qid, myhostname, t)         # "<20240305090000.QID@host>"

DESCRIPTION
    Helpers for cleanup(8) and the services that write headers.  Nothing
    here does I/O.

    header_class() names the headers whose addresses cleanup rewrites with
    the sender or the recipient rules (canonical_classes, as in Postfix).

    rewrite_addresses() applies a function to every address in a structured
    address header value (RFC 5322 3.4 address-list) and keeps everything
    else as it was: display names, comments, group syntax, white space and
    line folding.  Elements that cannot be parsed are left alone.
    addresses() lists the addresses with email.utils.getaddresses.

    received_header() produces Postfix's layout.  The "for <rcpt>" clause
    appears only when the message has exactly one recipient:

        Received: from HELO (NAME [ADDR])
        \tby MYHOSTNAME (Postel) with ESMTP id QID
        \tfor <RCPT>; DATE

    and otherwise "...id QID;" followed by "\tDATE" on its own line.  A
    local submission gets "Received: by MYHOSTNAME (Postel, from userid
    UID)\n\tid QID; DATE".

    mail_date() is the RFC 5322 3.3 date in local time with the zone name
    as a comment, the day of month padded with a space, as Postfix writes
    it.  message_id() is Postfix's <YYYYMMDDHHMMSS.QID@myhostname> in UTC.

STANDARDS
    RFC 5322 section 3.3 (date-time), 3.4 (address-list), 3.6.6 (Resent-),
    3.6.7 (trace fields); RFC 5321 section 4.4 (Received)
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable

from postel.mail.address import quote_local

MAIL_NAME = "Postel"

SENDER_HEADERS = frozenset({
    "from", "sender", "reply-to", "return-receipt-to", "errors-to",
    "disposition-notification-to", "mail-followup-to", "mail-reply-to",
    "resent-from", "resent-sender", "resent-reply-to",
})
RECIPIENT_HEADERS = frozenset({
    "to", "cc", "bcc", "apparently-to", "resent-to", "resent-cc", "resent-bcc",
})


def header_class(name: str) -> str | None:
    """header_class - "sender", "recipient" or None for a header name."""
    low = name.strip().lower()
    if low in SENDER_HEADERS:
        return "sender"
    if low in RECIPIENT_HEADERS:
        return "recipient"
    return None


def is_resent(name: str) -> bool:
    """is_resent - an RFC 5322 3.6.6 Resent- header."""
    return name.strip().lower().startswith("resent-")


def addresses(value: str) -> list[tuple[str, str]]:
    """addresses - (display name, address) pairs of an address-list value."""
    return email.utils.getaddresses([value])


def _scan(value: str) -> list[tuple[int, int, int]]:
    """_scan - top-level elements: (start, end, first '<' or -1), outside quotes/comments."""
    out = []
    start = 0
    depth = 0
    quoted = False
    escaped = False
    angle = -1
    in_angle = False
    for i, ch in enumerate(value):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif quoted:
            quoted = ch != '"'
        elif depth:
            depth += {"(": 1, ")": -1}.get(ch, 0)
        elif ch == '"':
            quoted = True
        elif ch == "(":
            depth = 1
        elif ch == "<":
            in_angle = True
            if angle < 0:
                angle = i
        elif ch == ">":
            in_angle = False
        elif ch in ",;" and not in_angle:
            out.append((start, i, angle))
            start, angle = i + 1, -1
        elif ch == ":" and not in_angle and angle < 0:
            # group syntax "name:" - the group's first member starts here
            start = i + 1
    out.append((start, len(value), angle))
    return out


def _bare_span(elem: str) -> tuple[int, int] | None:
    """_bare_span - the addr-spec span of an element without <>, or None."""
    lo = len(elem) - len(elem.lstrip())
    hi = len(elem.rstrip())
    # Trailing comments are allowed; a comment inside the address is not.
    while hi > lo and elem[hi - 1] == ")":
        open_ = elem.rfind("(", lo, hi)
        if open_ < 0:
            return None
        hi = len(elem[:open_].rstrip())
    span = elem[lo:hi]
    if not span or "(" in span or ")" in span or any(c.isspace() for c in span):
        return None
    return lo, hi


def rewrite_addresses(value: str, fn: Callable[[str], str]) -> str:
    """rewrite_addresses - apply fn to each address of an address-list value."""
    pieces = []
    pos = 0
    for start, end, angle in _scan(value):
        elem = value[start:end]
        if angle >= 0:
            close = value.find(">", angle)
            if close < 0 or close > end:
                continue
            inner = value[angle + 1:close]
            if inner.strip():
                pieces.append(value[pos:angle + 1])
                pieces.append(fn(inner.strip()))
                pos = close
            continue
        span = _bare_span(elem)
        if span is None:
            continue
        pieces.append(value[pos:start + span[0]])
        pieces.append(fn(elem[span[0]:span[1]]))
        pos = start + span[1]
    pieces.append(value[pos:])
    return "".join(pieces)


# [whole second, time.tzname, text] of the last call (time.tzset() makes a new tzname)
_last_date: list = [None, None, ""]


def mail_date(when: float | None = None) -> str:
    """mail_date - RFC 5322 3.3 date-time, local zone, "(ZONE)" comment, as Postfix."""
    t = time.time() if when is None else when
    sec = int(t) if t >= 0 else None    # the text only changes once a second
    if sec is not None and _last_date[0] == sec and _last_date[1] is time.tzname:
        return _last_date[2]
    text = _mail_date(t)
    _last_date[0], _last_date[1], _last_date[2] = sec, time.tzname, text
    return text


def _mail_date(t: float) -> str:
    """_mail_date - mail_date without the one-second cache."""
    lt = time.localtime(t)
    offset = lt.tm_gmtoff // 60
    sign = "+" if offset >= 0 else "-"
    offset = abs(offset)
    day = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")[lt.tm_wday]
    month = ("Jan", "Feb", "Mar", "Apr", "May", "Jun",
             "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")[lt.tm_mon - 1]
    text = (f"{day}, {lt.tm_mday:2d} {month} {lt.tm_year} "
            f"{lt.tm_hour:02d}:{lt.tm_min:02d}:{lt.tm_sec:02d} "
            f"{sign}{offset // 60:02d}{offset % 60:02d}")
    zone = time.strftime("%Z", lt)
    return f"{text} ({zone})" if zone else text


def message_id(qid: str, myhostname: str, when: float | None = None) -> str:
    """message_id - Postfix's <YYYYMMDDHHMMSS.QID@myhostname>, time in UTC."""
    t = time.time() if when is None else when
    return f"<{time.strftime('%Y%m%d%H%M%S', time.gmtime(t))}.{qid}@{myhostname}>"


def received_header(*, helo: str, name: str, addr: str, myhostname: str, qid: str,
                    rcpts: list[str], protocol: str = "ESMTP", now: float | None = None,
                    tls: str = "", mail_name: str = MAIL_NAME) -> str:
    """received_header - Postfix's Received: header for mail from the network (no final newline)."""
    name = name or "unknown"
    lines = [f"Received: from {helo or name} ({name} [{addr}])"]
    if tls:
        lines.append(f"\t({tls})")
    date = mail_date(now)
    by = f"\tby {myhostname} ({mail_name}) with {protocol} id {qid}"
    if len(rcpts) == 1:
        lines.append(by)
        lines.append(f"\tfor <{quote_local(rcpts[0])}>; {date}")
    else:
        lines.append(by + ";")
        lines.append(f"\t{date}")
    return "\n".join(lines)


_QUOTED_MAX = 1024
_quoted: dict[str, str] = {}     # quote_local() results of recent recipients


def _quote_cached(addr: str) -> str:
    """_quote_cached - quote_local() of addr, remembered (bounded)."""
    q = _quoted.get(addr)
    if q is None:
        if len(_quoted) >= _QUOTED_MAX:
            _quoted.clear()
        q = _quoted[addr] = quote_local(addr)
    return q


def received_header_wire(*, helo: str, name: str, addr: str, myhostname: str, qid: str,
                         rcpts: list[str], protocol: str = "ESMTP", now: float | None = None,
                         mail_name: str = MAIL_NAME) -> bytes:
    """received_header_wire - received_header() (now, no TLS) as CRLF-terminated wire bytes."""
    name = name or "unknown"
    date = mail_date(now)
    if len(rcpts) == 1:
        text = (f"Received: from {helo or name} ({name} [{addr}])\r\n"
                f"\tby {myhostname} ({mail_name}) with {protocol} id {qid}\r\n"
                f"\tfor <{_quote_cached(rcpts[0])}>; {date}\r\n")
    else:
        text = (f"Received: from {helo or name} ({name} [{addr}])\r\n"
                f"\tby {myhostname} ({mail_name}) with {protocol} id {qid};\r\n"
                f"\t{date}\r\n")
    if text.count("\n") != 3:
        # an LF inside a field: the general path's exact bytes
        hdr = received_header(helo=helo, name=name, addr=addr, myhostname=myhostname,
                              qid=qid, rcpts=rcpts, protocol=protocol, now=now,
                              mail_name=mail_name)
        return hdr.replace("\n", "\r\n").encode("utf-8", "surrogateescape") + b"\r\n"
    return text.encode("utf-8", "surrogateescape")


def local_received_header(*, myhostname: str, qid: str, uid: int, now: float | None = None,
                          mail_name: str = MAIL_NAME) -> str:
    """local_received_header - Received: for a local submission (pickup)."""
    return (f"Received: by {myhostname} ({mail_name}, from userid {uid})\n"
            f"\tid {qid}; {mail_date(now)}")
