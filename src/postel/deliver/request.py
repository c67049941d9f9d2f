"""request - the delivery request from qmgr(8) to a delivery agent, and its reply

SYNOPSIS
    from postel.deliver.request import (DeliverRequest, DeliverRcpt, encode_request,
                                        decode_request, encode_reply, decode_reply,
                                        DeliverReply, RequestError)

    req = DeliverRequest("active", qid, "example.com", "a@example.org",
                         [DeliverRcpt("b@example.com", "b@example.com", 1234)])
    reply = await client.request(encode_request(req))
    result = decode_reply(reply, len(req.recipients))

DESCRIPTION
    qmgr(8) connects to $queue_directory/private/TRANSPORT (the master.cf
    service name) and sends one attribute list per delivery request.  Many
    requests travel on one connection, one after another; each is answered
    by one reply list before the next is sent.

    Request attributes, in this order:

        request=deliver, queue_name, queue_id, nexthop, sender, encoding,
        smtputf8 (0/1), dsn_envid, dsn_ret (0, 1 FULL, 2 HDRS),
        arrival_time (float), active_time (float), client_name,
        client_address, client_protocol, client_helo, sasl_username,
        rewrite_context, flags (comma-separated names: "verify" for
        sendmail -bv probes, "trace" for sendmail -v, "verify,record" for
        verify(8) probes), transport

    then, per recipient, repeated in this order:

        rcpt_address, rcpt_orig, rcpt_offset (the record offset for
        QueueFileReader.mark_done), rcpt_dsn_orcpt, rcpt_dsn_notify (mask of
        queue.records DSN_NOTIFY_*)

    Reply attributes:

        status       0: every recipient finished (delivered or bounced),
                     4: some recipients were deferred
        rcpt_status  sent | bounced | deferred, once per recipient, in
                     request order
        site_dead    1: the destination could not be reached at all (the
                     queue manager's negative feedback; see qmgr(8))
        reason       (optional, with site_dead=1) the last deferral text;
                     qmgr uses it for "delivery temporarily suspended: ..."

    A reply with fewer rcpt_status values than recipients counts the
    missing ones as deferred: the queue file still says they are not done,
    so nothing is lost, only delayed.

DIAGNOSTICS
    decode_request() raises RequestError for a list that is not a
    well-formed delivery request; the message names the attribute.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from postel.ipc.attr import AttrList

__all__ = [
    "DeliverRequest", "DeliverRcpt", "DeliverReply", "RequestError", "encode_request",
    "decode_request", "encode_reply", "decode_reply", "RCPT_SENT", "RCPT_BOUNCED",
    "RCPT_DEFERRED", "FLAG_VERIFY", "FLAG_TRACE", "FLAG_RECORD",
]

RCPT_SENT = "sent"
RCPT_BOUNCED = "bounced"
RCPT_DEFERRED = "deferred"
RCPT_STATUSES = frozenset({RCPT_SENT, RCPT_BOUNCED, RCPT_DEFERRED})
FLAG_VERIFY = "verify"      # sendmail -bv: address probe, nothing is delivered
FLAG_TRACE = "trace"        # sendmail -v: report every recipient's outcome
FLAG_RECORD = "record"      # with verify: a verify(8) probe, the outcome goes to verify(8)

_RCPT_FIELDS = ("rcpt_address", "rcpt_orig", "rcpt_offset", "rcpt_dsn_orcpt", "rcpt_dsn_notify")


class RequestError(Exception):
    """A malformed delivery request or reply."""


@dataclass(slots=True)
class DeliverRcpt:
    """One recipient of a delivery request."""

    address: str
    orig_rcpt: str = ""
    offset: int = -1            # queue file offset of the recipient record
    dsn_orcpt: str = ""
    dsn_notify: int = 0


@dataclass(slots=True)
class DeliverRequest:
    """One delivery request: a message, a nexthop and some of its recipients."""

    queue_name: str
    queue_id: str
    nexthop: str
    sender: str
    recipients: list[DeliverRcpt]
    transport: str = ""
    encoding: str = ""
    smtputf8: bool = False
    dsn_envid: str = ""
    dsn_ret: int = 0
    arrival_time: float = 0.0
    active_time: float = 0.0
    client_name: str = ""
    client_address: str = ""
    client_protocol: str = ""
    client_helo: str = ""
    sasl_username: str = ""
    rewrite_context: str = ""
    flags: frozenset = field(default_factory=frozenset)


@dataclass(slots=True)
class DeliverReply:
    """The agent's answer: overall status, one status per recipient, site_dead."""

    status: int
    rcpt_status: list[str]
    site_dead: bool = False


def _text(value: str) -> str:
    """_text - a value as str (None-safe)."""
    return "" if value is None else str(value)


def encode_request(req: DeliverRequest) -> list[tuple[str, object]]:
    """encode_request - the attribute list of a delivery request."""
    attrs: list[tuple[str, object]] = [
        ("request", "deliver"),
        ("queue_name", req.queue_name),
        ("queue_id", req.queue_id),
        ("nexthop", _text(req.nexthop)),
        ("sender", _text(req.sender)),
        ("encoding", _text(req.encoding)),
        ("smtputf8", 1 if req.smtputf8 else 0),
        ("dsn_envid", _text(req.dsn_envid)),
        ("dsn_ret", int(req.dsn_ret)),
        ("arrival_time", repr(float(req.arrival_time))),
        ("active_time", repr(float(req.active_time))),
        ("client_name", _text(req.client_name)),
        ("client_address", _text(req.client_address)),
        ("client_protocol", _text(req.client_protocol)),
        ("client_helo", _text(req.client_helo)),
        ("sasl_username", _text(req.sasl_username)),
        ("rewrite_context", _text(req.rewrite_context)),
        ("flags", ",".join(sorted(req.flags))),
        ("transport", _text(req.transport)),
    ]
    for r in req.recipients:
        attrs += [("rcpt_address", r.address), ("rcpt_orig", _text(r.orig_rcpt)),
                  ("rcpt_offset", int(r.offset)), ("rcpt_dsn_orcpt", _text(r.dsn_orcpt)),
                  ("rcpt_dsn_notify", int(r.dsn_notify))]
    return attrs


def _int(name: str, value: str) -> int:
    """_int - a decimal attribute value, or RequestError."""
    try:
        return int(value)
    except ValueError:
        raise RequestError(f"bad {name} value: {value!r}") from None


def _float(name: str, value: str) -> float:
    """_float - a float attribute value, or RequestError."""
    try:
        return float(value)
    except ValueError:
        raise RequestError(f"bad {name} value: {value!r}") from None


def decode_request(attrs: AttrList) -> DeliverRequest:
    """decode_request - a DeliverRequest from its attribute list (RequestError if bad)."""
    if attrs.get("request") != "deliver":
        raise RequestError(f"unknown request: {attrs.get('request')!r}")
    qname = attrs.get("queue_name") or ""
    qid = attrs.get("queue_id") or ""
    if not qname or not qid:
        raise RequestError("missing queue_name or queue_id")
    rcpts: list[DeliverRcpt] = []
    cur: list[str] = []
    for name, raw in attrs.items():
        if not name.startswith("rcpt_"):
            continue
        if name not in _RCPT_FIELDS:
            raise RequestError(f"unknown recipient attribute: {name}")
        if name != _RCPT_FIELDS[len(cur)]:
            raise RequestError(f"recipient attribute {name} out of order "
                               f"(expected {_RCPT_FIELDS[len(cur)]})")
        cur.append(raw.decode("utf-8", "surrogateescape"))
        if len(cur) == len(_RCPT_FIELDS):
            rcpts.append(DeliverRcpt(cur[0], cur[1], _int("rcpt_offset", cur[2]), cur[3],
                                     _int("rcpt_dsn_notify", cur[4])))
            cur = []
    if cur:
        raise RequestError(f"incomplete recipient after {cur[0]!r}")
    if not rcpts:
        raise RequestError("request has no recipients")
    flags = attrs.get("flags") or ""
    return DeliverRequest(
        queue_name=qname, queue_id=qid, nexthop=attrs.get("nexthop") or "",
        sender=attrs.get("sender") or "", recipients=rcpts,
        transport=attrs.get("transport") or "", encoding=attrs.get("encoding") or "",
        smtputf8=(attrs.get("smtputf8") or "0") == "1",
        dsn_envid=attrs.get("dsn_envid") or "",
        dsn_ret=_int("dsn_ret", attrs.get("dsn_ret") or "0"),
        arrival_time=_float("arrival_time", attrs.get("arrival_time") or "0"),
        active_time=_float("active_time", attrs.get("active_time") or "0"),
        client_name=attrs.get("client_name") or "",
        client_address=attrs.get("client_address") or "",
        client_protocol=attrs.get("client_protocol") or "",
        client_helo=attrs.get("client_helo") or "",
        sasl_username=attrs.get("sasl_username") or "",
        rewrite_context=attrs.get("rewrite_context") or "",
        flags=frozenset(f.strip() for f in flags.split(",") if f.strip()),
    )


def encode_reply(status: int, rcpt_status: list[str], site_dead: bool = False
                 ) -> list[tuple[str, object]]:
    """encode_reply - the attribute list of an agent's reply."""
    attrs: list[tuple[str, object]] = [("status", int(status))]
    attrs += [("rcpt_status", s) for s in rcpt_status]
    attrs.append(("site_dead", 1 if site_dead else 0))
    return attrs


def decode_reply(attrs: AttrList, nrcpt: int | None = None) -> DeliverReply:
    """decode_reply - a DeliverReply; missing or unknown statuses count as deferred."""
    status = attrs.get("status")
    if status not in ("0", "4"):
        raise RequestError(f"bad status value: {status!r}")
    statuses = [v.decode("ascii", "replace") for v in attrs.getall("rcpt_status")]
    statuses = [s if s in RCPT_STATUSES else RCPT_DEFERRED for s in statuses]
    if nrcpt is not None:
        statuses = statuses[:nrcpt] + [RCPT_DEFERRED] * max(0, nrcpt - len(statuses))
    return DeliverReply(int(status), statuses, (attrs.get("site_dead") or "0") == "1")
