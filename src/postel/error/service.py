"""error - Postel error/retry mail delivery agent

SYNOPSIS
    error [generic daemon options]

DESCRIPTION
    The error(8) delivery agent serves delivery requests from qmgr(8).  The
    request's next-hop field is not a destination but the reason for
    non-delivery, e.g. from a transport map entry "error:5.1.1 mailbox
    unavailable".  The reason may start with an RFC 3463 enhanced status
    code; without one, 5.0.0 (error) or 4.0.0 (retry) is used.

    The master.cf service name decides what happens to every recipient:

      error   bounced with the reason (a reason that starts with a 4.X.Y
              code defers instead, as that code asks);
      retry   deferred with the reason (the status class is always 4).

    Each recipient is logged with relay=none, as Postfix does:
        QID: to=<rcpt>, relay=none, delay=0.01, delays=0/0/0/0.01,
            dsn=5.0.0, status=bounced (mail for example.com is not accepted)

    Bounces go to the message's bounce log, deferrals to its defer log
    (see postel.deliver.status); qmgr(8) asks bounce(8) for the DSNs.

STANDARDS
    RFC 3463 (Enhanced Mail System Status Codes)

CONFIGURATION PARAMETERS
    soft_bounce (no)        defer instead of bounce
    plus the generic delivery agent parameters (postel.deliver.agent).

SEE ALSO
    discard(8), qmgr(8), bounce(8), docs/error.md
"""

from __future__ import annotations

from postel.deliver.agent import delivery_agent_main
from postel.deliver.request import DeliverRequest
from postel.deliver.status import DeliveryContext, bounce, defer, split_dsn
from postel.ipc.skeleton import ServiceContext

SERVICE_RETRY = "retry"


def outcome(service_name: str, nexthop: str) -> tuple[str, str, str]:
    """outcome - ("bounce"|"defer", dsn, reason) for a request to this service."""
    retry = service_name == SERVICE_RETRY
    dsn, reason = split_dsn("4.0.0" if retry else "5.0.0", nexthop)
    if retry:
        return "defer", "4" + dsn[1:], reason or "delivery temporarily suspended"
    if dsn[0] == "4":
        return "defer", dsn, reason or "delivery temporarily suspended"
    return "bounce", "5" + dsn[1:], reason or "mail delivery failed"


async def deliver(req: DeliverRequest, dctx: DeliveryContext, ctx: ServiceContext) -> None:
    """deliver - bounce or defer every recipient with the next-hop text as reason."""
    what, dsn, reason = outcome(ctx.service_name, req.nexthop)
    report = bounce if what == "bounce" else defer
    for rcpt in req.recipients:
        report(dctx, rcpt, "none", dsn, reason)


# sendmail -bv: the outcome is the report (undeliverable with the nexthop text); nothing to undo.
deliver.handles_verify = True  # type: ignore[attr-defined]


def main(argv: list[str]) -> int:
    """main - run the error (or retry) service."""
    return delivery_agent_main("error", argv, deliver)
