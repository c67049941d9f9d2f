"""qmqpd - Postel QMQP server

SYNOPSIS
    qmqpd [generic daemon options]
    (master.cf: 628 inet n - n - - qmqpd)

DESCRIPTION
    qmqpd(8) receives one message per connection with the Quick Mail
    Queuing Protocol and hands it to cleanup(8), as Postfix's qmqpd does
    for the clients of qmail-qmqpc and of ezmlm.

    The request is one netstring ("LENGTH:DATA,") whose DATA is the
    netstring of the message, the netstring of the envelope sender, and one
    netstring per recipient.  The reply is one netstring whose first byte
    says what happened:

        K   the message was queued ("KOk: queued as QID")
        Z   temporary failure, try again later
        D   permanent failure, do not try again

    The message is read into a spool (memory, then a temporary file above
    1 MB), because QMQP sends the content before the envelope and cleanup
    wants the envelope first.  cleanup gets the envelope with protocol=QMQP
    and the client's name and address, and the content preceded by
    "Received: from NAME (NAME [ADDR]) by $myhostname ($mail_name) with
    QMQP id QID ...".

    Limits on everything the client controls: every length field at most
    10 digits; the message at most $message_size_limit bytes ("D" with
    5.3.4 otherwise); at most RCPT_LIMIT recipients of at most
    ADDRESS_LIMIT bytes each; every read within $qmqpd_timeout seconds.
    Malformed input is answered with "D" (when the connection still
    works) and logged.  A negative reply waits $qmqpd_error_delay first.

SECURITY
    Only clients in $qmqpd_authorized_clients may submit (QMQP has no
    authentication); the list is empty by default, so nobody may until the
    administrator says so.  Others get "DError: Unauthorized client".

STANDARDS
    QMQP: https://cr.yp.to/proto/qmqp.html; netstrings:
    https://cr.yp.to/proto/netstrings.txt

DIAGNOSTICS
    connect from NAME[ADDR]
    QID: client=NAME[ADDR]
    warning: NAME[ADDR]: unauthorized client
    warning: NAME[ADDR]: malformed QMQP request: REASON
    disconnect from NAME[ADDR]

CONFIGURATION PARAMETERS
    qmqpd_authorized_clients (empty)  client addresses/networks allowed to
                                      submit: address, net/mask, [ipv6]/mask,
                                      /file/name (one entry a line)
    qmqpd_timeout (300s)              time limit for each read or write
    qmqpd_error_delay (1s)            pause before a negative reply
    qmqpd_client_port_logging (no)    log the client port in client=
    message_size_limit (10240000)     largest message accepted, in bytes
    myhostname, mail_name             for the Received: header
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import sys
import tempfile

from postel import log
from postel.ipc.skeleton import ServiceContext, multi_server_main
from postel.mail.headers import received_header

CLEANUP_ENDPOINT = "public/cleanup"     # master.cf: cleanup unix n ...
LENGTH_DIGITS = 10            # netstring length field bound
RCPT_LIMIT = 10000            # recipients per request
ADDRESS_LIMIT = 2048          # bytes per sender/recipient
SPOOL_MEMORY = 1024 * 1024    # spool content in memory up to this size
READ_CHUNK = 64 * 1024

R_OK = b"K"
R_TEMP = b"Z"
R_HARD = b"D"


class QmqpError(Exception):
    """QmqpError - a malformed request: reason for the log and the client."""


class NetworkList:
    """NetworkList - mynetworks-style list of addresses and networks."""

    def __init__(self, items: list[str]) -> None:
        self.nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self.bad: list[str] = []
        for item in items:
            self._add(item)

    def _add(self, item: str) -> None:
        """_add - one list element (a /file/name adds its lines)."""
        if item.startswith("/"):
            try:
                with open(item, encoding="utf-8", errors="replace") as f:
                    for line in f:
                        for word in line.split("#", 1)[0].replace(",", " ").split():
                            self._add(word)
            except OSError as exc:
                self.bad.append(f"{item}: {exc.strerror}")
            return
        text = item
        if text.startswith("["):
            host, _, rest = text[1:].partition("]")
            text = host + rest
        try:
            self.nets.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            self.bad.append(item)

    def match(self, addr: str) -> bool:
        """match - is addr in one of the networks?"""
        try:
            ip = ipaddress.ip_address(addr.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip.version == n.version and ip in n for n in self.nets)


class Qmqpd:
    """Qmqpd - per-process settings and the cleanup client."""

    def __init__(self, cfg, queue_directory: str, cleanup=None) -> None:
        from postel.config.parser import split_list
        self.cfg = cfg
        self.timeout = float(cfg.get_time("qmqpd_timeout"))
        self.error_delay = float(cfg.get_time("qmqpd_error_delay"))
        self.port_logging = cfg.get_bool("qmqpd_client_port_logging")
        self.size_limit = cfg.get_size("message_size_limit")
        self.myhostname = cfg.get("myhostname")
        self.mail_name = cfg.get("mail_name")
        self.authorized = NetworkList(split_list(cfg.get("qmqpd_authorized_clients")))
        for bad in self.authorized.bad:
            log.warning("qmqpd_authorized_clients: bad network specification: %s", bad)
        if cleanup is None:
            from postel.ipc.cleanup_client import CleanupClient
            cleanup = CleanupClient(queue_directory, CLEANUP_ENDPOINT)
        self.cleanup = cleanup


class Request:
    """Request - what a QMQP client sent: spooled message, sender, recipients."""

    def __init__(self) -> None:
        self.spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY)
        self.size = 0
        self.sender = ""
        self.recipients: list[str] = []

    def close(self) -> None:
        self.spool.close()


async def _read_exactly(reader: asyncio.StreamReader, n: int, timeout: float) -> bytes:
    """_read_exactly - n bytes within timeout (QmqpError on EOF)."""
    try:
        return await asyncio.wait_for(reader.readexactly(n), timeout)
    except asyncio.IncompleteReadError:
        raise QmqpError("unexpected end of input") from None


async def read_length(reader: asyncio.StreamReader, timeout: float) -> int:
    """read_length - a netstring length up to ":"; at most LENGTH_DIGITS digits."""
    digits = b""
    while True:
        c = await _read_exactly(reader, 1, timeout)
        if c == b":":
            break
        if not c.isdigit() or len(digits) >= LENGTH_DIGITS:
            raise QmqpError("bad netstring length")
        digits += c
    if not digits or (len(digits) > 1 and digits[0:1] == b"0"):
        raise QmqpError("bad netstring length")
    return int(digits)


async def _expect_comma(reader: asyncio.StreamReader, timeout: float) -> None:
    if await _read_exactly(reader, 1, timeout) != b",":
        raise QmqpError("netstring does not end with ','")


async def read_request(reader: asyncio.StreamReader, size_limit: int,
                       timeout: float) -> Request:
    """read_request - parse one QMQP request; QmqpError/SizeError on bad input."""
    total = await read_length(reader, timeout)
    req = Request()
    try:
        msg_len = await read_length(reader, timeout)
        if size_limit and msg_len > size_limit:
            raise SizeError(msg_len)
        used = len(str(msg_len)) + 2 + msg_len
        if used > total:
            raise QmqpError("message netstring longer than the request")
        left = msg_len
        while left:
            chunk = await _read_exactly(reader, min(READ_CHUNK, left), timeout)
            req.spool.write(chunk)
            left -= len(chunk)
        req.size = msg_len
        await _expect_comma(reader, timeout)
        fields: list[str] = []
        while used < total:
            n = await read_length(reader, timeout)
            used += len(str(n)) + 2 + n
            if n > ADDRESS_LIMIT or used > total:
                raise QmqpError("address netstring too long")
            if len(fields) > RCPT_LIMIT:
                raise QmqpError(f"more than {RCPT_LIMIT} recipients")
            fields.append((await _read_exactly(reader, n, timeout)).decode("utf-8",
                                                                         "surrogateescape"))
            await _expect_comma(reader, timeout)
        await _expect_comma(reader, timeout)
        if not fields:
            raise QmqpError("no sender")
        if len(fields) < 2:
            raise QmqpError("no recipients")
        req.sender, req.recipients = fields[0], fields[1:]
        req.spool.seek(0)
        return req
    except BaseException:
        req.close()
        raise


class SizeError(Exception):
    """SizeError - the message is larger than message_size_limit."""


def reply_netstring(code: bytes, text: str) -> bytes:
    """reply_netstring - a QMQP reply: K, Z or D followed by text."""
    data = code + text.encode("utf-8", "replace")
    return b"%d:%s," % (len(data), data)


async def _client_name(addr: str) -> str:
    """_client_name - the client's verified-or-not reverse name, "unknown" if none."""
    loop = asyncio.get_running_loop()
    try:
        name, _ = await asyncio.wait_for(loop.getnameinfo((addr, 0), socket.NI_NAMEREQD), 10)
    except (OSError, asyncio.TimeoutError, socket.gaierror):
        return "unknown"
    return name or "unknown"


async def serve_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       ctx: ServiceContext) -> None:
    """serve_client - one QMQP connection: one request, one reply."""
    svc = ctx.state.get("qmqpd")
    if svc is None:
        svc = ctx.state["qmqpd"] = Qmqpd(ctx.cfg, ctx.queue_directory)
    peer = ctx.peer_addr(writer) or ("127.0.0.1", 0)
    addr, port = peer
    if addr.startswith("::ffff:"):
        addr = addr[7:]
    name = await _client_name(addr)
    client = f"{name}[{addr}]"
    log.info("connect from %s", client)
    try:
        code, text = await _session(svc, reader, addr, port, name, client)
        if code != R_OK and svc.error_delay > 0:
            await asyncio.sleep(svc.error_delay)
        writer.write(reply_netstring(code, text))
        with contextlib.suppress(OSError, ConnectionError, asyncio.TimeoutError):
            await asyncio.wait_for(writer.drain(), svc.timeout)
    finally:
        log.info("disconnect from %s", client)


async def _session(svc: Qmqpd, reader, addr: str, port: int, name: str,
                   client: str) -> tuple[bytes, str]:
    """_session - (reply code, text) for one connection."""
    if not svc.authorized.match(addr):
        log.warning("%s: unauthorized client", client)
        return R_HARD, "Error: Unauthorized client"
    try:
        req = await read_request(reader, svc.size_limit, svc.timeout)
    except SizeError:
        log.warning("%s: message too large", client)
        return R_HARD, "Error: message too large (5.3.4)"
    except asyncio.TimeoutError:
        log.warning("%s: timeout while reading the QMQP request", client)
        return R_TEMP, "Error: timeout exceeded"
    except (QmqpError, UnicodeError) as exc:
        log.warning("%s: malformed QMQP request: %s", client, exc)
        return R_HARD, "Error: malformed request"
    except (OSError, ConnectionError) as exc:
        log.warning("%s: read error: %s", client, exc)
        return R_TEMP, "Error: read error"
    try:
        return await _submit(svc, req, addr, port, name, client)
    finally:
        req.close()


async def _submit(svc: Qmqpd, req: Request, addr: str, port: int, name: str,
                  client: str) -> tuple[bytes, str]:
    """_submit - the spooled request to cleanup."""
    from postel.ipc.cleanup_client import CleanupRefused
    from postel.ipc.client import ServiceUnavailable
    attrs = {"client_name": name, "reverse_client_name": name, "client_address": addr,
             "client_port": str(port), "protocol": "QMQP", "rewrite_context": "remote"}
    try:
        msg = await svc.cleanup.open()
    except CleanupRefused as exc:
        return _verdict(exc.result)
    except (ServiceUnavailable, OSError) as exc:
        log.warning("cleanup service unavailable: %s", exc)
        return R_TEMP, "Error: queue file write error"
    qid = msg.queue_id
    log.info("%s: client=%s%s", qid, client, f":{port}" if svc.port_logging else "")
    try:
        await msg.envelope(req.sender, req.recipients, attrs)
        hdr = received_header(helo=name, name=name, addr=addr, myhostname=svc.myhostname,
                              qid=qid, rcpts=req.recipients, protocol="QMQP",
                              mail_name=svc.mail_name)
        await msg.write(hdr.encode("utf-8", "surrogateescape") + b"\n")
        while True:
            chunk = await asyncio.to_thread(req.spool.read, READ_CHUNK)
            if not chunk:
                break
            await msg.write(chunk)
    except BaseException:
        with contextlib.suppress(Exception):
            await msg.abort()
        raise
    return _verdict(await msg.close())


def _verdict(result) -> tuple[bytes, str]:
    """_verdict - cleanup's answer as a QMQP reply."""
    if result.ok:
        return R_OK, f"Ok: queued as {result.queue_id}"
    text = f"Error: {result.reason or 'queue file write error'} ({result.dsn})"
    return (R_HARD if 500 <= result.status < 600 else R_TEMP), text


def main(argv: list[str] | None = None) -> int:
    """main - run the QMQP server."""
    argv = list(sys.argv if argv is None else argv)
    return multi_server_main("qmqpd", argv, serve_client)


if __name__ == "__main__":
    sys.exit(main())
