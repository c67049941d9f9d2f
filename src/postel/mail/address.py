"""address - envelope address forms, splitting and checks

SYNOPSIS
    from postel.mail import address
    address.quote_local('john doe@example.com')   # '"john doe"@example.com'
    address.unquote_local('"john doe"@example.com')  # 'john doe@example.com'
    address.split_addr("user+ext@example.com")    # ("user+ext", "example.com")
    address.split_extension("user+ext", "+")      # ("user", "ext")

DESCRIPTION
    Postel keeps an envelope address in two forms, as Postfix does:

    * the external form is what travels in SMTP and in message headers:
      the local part is an RFC 5322 dot-atom or a quoted string
      ('"john doe"@example.com');
    * the internal form is what the queue files, lookup tables and the
      resolver see: the quoting is removed ('john doe@example.com').  The
      domain is whatever follows the LAST '@'.

    quote_local() and unquote_local() convert between the two (Postfix's
    quote_822_local and unquote_822_local).  The quoting decision follows
    RFC 5322 section 3.4.1: a local part that is not a dot-atom is quoted as
    a whole.  Characters above 0x7f are left alone (RFC 6531, SMTPUTF8).

    The other functions are the envelope-address pieces the standard library
    lacks: the recipient_delimiter extension split, source route stripping,
    domain folding, and the host name / address literal checks of Postfix's
    valid_hostname() and valid_mailhost_literal().  Header address lists are
    parsed with email.utils (see postel.mail.headers).

    Nothing here does I/O.

STANDARDS
    RFC 5321 section 4.1.2 (Mailbox, source routes), 4.1.3 (address
    literals); RFC 5322 section 3.2.3 (atext), 3.4.1 (addr-spec); RFC 1123
    section 2.1 (host names).
"""

from __future__ import annotations

import ipaddress

# RFC 5322 3.2.3: atext is ALPHA / DIGIT and these printable characters.
_ATEXT_SPECIAL = frozenset("!#$%&'*+-/=?^_`{|}~")

# Local parts that are never split at the recipient_delimiter.
_NEVER_SPLIT = ("postmaster", "mailer-daemon", "double-bounce")

# RFC 1035 2.3.4 / RFC 1123 2.1 limits.
HOSTNAME_MAX = 255
LABEL_MAX = 63


def _is_atext(ch: str) -> bool:
    """_is_atext - RFC 5322 atext, plus UTF-8 (RFC 6532 3.2)."""
    return ch.isascii() and (ch.isalnum() or ch in _ATEXT_SPECIAL) or ord(ch) > 0x7f


def is_dot_atom(text: str) -> bool:
    """is_dot_atom - RFC 5322 3.2.3: 1*atext *("." 1*atext)."""
    if not text:
        return False
    return all(part and all(_is_atext(c) for c in part) for part in text.split("."))


def split_addr(addr: str) -> tuple[str, str]:
    """split_addr - internal form: (local part, domain) at the last '@'."""
    local, at, domain = addr.rpartition("@")
    if not at:
        return addr, ""
    return local, domain


def has_domain(addr: str) -> bool:
    """has_domain - the internal-form address contains an '@'."""
    return "@" in addr


def _last_unquoted_at(addr: str) -> int:
    """_last_unquoted_at - index of the last '@' outside quotes, or -1."""
    pos = -1
    quoted = False
    escaped = False
    for i, ch in enumerate(addr):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == "@" and not quoted:
            pos = i
    return pos


def split_external(addr: str) -> tuple[str, str]:
    """split_external - external form: (local part, domain) at the last unquoted '@'."""
    pos = _last_unquoted_at(addr)
    if pos < 0:
        return addr, ""
    return addr[:pos], addr[pos + 1:]


def quote_local(addr: str) -> str:
    """quote_local - internal to external form (Postfix quote_822_local)."""
    if not addr:
        return addr
    local, at, domain = addr.rpartition("@")
    if not at:
        local, domain = addr, ""
    if is_dot_atom(local):
        quoted = local
    else:
        # RFC 5322 3.2.4: quoted-string; '"' and '\' need a quoted-pair.
        quoted = '"' + local.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{quoted}@{domain}" if at else quoted


def unquote_local(addr: str) -> str:
    """unquote_local - external to internal form (Postfix unquote_822_local)."""
    if '"' not in addr and "\\" not in addr:
        return addr
    pos = _last_unquoted_at(addr)
    local, rest = (addr, "") if pos < 0 else (addr[:pos], addr[pos:])
    out = []
    quoted = False
    escaped = False
    for ch in local:
        if escaped:
            out.append(ch)
            escaped = False
        elif ch == "\\" and quoted:
            escaped = True
        elif ch == '"':
            quoted = not quoted
        else:
            out.append(ch)
    return "".join(out) + rest


def split_extension(local: str, delimiters: str) -> tuple[str, str | None]:
    """split_extension - (user, extension) at the first recipient_delimiter character.

    As Postfix: postmaster, mailer-daemon and double-bounce are never split;
    with '-' as a delimiter, owner-foo and foo-request are not split either;
    a local part that starts with a delimiter is not split.
    """
    if not local or not delimiters:
        return local, None
    lower = local.lower()
    if lower in _NEVER_SPLIT:
        return local, None
    if "-" in delimiters and (lower.startswith("owner-")
                              or (len(lower) > 8 and lower.endswith("-request"))):
        return local, None
    for i, ch in enumerate(local):
        if ch in delimiters:
            if i == 0:
                return local, None
            return local[:i], local[i + 1:]
    return local, None


def strip_extension(addr: str, delimiters: str) -> str:
    """strip_extension - user+ext@domain -> user@domain (internal form)."""
    local, domain = split_addr(addr)
    user, ext = split_extension(local, delimiters)
    if ext is None:
        return addr
    return f"{user}@{domain}" if "@" in addr else user


def strip_source_route(addr: str) -> str:
    """strip_source_route - RFC 5321 4.1.2 / C: "@a,@b:user@c" -> "user@c"."""
    if addr.startswith("@"):
        colon = addr.find(":")
        if colon > 0 and colon < len(addr) - 1:
            return addr[colon + 1:]
    return addr


def fold_domain(addr: str) -> str:
    """fold_domain - lowercase the domain part, keep the local part's case."""
    local, at, domain = addr.rpartition("@")
    if not at:
        return addr
    return f"{local}@{domain.lower()}"


def fold_addr(addr: str) -> str:
    """fold_addr - the whole address in lowercase, as a lookup key."""
    return addr.lower()


def strip_trailing_dot(domain: str) -> str:
    """strip_trailing_dot - "example.com." -> "example.com", but not ".." forms."""
    if domain.endswith(".") and not domain.endswith("..") and len(domain) > 1:
        return domain[:-1]
    return domain


def valid_hostname(name: str) -> bool:
    """valid_hostname - RFC 1123 host name: letters, digits, '-', '_', not all numeric."""
    if not name or len(name) > HOSTNAME_MAX:
        return False
    numeric = True
    for label in name.split("."):
        if not label or len(label) > LABEL_MAX:
            return False
        if label[0] == "-" or label[-1] == "-":
            return False
        for ch in label:
            if ch.isascii() and ch.isdigit():
                continue
            if ch.isascii() and (ch.isalpha() or ch in "-_"):
                numeric = False
                continue
            return False
    # Postfix rejects an all-numeric name ("numeric hostname").
    return not numeric


def valid_utf8_hostname(name: str) -> bool:
    """valid_utf8_hostname - valid_hostname() after IDNA (RFC 5891) conversion."""
    if name.isascii():
        return valid_hostname(name)
    try:
        return valid_hostname(name.encode("idna").decode("ascii"))
    except UnicodeError:
        return False


def is_fqdn(name: str) -> bool:
    """is_fqdn - a valid host name with at least one dot."""
    name = strip_trailing_dot(name)
    return "." in name and valid_hostname(name)


def valid_hostaddr(text: str) -> bool:
    """valid_hostaddr - a bare IPv4 or IPv6 address."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    # Postfix accepts only dotted-quad IPv4 (ipaddress does, too).
    return True


def parse_address_literal(domain: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """parse_address_literal - RFC 5321 4.1.3: "[1.2.3.4]" or "[IPv6:...]" -> address."""
    if len(domain) < 3 or domain[0] != "[" or domain[-1] != "]":
        return None
    inner = domain[1:-1]
    try:
        if inner[:5].lower() == "ipv6:":
            addr = ipaddress.ip_address(inner[5:])
            return addr if addr.version == 6 else None
        addr = ipaddress.ip_address(inner)
    except ValueError:
        return None
    # RFC 5321 4.1.3: a bare literal is IPv4; IPv6 needs the "IPv6:" tag.
    # Postfix also accepts [::1] without the tag; so do we.
    return addr


def valid_mailhost_literal(domain: str) -> bool:
    """valid_mailhost_literal - "[ip]" with a valid IPv4 or IPv6 address."""
    return parse_address_literal(domain) is not None


def valid_domain(domain: str) -> bool:
    """valid_domain - a host name or an address literal."""
    if domain.startswith("["):
        return valid_mailhost_literal(domain)
    return valid_utf8_hostname(domain)
