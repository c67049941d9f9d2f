"""resolve_types - the trivial-rewrite(8) resolve reply and its flag bits

SYNOPSIS
    from postel.mail.resolve_types import Resolved, FLAG_FAIL, CLASS_LOCAL
    r = Resolved("smtp", "example.com", "user@example.com", CLASS_DEFAULT)
    r.fail, r.error

DESCRIPTION
    The record that trivial-rewrite's resolver produces and that every
    client of private/rewrite (cleanup, smtpd, qmgr, verify) receives, as in
    Postfix's resolve_clnt.h.  It lives in a library so that the daemons
    share it without importing trivial-rewrite.

    Flags (Postfix's RESOLVE_FLAG_* and RESOLVE_CLASS_* values; they
    travel in the "flags" attribute of a resolve reply):
      FLAG_FINAL     the class is local, virtual alias or virtual mailbox
      FLAG_ROUTED    the remote local part still holds @, ! or % operators
      FLAG_ERROR     the domain is not valid (null domain, numeric name, ...)
      FLAG_FAIL      a table was unavailable: the caller must defer
      CLASS_LOCAL    $mydestination, [own address]
      CLASS_ALIAS    $virtual_alias_domains
      CLASS_VIRTUAL  $virtual_mailbox_domains
      CLASS_RELAY    $relay_domains
      CLASS_DEFAULT  anything else

SEE ALSO
    postel.trivial_rewrite.resolve, postel.ipc.rewrite_client, ADDRESS_CLASS_README
"""

from __future__ import annotations

from dataclasses import dataclass

FLAG_FINAL = 1 << 0
FLAG_ROUTED = 1 << 1
FLAG_ERROR = 1 << 2
FLAG_FAIL = 1 << 3
CLASS_LOCAL = 1 << 8
CLASS_ALIAS = 1 << 9
CLASS_VIRTUAL = 1 << 10
CLASS_RELAY = 1 << 11
CLASS_DEFAULT = 1 << 12
CLASS_FINAL = CLASS_LOCAL | CLASS_ALIAS | CLASS_VIRTUAL
CLASS_MASK = CLASS_LOCAL | CLASS_ALIAS | CLASS_VIRTUAL | CLASS_RELAY | CLASS_DEFAULT


@dataclass(slots=True, frozen=True)
class Resolved:
    """The resolver's answer, as in Postfix's RESOLVE_REPLY."""

    transport: str
    nexthop: str
    recipient: str
    flags: int

    @property
    def fail(self) -> bool:
        """fail - a table was unavailable: try again later."""
        return bool(self.flags & FLAG_FAIL)

    @property
    def error(self) -> bool:
        """error - the address has a bad domain."""
        return bool(self.flags & FLAG_ERROR)
