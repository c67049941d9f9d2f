"""bounce_client - ask bounce(8) for delivery status notifications

SYNOPSIS
    from postel.ipc.bounce_client import (bounce_flush, bounce_warn, bounce_expire,
                                          trace_flush, bounce_append,
                                          TRACE_FLAG_VERIFY, TRACE_FLAG_RECORD)

    status = await bounce_flush(queue_directory, queue_id, queue_name, sender,
                                dsn_envid, dsn_ret)       # 0 done, 4 try later
    status = await bounce_warn(queue_directory, queue_id, queue_name, sender,
                               dsn_envid, dsn_ret)
    status = await bounce_expire(queue_directory, queue_id, queue_name, sender,
                                 dsn_envid, dsn_ret)
    status = await trace_flush(queue_directory, queue_id, queue_name, sender,
                               dsn_envid, dsn_ret, flags="verify")

DESCRIPTION
    The client side of postel.bounce.service (see its PROTOCOL section).
    qmgr(8) calls these once per message:

      bounce_flush   the message is finished and its bounce log has entries:
                     mail a non-delivery notification, remove the bounce log
                     (request=flush on private/bounce).
      bounce_expire  the message passed $maximal_queue_lifetime: every entry
                     of its defer log (and bounce log) becomes a failure,
                     one notification, both logs removed (request=flush,
                     log=bounce,defer on private/defer).  qmgr then marks the
                     remaining recipients done (or removes the file).
      bounce_warn    $delay_warning_time passed: a delay warning from the
                     defer log, which is kept (request=warn on private/defer).
      trace_flush    the message is finished and its trace log has entries
                     (NOTIFY=SUCCESS deliveries, or sendmail -v / -bv):
                     mail the report, remove the trace log (request=trace on
                     private/trace).  flags: TRACE_FLAG_VERIFY ("verify",
                     sendmail -bv) and/or TRACE_FLAG_RECORD ("trace",
                     sendmail -v), as in DeliverRequest.flags.
      bounce_append  append one entry to a per-message log through the
                     service (delivery agents normally write the log files
                     themselves through postel.deliver.status).

    Each returns 0 when the notification was queued (or there was nothing
    to report) and 4 when it must be tried again later: the service is
    down, cleanup refused, or the reply was malformed.  They never raise
    for a service failure.  dsn_ret is 0 (not given), 1 (FULL) or 2 (HDRS).

    sendmail -bv / -v: the submission carries the cleanup envelope
    attribute TRACE_FLAGS_ATTR ("trace_flags") with "verify" or "trace";
    qmgr passes it to the delivery agents in DeliverRequest.flags and,
    when the message is done, calls trace_flush(..., flags=that value):
    the sender then receives the report (verify template).

CONFIGURATION PARAMETERS
    The caller passes queue_directory; the endpoints are Postfix's fixed
    service names private/bounce, private/defer and private/trace.
"""

from __future__ import annotations

from postel.ipc.attr import AttrError
from postel.ipc.client import ServiceUnavailable, get_client

BOUNCE_ENDPOINT = "private/bounce"
DEFER_ENDPOINT = "private/defer"
TRACE_ENDPOINT = "private/trace"
TRACE_FLAG_VERIFY = "verify"
TRACE_FLAG_RECORD = "trace"
TRACE_FLAGS_ATTR = "trace_flags"
TIMEOUT = 600.0
RETRY_FOR = 10.0           # how long to wait for a restarting bounce service


async def _request(queue_directory: str, endpoint: str, attrs: dict) -> int:
    """_request - one request; the reply's status, 4 on any failure."""
    client = get_client(queue_directory, endpoint, retry_for=RETRY_FOR)
    try:
        reply = await client.request(attrs, timeout=TIMEOUT)
        return int(reply.get_int("status", 4) or 0)
    except (ServiceUnavailable, AttrError, OSError, ValueError):
        return 4


async def close_clients(queue_directory: str) -> None:
    """close_clients - close the pooled connections to bounce, defer and trace."""
    for endpoint in (BOUNCE_ENDPOINT, DEFER_ENDPOINT, TRACE_ENDPOINT):
        await get_client(queue_directory, endpoint).close()


def _message_attrs(request: str, queue_id: str, queue_name: str, sender: str, dsn_envid: str,
                   dsn_ret: int, encoding: str, smtputf8: bool) -> dict:
    """_message_attrs - the attributes every notify request has."""
    return {"request": request, "queue_name": queue_name, "queue_id": queue_id,
            "sender": sender or "", "dsn_envid": dsn_envid or "", "dsn_ret": int(dsn_ret or 0),
            "encoding": encoding or "", "smtputf8": 1 if smtputf8 else 0}


async def bounce_flush(queue_directory: str, queue_id: str, queue_name: str, sender: str,
                       dsn_envid: str = "", dsn_ret: int = 0, *, encoding: str = "",
                       smtputf8: bool = False) -> int:
    """bounce_flush - non-delivery notification from the bounce log; 0 or 4."""
    attrs = _message_attrs("flush", queue_id, queue_name, sender, dsn_envid, dsn_ret,
                           encoding, smtputf8)
    attrs["log"] = "bounce"
    return await _request(queue_directory, BOUNCE_ENDPOINT, attrs)


async def bounce_expire(queue_directory: str, queue_id: str, queue_name: str, sender: str,
                        dsn_envid: str = "", dsn_ret: int = 0, *, encoding: str = "",
                        smtputf8: bool = False) -> int:
    """bounce_expire - the defer (and bounce) log as one non-delivery notification; 0 or 4."""
    attrs = _message_attrs("flush", queue_id, queue_name, sender, dsn_envid, dsn_ret,
                           encoding, smtputf8)
    attrs["log"] = "bounce,defer"
    return await _request(queue_directory, DEFER_ENDPOINT, attrs)


async def bounce_warn(queue_directory: str, queue_id: str, queue_name: str, sender: str,
                      dsn_envid: str = "", dsn_ret: int = 0, *, encoding: str = "",
                      smtputf8: bool = False) -> int:
    """bounce_warn - delay warning from the defer log (kept); 0 or 4."""
    attrs = _message_attrs("warn", queue_id, queue_name, sender, dsn_envid, dsn_ret,
                           encoding, smtputf8)
    return await _request(queue_directory, DEFER_ENDPOINT, attrs)


async def trace_flush(queue_directory: str, queue_id: str, queue_name: str, sender: str,
                      dsn_envid: str = "", dsn_ret: int = 0, *, flags: str = "",
                      encoding: str = "", smtputf8: bool = False) -> int:
    """trace_flush - success notice or sendmail -bv/-v report from the trace log; 0 or 4."""
    attrs = _message_attrs("trace", queue_id, queue_name, sender, dsn_envid, dsn_ret,
                           encoding, smtputf8)
    if not isinstance(flags, str):
        flags = ",".join(flags)
    attrs["flags"] = flags
    return await _request(queue_directory, TRACE_ENDPOINT, attrs)


async def bounce_append(queue_directory: str, log_name: str, queue_id: str,
                        entry: dict[str, object]) -> int:
    """bounce_append - append one entry to the bounce, defer or trace log; 0 or 4."""
    attrs: dict = {"request": "append", "log": log_name, "queue_id": queue_id}
    for name, value in entry.items():
        if value is not None and name not in attrs:
            attrs[name] = value if isinstance(value, int) else str(value)
    endpoint = {"bounce": BOUNCE_ENDPOINT, "defer": DEFER_ENDPOINT,
                "trace": TRACE_ENDPOINT}.get(log_name, BOUNCE_ENDPOINT)
    return await _request(queue_directory, endpoint, attrs)
