"""virtual - Postel virtual mailbox delivery

SYNOPSIS
    virtual [generic daemon options]    (master.cf: virtual unix - n n - - virtual)

DESCRIPTION
    Delivers mail for $virtual_mailbox_domains into mailboxes that belong
    to no UNIX account, as virtual(8).  For each recipient:

      1. Loop check: a Delivered-To: header with the recipient address
         bounces the message with 5.4.6 "mail forwarding loop".
      2. The mailbox: $virtual_mailbox_maps is searched for
         "user+extension@domain", then "user@domain", then "@domain" (a
         catch-all).  Not found: bounce 5.1.1 "unknown user".  The value is
         a path relative to $virtual_mailbox_base; ending in "/" it is a
         Maildir, else an mbox (locked with $virtual_mailbox_lock, limited
         to $virtual_mailbox_limit bytes).
      3. The owner: $virtual_uid_maps and $virtual_gid_maps are searched
         with the same keys (static:NNNN is common).  A uid below
         $virtual_minimum_uid is a configuration error (the mail is
         deferred).  The mailbox is written with these rights.

    Headers are prepended as local(8) does: Return-Path:, X-Original-To:,
    Delivered-To: (and the From_ line and >From quoting in an mbox).

    Self-contained instances (Postel extension): when the agent does not
    run as root, or $mail_owner is the user it runs as, missing uid/gid
    map entries are not an error: the agent writes as its own user.

CONFIGURATION PARAMETERS
    virtual_mailbox_base           directory in front of every mailbox path
    virtual_mailbox_maps           recipient -> mailbox path
    virtual_uid_maps, virtual_gid_maps   recipient -> owner uid, gid
    virtual_minimum_uid (100)      smallest uid accepted from the maps
    virtual_mailbox_limit (51200000)   largest mbox or message
    virtual_mailbox_lock (fcntl, dotlock)  mbox locking
    recipient_delimiter            user+extension separator(s)

SEE ALSO
    docs/virtual.md, postel.deliver.mailbox
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from postel.deliver.agent import delivery_agent_main
from postel.deliver.mailbox import (
    MailboxError,
    Message,
    as_user,
    deliver_maildir,
    deliver_mbox,
    delivered_to_headers,
    is_self_contained,
    parse_locks,
)
from postel.deliver.request import DeliverRcpt, DeliverRequest
from postel.deliver.status import DeliveryContext, bounce, defer, sent
from postel.ipc.skeleton import ServiceContext
from postel.mail.address import split_addr, split_extension
from postel.tables import TableError, TableUnavailable, open_table


@dataclass(slots=True)
class VirtualSettings:
    """virtual(8) parameters, read once per process."""

    base: str
    mailbox_maps: list[str]
    uid_maps: list[str]
    gid_maps: list[str]
    minimum_uid: int
    size_limit: int
    locks: list[str]
    delimiters: str
    self_contained: bool


class Temporary(Exception):
    """A lookup or configuration problem: defer with (dsn, text)."""

    def __init__(self, dsn: str, text: str) -> None:
        super().__init__(text)
        self.dsn = dsn
        self.text = text


def load_settings(cfg) -> VirtualSettings:
    """load_settings - read the parameters virtual(8) uses."""
    return VirtualSettings(
        base=cfg.get("virtual_mailbox_base"),
        mailbox_maps=cfg.get_list("virtual_mailbox_maps"),
        uid_maps=cfg.get_list("virtual_uid_maps"),
        gid_maps=cfg.get_list("virtual_gid_maps"),
        minimum_uid=cfg.get_int("virtual_minimum_uid"),
        size_limit=cfg.get_int("virtual_mailbox_limit"),
        locks=parse_locks(cfg.get("virtual_mailbox_lock")),
        delimiters=cfg.get("recipient_delimiter"),
        self_contained=is_self_contained(cfg.get("mail_owner")),
    )


def lookup_keys(address: str, delimiters: str) -> list[str]:
    """lookup_keys - user+ext@domain, user@domain, @domain (virtual(8) order)."""
    local, domain = split_addr(address)
    keys = [address.lower()]
    user, ext = split_extension(local, delimiters)
    if ext is not None:
        keys.append(f"{user}@{domain}".lower())
    if domain:
        keys.append(f"@{domain}".lower())
    return keys


def lookup(maps: list[str], keys: list[str], cfg) -> str | None:
    """lookup - the first value for any key in any of maps (key order first)."""
    for key in keys:
        for spec in maps:
            try:
                value = open_table(spec, cfg=cfg).lookup(key)
            except TableUnavailable as exc:
                raise Temporary("4.3.0", f"table {spec} unavailable: {exc}") from None
            except TableError as exc:
                raise Temporary("4.3.5", f"mail system configuration error: {spec}: {exc}") from None
            if value is not None:
                return value
    return None


def _number(maps: list[str], keys: list[str], cfg, what: str, address: str) -> int | None:
    """_number - a uid or gid from the maps; Temporary when malformed."""
    value = lookup(maps, keys, cfg)
    if value is None:
        return None
    value = value.strip()
    if not value.isdigit():
        raise Temporary("4.3.5", f"mail system configuration error: bad {what} {value!r} for {address}")
    return int(value)


def deliver_one(vs: VirtualSettings, cfg, req: DeliverRequest, rcpt: DeliverRcpt,
                lines: list[bytes], delivered_to: set[str]) -> tuple[str, str, str]:
    """deliver_one - ("sent"|"bounce"|"defer", dsn, text) for one recipient."""
    address = rcpt.address
    if address.lower() in delivered_to:
        return "bounce", "5.4.6", f"mail forwarding loop for {address}"
    keys = lookup_keys(address, vs.delimiters)
    try:
        path = lookup(vs.mailbox_maps, keys, cfg)
        if path is None:
            return "bounce", "5.1.1", f'unknown user: "{address.lower()}"'
        uid = _number(vs.uid_maps, keys, cfg, "uid", address)
        gid = _number(vs.gid_maps, keys, cfg, "gid", address)
    except Temporary as exc:
        return "defer", exc.dsn, exc.text
    if uid is None or gid is None:
        if not vs.self_contained:
            return "defer", "4.3.5", (f"mail system configuration error: no "
                                      f"{'uid' if uid is None else 'gid'} for {address}")
    elif uid < vs.minimum_uid and not vs.self_contained:
        return "defer", "4.3.5", f"mail system configuration error: bad uid {uid} for {address}"
    if not os.path.isabs(vs.base) and not os.path.isabs(path):
        return "defer", "4.3.5", "mail system configuration error: virtual_mailbox_base is not absolute"
    full = os.path.join(vs.base, path.strip())
    if ".." in full.split("/"):
        return "defer", "4.3.5", f"mail system configuration error: bad mailbox path {path!r}"
    msg = Message(req.sender, lines, orig_rcpt=rcpt.orig_rcpt or address, delivered=address)
    rights = (None, None) if vs.self_contained else (uid, gid)
    try:
        with as_user(*rights):
            if full.endswith("/"):
                deliver_maildir(full, msg, size_limit=vs.size_limit)
                return "sent", "2.0.0", "delivered to maildir"
            deliver_mbox(full, msg, locks=vs.locks, size_limit=vs.size_limit)
            return "sent", "2.0.0", "delivered to mailbox"
    except MailboxError as exc:
        return ("defer" if exc.temporary else "bounce"), exc.dsn, exc.text
    except OSError as exc:
        return "defer", "4.3.0", f"cannot deliver to {full}: {exc.strerror}"


async def deliver(req: DeliverRequest, dctx: DeliveryContext, ctx: ServiceContext) -> None:
    """deliver - deliver each recipient of a request into its virtual mailbox."""
    vs = ctx.state.get("virtual_settings")
    if vs is None:
        vs = load_settings(ctx.cfg)
        ctx.state["virtual_settings"] = vs
    lines = list(dctx.qf.iter_lines())
    delivered_to = delivered_to_headers(lines)
    for rcpt in req.recipients:
        status, dsn, text = deliver_one(vs, ctx.cfg, req, rcpt, lines, delivered_to)
        if status == "sent":
            sent(dctx, rcpt, "virtual", dsn, text)
        elif status == "bounce":
            bounce(dctx, rcpt, "virtual", dsn, text)
        else:
            defer(dctx, rcpt, "virtual", dsn, text)


def main(argv: list[str]) -> int:
    """main - the virtual(8) service."""
    return delivery_agent_main("virtual", argv, deliver)
