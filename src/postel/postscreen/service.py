"""postscreen - Postel zombie blocker in front of smtpd

SYNOPSIS
    postscreen [generic daemon options]

    master.cf (Postfix's recipe; postscreen replaces smtpd on port 25):
    smtp      inet  n  -  n  -  1  postscreen
    smtpd     pass  -  -  n  -  -  smtpd
    dnsblog   unix  -  -  n  -  0  dnsblog
    tlsproxy  unix  -  -  n  -  0  tlsproxy    (not yet in Postel)

DESCRIPTION
    One process accepts every SMTP connection, screens the client, and
    hands a client that passes to an smtpd process through the pass
    service private/$smtpd_service_name (the client's socket travels with
    SCM_RIGHTS; smtpd then talks to the client as if it had accepted it).

    In order:
      1. postscreen_access_list: permit_mynetworks and cidr:/... style
         tables answering permit, reject or dunno.  permit: ALLOWLISTED,
         hand off at once.  reject: DENYLISTED, then
         postscreen_denylist_action.
      2. the temporary allowlist (postscreen_cache_map): a client that
         passed recently is handed off at once (PASS OLD).
      3. before-220 tests, together: DNSBL queries to dnsblog(8) for each
         postscreen_dnsbl_sites item start at once; postscreen sends the
         first line of a multi-line greeting ("220-$postscreen_greet_banner")
         and waits postscreen_greet_wait for the client to talk out of turn
         (PREGREET: RFC 5321 4.3.1 says the client waits for the greeting).
         Then the DNSBL score is compared with postscreen_dnsbl_threshold.
      4. a client that passed is added to the cache (PASS NEW) and handed
         off; smtpd's "220 ..." greeting completes the multi-line reply.

    A failed test applies its action: ignore (note it, hand off, test again
    next time), enforce (talk to the client with a built-in dummy SMTP
    engine that rejects every RCPT TO with 550 and logs the sender and
    recipient, then hang up) or drop (a 521 reply and hang up).

    XXX after-220 tests (pipelining, non-SMTP command, bare newline),
    postscreen_dnsbl_reply_map, STARTTLS through tlsproxy, and
    postscreen_upstream_proxy_protocol are not implemented yet.

DIAGNOSTICS
    CONNECT from [192.0.2.1]:5678 to [192.0.2.25]:25
    ALLOWLISTED [192.0.2.1]:5678 / DENYLISTED [192.0.2.1]:5678
    PASS NEW [192.0.2.1]:5678 / PASS OLD [192.0.2.1]:5678
    PREGREET 11 after 0.03 from [192.0.2.1]:5678: EHLO zombie\\r\\n
    DNSBL rank 3 for [192.0.2.1]:5678
    NOQUEUE: reject: RCPT from [192.0.2.1]:5678: 550 5.7.1 Service unavailable;
      client [192.0.2.1] blocked using zen.example; from=<a@b>, to=<c@d>,
      proto=ESMTP, helo=<zombie>
    COMMAND COUNT LIMIT from [..]:.. / COMMAND TIME LIMIT from [..]:..
    DISCONNECT [192.0.2.1]:5678

SEE ALSO
    smtpd(8), dnsblog(8), anvil(8), docs/postscreen.md

CONFIGURATION PARAMETERS
    postscreen_access_list (permit_mynetworks)
    postscreen_denylist_action (ignore)     ignore, enforce or drop
    postscreen_greet_wait (6s)              pregreet test duration
    postscreen_greet_banner ($smtpd_banner) teaser line; empty: none
    postscreen_greet_action (ignore)
    postscreen_greet_ttl (1d)               how long a pregreet pass is valid
    postscreen_dnsbl_sites (empty)          domain[=filter][*weight], ...
    postscreen_dnsbl_threshold (1)
    postscreen_dnsbl_action (ignore)
    postscreen_dnsbl_timeout (10s)
    postscreen_dnsbl_max_ttl (1h)           how long a DNSBL pass is valid
    postscreen_cache_map (btree:$data_directory/postscreen_cache)
    postscreen_cache_retention_time (7d)
    postscreen_command_count_limit (20)     dummy engine: commands per session
    postscreen_command_time_limit (300s)    dummy engine: time per command
    dnsblog_service_name (dnsblog), smtpd_service_name (smtpd)
    mynetworks, myhostname, smtpd_banner
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from dataclasses import dataclass, field

from postel import log
from postel.ipc.attr import AttrError, encode, read_attrs
from postel.ipc.client import ServiceUnavailable, connect_service, service_path
from postel.ipc.skeleton import ServiceContext, multi_server_main
from postel.postscreen.cache import PassCache
from postel.postscreen.dnsbl import DnsblSite, SiteError, parse_sites
from postel.postscreen.dnsbl import score as dnsbl_score
from postel.protocol.replies import Reply
from postel.tables import TableError, open_table

ACTIONS = ("ignore", "enforce", "drop")

R550_PREGREET = Reply(550, "5.5.1", "Protocol error")
R521_PREGREET = Reply(521, "5.5.1", "Protocol error")
R550_BLOCKED = Reply(550, "5.7.1", "Service unavailable; client [{addr}] blocked using {site}")
R521_BLOCKED = Reply(521, "5.7.1", "Service unavailable; client [{addr}] blocked using {site}")
R421_BUSY = Reply(421, "4.3.2", "All server ports are busy")
R421_TOO_MANY = Reply(421, "4.7.0", "{host} Error: too many commands")
R421_TIMEOUT = Reply(421, "4.4.2", "{host} Error: timeout exceeded")
R250_OK = Reply(250, "2.0.0", "Ok")
R221_BYE = Reply(221, "2.0.0", "Bye")
R554_NO_RCPT = Reply(554, "5.5.1", "Error: no valid recipients")
R502_UNKNOWN = Reply(502, "5.5.2", "Error: command not recognized")


@dataclass(slots=True)
class Settings:
    """Per-process postscreen settings."""

    cfg: object
    queue_directory: str
    myhostname: str
    access_list: list[str]
    mynetworks: list
    denylist_action: str
    greet_wait: float
    greet_banner: str
    greet_action: str
    greet_ttl: float
    dnsbl_sites: list[DnsblSite]
    dnsbl_threshold: int
    dnsbl_action: str
    dnsbl_timeout: float
    dnsbl_ttl: float
    command_count_limit: int
    command_time_limit: float
    dnsblog_endpoint: str
    smtpd_endpoint: str
    cache: PassCache
    tables: dict = field(default_factory=dict)


def _networks(items: list[str]) -> list:
    """_networks - the literal networks of a mynetworks-style list."""
    out = []
    for item in items:
        text = item.strip().replace("[", "").replace("]", "")
        try:
            out.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            continue
    return out


def _in_networks(addr: str, nets: list) -> bool:
    """_in_networks - is addr inside one of the networks?"""
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    return any(ip.version == n.version and ip in n for n in nets)


def _action(cfg, name: str) -> str:
    """_action - an ignore/enforce/drop parameter; a bad value is fatal."""
    value = cfg.get(name).strip().lower()
    if value not in ACTIONS:
        log.fatal("%s: unknown action %r (ignore, enforce or drop)", name, value)
    return value


def _time(cfg, name: str, default: float) -> float:
    """_time - a time parameter declared as text (postscreen_dnsbl_max_ttl)."""
    try:
        return float(cfg.get_time(name))
    except (KeyError, ValueError):
        return default


def build_settings(ctx: ServiceContext) -> Settings:
    """build_settings - read postscreen's parameters once."""
    cfg = ctx.cfg
    try:
        sites = parse_sites(cfg.get("postscreen_dnsbl_sites"))
    except SiteError as exc:
        log.fatal("%s", exc)
    return Settings(
        cfg=cfg, queue_directory=ctx.queue_directory, myhostname=cfg.get("myhostname"),
        access_list=cfg.get_list("postscreen_access_list"),
        mynetworks=_networks(cfg.get_list("mynetworks")),
        denylist_action=_action(cfg, "postscreen_denylist_action"),
        greet_wait=cfg.get_time("postscreen_greet_wait"),
        greet_banner=cfg.get("postscreen_greet_banner"),
        greet_action=_action(cfg, "postscreen_greet_action"),
        greet_ttl=cfg.get_time("postscreen_greet_ttl"),
        dnsbl_sites=sites, dnsbl_threshold=cfg.get_int("postscreen_dnsbl_threshold"),
        dnsbl_action=_action(cfg, "postscreen_dnsbl_action"),
        dnsbl_timeout=cfg.get_time("postscreen_dnsbl_timeout"),
        dnsbl_ttl=_time(cfg, "postscreen_dnsbl_max_ttl", 3600.0),
        command_count_limit=cfg.get_int("postscreen_command_count_limit"),
        command_time_limit=cfg.get_time("postscreen_command_time_limit"),
        dnsblog_endpoint="private/" + cfg.get("dnsblog_service_name"),
        smtpd_endpoint="private/" + cfg.get("smtpd_service_name"),
        cache=PassCache.open(cfg.get("postscreen_cache_map")),
    )


def post_init(ctx: ServiceContext) -> None:
    """post_init - settings, and the cache cleaned of long-expired entries."""
    st = ctx.state["postscreen"] = build_settings(ctx)
    st.cache.cleanup(time.time(), ctx.cfg.get_time("postscreen_cache_retention_time"))


def access_verdict(st: Settings, addr: str) -> str:
    """access_verdict - "permit", "reject" or "dunno" from postscreen_access_list."""
    for item in st.access_list:
        if item == "permit_mynetworks":
            if _in_networks(addr, st.mynetworks):
                return "permit"
            continue
        if ":" not in item:
            log.warning("postscreen_access_list: unknown item %r: ignored", item)
            continue
        try:
            table = st.tables.get(item) or st.tables.setdefault(item, open_table(item, cfg=st.cfg))
            value = table.lookup(addr)
        except (TableError, OSError) as exc:
            log.warning("postscreen_access_list %s: %s", item, exc)
            continue
        if value is None:
            continue
        word = value.split()[0].lower() if value.split() else ""
        if word in ("permit", "reject"):
            return word
        if word != "dunno":
            log.warning("postscreen_access_list %s: bad result %r for %s", item, value, addr)
    return "dunno"


async def dnsbl_query(st: Settings, domain: str, addr: str) -> list[str]:
    """dnsbl_query - ask dnsblog whether domain lists addr; the A records."""
    writer = None
    try:
        reader, writer = await connect_service(st.queue_directory, st.dnsblog_endpoint,
                                               st.dnsbl_timeout, retry_for=2.0)
        writer.write(encode({"rbl_domain": domain, "address": addr, "id": "1"}))
        await writer.drain()
        reply = await read_attrs(reader, timeout=st.dnsbl_timeout)
    except ServiceUnavailable as exc:
        log.warning("%s", exc)
        return []
    except (OSError, EOFError, TimeoutError, AttrError) as exc:
        log.warning("dnsblog query for %s: %s", domain, exc or type(exc).__name__)
        return []
    finally:
        if writer is not None:
            writer.close()
    return [r for r in (reply.get("result") or "").split(",") if r]


def _printable(data: bytes) -> str:
    """_printable - client bytes for the log, with CR/LF spelled out as Postfix does."""
    text = data[:100].decode("latin-1")
    out = []
    for ch in text:
        if ch == "\r":
            out.append("\\r")
        elif ch == "\n":
            out.append("\\n")
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append("?")
    return "".join(out)


class Screen:
    """Screen - one client connection from CONNECT to hand-off or DISCONNECT."""

    def __init__(self, st: Settings, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 ctx: ServiceContext) -> None:
        self.st, self.reader, self.writer, self.ctx = st, reader, writer, ctx
        peer = ctx.peer_addr(writer) or ("0.0.0.0", 0)
        local = ctx.local_addr(writer) or ("0.0.0.0", 0)
        self.addr = peer[0][7:] if peer[0].startswith("::ffff:") else peer[0]
        self.client = f"[{self.addr}]:{peer[1]}"
        self.local = f"[{local[0]}]:{local[1]}"
        self.teaser_sent = False

    async def send(self, reply: Reply) -> None:
        """send - write one reply."""
        self.writer.write(reply.to_bytes())
        await self.writer.drain()

    async def run(self) -> None:
        """run - screen the client, then hand off or hang up."""
        st = self.st
        log.info("CONNECT from %s to %s", self.client, self.local)
        verdict = access_verdict(st, self.addr)
        if verdict == "permit":
            log.info("ALLOWLISTED %s", self.client)
            return await self.hand_off()
        if verdict == "reject":
            log.info("DENYLISTED %s", self.client)
            if st.denylist_action != "ignore":
                return await self.punish(st.denylist_action, R550_BLOCKED, R521_BLOCKED,
                                         "postscreen_access_list")
        elif st.cache.valid(self.addr, time.time()):
            log.info("PASS OLD %s", self.client)
            return await self.hand_off()
        await self.before_220()

    async def before_220(self) -> None:
        """before_220 - the pregreet test and the DNSBL score, side by side."""
        st = self.st
        domains = sorted({s.domain for s in st.dnsbl_sites})
        lookups = {d: asyncio.ensure_future(dnsbl_query(st, d, self.addr)) for d in domains}
        started = time.monotonic()
        if st.greet_banner:
            self.writer.write(f"220-{st.greet_banner}\r\n".encode("utf-8", "replace"))
            await self.writer.drain()
            self.teaser_sent = True
        pregreet = b""
        try:
            pregreet = await asyncio.wait_for(self.reader.read(4096), st.greet_wait)
            if not pregreet:
                log.info("HANGUP after %.2g from %s in tests before SMTP handshake",
                         time.monotonic() - started, self.client)
                return await self.cancel(lookups)
        except asyncio.TimeoutError:
            pass
        failed = False
        if pregreet:
            log.info("PREGREET %d after %.2g from %s: %s", len(pregreet),
                     time.monotonic() - started, self.client, _printable(pregreet))
            if st.greet_action != "ignore":
                await self.cancel(lookups)
                return await self.punish(st.greet_action, R550_PREGREET, R521_PREGREET, "",
                                         pending=pregreet)
            failed = True
        results: dict[str, list[str]] = {}
        if lookups:
            done, pending = await asyncio.wait(lookups.values(), timeout=st.dnsbl_timeout)
            for d, task in lookups.items():
                results[d] = task.result() if task in done else []
            await self.cancel(lookups)
        rank, site = dnsbl_score(st.dnsbl_sites, results)
        if st.dnsbl_sites and rank >= st.dnsbl_threshold:
            log.info("DNSBL rank %d for %s", rank, self.client)
            if st.dnsbl_action != "ignore":
                return await self.punish(st.dnsbl_action, R550_BLOCKED, R521_BLOCKED, site)
            failed = True
        if not failed:
            log.info("PASS NEW %s", self.client)
            ttl = min(st.greet_ttl, st.dnsbl_ttl) if st.dnsbl_sites else st.greet_ttl
            st.cache.add(self.addr, time.time() + ttl)
        await self.hand_off()

    @staticmethod
    async def cancel(lookups: dict[str, asyncio.Future]) -> None:
        """cancel - stop DNSBL queries that are no longer needed."""
        for task in lookups.values():
            task.cancel()

    async def hand_off(self) -> None:
        """hand_off - pass the client socket to smtpd (SCM_RIGHTS)."""
        st = self.st
        sock = self.writer.get_extra_info("socket")
        path = service_path(st.queue_directory, st.smtpd_endpoint)
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as ctl:
                ctl.settimeout(10)
                ctl.connect(path)
                socket.send_fds(ctl, [b"x"], [sock.fileno()])
        except OSError as exc:
            log.warning("cannot connect to service %s: %s", st.smtpd_endpoint,
                        exc.strerror or exc)
            await self.send(R421_BUSY)
            log.info("DISCONNECT %s", self.client)

    async def punish(self, action: str, enforce: Reply, drop: Reply, site: str,
                     pending: bytes = b"") -> None:
        """punish - enforce (dummy SMTP, 550 at RCPT) or drop (521) a failed client."""
        if action == "drop":
            await self.send(drop.format(addr=self.addr, site=site))
        else:
            await self.dummy_smtp(enforce.format(addr=self.addr, site=site), pending)
        log.info("DISCONNECT %s", self.client)

    async def read_line(self, pending: bytearray) -> bytes:
        """read_line - the next command line, first from what the client sent early."""
        while b"\n" not in pending:
            data = await asyncio.wait_for(self.reader.read(4096), self.st.command_time_limit)
            if not data:
                return b""
            pending += data
            if len(pending) > 4096:
                raise ValueError("command line too long")
        line, _, rest = bytes(pending).partition(b"\n")
        pending[:] = rest
        return line + b"\n"

    async def dummy_smtp(self, reject: Reply, early: bytes = b"") -> None:
        """dummy_smtp - a minimal SMTP server that rejects every recipient."""
        st = self.st
        pending = bytearray(early)      # a pregreeting client's commands are answered too
        self.writer.write(f"220 {st.myhostname} ESMTP\r\n".encode())
        await self.writer.drain()
        helo, sender, proto, count = "", "", "SMTP", 0
        while True:
            try:
                line = await self.read_line(pending)
            except asyncio.TimeoutError:
                log.info("COMMAND TIME LIMIT from %s", self.client)
                await self.send(R421_TIMEOUT.format(host=st.myhostname))
                return
            except (ValueError, ConnectionError):
                return
            if not line:
                return
            count += 1
            if count > st.command_count_limit:
                log.info("COMMAND COUNT LIMIT from %s", self.client)
                await self.send(R421_TOO_MANY.format(host=st.myhostname))
                return
            text = line.decode("utf-8", "replace").strip()
            verb, _, arg = text.partition(" ")
            verb = verb.upper()
            if verb in ("HELO", "EHLO"):
                helo, proto = arg.strip(), "ESMTP" if verb == "EHLO" else "SMTP"
                await self.send(Reply(250, "", st.myhostname))
            elif verb == "MAIL":
                sender = arg.partition(":")[2].strip().split(" ")[0].strip("<>")
                await self.send(R250_OK)
            elif verb == "RCPT":
                rcpt = arg.partition(":")[2].strip().split(" ")[0].strip("<>")
                log.info("NOQUEUE: reject: RCPT from %s: %s; from=<%s>, to=<%s>, proto=%s, "
                         "helo=<%s>", self.client, str(reject), sender, rcpt, proto, helo)
                await self.send(reject)
            elif verb in ("DATA", "BDAT"):
                await self.send(R554_NO_RCPT)
            elif verb in ("RSET", "NOOP"):
                await self.send(R250_OK)
            elif verb == "QUIT":
                await self.send(R221_BYE)
                return
            else:
                await self.send(R502_UNKNOWN)


async def serve_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       ctx: ServiceContext) -> None:
    """serve_client - screen one SMTP client."""
    st = ctx.state.get("postscreen")
    if st is None:
        st = ctx.state["postscreen"] = build_settings(ctx)
    try:
        await Screen(st, reader, writer, ctx).run()
    except (ConnectionError, OSError) as exc:
        log.info("lost connection from %s: %s", ctx.peer_addr(writer), exc)


def main(argv: list[str]) -> int:
    """main - the postscreen daemon."""
    return multi_server_main("postscreen", argv, serve_client, post_init=post_init)
