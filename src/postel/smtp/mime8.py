"""mime8 - 8bit to quoted-printable conversion for servers without 8BITMIME

SYNOPSIS
    from postel.smtp.mime8 import downgrade_8bit, needs_smtputf8_headers
    content = downgrade_8bit(content)     # bytes with LF line ends

DESCRIPTION
    When a message was received as 8BITMIME and the next server does not
    announce 8BITMIME, smtp(8) converts each MIME leaf part whose body has
    8-bit octets to quoted-printable (RFC 6152 3, RFC 2045 6.7), as Postfix
    does, and relabels multipart/message parts declared "8bit" as "7bit".
    A message without MIME headers gets "MIME-Version: 1.0" and
    "Content-Transfer-Encoding: quoted-printable".  Headers keep their
    order and text; only Content-Transfer-Encoding changes.

    The MIME structure is parsed by the standard library's email package;
    a part that it cannot decode is left alone.

STANDARDS
    RFC 6152 (8BITMIME), RFC 2045 (MIME), RFC 6531 (SMTPUTF8)
"""

from __future__ import annotations

import email
import email.policy
import io
import quopri
from email.generator import BytesGenerator
from email.message import Message

_PASSTHROUGH = ("7bit", "8bit", "binary")


def has_8bit(data: bytes) -> bool:
    """has_8bit - True when data has an octet above 127."""
    return not data.isascii()


def header_block(content: bytes) -> bytes:
    """header_block - the primary header block (up to the first empty line)."""
    for sep in (b"\n\n", b"\r\n\r\n"):
        i = content.find(sep)
        if i >= 0:
            return content[:i]
    return content


def needs_smtputf8_headers(content: bytes) -> bool:
    """needs_smtputf8_headers - do the message headers contain UTF-8 (RFC 6532)?"""
    return has_8bit(header_block(content))


def _leaf_body(part: Message) -> bytes | None:
    """_leaf_body - the raw octets of a 7bit/8bit/binary leaf body."""
    if not isinstance(part.get_payload(), str):
        return None
    body = part.get_payload(decode=True)
    return body if isinstance(body, bytes) else None


def _set_cte(part: Message, value: str) -> None:
    """_set_cte - set Content-Transfer-Encoding in place (or add it)."""
    if "Content-Transfer-Encoding" in part:
        part.replace_header("Content-Transfer-Encoding", value)
    else:
        part["Content-Transfer-Encoding"] = value


def _downgrade_part(part: Message) -> bool:
    """_downgrade_part - convert one part and its children; True if changed."""
    cte = str(part.get("Content-Transfer-Encoding", "7bit")).strip().lower()
    if part.is_multipart():
        changed = False
        for sub in part.get_payload():
            changed |= _downgrade_part(sub)
        if cte in ("8bit", "binary"):
            _set_cte(part, "7bit")
            changed = True
        return changed
    if cte not in _PASSTHROUGH:
        return False
    body = _leaf_body(part)
    if body is None or not has_8bit(body):
        return False
    encoded = quopri.encodestring(body, quotetabs=False)
    part.set_payload(encoded.decode("ascii"))
    _set_cte(part, "quoted-printable")
    return True


def downgrade_8bit(content: bytes) -> bytes:
    """downgrade_8bit - the message with 8-bit bodies made quoted-printable."""
    if not has_8bit(content):
        return content
    crlf = b"\r\n" in content[:4096]
    data = content.replace(b"\r\n", b"\n") if crlf else content
    msg = email.message_from_bytes(data, policy=email.policy.compat32)
    if not msg.is_multipart() and "Content-Type" not in msg and "MIME-Version" not in msg:
        msg["MIME-Version"] = "1.0"
    if not _downgrade_part(msg):
        return content
    out = io.BytesIO()
    BytesGenerator(out, mangle_from_=False, maxheaderlen=0).flatten(msg, linesep="\n")
    result = out.getvalue()
    return result.replace(b"\n", b"\r\n") if crlf else result
