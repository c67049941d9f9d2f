"""netmap - socketmap: and tcp: client tables

SYNOPSIS
    socketmap:inet:host:port:name
    socketmap:unix:/path/socket:name
    tcp:host:port

DESCRIPTION
    socketmap: speaks the Sendmail 8 socketmap protocol: the request is the
    netstring "NAME KEY" (a netstring is "LENGTH:DATA,"), the reply one of
    the netstrings "OK value", "NOTFOUND ", "TEMP reason", "TIMEOUT reason"
    or "PERM reason".  TEMP, TIMEOUT and a broken connection are temporary
    failures (TableUnavailable); PERM is a lookup error reported the same
    way.

    tcp: speaks tcp_table(5): the request is "get KEY\\n" with "%", space,
    and non-printable characters of KEY written as %XX; the reply is
    "200 value" (found, value %XX-decoded), "500 text" (not found) or
    "400 text" (temporary failure).

    A connection is kept open between lookups and opened again once when it
    turns out to be closed.  Every socket operation has a time limit.

    Keys are not folded (the server decides), unlike most fixed-key tables.
"""

from __future__ import annotations

import socket
import urllib.parse

from postel.tables import LookupFlags, Table, TableError, TableUnavailable

TIMEOUT = 10.0
MAX_REPLY = 100000


def netstring(data: bytes) -> bytes:
    """netstring - data encoded as a netstring."""
    return b"%d:%s," % (len(data), data)


class _Connection:
    """_Connection - a socket to a lookup server, reopened on demand."""

    def __init__(self, family: int, address, label: str) -> None:
        self.family, self.address, self.label = family, address, label
        self.sock: socket.socket | None = None
        self.buf = b""

    def _open(self) -> socket.socket:
        if self.sock is None:
            try:
                if self.family == socket.AF_UNIX:
                    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    sock.settimeout(TIMEOUT)
                    sock.connect(self.address)
                else:
                    sock = socket.create_connection(self.address, timeout=TIMEOUT)
            except OSError as exc:
                raise TableUnavailable(f"{self.label}: connect: {exc.strerror or exc}") from None
            self.sock, self.buf = sock, b""
        return self.sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def exchange(self, request: bytes, read_reply) -> bytes:
        """exchange - send request, read a reply; retry once on a stale connection."""
        for attempt in (1, 2):
            fresh = self.sock is None
            sock = self._open()
            try:
                sock.sendall(request)
                return read_reply(self)
            except (OSError, EOFError) as exc:
                self.close()
                if fresh or attempt == 2:
                    raise TableUnavailable(f"{self.label}: lookup failed: {exc}") from None
        raise TableUnavailable(f"{self.label}: lookup failed")

    def recv_more(self) -> None:
        """recv_more - read more bytes into the buffer."""
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("connection closed by server")
        self.buf += data
        if len(self.buf) > MAX_REPLY:
            raise EOFError("reply too long")


def _read_netstring(conn: _Connection) -> bytes:
    while b":" not in conn.buf:
        conn.recv_more()
    size, _, rest = conn.buf.partition(b":")
    if not size.isdigit() or int(size) > MAX_REPLY:
        raise EOFError("bad netstring length")
    length = int(size)
    while len(rest) < length + 1:
        conn.recv_more()
        size, _, rest = conn.buf.partition(b":")
    if rest[length:length + 1] != b",":
        raise EOFError("bad netstring terminator")
    conn.buf = rest[length + 1:]
    return rest[:length]


def _read_line(conn: _Connection) -> bytes:
    while b"\n" not in conn.buf:
        conn.recv_more()
    line, _, conn.buf = conn.buf.partition(b"\n")
    return line.rstrip(b"\r")


def _endpoint(text: str, label: str):
    """_endpoint - (family, address) of "inet:host:port" or "unix:path"."""
    kind, _, rest = text.partition(":")
    if kind == "unix" and rest:
        return socket.AF_UNIX, rest
    if kind == "inet" or kind not in ("unix",):
        hostport = rest if kind == "inet" else text
        host, _, port = hostport.rpartition(":")
        host = host.strip("[]")
        if not host or not port:
            raise TableError(f"{label}: need host:port")
        return socket.AF_INET, (host, port)
    raise TableError(f"{label}: bad endpoint")


class SocketmapTable(Table):
    """SocketmapTable - a Sendmail socketmap server."""

    type_name = "socketmap"
    fixed_keys = False

    def __init__(self, name: str, flags: LookupFlags = LookupFlags.FOLD_FIX) -> None:
        super().__init__(name, flags)
        endpoint, sep, self.mapname = name.rpartition(":")
        if not sep or not endpoint or not self.mapname:
            raise TableError(f'socketmap: "{name}": need inet:host:port:name or '
                             "unix:pathname:name")
        family, address = _endpoint(endpoint, self.spec)
        self.conn = _Connection(family, address, self.spec)

    def get(self, key: str) -> str | None:
        """get - ask the server; None for NOTFOUND."""
        request = netstring(f"{self.mapname} {key}".encode("utf-8", "surrogateescape"))
        reply = self.conn.exchange(request, _read_netstring).decode("utf-8", "surrogateescape")
        status, _, value = reply.partition(" ")
        if status == "OK":
            return value
        if status == "NOTFOUND":
            return None
        raise TableUnavailable(f"{self.spec}: {status} {value}".rstrip())

    def close(self) -> None:
        """close - drop the connection."""
        self.conn.close()


def tcp_encode(key: str) -> str:
    """tcp_encode - key with %, whitespace and non-printables as %XX."""
    out = []
    for byte in key.encode("utf-8", "surrogateescape"):
        ch = chr(byte)
        out.append(ch if 32 < byte < 127 and ch != "%" else f"%{byte:02X}")
    return "".join(out)


class TcpTable(Table):
    """TcpTable - a tcp_table(5) server."""

    type_name = "tcp"
    fixed_keys = False

    def __init__(self, name: str, flags: LookupFlags = LookupFlags.FOLD_FIX) -> None:
        super().__init__(name, flags)
        family, address = _endpoint(name if name.startswith(("inet:", "unix:")) else
                                    "inet:" + name, self.spec)
        self.conn = _Connection(family, address, self.spec)

    def get(self, key: str) -> str | None:
        """get - ask the server; None for a 500 reply."""
        request = f"get {tcp_encode(key)}\n".encode("ascii")
        line = self.conn.exchange(request, _read_line).decode("utf-8", "surrogateescape")
        code, _, text = line.partition(" ")
        if code == "200":
            return urllib.parse.unquote(text)
        if code == "500":
            return None
        raise TableUnavailable(f"{self.spec}: {line}")

    def close(self) -> None:
        """close - drop the connection."""
        self.conn.close()


def register(register_type) -> None:
    """register - socketmap: and tcp:."""
    register_type("socketmap", SocketmapTable)
    register_type("tcp", TcpTable)
