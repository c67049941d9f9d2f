"""listeners - open the endpoints that master.cf entries listen on

SYNOPSIS
    from postel.master.listeners import endpoints, open_endpoint
    for ep in endpoints(entry, cfg): sock = open_endpoint(ep)

DESCRIPTION
    master opens every listening endpoint itself, before it forks; children
    inherit the descriptors.  The endpoint of an entry follows its type:

    inet        "host:port", "[ipv6]:port", or "port" alone, which means
                every address in $inet_interfaces ("all" = 0.0.0.0, plus ::
                when $inet_protocols includes ipv6; "loopback-only" =
                127.0.0.1).  Service names ("smtp") are looked up in
                /etc/services.  SO_REUSEADDR is set.
    unix        a stream socket $queue_directory/private/NAME (private
                column y) or public/NAME, mode 0666 (the directory mode
                protects private/).
    unix-dgram  the same, a datagram socket.
    fifo        a named pipe public/NAME (private/NAME when private),
                mode 0622, opened read-write so that it never reports EOF.
    pass        a stream socket like unix; a client connects to it and
                passes an already-accepted client connection with
                SCM_RIGHTS (postscreen's hand-off); the service's skeleton
                receives the descriptor and serves it as a client.

    Every descriptor is non-blocking and close-on-exec (master's fork+exec
    path moves the ones a child needs to fds 3..N itself).

CONFIGURATION PARAMETERS
    inet_interfaces (all)        addresses for an inet entry without host
    inet_protocols (all)         whether to add :: for "all"
    queue_directory              where private/ and public/ are
"""

from __future__ import annotations

import os
import socket
import stat
from dataclasses import dataclass

BACKLOG = 1024


class ListenError(Exception):
    """An endpoint could not be opened; str() says which and why."""


@dataclass(slots=True, frozen=True)
class Endpoint:
    """One address an entry listens on."""

    type: str                 # inet, unix, unix-dgram, fifo, pass
    address: str              # path, or host for inet
    port: int = 0
    family: int = 0

    def describe(self) -> str:
        """describe - the endpoint as written in log lines."""
        if self.type == "inet":
            host = f"[{self.address}]" if ":" in self.address else self.address
            return f"{host}:{self.port}"
        return self.address


def _port(text: str) -> int:
    """_port - a numeric port or a service name from /etc/services."""
    if text.isdigit():
        port = int(text)
        if 0 < port < 65536:
            return port
        raise ListenError(f"bad port number: {text}")
    try:
        return socket.getservbyname(text, "tcp")
    except OSError:
        raise ListenError(f"unknown service name: {text}") from None


def _split_inet(service: str) -> tuple[str | None, str]:
    """_split_inet - host (None = all interfaces) and port of an inet service."""
    if service.startswith("["):
        host, sep, port = service[1:].partition("]:")
        if not sep:
            raise ListenError(f"bad inet service: {service}")
        return host, port
    if ":" in service:
        host, _, port = service.rpartition(":")
        return host, port
    return None, service


def _interfaces(cfg) -> list[tuple[str, int]]:
    """_interfaces - (address, family) for $inet_interfaces."""
    names = cfg.get_list("inet_interfaces") or ["all"]
    protocols = {p.lower() for p in cfg.get_list("inet_protocols")} or {"all"}
    want6 = bool(protocols & {"all", "ipv6"}) and socket.has_ipv6
    want4 = bool(protocols & {"all", "ipv4"})
    out: list[tuple[str, int]] = []
    for name in names:
        low = name.lower()
        if low == "all":
            if want4:
                out.append(("0.0.0.0", socket.AF_INET))
            if want6:
                out.append(("::", socket.AF_INET6))
        elif low in ("loopback-only", "localhost"):
            if want4:
                out.append(("127.0.0.1", socket.AF_INET))
            if want6 and low == "loopback-only" and not want4:
                out.append(("::1", socket.AF_INET6))
        else:
            out.extend(_resolve(name))
    return out


def _resolve(host: str) -> list[tuple[str, int]]:
    """_resolve - numeric addresses of a host name or address literal."""
    host = host.strip("[]")
    try:
        infos = socket.getaddrinfo(host, None, 0, socket.SOCK_STREAM)
    except OSError as exc:
        raise ListenError(f"{host}: cannot resolve: {exc}") from None
    seen: list[tuple[str, int]] = []
    for fam, _t, _p, _c, addr in infos:
        item = (addr[0], fam)
        if item not in seen:
            seen.append(item)
    return seen


def endpoints(entry, cfg) -> list[Endpoint]:
    """endpoints - the endpoints one master.cf entry listens on."""
    if entry.type == "inet":
        host, port_text = _split_inet(entry.service)
        port = _port(port_text)
        addrs = _interfaces(cfg) if host is None or host in ("", "*") else _resolve(host)
        return [Endpoint("inet", a, port, fam) for a, fam in addrs]
    if entry.type in ("unix", "unix-dgram", "fifo", "pass"):
        if "/" in entry.service or entry.service in ("", ".", ".."):
            raise ListenError(f"bad service name: {entry.service}")
        sub = "private" if entry.private else "public"
        path = os.path.join(cfg.get("queue_directory"), sub, entry.service)
        return [Endpoint(entry.type, path)]
    raise ListenError(f"unknown service type: {entry.type}")


def _unlink_stale(path: str) -> None:
    """_unlink_stale - remove an old socket or FIFO, never a regular file."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISSOCK(st.st_mode) or stat.S_ISFIFO(st.st_mode):
        os.unlink(path)
    else:
        raise ListenError(f"{path}: exists and is not a socket or FIFO")


def open_endpoint(ep: Endpoint) -> socket.socket | int:
    """open_endpoint - a listening socket, or for a FIFO its descriptor."""
    try:
        if ep.type == "inet":
            return _open_inet(ep)
        _unlink_stale(ep.address)
        if ep.type == "fifo":
            os.mkfifo(ep.address, 0o622)
            os.chmod(ep.address, 0o622)
            return os.open(ep.address, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        kind = socket.SOCK_DGRAM if ep.type == "unix-dgram" else socket.SOCK_STREAM
        sock = socket.socket(socket.AF_UNIX, kind)
        try:
            sock.bind(ep.address)
            os.chmod(ep.address, 0o666)
            if kind == socket.SOCK_STREAM:
                sock.listen(BACKLOG)
        except BaseException:
            sock.close()
            raise
        sock.setblocking(False)
        return sock
    except OSError as exc:
        raise ListenError(f"{ep.describe()}: {exc.strerror or exc}") from None


def _open_inet(ep: Endpoint) -> socket.socket:
    """_open_inet - bind and listen on one TCP address."""
    sock = socket.socket(ep.family or socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if ep.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((ep.address, ep.port))
        sock.listen(BACKLOG)
    except BaseException:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def close_endpoint(ep: Endpoint, handle: socket.socket | int, unlink: bool = True) -> None:
    """close_endpoint - close a listener and remove its file name."""
    try:
        if isinstance(handle, int):
            os.close(handle)
        else:
            handle.close()
    except OSError:
        pass
    if unlink and ep.type != "inet":
        try:
            _unlink_stale(ep.address)
        except (OSError, ListenError):
            pass
