"""smtp, lmtp - Postel SMTP+LMTP delivery agent

SYNOPSIS
    smtp [generic daemon options]
    lmtp [generic daemon options]

DESCRIPTION
    The delivery agent for the "smtp", "relay" and "lmtp" services of
    master.cf.  It serves delivery requests from qmgr(8) on
    private/SERVICE (see postel.deliver.agent) and delivers each one over
    SMTP, or over LMTP when the process runs as "lmtp" (master.cf command
    "lmtp": master starts this module with argv[0] = "lmtp").  The work is
    done by postel.smtp.client; this module only picks the protocol and
    keeps one client (resolver, connection cache) per process.

    Address verification (sendmail -bv, request flag "verify"): the
    nexthop is looked up as for a delivery (a domain that does not exist
    is undeliverable, with Postfix's DNS texts), then each server is
    asked MAIL FROM and RCPT TO only; the RCPT reply decides
    "deliverable" or "undeliverable", no DATA is sent and the session
    is reset or closed.

    Log lines, as Postfix writes them:

        QID: to=<rcpt>, relay=mx.example[192.0.2.1]:25, delay=0.5,
        delays=0.01/0/0.2/0.3, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as X)
        connect to mx.example[192.0.2.1]:25: Connection refused

CONFIGURATION PARAMETERS
    See postel.smtp.client, postel.smtp.nexthop and postel.smtp.cache; the
    lmtp service reads the lmtp_* twins of the smtp_* parameters.

SEE ALSO
    qmgr(8), docs/smtp.md, docs/lmtp.md
"""

from __future__ import annotations

import os

from postel import log
from postel.config import ConfigError
from postel.deliver.agent import delivery_agent_main
from postel.deliver.request import DeliverRequest
from postel.deliver.status import DeliveryContext, defer
from postel.ipc.skeleton import ServiceContext
from postel.smtp.client import SmtpClient
from postel.smtp.nexthop import NexthopError


def _is_lmtp(ctx: ServiceContext) -> bool:
    """_is_lmtp - does this process speak LMTP (process name "lmtp")?"""
    return ctx.process_name == "lmtp"


def client_of(ctx: ServiceContext) -> SmtpClient:
    """client_of - this process' SmtpClient (made on first use)."""
    client = ctx.state.get("smtp_client")
    if client is None:
        client = SmtpClient.from_config(ctx.cfg, lmtp=_is_lmtp(ctx), service=ctx.service_name)
        ctx.state["smtp_client"] = client
    return client


async def deliver(req: DeliverRequest, dctx: DeliveryContext, ctx: ServiceContext) -> None:
    """deliver - one delivery request (the delivery agent skeleton's callback)."""
    try:
        client = client_of(ctx)
    except (ConfigError, NexthopError, KeyError, ValueError) as exc:
        log.warning("%s: configuration error: %s", req.queue_id, exc)
        for rcpt in dctx.pending():
            defer(dctx, rcpt, "none", "4.3.5", f"mail system configuration error: {exc}")
        return
    await client.deliver(req, dctx)


# sendmail -bv: the client probes with MAIL and RCPT (postel.smtp.client), see agent.py.
deliver.handles_verify = True  # type: ignore[attr-defined]


def _post_init(ctx: ServiceContext) -> None:
    """_post_init - read the parameters once; a bad value is fatal, as in Postfix."""
    try:
        client_of(ctx)
    except (ConfigError, NexthopError, KeyError, ValueError) as exc:
        log.fatal("%s", exc)


def main(argv: list[str]) -> int:
    """main - run as smtp or lmtp, after argv[0]."""
    name = os.path.basename(argv[0]) if argv and argv[0] else "smtp"
    if name not in ("smtp", "lmtp"):
        name = "smtp"
    return delivery_agent_main(name, argv, deliver, post_init=_post_init)
