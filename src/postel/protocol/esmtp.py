"""esmtp - envelope address, ESMTP parameter and xtext syntax

SYNOPSIS
    from postel.protocol import esmtp
    path = esmtp.parse_path("FROM:<a@b> SIZE=10", "FROM", strict=False)
    esmtp.xtext_encode("a+b")          # 'a+2Bb'
    esmtp.xtext_decode("a+2Bb")        # 'a+b'

DESCRIPTION
    Pure functions shared by the SMTP server and client state machines.

    parse_path() splits the argument of MAIL or RCPT into the address and
    the ESMTP parameter list (RFC 5321 4.1.2).  Source routes are removed,
    as Postfix does (RFC 5321 4.1.1.3 and appendix C allow ignoring them).
    With strict=True the path must be in angle brackets
    (smtpd_strict_rfc821_envelopes = yes) and the mailbox must match the
    RFC 5321 grammar; with strict=False a bare address and a space after the
    colon are accepted, as Postfix does by default.

    The address is returned in its external form, brackets removed, quotes
    kept (a quoted local part stays quoted).  The null sender is "".

    Parameter values are checked by parse_mail_params() and
    parse_rcpt_params(), which raise ParamError carrying the Postfix reply.

STANDARDS
    RFC 5321 4.1.2 (syntax), RFC 1870 (SIZE), RFC 6152 (8BITMIME),
    RFC 3030 (BINARYMIME), RFC 3461 (DSN, xtext), RFC 6531 (SMTPUTF8),
    RFC 4954 5 (AUTH= parameter)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from postel.protocol import replies as R
from postel.protocol.replies import Reply

# RFC 5321 4.1.2 esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*\Z")
# esmtp-value = 1*(%d33-60 / %d62-126), widened to UTF-8 by RFC 6531 3.3.
_VALUE = re.compile(r"[\x21-\x3c\x3e-\x7e\x80-\U0010ffff]+\Z")
# RFC 5321 4.1.2 atext for Dot-string; RFC 6531 3.3 adds UTF-8.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\x80-\U0010ffff]"
_DOT_STRING = re.compile(rf"{_ATEXT}+(\.{_ATEXT}+)*\Z")
_QUOTED = re.compile(r'"([\x20\x21\x23-\x5b\x5d-\x7e\x80-\U0010ffff]|\\[\x20-\x7e])*"\Z')
_LABEL = r"[A-Za-z0-9\x80-\U0010ffff]([A-Za-z0-9\x80-\U0010ffff-]*[A-Za-z0-9\x80-\U0010ffff])?"
_DOMAIN = re.compile(rf"{_LABEL}(\.{_LABEL})*\.?\Z")
_ADDR_LITERAL = re.compile(r"\[[\x21-\x5a\x5e-\x7e]+\]\Z")
_SOURCE_ROUTE = re.compile(rf"@{_LABEL}(\.{_LABEL})*(,@{_LABEL}(\.{_LABEL})*)*:")
_XTEXT = re.compile(r"([\x21-\x2a\x2c-\x3c\x3e-\x7e]|\+[0-9A-Fa-f]{2})*\Z")
_ADDR_TYPE = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+\Z")

# RFC 3461 4.1: ENVID at most 100 characters; ORCPT at most 500.
ENVID_MAX = 100
ORCPT_MAX = 500


class ParamError(ValueError):
    """ParamError - bad MAIL/RCPT syntax; .reply is the answer for the peer."""

    def __init__(self, reply: Reply):
        super().__init__(str(reply))
        self.reply = reply


@dataclass(slots=True)
class Path:
    """Path - a parsed MAIL/RCPT argument."""

    address: str
    params: list[tuple[str, str | None]]


def xtext_encode(text: str) -> str:
    """encode text as xtext (RFC 3461 4): "+", "=", CTLs, SP and 8-bit as +XX."""
    out = []
    for byte in text.encode("utf-8"):
        if 0x21 <= byte <= 0x7E and byte not in (0x2B, 0x3D):
            out.append(chr(byte))
        else:
            out.append(f"+{byte:02X}")
    return "".join(out)


def xtext_decode(text: str) -> str:
    """decode xtext (RFC 3461 4); ValueError on bad syntax or bad UTF-8."""
    if not _XTEXT.match(text):
        raise ValueError(f"bad xtext: {text!r}")
    raw = bytearray()
    i = 0
    while i < len(text):
        if text[i] == "+":
            raw.append(int(text[i + 1:i + 3], 16))
            i += 3
        else:
            raw.append(ord(text[i]))
            i += 1
    return raw.decode("utf-8")


def is_mailbox(address: str) -> bool:
    """True when address matches RFC 5321 4.1.2 Mailbox (UTF-8 per RFC 6531)."""
    local, at, domain = address.rpartition("@")
    if not at or not local or len(local) > 64 * 4:
        return False
    if not (_DOT_STRING.match(local) or _QUOTED.match(local)):
        return False
    return bool(_DOMAIN.match(domain) or _ADDR_LITERAL.match(domain))


def _split_bracketed(rest: str) -> tuple[str, str] | None:
    """split "<addr> params" at the closing bracket, honouring quotes."""
    if '"' not in rest:             # the usual case: the first ">" closes
        i = rest.find(">", 1)
        return (rest[1:i], rest[i + 1:]) if i >= 0 else None
    in_quote = False
    i = 1
    while i < len(rest):
        c = rest[i]
        if c == "\\" and in_quote:
            i += 2
            continue
        if c == '"':
            in_quote = not in_quote
        elif c == ">" and not in_quote:
            return rest[1:i], rest[i + 1:]
        i += 1
    return None


def _split_params(text: str) -> list[tuple[str, str | None]]:
    """parse "KEY=value KEY" into [(KEY, value), (KEY, None)] (RFC 5321 4.1.2)."""
    params: list[tuple[str, str | None]] = []
    for word in text.split(" "):
        if not word:
            continue
        key, eq, value = word.partition("=")
        if not _KEYWORD.match(key) or (eq and not _VALUE.match(value)):
            raise ParamError(R.R501_PARAM_SYNTAX)
        params.append((key.upper(), value if eq else None))
    return params


_BAD_CHAR = re.compile(r"[<> \x00-\x1f\x7f]")


def _bad_chars(address: str) -> bool:
    """True when address has brackets, spaces or controls outside a quoted local part."""
    if '"' in address:
        local, at, domain = address.rpartition("@")
        rest = domain if at and _QUOTED.match(local) else address
    else:
        rest = address              # no quoted local part possible
    return _BAD_CHAR.search(rest) is not None


def parse_path(arg: str, keyword: str, *, strict: bool, syntax: Reply,
               bad_address: Reply, allow_null: bool) -> Path:
    """parse "FROM:<addr> params" / "TO:<addr> params" (RFC 5321 4.1.2)."""
    head, colon, rest = arg.partition(":")
    if not colon or head.upper() != keyword:
        raise ParamError(syntax)
    if rest.startswith(" "):
        if strict:
            raise ParamError(syntax)
        rest = rest.lstrip(" ")
    if rest.startswith("<"):
        split = _split_bracketed(rest)
        if split is None:
            raise ParamError(syntax)
        address, params_text = split
        if params_text and not params_text.startswith(" "):
            raise ParamError(syntax)
    else:
        if strict or not rest:
            raise ParamError(syntax)
        address, _, params_text = rest.partition(" ")
    # RFC 5321 4.1.1.3, appendix C: source routes are accepted and ignored.
    m = _SOURCE_ROUTE.match(address)
    if m:
        address = address[m.end():]
    if address == "":
        if not allow_null:
            raise ParamError(bad_address)
    elif _bad_chars(address):
        raise ParamError(bad_address)
    elif strict and not is_mailbox(address):
        raise ParamError(bad_address)
    return Path(address, _split_params(params_text))


def has_8bit(text: str) -> bool:
    """True when text contains a non-ASCII character."""
    return not text.isascii()


@dataclass(slots=True)
class MailParams:
    """MailParams - the checked parameters of MAIL FROM."""

    size: int | None = None
    body: str | None = None          # 7BIT, 8BITMIME or BINARYMIME
    ret: str | None = None           # FULL or HDRS
    envid: str | None = None         # decoded
    smtputf8: bool = False
    auth: str | None = None          # decoded; "<>" for none


@dataclass(slots=True)
class RcptParams:
    """RcptParams - the checked parameters of RCPT TO."""

    notify: tuple[str, ...] | None = None  # ("NEVER",) or subset of SUCCESS/FAILURE/DELAY
    orcpt: tuple[str, str] | None = None   # (addr-type, decoded address)


def parse_mail_params(params: list[tuple[str, str | None]], *, dsn: bool,
                      smtputf8: bool, binarymime: bool) -> MailParams:
    """check MAIL FROM parameters; raise ParamError with Postfix's reply."""
    out = MailParams()
    for key, value in params:
        if key == "SIZE":
            # RFC 1870 6: size-value = 1*20DIGIT
            if value is None or not value.isdigit() or not value.isascii() or len(value) > 20:
                raise ParamError(R.R501_SIZE_SYNTAX)
            out.size = int(value)
        elif key == "BODY":
            body = (value or "").upper()
            allowed = {"7BIT", "8BITMIME"} | ({"BINARYMIME"} if binarymime else set())
            if body not in allowed:
                raise ParamError(R.R555_UNSUPPORTED_OPTION.format(name=f"{key}={value}"))
            out.body = body
        elif key == "RET":
            if not dsn:
                raise ParamError(R.R501_DSN_DISABLED)
            # RFC 3461 4.3: RET=FULL / RET=HDRS, once.
            if out.ret is not None or (value or "").upper() not in ("FULL", "HDRS"):
                raise ParamError(R.R501_RET_SYNTAX)
            out.ret = (value or "").upper()
        elif key == "ENVID":
            if not dsn:
                raise ParamError(R.R501_DSN_DISABLED)
            if out.envid is not None or value is None or len(value) > ENVID_MAX:
                raise ParamError(R.R501_ENVID_SYNTAX)
            try:
                out.envid = xtext_decode(value)
            except ValueError:
                raise ParamError(R.R501_ENVID_SYNTAX) from None
        elif key == "SMTPUTF8" and smtputf8:
            # RFC 6531 3.4: SMTPUTF8 takes no value.
            if value is not None:
                raise ParamError(R.R555_UNSUPPORTED_OPTION.format(name=f"{key}={value}"))
            out.smtputf8 = True
        elif key == "AUTH":
            # RFC 4954 5: AUTH=<> or AUTH=xtext mailbox.
            if out.auth is not None:
                raise ParamError(R.R503_MULTIPLE_AUTH)
            try:
                out.auth = xtext_decode(value or "")
            except ValueError:
                raise ParamError(R.R501_ATTR_VALUE.format(name="AUTH", detail=value)) from None
        else:
            name = key if value is None else f"{key}={value}"
            raise ParamError(R.R555_UNSUPPORTED_OPTION.format(name=name))
    return out


def parse_notify(value: str) -> tuple[str, ...]:
    """parse NOTIFY (RFC 3461 4.1): NEVER, or a list of SUCCESS/FAILURE/DELAY."""
    words = tuple(w.upper() for w in value.split(","))
    if words == ("NEVER",):
        return words
    if not words or len(set(words)) != len(words):
        raise ValueError(value)
    if not all(w in ("SUCCESS", "FAILURE", "DELAY") for w in words):
        raise ValueError(value)
    return words


def parse_orcpt(value: str) -> tuple[str, str]:
    """parse ORCPT (RFC 3461 4.2): addr-type ";" xtext."""
    addr_type, semi, xtext = value.partition(";")
    if not semi or not _ADDR_TYPE.match(addr_type) or not xtext or len(value) > ORCPT_MAX:
        raise ValueError(value)
    return addr_type.lower(), xtext_decode(xtext)


def parse_rcpt_params(params: list[tuple[str, str | None]], *, dsn: bool) -> RcptParams:
    """check RCPT TO parameters; raise ParamError with Postfix's reply."""
    out = RcptParams()
    for key, value in params:
        if key == "NOTIFY":
            if not dsn:
                raise ParamError(R.R501_DSN_DISABLED)
            try:
                if out.notify is not None:
                    raise ValueError(value)
                out.notify = parse_notify(value or "")
            except ValueError:
                raise ParamError(R.R501_NOTIFY_SYNTAX) from None
        elif key == "ORCPT":
            if not dsn:
                raise ParamError(R.R501_DSN_DISABLED)
            try:
                if out.orcpt is not None:
                    raise ValueError(value)
                out.orcpt = parse_orcpt(value or "")
            except ValueError:
                raise ParamError(R.R501_ORCPT_SYNTAX) from None
        else:
            name = key if value is None else f"{key}={value}"
            raise ParamError(R.R555_UNSUPPORTED_OPTION.format(name=name))
    return out


# XCLIENT_README / XFORWARD_README attribute names.
XCLIENT_ATTRS = frozenset({"NAME", "ADDR", "PORT", "PROTO", "HELO", "LOGIN",
                           "DESTADDR", "DESTPORT"})
XFORWARD_ATTRS = frozenset({"NAME", "ADDR", "PORT", "PROTO", "HELO", "IDENT", "SOURCE"})
# Postfix limits an attribute value to 255 characters.
ATTR_VALUE_MAX = 255


def parse_attrs(command: str, arg: str, names: frozenset[str]) -> dict[str, str]:
    """parse XCLIENT/XFORWARD "NAME=xtext ..." into {NAME: value}."""
    words = arg.split()
    if not words:
        raise ParamError(R.R501_ATTR_SYNTAX.format(name=command))
    attrs: dict[str, str] = {}
    for word in words:
        name, eq, value = word.partition("=")
        if not eq:
            raise ParamError(R.R501_ATTR_EXPECTED)
        if name.upper() not in names:
            raise ParamError(R.R501_ATTR_NAME.format(name=command, detail=name))
        try:
            decoded = xtext_decode(value)
        except ValueError:
            raise ParamError(R.R501_ATTR_VALUE.format(name=name.upper(), detail=value)) from None
        if len(decoded) > ATTR_VALUE_MAX:
            raise ParamError(R.R501_ATTR_TOO_LONG)
        attrs[name.upper()] = decoded
    return attrs
