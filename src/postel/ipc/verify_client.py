"""verify_client - ask the verify(8) service about addresses, report probe results

SYNOPSIS
    from postel.ipc.verify_client import (VerifyClient, VerifyResult, verify_append,
                                          verify_update_sync, RCPT_STAT_OK, ...)

    vc = VerifyClient(queue_directory)               # endpoint "private/verify"
    result = await vc.query("user@example.com")      # VerifyResult
    result.status, result.rcpt_status, result.reason
    status = await vc.update(addr, RCPT_STAT_BOUNCE, "550 5.1.1 no such user")

    ok = verify_append(queue_directory, orig_rcpt, rcpt, RCPT_STAT_OK, "250 Ok",
                       endpoint="private/verify")   # blocking, for delivery agents

DESCRIPTION
    The client side of postel.verify.service, like Postfix's verify_clnt(3)
    and verify(3).  query() never raises: a service that cannot be reached
    or answers garbage gives status VRFY_STAT_FAIL, which smtpd turns into
    "address verification problem" (a temporary failure).

    verify_append() is what a delivery agent calls for a probe message (a
    request whose flags hold "verify" and "record"): it records the outcome
    under the original recipient address and, when different, under the
    rewritten address too, exactly as Postfix's agents do.  It returns
    False when the service could not record the result; the caller should
    then defer the recipient.

DIAGNOSTICS
    warning: verify service failure: reason    (verify_append)
"""

from __future__ import annotations

from dataclasses import dataclass

from postel import log

DEFAULT_ENDPOINT = "private/verify"

VRFY_STAT_OK = 0
VRFY_STAT_FAIL = -1
VRFY_STAT_BAD = -2

RCPT_STAT_OK = 0          # deliverable
RCPT_STAT_DEFER = 1       # undeliverable, temporary failure
RCPT_STAT_BOUNCE = 2      # undeliverable
RCPT_STAT_TODO = 3        # verification in progress

__all__ = ["VerifyClient", "VerifyResult", "verify_append", "verify_update_sync",
           "VRFY_STAT_OK", "VRFY_STAT_FAIL", "VRFY_STAT_BAD", "RCPT_STAT_OK",
           "RCPT_STAT_DEFER", "RCPT_STAT_BOUNCE", "RCPT_STAT_TODO", "endpoint_of"]


@dataclass(slots=True)
class VerifyResult:
    """The verify service's answer to a query."""

    status: int = VRFY_STAT_FAIL
    rcpt_status: int = RCPT_STAT_TODO
    reason: str = ""


def endpoint_of(cfg) -> str:
    """endpoint_of - "private/$address_verify_service_name"."""
    try:
        return "private/" + (cfg.get("address_verify_service_name") or "verify")
    except KeyError:
        return DEFAULT_ENDPOINT


class VerifyClient:
    """VerifyClient - queries and updates over a reused connection."""

    def __init__(self, queue_directory: str, endpoint: str = DEFAULT_ENDPOINT, *,
                 timeout: float = 30.0, retry_for: float = 2.0) -> None:
        from postel.ipc.client import ServiceClient
        self.client = ServiceClient(queue_directory, endpoint, timeout=timeout,
                                    retry_for=retry_for, pool_size=4)

    async def query(self, addr: str) -> VerifyResult:
        """query - the verification status of addr (status VRFY_STAT_FAIL on trouble)."""
        from postel.ipc.attr import AttrError
        from postel.ipc.client import ServiceUnavailable
        try:
            reply = await self.client.request({"request": "query", "address": addr})
            status = reply.get_int("status", VRFY_STAT_FAIL)
            if status != VRFY_STAT_OK:
                return VerifyResult(status, RCPT_STAT_TODO, "")
            return VerifyResult(status, reply.get_int("recipient_status", RCPT_STAT_TODO),
                                reply.get("reason", ""))
        except (ServiceUnavailable, AttrError, ValueError) as exc:
            log.warning("verify service failure: %s", exc)
            return VerifyResult(VRFY_STAT_FAIL, RCPT_STAT_TODO, "")

    async def update(self, addr: str, rcpt_status: int, reason: str) -> int:
        """update - record a probe result; returns a VRFY_STAT_* value."""
        from postel.ipc.attr import AttrError
        from postel.ipc.client import ServiceUnavailable
        try:
            reply = await self.client.request({"request": "update", "address": addr,
                                               "recipient_status": rcpt_status,
                                               "reason": reason})
            return reply.get_int("status", VRFY_STAT_FAIL)
        except (ServiceUnavailable, AttrError, ValueError) as exc:
            log.warning("verify service failure: %s", exc)
            return VRFY_STAT_FAIL

    async def close(self) -> None:
        """close - close idle connections."""
        await self.client.close()


def verify_update_sync(queue_directory: str, addr: str, rcpt_status: int, reason: str, *,
                       endpoint: str = DEFAULT_ENDPOINT, timeout: float = 10.0) -> int:
    """verify_update_sync - one blocking update request; returns a VRFY_STAT_* value."""
    from postel.ipc.attr import AttrError
    from postel.ipc.client import ServiceUnavailable, request_sync
    try:
        reply = request_sync(queue_directory, endpoint,
                             {"request": "update", "address": addr,
                              "recipient_status": rcpt_status, "reason": reason},
                             timeout=timeout, retry_for=2.0)
        return reply.get_int("status", VRFY_STAT_FAIL)
    except (ServiceUnavailable, AttrError, OSError, EOFError, ValueError, TimeoutError) as exc:
        log.warning("verify service failure: %s", exc)
        return VRFY_STAT_FAIL


def verify_append(queue_directory: str, orig_rcpt: str, rcpt: str, rcpt_status: int,
                  reason: str, *, endpoint: str = DEFAULT_ENDPOINT, timeout: float = 10.0) -> bool:
    """verify_append - record a probe outcome for orig_rcpt and rcpt; False on failure."""
    status = VRFY_STAT_OK
    if orig_rcpt:
        status = verify_update_sync(queue_directory, orig_rcpt, rcpt_status, reason,
                                    endpoint=endpoint, timeout=timeout)
    # Two updates for one request when the address was rewritten (as Postfix).
    if status == VRFY_STAT_OK and rcpt and rcpt.lower() != orig_rcpt.lower():
        status = verify_update_sync(queue_directory, rcpt, rcpt_status, reason,
                                    endpoint=endpoint, timeout=timeout)
    return status == VRFY_STAT_OK
