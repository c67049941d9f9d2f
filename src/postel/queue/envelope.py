"""envelope - the envelope of a queued message

SYNOPSIS
    from postel.queue import Envelope, Recipient
    env = Envelope(sender="a@example.com", time=0.0,
                   recipients=[Recipient("b@example.org", orig_rcpt="b@example.org")],
                   attrs={"client_name": "localhost", "protocol": "ESMTP"})

DESCRIPTION
    Plain data: what QueueFileWriter.write_envelope() stores and what
    QueueFileReader.envelope returns.  Addresses are str; bytes that were
    not UTF-8 on the wire are carried with surrogateescape.  The null sender
    is "".

    Recipient.done and Recipient.offset are filled in by the reader: offset
    is the file offset of the recipient record's type byte, which
    QueueFileReader.mark_done() rewrites from R to D.  Neither takes part in
    equality, so an envelope read back compares equal to the one written
    (apart from done).

    dsn_notify is a mask of records.DSN_NOTIFY_* (0: not specified);
    dsn_ret is records.DSN_RET_FULL, DSN_RET_HDRS or 0 (not specified).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Recipient:
    """One envelope recipient with its DSN parameters and delivery state."""

    address: str
    orig_rcpt: str = ""          # original recipient (before aliasing/rewriting)
    dsn_notify: int = 0          # DSN NOTIFY mask, 0 = not specified
    dsn_orcpt: str = ""          # DSN ORCPT "rfc822;user@example.com"
    done: bool = False           # delivered/bounced: never deliver again
    offset: int = field(default=-1, compare=False)   # file offset of the R/D type byte


@dataclass(slots=True)
class Envelope:
    """Sender, recipients and message attributes of one queued message."""

    sender: str
    recipients: list[Recipient] = field(default_factory=list)
    time: float = 0.0            # arrival time; 0 means "now" when written
    attrs: dict[str, str] = field(default_factory=dict)
    dsn_envid: str = ""          # RFC 3461 ENVID
    dsn_ret: int = 0             # RFC 3461 RET
    full_name: str = ""          # sender full name (sendmail -F)
    content_filter: str = ""     # transport:nexthop, overrides routing
    warn_time: int = 0           # next delay warning (epoch seconds); 0 = none


@dataclass(slots=True)
class Extracted:
    """Envelope information learned while the content was written (cleanup -t)."""

    recipients: list[Recipient] = field(default_factory=list)
    attrs: dict[str, str] = field(default_factory=dict)
