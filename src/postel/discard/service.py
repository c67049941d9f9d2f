"""discard - Postel discard mail delivery agent

SYNOPSIS
    discard [generic daemon options]

DESCRIPTION
    The discard(8) delivery agent serves delivery requests from qmgr(8)
    and throws the mail away: every recipient is reported as delivered.
    The request's next-hop field is the reason that is logged, e.g. from
    a transport map entry "discard:silently dropped".  The reason may
    start with an RFC 3463 code of class 2; 2.0.0 is used otherwise.

        QID: to=<rcpt>, relay=none, delay=0.01, delays=0/0/0/0.01,
            dsn=2.0.0, status=sent (silently dropped)

    A success DSN is still produced for a recipient that asked for one
    (NOTIFY=SUCCESS), as Postfix does.

STANDARDS
    RFC 3463 (Enhanced Mail System Status Codes)

CONFIGURATION PARAMETERS
    the generic delivery agent parameters (postel.deliver.agent).

SEE ALSO
    error(8), qmgr(8), docs/discard.md
"""

from __future__ import annotations

from postel.deliver.agent import delivery_agent_main
from postel.deliver.request import DeliverRequest
from postel.deliver.status import DeliveryContext, sent, split_dsn
from postel.ipc.skeleton import ServiceContext


def reason_of(nexthop: str) -> tuple[str, str]:
    """reason_of - (dsn, reason) for a discard request."""
    dsn, reason = split_dsn("2.0.0", nexthop)
    if dsn[0] != "2":
        dsn = "2.0.0"
    return dsn, reason or "discarded"


async def deliver(req: DeliverRequest, dctx: DeliveryContext, ctx: ServiceContext) -> None:
    """deliver - report every recipient as delivered, and deliver nothing."""
    dsn, reason = reason_of(req.nexthop)
    for rcpt in req.recipients:
        sent(dctx, rcpt, "none", dsn, reason)


# sendmail -bv: the outcome is the report (deliverable with the nexthop text).
deliver.handles_verify = True  # type: ignore[attr-defined]


def main(argv: list[str]) -> int:
    """main - run the discard service."""
    return delivery_agent_main("discard", argv, deliver)
