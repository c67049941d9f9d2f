"""smtpd - Postel SMTP server

SYNOPSIS
    smtpd [generic daemon options]

DESCRIPTION
    Accepts mail over SMTP/ESMTP and streams it to cleanup(8), which writes
    the queue file.  The protocol itself (command syntax, sequence, DATA and
    BDAT framing, SMTP smuggling defence, line and size limits) is the
    sans-IO state machine in postel.protocol.smtp_server; this module is the
    shell around it: socket I/O, timeouts, access policy
    (postel.smtpd.restrictions), the cleanup stream and the log lines.

    One process serves many sessions at once (asyncio); master runs several
    processes on the same listener.  Replies to pipelined commands are
    collected and written when the client's input is drained (RFC 2920).

    A message is acknowledged with "250 2.0.0 Ok: queued as QID" only after
    cleanup reports the queue file durable (file and directory fsync'd).
    Anything unexpected inside a session becomes "451 4.3.0" for the client;
    the detail goes to the log.

STANDARDS
    RFC 5321 (SMTP), RFC 1870 (SIZE), RFC 2920 (PIPELINING), RFC 3030
    (CHUNKING), RFC 3461 (DSN), RFC 6152 (8BITMIME), RFC 6531 (SMTPUTF8),
    RFC 2034 (ENHANCEDSTATUSCODES), RFC 1985 (ETRN), Postfix XCLIENT_README
    and XFORWARD_README.

CONFIGURATION PARAMETERS
    myhostname                      name in the greeting and replies
    smtpd_banner ($myhostname ESMTP $mail_name)
    smtpd_timeout (300s)            time for a client to send a command/data
    message_size_limit (10240000)   largest message, bytes
    line_length_limit (2048)        longest content line piece
    smtpd_recipient_limit (1000)    recipients per message
    smtpd_hard_error_limit (20)     errors before the session is closed
    smtpd_soft_error_limit (10)     errors before each reply is delayed
    smtpd_error_sleep_time (1s)     that delay
    smtpd_junk_command_limit (100)  NOOP/VRFY/ETRN/RSET before hang-up
    smtpd_forbid_bare_newline       no, normalize, yes, reject (as Postfix 3.9)
    smtpd_forbid_bare_newline_exclusions ($mynetworks)
    smtpd_forbid_unauth_pipelining  reject clients that talk before the greeting
    smtpd_discard_ehlo_keywords     EHLO keywords not to offer
    smtpd_authorized_xclient_hosts  clients that may use XCLIENT
    smtpd_authorized_xforward_hosts clients that may use XFORWARD
    smtpd_peername_lookup (yes)     look up the client's name in the DNS
    smtpd_delay_reject (yes)        evaluate client/helo/sender lists at RCPT
    smtpd_reject_unlisted_recipient (yes), smtpd_reject_unlisted_sender (no)
    local_recipient_maps, virtual_alias_maps, virtual_mailbox_maps,
    relay_recipient_maps            tables of known recipients
    local_header_rewrite_clients (permit_inet_interfaces)
    disable_vrfy_command (no), smtpd_helo_required (no),
    strict_rfc821_envelopes (no), smtputf8_enable (yes)
    queue_minfree (0)               free space needed to accept mail
    smtpd_client_connection_count_limit (50), smtpd_client_connection_rate_limit,
    smtpd_client_message_rate_limit, smtpd_client_recipient_rate_limit (0),
    smtpd_client_event_limit_exceptions ($mynetworks)   see anvil_limits.py
    and the restriction lists, see restrictions.py.

DIAGNOSTICS
    Postfix's log lines: "connect from NAME[ADDR]", "QID: client=NAME[ADDR]",
    "NOQUEUE: reject: RCPT from NAME[ADDR]: 554 5.7.1 ...; from=<...>
    to=<...> proto=ESMTP helo=<...>", "timeout after CMD from NAME[ADDR]",
    "lost connection after CMD from NAME[ADDR]", "disconnect from NAME[ADDR]
    ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5".

SEE ALSO
    cleanup(8), trivial-rewrite(8), docs/smtpd.md, docs/smtpd_access.md
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import os
import socket
import time
from collections import defaultdict
from dataclasses import dataclass, field

from postel import log
from postel.dns import Dns
from postel.ipc.cleanup_client import CleanupClient, CleanupMessage
from postel.ipc.client import ServiceUnavailable
from postel.ipc.rewrite_client import RewriteClient
from postel.ipc.skeleton import ServiceContext, multi_server_main
from postel.mail import resolve_types as rs
from postel.mail.headers import received_header_wire
from postel.protocol import replies as R
from postel.protocol.events import (
    CLOSED,
    NEED_DATA,
    Auth,
    AuthResponse,
    BadSyntax,
    Bdat,
    BdatChunkEnd,
    Connected,
    Data,
    DataChunk,
    DataEnd,
    Ehlo,
    Etrn,
    Helo,
    Help,
    MailFrom,
    NonSmtpCommand,
    Noop,
    ProtocolError,
    Quit,
    RcptTo,
    Rset,
    StartTls,
    UnknownCommand,
    Vrfy,
    Xclient,
    Xforward,
)
from postel.protocol.replies import Reply
from postel.protocol.smtp_server import (
    ServerConfig,
    SMTPServerConnection,
    State,
    ehlo_reply,
    enabled_keywords,
)
from postel.smtpd.anvil_limits import ClientLimits
from postel.smtpd.channel import Channel, open_channel
from postel.smtpd.restrictions import (
    CLASS_ALIAS,
    CLASS_DEFAULT,
    CLASS_LOCAL,
    CLASS_RELAY,
    CLASS_VIRTUAL,
    CheckState,
    NetworkList,
    RestrictionConfigError,
    Restrictions,
    Verdict,
    domain_of,
    ip_of,
    local_of,
)
from postel.tables import TableError, TableUnavailable, open_table

# Commands counted in the "disconnect from" line, in Postfix's order.
COUNTED = ("helo", "ehlo", "starttls", "auth", "mail", "rcpt", "data", "bdat", "rset",
           "noop", "vrfy", "etrn", "quit", "xclient", "xforward", "unknown")
# The position of each counted command in COUNTED; any other name ranks last.
_COUNTED_RANK: defaultdict[str, int] = defaultdict(lambda: len(COUNTED),
                                                   {cmd: i for i, cmd in enumerate(COUNTED)})
_N_COUNTED = len(COUNTED)

R451_TEMP_LOOKUP = Reply(451, "4.3.0", "<{name}>: Temporary lookup failure")
R550_XCLIENT_DENIED = Reply(550, "5.7.0", "Error: insufficient authorization")
R459_ETRN = Reply(459, "4.3.0", "<{name}>: service unavailable")


@dataclass(slots=True)
class Settings:
    """Per-process smtpd settings, computed once in post_init."""

    cfg: object
    queue_directory: str
    myhostname: str
    banner: str
    timeout: float
    server_config: ServerConfig
    ehlo: Reply
    helo: Reply
    hard_error_limit: int
    soft_error_limit: int
    error_sleep: float
    junk_limit: int
    delay_reject: bool
    peername_lookup: bool
    reject_unlisted_rcpt: bool
    reject_unlisted_sender: bool
    forbid_unauth_pipelining: bool
    queue_minfree: int
    size_limit: int
    bare_nl_exclusions: NetworkList
    xclient_hosts: NetworkList
    xforward_hosts: NetworkList
    local_rewrite_clients: list[str]
    inet_addresses: set[str]
    restrictions: Restrictions | None = None
    restriction_error: str = ""
    cleanup: CleanupClient | None = None
    rewrite: RewriteClient | None = None
    dns: Dns | None = None
    tables: dict = field(default_factory=dict)
    limits: ClientLimits | None = None      # anvil limits (anvil_limits.py)
    greeting: Reply | None = None           # 220 $smtpd_banner (its bytes cached)


def _interface_addresses(cfg) -> set[str]:
    """the addresses of inet_interfaces (for permit_inet_interfaces)."""
    out = {"127.0.0.1", "::1"}
    for item in cfg.get_list("inet_interfaces"):
        if item in ("all", "loopback-only"):
            continue
        try:
            out.add(str(ipaddress.ip_address(item.strip("[]"))))
        except ValueError:
            continue
    return out


def build_settings(ctx: ServiceContext) -> Settings:
    """build_settings - read the parameters smtpd uses, once per process."""
    cfg = ctx.cfg
    host = cfg.get("myhostname")
    size_limit = cfg.get_int("message_size_limit")
    sc = ServerConfig(
        myhostname=host,
        message_size_limit=size_limit,
        line_length_limit=max(cfg.get_int("line_length_limit"), 64),
        smtpd_recipient_limit=cfg.get_int("smtpd_recipient_limit"),
        smtpd_forbid_bare_newline=cfg.get("smtpd_forbid_bare_newline"),
        smtpd_forbid_bare_newline_reject_code=cfg.get_int("smtpd_forbid_bare_newline_reject_code"),
        smtpd_strict_rfc821_envelopes=cfg.get_bool("strict_rfc821_envelopes"),
        smtpd_helo_required=cfg.get_bool("smtpd_helo_required"),
        smtpd_forbidden_commands=tuple(w.upper() for w in cfg.get_list("smtpd_forbidden_commands")
                                       if ":" not in w and "{" not in w and "}" not in w),
        disable_vrfy_command=cfg.get_bool("disable_vrfy_command"),
        smtputf8_enable=cfg.get_bool("smtputf8_enable"),
    )
    discard = [w for w in cfg.get_list("smtpd_discard_ehlo_keywords") if w != "silent-discard"]
    st = Settings(
        cfg=cfg,
        queue_directory=ctx.queue_directory,
        myhostname=host,
        banner=cfg.get("smtpd_banner"),
        timeout=cfg.get_time("smtpd_timeout"),
        server_config=sc,
        ehlo=ehlo_reply(host, size_limit, enabled_keywords(sc), discard),
        helo=R.R250_HELO.format(host=host),
        hard_error_limit=cfg.get_int("smtpd_hard_error_limit"),
        soft_error_limit=cfg.get_int("smtpd_soft_error_limit"),
        error_sleep=cfg.get_time("smtpd_error_sleep_time"),
        junk_limit=cfg.get_int("smtpd_junk_command_limit"),
        delay_reject=cfg.get_bool("smtpd_delay_reject"),
        peername_lookup=cfg.get_bool("smtpd_peername_lookup"),
        reject_unlisted_rcpt=cfg.get_bool("smtpd_reject_unlisted_recipient"),
        reject_unlisted_sender=cfg.get_bool("smtpd_reject_unlisted_sender"),
        forbid_unauth_pipelining=cfg.get_bool("smtpd_forbid_unauth_pipelining"),
        queue_minfree=cfg.get_size("queue_minfree"),
        size_limit=size_limit,
        bare_nl_exclusions=NetworkList(cfg.get_list("smtpd_forbid_bare_newline_exclusions")),
        xclient_hosts=NetworkList(cfg.get_list("smtpd_authorized_xclient_hosts")),
        xforward_hosts=NetworkList(cfg.get_list("smtpd_authorized_xforward_hosts")),
        local_rewrite_clients=cfg.get_list("local_header_rewrite_clients"),
        inet_addresses=_interface_addresses(cfg),
    )
    st.greeting = Reply(220, "", st.banner)
    st.cleanup = CleanupClient(ctx.queue_directory, "public/cleanup")
    st.rewrite = RewriteClient(ctx.queue_directory)
    st.dns = Dns.from_config(cfg)
    st.limits = ClientLimits.from_config(cfg, ctx.queue_directory, ctx.service_name)

    async def resolve_class(addr: str) -> str:
        return await _address_class(st, addr)

    async def recipient_known(addr: str, what: str) -> bool | None:
        return await _recipient_known(st, addr)

    verify_clients: list = []       # one VerifyClient, made on first use

    async def verify(addr: str):
        if not verify_clients:
            from postel.ipc.verify_client import VerifyClient, endpoint_of
            verify_clients.append(VerifyClient(ctx.queue_directory, endpoint_of(cfg)))
        return await verify_clients[0].query(addr)

    try:
        st.restrictions = Restrictions(cfg, resolve_class=resolve_class, dns=st.dns,
                                       open_table=lambda spec: _table(st, spec),
                                       recipient_known=recipient_known,
                                       inet_addresses=sorted(st.inet_addresses),
                                       verify=verify)
    except (RestrictionConfigError, TableError) as exc:
        # Postfix defers all mail on a restriction configuration error.
        st.restriction_error = str(exc)
        log.warning("%s: all mail will be deferred", exc)
    return st


def _table(st: Settings, spec: str):
    """_table - an open table (proxy: tables are answered by proxymap)."""
    t = st.tables.get(spec)
    if t is None or t.needs_reopen():
        t = open_table(spec, cfg=st.cfg)
        st.tables[spec] = t
    return t


_CLASS_NAMES = ((rs.CLASS_LOCAL, CLASS_LOCAL), (rs.CLASS_ALIAS, CLASS_ALIAS),
                (rs.CLASS_VIRTUAL, CLASS_VIRTUAL), (rs.CLASS_RELAY, CLASS_RELAY))


async def _address_class(st: Settings, addr: str) -> str:
    """_address_class - ask trivial-rewrite for the address class."""
    resolved = await st.rewrite.resolve(addr)
    if resolved.fail:
        raise TableUnavailable(f"address resolution failed for {addr}")
    for flag, name in _CLASS_NAMES:
        if resolved.flags & flag:
            return name
    return CLASS_DEFAULT


def _maps_hit(st: Settings, param: str, keys: list[str]) -> bool | None:
    """_maps_hit - True/False if a key is in one of the tables; None: no tables."""
    specs = st.cfg.get_list(param)
    if not specs:
        return None
    for spec in specs:
        t = _table(st, spec)
        for key in keys:
            if t.lookup(key) is not None:
                return True
    return False


async def _recipient_known(st: Settings, addr: str) -> bool | None:
    """_recipient_known - is addr a known recipient of its address class?"""
    cls = await _address_class(st, addr)
    local, dom = local_of(addr).lower(), domain_of(addr)
    delim = st.cfg.get("recipient_delimiter")
    bases = [local]
    for d in delim:
        if d and d in local:
            bases.append(local.split(d, 1)[0])
            break
    full = [f"{b}@{dom}" for b in bases] if dom else list(bases)
    if cls == CLASS_LOCAL:
        hit = _maps_hit(st, "local_recipient_maps", full + bases)
    elif cls == CLASS_ALIAS:
        hit = _maps_hit(st, "virtual_alias_maps", full + [f"@{dom}"])
        return bool(hit)
    elif cls == CLASS_VIRTUAL:
        hit = _maps_hit(st, "virtual_alias_maps", full + [f"@{dom}"])
        if not hit:
            hit = _maps_hit(st, "virtual_mailbox_maps", full + [f"@{dom}"])
    elif cls == CLASS_RELAY:
        hit = _maps_hit(st, "relay_recipient_maps", full + [f"@{dom}"])
    else:
        return None
    return hit


def post_init(ctx: ServiceContext) -> None:
    """post_init - per-process settings and clients."""
    ctx.state["smtpd"] = build_settings(ctx)


@functools.lru_cache(maxsize=1024)
def _is_loopback(addr: str) -> bool:
    """_is_loopback - a loopback client address (cached)."""
    ip = ip_of(addr)
    return ip is not None and ip.is_loopback


def _now() -> float:
    return time.time()


class Session:
    """Session - one SMTP client connection."""

    def __init__(self, st: Settings, chan: Channel, ctx: ServiceContext,
                 peer: tuple[str, int] | None):
        self.st = st
        self.chan = chan
        self.ctx = ctx
        self.tcp = peer is not None
        self.addr, self.port = (peer if peer else ("127.0.0.1", 0))
        if self.addr.startswith("::ffff:"):
            self.addr = self.addr[7:]
        self.name = "unknown"
        self.name_status = 5
        self.peer = f"unknown[{self.addr}]"
        self.conn = SMTPServerConnection(st.server_config)
        self.check = CheckState(client_addr=self.addr, client_port=str(self.port))
        self.counts: dict[str, list[int]] = {}
        self.last_cmd = "CONNECT"
        self.msg: CleanupMessage | None = None
        self.msg_rcpts: list[tuple[str, str, str]] = []
        self.sender: str | None = None
        self.mail_event: MailFrom | None = None
        self.protocol = "SMTP"
        self.xforward: dict[str, str] = {}
        self.data_started = False
        self.out = bytearray()
        self.closing = False
        self.limited = False            # counted by anvil (anvil_limits.py)

    # -- logging helpers ----------------------------------------------------

    def set_peer(self) -> None:
        """set_peer - "name[addr]" for log lines, after name or addr changed."""
        self.peer = f"{self.name}[{self.addr}]"

    def count(self, cmd: str, ok: bool) -> None:
        c = self.counts.get(cmd)
        if c is None:
            self.counts[cmd] = [1 if ok else 0, 1]
            return
        c[1] += 1
        if ok:
            c[0] += 1

    def disconnect_line(self) -> str:
        parts = []
        good = total = 0
        counts = self.counts
        # The counted commands in COUNTED's order (a session uses a few of them).
        rank = _COUNTED_RANK
        for cmd in sorted(counts, key=rank.__getitem__):
            if rank[cmd] < _N_COUNTED:
                ok, n = counts[cmd]
                parts.append(f"{cmd}={ok}" if ok == n else f"{cmd}={ok}/{n}")
                good += ok
                total += n
        parts.append(f"commands={good}" if good == total else f"commands={good}/{total}")
        return f"disconnect from {self.peer} " + " ".join(parts)

    def log_reject(self, cmd: str, v: Verdict | Reply, rcpt: str | None = None) -> None:
        qid = self.msg.queue_id if self.msg else "NOQUEUE"
        line = v.reply_line() if isinstance(v, Verdict) else str(v)
        extra = f"; from=<{self.sender or ''}>" if self.sender is not None else ""
        if rcpt is not None:
            extra += f" to=<{rcpt}>"
        helo = f" helo=<{self.check.helo_name}>" if self.check.helo_name else ""
        log.info("%s: reject: %s from %s: %s%s proto=%s%s", qid, cmd, self.peer, line,
                 extra, self.protocol, helo)

    # -- the session loop ----------------------------------------------------

    async def run(self) -> None:
        await self.lookup_name()
        log.info("connect from %s", self.peer)
        if self.st.bare_nl_exclusions.match(self.addr):
            self.conn.forbid_bare_newline = "no" if self.conn.forbid_bare_newline == "reject" \
                else self.conn.forbid_bare_newline
        # anvil limits: TCP clients only, not the exceptions (anvil_limits.py)
        self.limited = (self.st.limits is not None and self.tcp
                        and self.st.limits.applies(self.addr))
        try:
            refusal = await self.st.limits.connect(self.addr, self.peer) if self.limited else None
            if refusal is not None:
                self.chan.write(refusal.to_bytes())
                await self.chan.drain()
                return
            await self.loop()
        except (ConnectionError, OSError) as exc:
            log.info("lost connection after %s from %s%s", self.last_cmd, self.peer,
                     f" ({exc.strerror})" if getattr(exc, "strerror", None) else "")
        finally:
            if self.msg is not None:
                await self.abort_message()
            if self.limited:
                await self.st.limits.disconnect(self.addr)
            log.info("%s", self.disconnect_line())

    async def lookup_name(self) -> None:
        """lookup_name - the client's verified name, as Postfix's smtpd_peer."""
        if ip_of(self.addr) is None:
            return
        if _is_loopback(self.addr):
            self.name, self.name_status = "localhost", 2
        elif self.st.peername_lookup:
            try:
                host, _ = await asyncio.wait_for(
                    asyncio.get_running_loop().getnameinfo((self.addr, 0), socket.NI_NAMEREQD), 10)
                addrs = await asyncio.wait_for(
                    asyncio.get_running_loop().getaddrinfo(host, None), 10)
                if any(a[4][0] == self.addr for a in addrs):
                    self.name, self.name_status = host, 2
                else:
                    log.warning("%s: address not listed for hostname %s", self.addr, host)
            except (OSError, asyncio.TimeoutError):
                self.name_status = 5
        self.check.client_name = self.name
        self.check.reverse_client_name = self.name
        self.check.client_name_status = self.name_status
        self.set_peer()

    async def flush(self) -> None:
        if self.out:
            self.chan.write(bytes(self.out))
            self.out.clear()
            await self.chan.drain()

    async def loop(self) -> None:
        conn, chan = self.conn, self.chan
        while True:
            ev = conn.next_event()
            if ev is NEED_DATA:
                if self.out:
                    chan.write(bytes(self.out))
                    self.out.clear()
                    if chan.write_paused or chan.lost:
                        await chan.drain()
                # smtpd_timeout per read: the channel's idle timer (channel.py);
                # chan.read() inlined (one coroutine less per read).
                data = chan.take()
                if data is None:
                    fut = chan.wait()
                    try:
                        await fut
                    except TimeoutError:
                        data = None
                    else:
                        data = chan.take() or b""
                    finally:
                        chan.reading = False
                        chan.waiter = None
                if data is None:
                    log.info("timeout after %s from %s", self.last_cmd, self.peer)
                    self.out += R.R421_TIMEOUT.format(host=self.st.myhostname).to_bytes()
                    conn.close()
                    await self.flush()
                    return
                if not data:
                    log.info("lost connection after %s from %s", self.last_cmd, self.peer)
                    return
                conn.receive_data(data)
                continue
            if ev is CLOSED:
                await self.flush()
                return
            handler = HANDLERS.get(type(ev))
            if handler is None:
                if isinstance(ev, DataChunk):
                    if self.msg is not None:
                        await self.msg.write(ev.data)
                    continue
                if isinstance(ev, Bdat):
                    self.last_cmd = "BDAT"
                    if not self.data_started:
                        await self.start_content()
                    continue
                reply = getattr(ev, "reply", R.R502_NOT_IMPLEMENTED)
            else:
                try:
                    reply = await handler(self, ev)
                except (ConnectionError, asyncio.IncompleteReadError):
                    raise
                except Exception as exc:
                    reply = await self.handler_failed(ev, exc)
            self.out += conn.send_reply(reply)
            if conn.state is State.CLOSED:
                await self.flush()
                return
            if conn.error_count >= self.st.hard_error_limit or conn.junk_count > self.st.junk_limit:
                log.info("too many errors after %s from %s", self.last_cmd, self.peer)
                self.out += R.R421_TOO_MANY_ERRORS.format(host=self.st.myhostname).to_bytes()
                conn.close()
                await self.flush()
                return
            if reply.code >= 400 and conn.error_count > self.st.soft_error_limit:
                await self.flush()
                await asyncio.sleep(self.st.error_sleep)

    async def handler_failed(self, ev, exc: Exception) -> Reply:
        """handler_failed - the reply (and log line) for a handler's exception."""
        if isinstance(exc, TableUnavailable | ServiceUnavailable):
            log.warning("%s: temporary lookup failure: %s", self.peer, exc)
            return R.R451_TEMP_LOOKUP
        if isinstance(exc, RestrictionConfigError | TableError):
            log.warning("%s: %s", self.peer, exc)
            return R.R451_CONFIG
        # never a traceback for the client
        log.warning("%s: %s while handling %s: %s", self.peer, type(exc).__name__,
                    type(ev).__name__, exc)
        if self.msg is not None:
            await self.abort_message()
        return R.R451_LOCAL_ERROR

    # -- the message stream to cleanup ---------------------------------------

    async def open_message(self) -> Reply | None:
        """open_message - start a cleanup stream at the first accepted RCPT."""
        try:
            flags = "bcc_ok,map_ok"
            if self.check.hold:
                flags += ",hold"
            self.msg = await self.st.cleanup.open(flags)
        except ServiceUnavailable as exc:
            log.warning("%s: cleanup service unavailable: %s", self.peer, exc)
            return R.R451_LOCAL_ERROR
        self.check.queue_id = self.msg.queue_id
        log.info("%s: client=%s", self.msg.queue_id, self.peer)
        return None

    async def abort_message(self) -> None:
        msg, self.msg = self.msg, None
        self.msg_rcpts = []
        self.data_started = False
        self.check.queue_id = "NOQUEUE"
        if msg is not None:
            try:
                await msg.abort()
            except (OSError, ConnectionError):
                pass

    def rewrite_context(self) -> str:
        for item in self.st.local_rewrite_clients:
            if item == "permit_inet_interfaces" and self.addr in self.st.inet_addresses:
                return "local"
            if item == "permit_mynetworks" and self.st.restrictions \
                    and self.st.restrictions.mynetworks.match(self.addr):
                return "local"
            if item == "permit_sasl_authenticated" and self.check.sasl_username:
                return "local"
        return "remote"

    async def start_content(self) -> None:
        """start_content - envelope and Received: header to cleanup."""
        self.data_started = True
        msg = self.msg
        if msg is None:
            return
        mp = self.mail_event.params if self.mail_event else None
        xf = self.xforward
        if xf:
            attrs = {
                "client_name": xf.get("NAME", self.name),
                "client_address": xf.get("ADDR", self.addr),
                "client_port": xf.get("PORT", str(self.port)),
                "helo_name": xf.get("HELO", self.check.helo_name),
                "protocol": xf.get("PROTO", self.protocol),
                "rewrite_context": self.rewrite_context(),
                "arrival_time": f"{_now():.6f}",
            }
        else:
            attrs = {
                "client_name": self.name,
                "client_address": self.addr,
                "client_port": str(self.port),
                "helo_name": self.check.helo_name,
                "protocol": self.protocol,
                "rewrite_context": self.rewrite_context(),
                "arrival_time": f"{_now():.6f}",
            }
        if mp is not None:
            if mp.envid:
                attrs["dsn_envid"] = mp.envid
            if mp.ret:
                attrs["dsn_ret"] = mp.ret
            if mp.body:
                attrs["encoding"] = mp.body.lower()
            if mp.smtputf8:
                attrs["smtputf8"] = "1"
        await msg.envelope(self.sender or "", self.msg_rcpts, attrs)
        await msg.write(received_header_wire(
            helo=self.check.helo_name or self.name, name=self.name, addr=self.addr,
            myhostname=self.st.myhostname, qid=msg.queue_id,
            rcpts=[r[0] for r in self.msg_rcpts], protocol=self.protocol))

    async def finish_message(self, ev: DataEnd) -> Reply:
        """finish_message - the end of DATA or BDAT LAST."""
        cmd = "BDAT" if ev.bdat else "DATA"
        if self.msg is None:
            return R.R451_LOCAL_ERROR
        if ev.too_big:
            await self.abort_message()
            self.log_reject("END-OF-MESSAGE", R.R552_SIZE)
            return R.R552_SIZE
        self.check.size = ev.size
        v = await self.st.restrictions.check_end_of_data(self.check) if self.st.restrictions \
            else Verdict()
        if v.code >= 400:
            self.log_reject("END-OF-MESSAGE", v)
            await self.abort_message()
            return Reply(v.code, v.dsn, v.text)
        msg, self.msg = self.msg, None
        self.msg_rcpts = []
        self.data_started = False
        self.check.queue_id = "NOQUEUE"
        result = await msg.close()
        if result.ok:
            if ev.bdat:
                return R.R250_BDAT_QUEUED.format(size=ev.size, qid=result.queue_id)
            return R.R250_QUEUED.format(qid=result.queue_id)
        code = result.status if 400 <= result.status < 600 else 451
        dsn = result.dsn if result.dsn and result.dsn[0] == str(code)[0] else f"{code // 100}.3.0"
        reply = Reply(code, dsn, result.reason or "Error: queue file write error")
        log.info("%s: reject: %s from %s: %s", result.queue_id or "NOQUEUE", cmd, self.peer, reply)
        return reply


# -- command handlers: async (session, event) -> Reply ----------------------

async def do_connect(s: Session, ev: Connected) -> Reply:
    if s.st.forbid_unauth_pipelining and s.conn.early_talker:
        log.info("improper command pipelining after CONNECT from %s", s.peer)
        return Reply(554, "5.5.0", "Error: SMTP protocol synchronization")
    if s.st.restriction_error:
        return Reply(421, "4.3.5", f"{s.st.myhostname} Server configuration error")
    if not s.st.delay_reject and s.st.restrictions:
        v = await s.st.restrictions.check_client(s.check)
        if v.code >= 400:
            s.log_reject("CONNECT", v)
            return Reply(v.code, v.dsn, v.text)
    return s.st.greeting


async def do_helo(s: Session, ev: Helo | Ehlo) -> Reply:
    is_ehlo = isinstance(ev, Ehlo)
    cmd = "ehlo" if is_ehlo else "helo"
    s.last_cmd = cmd.upper()
    if s.msg is not None or s.msg_rcpts or s.data_started or s.check.queue_id != "NOQUEUE":
        await s.abort_message()     # (a coroutine only when there is something to abort)
    s.check.helo_name = ev.name
    if not s.st.delay_reject and s.st.restrictions:
        v = await s.st.restrictions.check_helo(s.check)
        if v.code >= 400:
            s.count(cmd, False)
            s.log_reject(cmd.upper(), v)
            return Reply(v.code, v.dsn, v.text)
    s.protocol = "ESMTP" if is_ehlo else "SMTP"
    s.count(cmd, True)
    return s.st.ehlo if is_ehlo else s.st.helo


def _free_space_ok(st: Settings, declared: int | None) -> bool:
    """_free_space_ok - queue_minfree and 1.5 x the declared size (Postfix)."""
    need = st.queue_minfree
    if declared:
        need = max(need, int(declared * 1.5))
    if not need:
        return True
    try:
        vfs = os.statvfs(st.queue_directory)
    except OSError:
        return True
    return vfs.f_bavail * vfs.f_frsize >= need


async def do_mail(s: Session, ev: MailFrom) -> Reply:
    s.last_cmd = "MAIL"
    if s.msg is not None or s.msg_rcpts or s.data_started or s.check.queue_id != "NOQUEUE":
        await s.abort_message()     # (a coroutine only when there is something to abort)
    if s.st.restriction_error:
        s.count("mail", False)
        return R.R451_CONFIG
    if not _free_space_ok(s.st, ev.params.size):
        s.count("mail", False)
        log.warning("not enough free space in mail queue: %s", s.st.queue_directory)
        return R.R452_INSUFFICIENT_STORAGE
    s.sender = ev.address
    s.check.sender = ev.address
    s.check.size = ev.params.size or 0
    s.check.recipient = None
    s.check.rcpt_count = 0
    if not s.st.delay_reject and s.st.restrictions:
        r = s.st.restrictions
        for check in (r.check_client, r.check_helo, r.check_sender):
            v = await check(s.check)
            if v.code >= 400:
                s.count("mail", False)
                s.log_reject("MAIL", v)
                s.sender = None
                s.check.sender = None
                return Reply(v.code, v.dsn, v.text)
    if s.st.reject_unlisted_sender and ev.address and s.st.restrictions:
        v = await s.st.restrictions.access_action("reject_unlisted_sender", s.check,
                                                  _sender_ctx(), "sender", ev.address)
        if v.code >= 400:
            s.count("mail", False)
            s.log_reject("MAIL", v)
            s.sender = None
            return Reply(v.code, v.dsn, v.text)
    if s.limited:
        refusal = await s.st.limits.message(s.addr, s.peer)
        if refusal is not None:
            s.count("mail", False)
            s.sender = s.check.sender = None
            return refusal
    s.mail_event = ev
    s.count("mail", True)
    return R.R250_SENDER_OK


def _sender_ctx():
    from postel.smtpd.restrictions import _Eval
    return _Eval("sender", "Sender address rejected")


def _notify_text(ev: RcptTo) -> str:
    return ",".join(ev.params.notify) if ev.params.notify else ""


def _orcpt_text(ev: RcptTo) -> str:
    if not ev.params.orcpt:
        return ""
    kind, addr = ev.params.orcpt
    return f"{kind};{addr}"


async def do_rcpt(s: Session, ev: RcptTo) -> Reply:
    s.last_cmd = "RCPT"
    s.check.recipient = ev.address
    if s.limited:
        refusal = await s.st.limits.recipient(s.addr, s.peer)
        if refusal is not None:
            s.count("rcpt", False)
            return refusal
    r = s.st.restrictions
    if r is None:
        s.count("rcpt", False)
        return R.R451_CONFIG
    v = await r.check_rcpt(s.check, delayed=s.st.delay_reject)
    if v.code < 400 and s.st.reject_unlisted_rcpt:
        known = await _recipient_known(s.st, ev.address)
        if known is False:
            from postel.smtpd.restrictions import _unlisted
            v = await _unlisted(r, ev.address, "recipient")
    for warning in s.check.warnings:
        log.info("%s: %s RCPT from %s; from=<%s> to=<%s> proto=%s helo=<%s>",
                 s.check.queue_id, warning, s.peer, s.sender or "", ev.address,
                 s.protocol, s.check.helo_name)
    s.check.warnings.clear()
    if v.code >= 400:
        s.count("rcpt", False)
        s.log_reject("RCPT", v, ev.address)
        return Reply(v.code, v.dsn, v.text)
    if s.msg is None:
        failure = await s.open_message()
        if failure is not None:
            s.count("rcpt", False)
            return failure
    s.msg_rcpts.append((ev.address, _orcpt_text(ev), _notify_text(ev)))
    s.check.rcpt_count += 1
    s.count("rcpt", True)
    return R.R250_RCPT_OK


async def do_data(s: Session, ev: Data) -> Reply:
    s.last_cmd = "DATA"
    if s.st.restrictions:
        v = await s.st.restrictions.check_data(s.check)
        if v.code >= 400:
            s.count("data", False)
            s.log_reject("DATA", v)
            await s.abort_message()
            return Reply(v.code, v.dsn, v.text)
    if s.msg is None:
        s.count("data", False)
        return R.R451_LOCAL_ERROR
    await s.start_content()
    return R.R354_DATA


async def do_data_end(s: Session, ev: DataEnd) -> Reply:
    cmd = "bdat" if ev.bdat else "data"
    s.last_cmd = "END-OF-MESSAGE"
    reply = await s.finish_message(ev)
    s.count(cmd, reply.code < 400)
    return reply


async def do_bdat_chunk_end(s: Session, ev: BdatChunkEnd) -> Reply:
    if ev.too_big:
        await s.abort_message()
        s.count("bdat", False)
        return R.R552_CHUNK_SIZE
    s.count("bdat", True)
    return R.R250_BDAT_OK.format(size=ev.size)


async def do_rset(s: Session, ev: Rset) -> Reply:
    s.last_cmd = "RSET"
    await s.abort_message()
    s.sender = None
    s.check.sender = None
    s.check.recipient = None
    s.count("rset", True)
    return R.R250_OK


async def do_noop(s: Session, ev: Noop) -> Reply:
    s.last_cmd = "NOOP"
    s.count("noop", True)
    return R.R250_OK


async def do_quit(s: Session, ev: Quit) -> Reply:
    s.last_cmd = "QUIT"
    s.count("quit", True)
    return R.R221_BYE


async def do_vrfy(s: Session, ev: Vrfy) -> Reply:
    s.last_cmd = "VRFY"
    addr = ev.arg.strip().strip("<>")
    if s.st.reject_unlisted_rcpt and "@" in addr:
        known = await _recipient_known(s.st, addr)
        if known is False:
            s.count("vrfy", False)
            return Reply(550, "5.1.1", f"<{addr}>: Recipient address rejected: "
                         "User unknown in local recipient table")
    s.count("vrfy", True)
    return R.R252_VRFY.format(rcpt=addr)


async def do_etrn(s: Session, ev: Etrn) -> Reply:
    s.last_cmd = "ETRN"
    site = ev.arg.strip()
    if site.startswith(("@", "#")):
        site = site[1:]
    s.check.etrn_domain = site
    if s.st.restrictions:
        v = await s.st.restrictions.check_etrn(s.check)
        if v.code >= 400:
            s.count("etrn", False)
            s.log_reject("ETRN", v)
            return Reply(v.code, v.dsn, v.text)
    try:
        from postel.ipc.flush_client import flush_send_site
    except ImportError:
        s.count("etrn", False)
        return R.R458_ETRN_UNABLE
    try:
        status = await asyncio.to_thread(flush_send_site, s.st.queue_directory, site)
    except Exception as exc:  # flush down: tell the client to try later
        log.warning("ETRN %s: flush service: %s", site, exc)
        status = -1
    if status == 0:
        s.count("etrn", True)
        return R.R250_ETRN
    s.count("etrn", False)
    return R459_ETRN.format(name=site)


async def do_help(s: Session, ev: Help) -> Reply:
    s.last_cmd = "HELP"
    return R.R214_HELP


async def do_xclient(s: Session, ev: Xclient) -> Reply:
    s.last_cmd = "XCLIENT"
    if not s.st.xclient_hosts.match(s.addr):
        s.count("xclient", False)
        return R550_XCLIENT_DENIED
    attrs = ev.attrs
    if "ADDR" in attrs:
        s.addr = attrs["ADDR"]
        s.check.client_addr = s.addr
    if "NAME" in attrs:
        name = attrs["NAME"]
        s.name = "unknown" if name in ("[UNAVAILABLE]", "[TEMPUNAVAIL]") else name
        s.check.client_name = s.check.reverse_client_name = s.name
        s.check.client_name_status = 2 if s.name != "unknown" else 5
    if "PORT" in attrs:
        s.port = attrs["PORT"]
        s.check.client_port = str(attrs["PORT"])
    s.set_peer()
    if "HELO" in attrs:
        s.check.helo_name = attrs["HELO"]
    if "LOGIN" in attrs:
        s.check.sasl_username = attrs["LOGIN"]
    await s.abort_message()
    s.count("xclient", True)
    return s.st.greeting


async def do_xforward(s: Session, ev: Xforward) -> Reply:
    s.last_cmd = "XFORWARD"
    if not s.st.xforward_hosts.match(s.addr):
        s.count("xforward", False)
        return R550_XCLIENT_DENIED
    for k, v in ev.attrs.items():
        if v not in ("[UNAVAILABLE]", "[TEMPUNAVAIL]"):
            s.xforward[k] = v
    s.count("xforward", True)
    return R.R250_OK


async def do_starttls(s: Session, ev: StartTls) -> Reply:
    s.last_cmd = "STARTTLS"
    s.count("starttls", False)
    return R.R454_TLS_UNAVAILABLE


async def do_auth(s: Session, ev: Auth | AuthResponse) -> Reply:
    s.last_cmd = "AUTH"
    s.count("auth", False)
    return R.R503_AUTH_NOT_ENABLED


async def do_mistake(s: Session, ev) -> Reply:
    reply = ev.reply
    if "{host}" in reply.text:
        reply = reply.format(host=s.st.myhostname)
    if isinstance(ev, UnknownCommand):
        s.count("unknown", False)
        s.last_cmd = "UNKNOWN"
    elif isinstance(ev, ProtocolError | BadSyntax):
        cmd = (ev.command or "").lower()
        if cmd in COUNTED:
            s.count(cmd, False)
        if "bare <LF>" in reply.text:
            log.info("warning: disallowed bare <LF> received from %s after %s", s.peer, s.last_cmd)
    return reply


async def do_non_smtp(s: Session, ev: NonSmtpCommand) -> Reply:
    log.warning("non-SMTP command from %s: %s", s.peer, ev.line[:100])
    s.count("unknown", False)
    return ev.reply


HANDLERS = {
    Connected: do_connect,
    Helo: do_helo,
    Ehlo: do_helo,
    MailFrom: do_mail,
    RcptTo: do_rcpt,
    Data: do_data,
    DataEnd: do_data_end,
    BdatChunkEnd: do_bdat_chunk_end,
    Rset: do_rset,
    Noop: do_noop,
    Quit: do_quit,
    Vrfy: do_vrfy,
    Etrn: do_etrn,
    Help: do_help,
    Xclient: do_xclient,
    Xforward: do_xforward,
    StartTls: do_starttls,
    Auth: do_auth,
    AuthResponse: do_auth,
    UnknownCommand: do_mistake,
    BadSyntax: do_mistake,
    ProtocolError: do_mistake,
    NonSmtpCommand: do_non_smtp,
}


def _peer_of(sock: socket.socket) -> tuple[str, int] | None:
    """_peer_of - (address, port) of a TCP client; None for UNIX peers."""
    try:
        peer = sock.getpeername()
    except OSError:
        return None
    if isinstance(peer, tuple) and len(peer) >= 2:
        return str(peer[0]), int(peer[1])
    return None


async def serve_client(sock: socket.socket, ctx: ServiceContext) -> None:
    """serve_client - one SMTP session on an accepted socket (which it closes)."""
    st = ctx.state.get("smtpd")
    if st is None:
        st = ctx.state["smtpd"] = build_settings(ctx)
    peer = _peer_of(sock)
    chan = await open_channel(sock, st.timeout)
    try:
        await Session(st, chan, ctx, peer).run()
    finally:
        chan.close()


def main(argv: list[str]) -> int:
    """main - the smtpd daemon."""
    return multi_server_main("smtpd", argv, serve_client, post_init=post_init, takes_socket=True)
