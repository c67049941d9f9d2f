"""client - deliver one request over SMTP or LMTP

SYNOPSIS
    from postel.smtp.client import SmtpClient
    client = SmtpClient.from_config(cfg, lmtp=False, service="smtp")
    await client.deliver(req, dctx)

DESCRIPTION
    For each nexthop of the request (the request's nexthop, which may be
    a list as $relayhost allows, then $smtp_fallback_relay), the client
    takes a cached connection to the destination, or looks up the
    destination's servers (postel.smtp.nexthop) and connects to them one
    after another until one answers.  On a connection it runs one mail
    transaction:

      * SIZE: a message larger than the server's SIZE limit is bounced
        with 5.3.4 without being sent (RFC 1870); otherwise MAIL FROM
        carries SIZE=;
      * 8BITMIME: BODY=8BITMIME when the message is 8bit and the server
        offers it; when it does not, 8-bit bodies are converted to
        quoted-printable (postel.smtp.mime8);
      * SMTPUTF8: a message that needs it (UTF-8 addresses or headers)
        bounces with 5.6.7 when the server does not offer it;
      * DSN: RET, ENVID, NOTIFY and ORCPT are passed on when the server
        offers DSN (RFC 3461); the next server then reports success, so
        no success notice is kept here.  Without DSN, a NOTIFY=SUCCESS
        recipient gets a "relayed" notice;
      * PIPELINING: MAIL FROM, every RCPT TO and DATA go out in one write
        (RFC 2920), preceded by RSET on a reused connection;
      * each RCPT reply decides its recipient: 2xx continue, 4xx defer,
        5xx bounce; the end-of-data reply decides the accepted ones
        (SMTP), or one reply per accepted recipient (LMTP, RFC 2033 4.2);
      * verify requests (sendmail -bv) stop after RCPT TO: a 2xx reply is
        "deliverable", 5xx "undeliverable"; DATA is never sent.

    A recoverable failure (connection lost, 4xx) of a server leaves the
    recipients open for the next server; the last failure is what the
    recipient gets when no server is left.  site_dead is reported when no
    server could be reached at all.  Afterwards the connection goes to
    the connection cache (postel.smtp.cache) or says QUIT.

CONFIGURATION PARAMETERS
    For the smtp service (lmtp_* for lmtp: lmtp_lhlo_name,
    lmtp_lhlo_timeout, ...):
    smtp_helo_name ($myhostname)            EHLO argument
    smtp_connect_timeout (30s), smtp_helo_timeout (300s),
    smtp_mail_timeout (300s), smtp_rcpt_timeout (300s),
    smtp_data_init_timeout (120s), smtp_data_xfer_timeout (180s),
    smtp_data_done_timeout (600s), smtp_quit_timeout (300s),
    smtp_rset_timeout (20s)                 time limits per stage
    smtp_skip_5xx_greeting (yes)            a 5xx greeting: next server
    smtp_fallback_relay ($fallback_relay)   relays when the destination fails
    smtp_mx_session_limit (2)               servers to talk to per delivery
    smtp_connection_cache_on_demand (yes)   keep connections for reuse
    smtp_connection_cache_destinations ()   always keep connections to these
    smtp_tcp_port (smtp)                    default port (lmtp_tcp_port: 24)
    dns_nameservers (Postel)                name servers to ask
    and those of postel.smtp.nexthop and postel.smtp.cache.

STANDARDS
    RFC 5321, RFC 2033, RFC 1870, RFC 2920, RFC 3461, RFC 6152, RFC 6531
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from postel import log
from postel.deliver.request import FLAG_VERIFY, DeliverRcpt, DeliverRequest
from postel.deliver.status import DeliveryContext, bounce, defer, sent
from postel.dns import Dns
from postel.protocol.esmtp import xtext_encode
from postel.protocol.smtp_client import (
    DATA_COMMAND,
    RSET_COMMAND,
    DotStuffer,
    LmtpReplies,
    mail_command,
    orcpt_param,
    rcpt_command,
)
from postel.queue.records import (
    DSN_NOTIFY_DELAY,
    DSN_NOTIFY_FAILURE,
    DSN_NOTIFY_NEVER,
    DSN_NOTIFY_SUCCESS,
)
from postel.smtp import mime8
from postel.smtp.cache import ConnectionCache
from postel.smtp.nexthop import (
    DnsTrouble,
    LookupPolicy,
    Nexthop,
    NexthopError,
    Server,
    find_servers,
    parse_nexthop,
    port_number,
    split_nexthops,
)
from postel.smtp.session import (
    ST_BODY,
    ST_DATA,
    ST_DOT,
    ST_MAIL,
    ST_RCPT,
    ST_RSET,
    Outcome,
    Session,
    SessionError,
    Timeouts,
    open_session,
    reply_outcome,
    success_outcome,
)

# smtp_X parameters whose lmtp name is not simply lmtp_X.
_LMTP_NAMES = {"smtp_helo_name": "lmtp_lhlo_name", "smtp_helo_timeout": "lmtp_lhlo_timeout"}


@dataclass(slots=True)
class Settings:
    """Settings - the client's parameters, read once per process."""

    lmtp: bool = False
    service: str = "smtp"
    helo_name: str = "localhost"
    myhostname: str = "localhost"
    timeouts: Timeouts = field(default_factory=Timeouts)
    skip_5xx_greeting: bool = True
    fallback_relay: list[str] = field(default_factory=list)
    default_port: int = 25
    mx_session_limit: int = 2
    cache_on_demand: bool = True
    cache_destinations: list[str] = field(default_factory=list)
    policy: LookupPolicy = field(default_factory=LookupPolicy)
    cache_idle: float = 2.0
    reuse_time: float = 300.0
    reuse_count: int = 0


def _pname(name: str, lmtp: bool) -> str:
    """_pname - the smtp_* parameter name, or its lmtp_* twin."""
    if not lmtp:
        return name
    return _LMTP_NAMES.get(name, "lmtp_" + name[5:])


def _limit(seconds: float) -> float | None:
    """_limit - a time limit; 0 means none."""
    return seconds if seconds > 0 else None


def read_settings(cfg, lmtp: bool = False, service: str = "") -> Settings:
    """read_settings - Settings from a Config (ConfigError when a value is bad)."""
    def p(name: str) -> str:
        return _pname(name, lmtp)

    t = Timeouts(
        connect=_limit(cfg.get_time(p("smtp_connect_timeout"))),
        helo=_limit(cfg.get_time(p("smtp_helo_timeout"))),
        mail=_limit(cfg.get_time(p("smtp_mail_timeout"))),
        rcpt=_limit(cfg.get_time(p("smtp_rcpt_timeout"))),
        data_init=_limit(cfg.get_time(p("smtp_data_init_timeout"))),
        data_xfer=_limit(cfg.get_time(p("smtp_data_xfer_timeout"))),
        data_done=_limit(cfg.get_time(p("smtp_data_done_timeout"))),
        quit=_limit(cfg.get_time(p("smtp_quit_timeout"))),
        rset=_limit(cfg.get_time(p("smtp_rset_timeout"))),
    )
    lookup = {w.lower() for w in cfg.get_list(p("smtp_host_lookup"))}
    no_dns = cfg.get_bool("disable_dns_lookups") or \
        cfg.get(p("smtp_dns_support_level")).strip().lower() == "disabled"
    protocols = {w.lower() for w in cfg.get_list("inet_protocols")}
    families: tuple[str, ...] = ("A", "AAAA")
    if "all" not in protocols:
        families = tuple(f for f, n in (("A", "ipv4"), ("AAAA", "ipv6")) if n in protocols)
        families = families or ("A",)
    policy = LookupPolicy(use_dns=not no_dns and "dns" in lookup,
                          native=no_dns or "native" in lookup,
                          families=families,
                          prefer=cfg.get(p("smtp_address_preference")).strip().lower(),
                          address_limit=cfg.get_int(p("smtp_mx_address_limit")),
                          randomize=cfg.get_bool(p("smtp_randomize_addresses")))
    return Settings(
        lmtp=lmtp, service=service or ("lmtp" if lmtp else "smtp"),
        helo_name=cfg.get(p("smtp_helo_name")).strip() or cfg.get("myhostname"),
        myhostname=cfg.get("myhostname"),
        timeouts=t,
        skip_5xx_greeting=cfg.get_bool(p("smtp_skip_5xx_greeting")),
        fallback_relay=split_nexthops(cfg.get(p("smtp_fallback_relay"))),
        default_port=port_number(cfg.get(p("smtp_tcp_port")).strip(), 24 if lmtp else 25),
        mx_session_limit=cfg.get_int(p("smtp_mx_session_limit")),
        cache_on_demand=cfg.get_bool(p("smtp_connection_cache_on_demand")),
        cache_destinations=[d.lower() for d in cfg.get_list(p("smtp_connection_cache_destinations"))],
        policy=policy,
        cache_idle=cfg.get_time(p("smtp_connection_cache_time_limit")),
        reuse_time=cfg.get_time(p("smtp_connection_reuse_time_limit")),
        reuse_count=cfg.get_int(p("smtp_connection_reuse_count_limit")),
    )


def notify_param(mask: int) -> str | None:
    """notify_param - the NOTIFY value of a DSN_NOTIFY_* mask (RFC 3461 4.1)."""
    try:
        return _NOTIFY[mask]
    except KeyError:
        pass
    value = _notify_param(mask)
    if len(_NOTIFY) < 64:
        _NOTIFY[mask] = value
    return value


_NOTIFY: dict[int, str | None] = {}


def _notify_param(mask: int) -> str | None:
    """_notify_param - notify_param without its cache."""
    if mask & DSN_NOTIFY_NEVER:
        return "NEVER"
    words = [w for bit, w in ((DSN_NOTIFY_SUCCESS, "SUCCESS"), (DSN_NOTIFY_FAILURE, "FAILURE"),
                              (DSN_NOTIFY_DELAY, "DELAY")) if mask & bit]
    return ",".join(words) or None


def _orcpt(address: str, addr_type: str = "rfc822") -> str:
    """_orcpt - orcpt_param(); an address that xtext leaves as it is skips the byte loop.

    RFC 3461 4: xtext encodes "+", "=", SP, CTLs and 8-bit; every other
    character (ASCII 0x21-0x7E) stands for itself."""
    if address.isascii() and address.isprintable() and " " not in address \
            and "+" not in address and "=" not in address:
        return f"{addr_type};{address}"
    return orcpt_param(address, addr_type)


def _ascii(text: str) -> bool:
    """_ascii - True for a pure US-ASCII string."""
    return text.isascii()


class _ReuseFailed(Exception):
    """A cached connection died before it answered RSET: connect anew."""


class Delivery:
    """Delivery - the state of one delivery request across servers."""

    def __init__(self, client: SmtpClient, req: DeliverRequest, dctx: DeliveryContext):
        self.client = client
        self.req = req
        self.dctx = dctx
        self.open: list[DeliverRcpt] = list(req.recipients)
        self.last: dict[int, Outcome] = {}      # id(rcpt) -> tentative outcome
        self.reached = False                    # some server greeted us
        self.sessions = 0
        self._content: bytes | None = None

    # -- outcomes ----------------------------------------------------------------

    def finish(self, rcpt: DeliverRcpt, out: Outcome, action: str = "relayed") -> None:
        """finish - report a final outcome and close the recipient."""
        dctx = self.dctx
        if out.kind == "sent":
            sent(dctx, rcpt, out.relay, out.dsn, out.text, action)
        elif out.kind == "bounce":
            bounce(dctx, rcpt, out.relay, out.dsn, out.text, out.diag, out.mta)
        else:
            defer(dctx, rcpt, out.relay, out.dsn, out.text, out.diag, out.mta)
        if rcpt in self.open:
            self.open.remove(rcpt)
        self.last.pop(id(rcpt), None)

    def tentative(self, rcpts: list[DeliverRcpt], out: Outcome) -> None:
        """tentative - a recoverable failure: the next server may do better."""
        for rcpt in rcpts:
            self.last[id(rcpt)] = out

    def settle(self, rcpt: DeliverRcpt, out: Outcome) -> None:
        """settle - sent and bounced are final; deferred waits for the next server."""
        if out.kind == "defer":
            self.tentative([rcpt], out)
        else:
            self.finish(rcpt, out)

    def close_all(self) -> None:
        """close_all - the last recorded outcome for every recipient still open."""
        for rcpt in list(self.open):
            out = self.last.get(id(rcpt)) or Outcome(
                "defer", "4.4.1", "delivery temporarily suspended: no server was reachable")
            self.finish(rcpt, out)

    # -- content -------------------------------------------------------------------

    def content(self) -> bytes:
        """content - the whole message (read once; the 8bit and SMTPUTF8 checks need it)."""
        if self._content is None:
            qf = self.dctx.qf
            self._content = qf.read_content(b"\n") if qf is not None else b""
        return self._content


class SmtpClient:
    """SmtpClient - one per agent process: settings, resolver, connection cache."""

    def __init__(self, settings: Settings, dns: Dns | None = None):
        self.settings = settings
        self._hops: dict[str, tuple[Nexthop, str]] = {}    # text -> (parsed, cache key)
        self.dns = dns or Dns()
        self.cache = ConnectionCache(settings.cache_idle, settings.reuse_time,
                                     settings.reuse_count)

    @classmethod
    def from_config(cls, cfg, lmtp: bool = False, service: str = "") -> SmtpClient:
        """from_config - a client configured from main.cf (and -o overrides)."""
        return cls(read_settings(cfg, lmtp, service), Dns.from_config(cfg))

    # -- the request ---------------------------------------------------------------

    async def deliver(self, req: DeliverRequest, dctx: DeliveryContext) -> None:
        """deliver - give every recipient of req an outcome."""
        d = Delivery(self, req, dctx)
        dctx.mark_conn_start()
        hops = split_nexthops(req.nexthop)
        if not hops:
            for rcpt in list(d.open):
                d.finish(rcpt, Outcome("defer", "4.3.5", "mail transport unavailable: "
                                       "empty nexthop"))
            return
        fallbacks = [] if self.settings.lmtp else \
            [f for f in self.settings.fallback_relay if f not in hops]
        for hop_text in hops + fallbacks:
            if not d.open:
                break
            await self._try_nexthop(d, hop_text)
        if d.open and not d.reached and all(o.kind == "defer" for o in d.last.values()):
            dctx.site_dead = True
        d.close_all()

    def _cache_keys(self, hop: Nexthop, server: Server) -> list[str]:
        """_cache_keys - destination and endpoint labels for the cache."""
        return [f"{self.settings.service}:{hop.text.lower()}",
                f"{self.settings.service}:{server.addr}:{server.port}"]

    def _want_cache(self, hop: Nexthop) -> bool:
        """_want_cache - keep connections to this destination?"""
        s = self.settings
        return s.cache_on_demand or hop.host.lower() in s.cache_destinations \
            or hop.text.lower() in s.cache_destinations

    async def _try_nexthop(self, d: Delivery, hop_text: str) -> None:
        """_try_nexthop - deliver to one nexthop's servers."""
        s = self.settings
        known = self._hops.get(hop_text)
        if known is None:
            try:
                hop = parse_nexthop(hop_text, lmtp=s.lmtp, default_port=s.default_port)
            except NexthopError as exc:
                log.warning("%s: bad nexthop: %s", d.req.queue_id, exc)
                d.tentative(d.open, Outcome("defer", "4.3.5",
                                            f"mail transport unavailable: {exc}"))
                return
            # Nexthop is frozen: one parse per nexthop text (bounded).
            if len(self._hops) >= 1024:
                self._hops.clear()
            known = self._hops[hop_text] = (hop, f"{s.service}:{hop.text.lower()}")
        hop, dest_key = known
        sess = self.cache.take(dest_key)
        if sess is not None:
            if await self._attempt(d, hop, sess, reused=True):
                return
        try:
            servers = await find_servers(hop, self.dns, s.policy, s.myhostname)
        except DnsTrouble as exc:
            kind = "defer" if exc.status == 4 else "bounce"
            d.tentative(d.open, Outcome(kind, exc.dsn, exc.text))
            return
        for server in servers:
            if not d.open or (s.mx_session_limit > 0 and d.sessions >= s.mx_session_limit):
                break
            sess = self.cache.take(f"{s.service}:{server.addr}:{server.port}")
            if sess is not None and await self._attempt(d, hop, sess, reused=True):
                continue
            try:
                sess = await open_session(server, s.helo_name, s.timeouts, lmtp=s.lmtp,
                                          skip_5xx_greeting=s.skip_5xx_greeting)
            except SessionError as exc:
                if not exc.established and exc.outcome.relay == "none":
                    log.info("%s", exc.outcome.text)      # Postfix logs each failed connect
                else:
                    d.reached = True
                    d.sessions += 1
                d.tentative(d.open, exc.outcome)
                continue
            await self._attempt(d, hop, sess, reused=False)

    async def _attempt(self, d: Delivery, hop: Nexthop, sess: Session, reused: bool) -> bool:
        """_attempt - one transaction on sess; False when a reused session was dead."""
        d.reached = True
        d.sessions += 1
        if d.dctx.xfer_start is None:
            d.dctx.mark_xfer_start()
        try:
            await self._transaction(d, sess, reused)
        except _ReuseFailed:
            d.sessions -= 1
            sess.close()
            return False
        except SessionError as exc:
            d.tentative(d.open, exc.outcome)
            sess.close()
            return True
        sess.uses += 1
        if not (self._want_cache(hop) and self.cache.put(self._cache_keys(hop, sess.server), sess)):
            await sess.quit(self.settings.timeouts.quit)
        return True

    # -- one mail transaction ----------------------------------------------------------

    def _mail_params(self, d: Delivery, sess: Session) -> dict[str, str | None]:
        """_mail_params - ESMTP parameters of MAIL FROM for this server."""
        req, f = d.req, sess.features
        params: dict[str, str | None] = {}
        if "SIZE" in f and d.dctx.qf is not None:
            params["SIZE"] = str(d.dctx.qf.message_size)
        if req.encoding.lower() == "8bit" and "8BITMIME" in f:
            params["BODY"] = "8BITMIME"
        if req.smtputf8 and "SMTPUTF8" in f:
            params["SMTPUTF8"] = None
        if "DSN" in f:
            if req.dsn_ret in (1, 2):
                params["RET"] = "FULL" if req.dsn_ret == 1 else "HDRS"
            if req.dsn_envid:
                params["ENVID"] = xtext_encode(req.dsn_envid)
        return params

    def _rcpt_params(self, rcpt: DeliverRcpt, sess: Session) -> dict[str, str | None]:
        """_rcpt_params - NOTIFY and ORCPT when the server offers DSN (RFC 3461 4)."""
        if "DSN" not in sess.features:
            return {}
        params: dict[str, str | None] = {}
        notify = notify_param(rcpt.dsn_notify)
        if notify:
            params["NOTIFY"] = notify
        if rcpt.dsn_orcpt and ";" in rcpt.dsn_orcpt:
            addr_type, _, addr = rcpt.dsn_orcpt.partition(";")
            params["ORCPT"] = _orcpt(addr, addr_type)
        elif rcpt.orig_rcpt and _ascii(rcpt.orig_rcpt):
            params["ORCPT"] = _orcpt(rcpt.orig_rcpt)
        return params

    def _precheck(self, d: Delivery, sess: Session) -> Outcome | None:
        """_precheck - a reason to bounce without sending (SIZE, SMTPUTF8)."""
        srv, f, qf = sess.server, sess.features, d.dctx.qf
        if "SIZE" in f and qf is not None:
            try:
                limit = int(f["SIZE"] or "0")
            except ValueError:
                limit = 0
            if 0 < limit < qf.message_size:      # RFC 1870 6
                return Outcome("bounce", "5.3.4",
                               f"message size {qf.message_size} exceeds size limit {limit} "
                               f"of server {srv.namaddr}", srv.namaddrport, None,
                               ("dns", srv.host))
        if d.req.smtputf8 and "SMTPUTF8" not in f:
            needs = not _ascii(d.req.sender) or any(not _ascii(r.address) for r in d.open) \
                or mime8.needs_smtputf8_headers(d.content())
            if needs:                                   # RFC 6531 3.4
                return Outcome("bounce", "5.6.7",
                               f"SMTPUTF8 is required, but was not offered by host {srv.namaddr}",
                               srv.namaddrport, None, ("dns", srv.host))
        return None

    async def _transaction(self, d: Delivery, sess: Session, reused: bool) -> None:
        """_transaction - MAIL, RCPT, DATA and the content for the open recipients."""
        s, t, srv = self.settings, self.settings.timeouts, sess.server
        rcpts = list(d.open)
        # RFC 2920 3.1: RSET may open the MAIL/RCPT/DATA group, which spares
        # a reused connection a round trip; its reply still decides reuse.
        group_rset = reused and "PIPELINING" in sess.features \
            and FLAG_VERIFY not in d.req.flags
        if (reused or sess.need_rset) and not group_rset:
            await self._rset(sess, reused)
        why = self._precheck(d, sess)
        if why is not None:
            if group_rset:
                await self._rset(sess, reused)
            for rcpt in rcpts:
                d.finish(rcpt, why)
            return
        mail = mail_command(d.req.sender, self._mail_params(d, sess))
        rcpt_cmds = [rcpt_command(r.address, self._rcpt_params(r, sess)) for r in rcpts]
        sess.need_rset = True
        if FLAG_VERIFY in d.req.flags:
            await self._probe(d, sess, mail, rcpts, rcpt_cmds)
            return
        if "PIPELINING" in sess.features:
            # RFC 2920 3.1: MAIL, RCPT and DATA may go out in one group.
            group = mail + b"".join(rcpt_cmds) + DATA_COMMAND
            if group_rset:
                await self._grouped_rset(sess, group)
            else:
                await sess.send(group, ST_MAIL, t.mail)
            mail_reply = await sess.read_reply(t.mail, ST_MAIL)
            accepted = []
            for rcpt in rcpts:
                reply = await sess.read_reply(t.rcpt, ST_RCPT)
                if mail_reply.code != 250:
                    continue
                if reply.code // 100 == 2:
                    accepted.append(rcpt)
                else:
                    d.settle(rcpt, reply_outcome(srv, reply, "RCPT TO"))
            data_reply = await sess.read_reply(t.data_init, ST_DATA)
            if mail_reply.code != 250:
                out = reply_outcome(srv, mail_reply, "MAIL FROM")
                for rcpt in rcpts:
                    d.settle(rcpt, out)
        else:
            await sess.send(mail, ST_MAIL, t.mail)
            mail_reply = await sess.read_reply(t.mail, ST_MAIL)
            if mail_reply.code != 250:
                out = reply_outcome(srv, mail_reply, "MAIL FROM")
                for rcpt in rcpts:
                    d.settle(rcpt, out)
                return
            accepted = []
            for rcpt, cmd in zip(rcpts, rcpt_cmds, strict=True):
                await sess.send(cmd, ST_RCPT, t.rcpt)
                reply = await sess.read_reply(t.rcpt, ST_RCPT)
                if reply.code // 100 == 2:
                    accepted.append(rcpt)
                else:
                    d.settle(rcpt, reply_outcome(srv, reply, "RCPT TO"))
            if not accepted:
                return
            await sess.send(DATA_COMMAND, ST_DATA, t.data_init)
            data_reply = await sess.read_reply(t.data_init, ST_DATA)
        if data_reply.code != 354:
            if accepted:
                out = reply_outcome(srv, data_reply, "DATA")
                for rcpt in accepted:
                    d.settle(rcpt, out)
            return
        if not accepted:
            # A broken server said 354 without recipients: end the empty message.
            await sess.send(b".\r\n", ST_DOT, t.data_done)
            await sess.read_reply(t.data_done, ST_DOT)
            return
        await self._send_content(d, sess)
        if s.lmtp:
            pairs = LmtpReplies([r.address for r in accepted])
            for rcpt in accepted:
                reply = await sess.read_reply(t.data_done, ST_DOT)
                pairs.add(reply)
                self._data_done(d, sess, rcpt, reply)
        else:
            reply = await sess.read_reply(t.data_done, ST_DOT)
            for rcpt in accepted:
                self._data_done(d, sess, rcpt, reply)
        sess.need_rset = False

    async def _probe(self, d: Delivery, sess: Session, mail: bytes, rcpts: list[DeliverRcpt],
                     rcpt_cmds: list[bytes]) -> None:
        """_probe - address verification: MAIL and RCPT only, never DATA (sendmail -bv).

        As Postfix's smtp(8) in verify mode: the RCPT reply decides each recipient
        (2xx deliverable, 5xx undeliverable, 4xx try the next server); the session is
        then reset or closed by the caller, so no message is ever sent.
        """
        t, srv = self.settings.timeouts, sess.server
        if "PIPELINING" in sess.features:
            # RFC 2920 3.1: MAIL and RCPT may be grouped; DATA is not sent.
            await sess.send(mail + b"".join(rcpt_cmds), ST_MAIL, t.mail)
            mail_reply = await sess.read_reply(t.mail, ST_MAIL)
            replies = [await sess.read_reply(t.rcpt, ST_RCPT) for _ in rcpts]
        else:
            await sess.send(mail, ST_MAIL, t.mail)
            mail_reply = await sess.read_reply(t.mail, ST_MAIL)
            replies = []
            if mail_reply.code == 250:
                for cmd in rcpt_cmds:
                    await sess.send(cmd, ST_RCPT, t.rcpt)
                    replies.append(await sess.read_reply(t.rcpt, ST_RCPT))
        if mail_reply.code != 250:
            out = reply_outcome(srv, mail_reply, "MAIL FROM")
            for rcpt in rcpts:
                d.settle(rcpt, out)
            return
        for rcpt, reply in zip(rcpts, replies, strict=True):
            if reply.code // 100 == 2:
                dsn = reply.enhanced if reply.enhanced.startswith("2") else "2.0.0"
                d.finish(rcpt, Outcome("sent", dsn, str(reply), srv.namaddrport), "deliverable")
            else:
                d.settle(rcpt, reply_outcome(srv, reply, "RCPT TO"))

    def _data_done(self, d: Delivery, sess: Session, rcpt: DeliverRcpt, reply) -> None:
        """_data_done - the end-of-data reply decides a recipient."""
        if reply.code // 100 != 2:
            d.settle(rcpt, reply_outcome(sess.server, reply, "end of DATA"))
            return
        out = success_outcome(sess.server, reply)
        target = rcpt
        dsn_aware = "DSN" in sess.features
        if dsn_aware and not self.settings.lmtp and rcpt.dsn_notify & DSN_NOTIFY_SUCCESS:
            # RFC 3461 4.1: the DSN-aware server reports success; don't repeat it.
            target = dataclasses.replace(rcpt, dsn_notify=rcpt.dsn_notify & ~DSN_NOTIFY_SUCCESS)
        # RFC 3464 2.3.3: "relayed" when the next hop cannot report delivery itself.
        action = "delivered" if self.settings.lmtp or dsn_aware else "relayed"
        d.finish(target, out, action)
        if target is not rcpt and rcpt in d.open:
            d.open.remove(rcpt)

    async def _grouped_rset(self, sess: Session, group: bytes) -> None:
        """_grouped_rset - RSET plus the MAIL group on a reused connection; read RSET's reply.

        A dead connection or a non-250 reply means the cached connection is not
        usable: _ReuseFailed, and the caller connects afresh, as after a lone RSET.
        """
        timeout = self.settings.timeouts.rset
        try:
            await sess.send(RSET_COMMAND + group, ST_RSET, timeout)
            reply = await sess.read_reply(timeout, ST_RSET)
        except SessionError:
            raise _ReuseFailed() from None
        if reply.code != 250:
            raise _ReuseFailed()

    async def _rset(self, sess: Session, reused: bool) -> None:
        """_rset - reset the server before a new transaction on a used connection."""
        try:
            await sess.send(RSET_COMMAND, ST_RSET, self.settings.timeouts.rset)
            reply = await sess.read_reply(self.settings.timeouts.rset, ST_RSET)
        except SessionError:
            if reused:
                raise _ReuseFailed() from None
            raise
        if reply.code != 250:
            if reused:
                raise _ReuseFailed()
            raise SessionError(reply_outcome(sess.server, reply, "RSET"), True)

    async def _send_content(self, d: Delivery, sess: Session) -> None:
        """_send_content - the message, dot-stuffed, then the end-of-data line."""
        t = self.settings.timeouts
        stuffer = DotStuffer()
        qf = d.dctx.qf
        convert = d.req.encoding.lower() == "8bit" and "8BITMIME" not in sess.features
        if convert or d._content is not None or qf is None:
            content = d.content()
            if convert:
                content = mime8.downgrade_8bit(content)
            await sess.send(stuffer.feed(content) + stuffer.end(), ST_BODY, t.data_xfer)
            return
        # The last chunk and the end-of-data line go out in one write.
        prev = None
        for chunk in qf.iter_content(b"\r\n"):
            if prev is not None:
                await sess.send(stuffer.feed(prev), ST_BODY, t.data_xfer)
            prev = chunk
        if prev is None:
            await sess.send(stuffer.end(), ST_DOT, t.data_xfer)
        else:
            tail = stuffer.feed(prev)
            await sess.send(tail + stuffer.end(), ST_BODY, t.data_xfer)
