"""interfaces - the IP addresses this mail system answers on

SYNOPSIS
    from postel.trivial_rewrite.interfaces import own_addresses
    own_addresses(["all"], [])

DESCRIPTION
    The resolver treats user@[ipaddress] as local when ipaddress is one of
    $inet_interfaces or $proxy_interfaces (Postfix's own_inet_addr() and
    proxy_inet_addr()).  "all" means every address configured on the host's
    interfaces; "loopback-only" means 127.0.0.1 and ::1; other entries are
    IP addresses or host names (resolved once through the system resolver).

CONFIGURATION PARAMETERS
    inet_interfaces (all)     addresses the SMTP server listens on
    proxy_interfaces (empty)  addresses of a proxy or NAT in front of us
"""

from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_SIOCGIFADDR = 0x8915
LOOPBACK = frozenset({ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")})


def _ipv4_interface_addresses() -> set[IPAddress]:
    """_ipv4_interface_addresses - one IPv4 address per interface (Linux ioctl)."""
    found: set[IPAddress] = set()
    try:
        names = [name for _, name in socket.if_nameindex()]
    except OSError:
        return found
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for name in names:
            try:
                req = struct.pack("256s", name.encode()[:15])
                res = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, req)
            except OSError:
                continue
            found.add(ipaddress.ip_address(res[20:24]))
    return found


def _ipv6_interface_addresses() -> set[IPAddress]:
    """_ipv6_interface_addresses - addresses from /proc/net/if_inet6 (Linux)."""
    found: set[IPAddress] = set()
    try:
        with open("/proc/net/if_inet6", encoding="ascii") as fp:
            for line in fp:
                hexaddr = line.split()[0]
                found.add(ipaddress.ip_address(bytes.fromhex(hexaddr)))
    except (OSError, ValueError, IndexError):
        pass
    return found


def all_interface_addresses() -> frozenset[IPAddress]:
    """all_interface_addresses - every address configured on this host."""
    return frozenset(_ipv4_interface_addresses() | _ipv6_interface_addresses() | LOOPBACK)


def _resolve_entry(entry: str) -> set[IPAddress]:
    """_resolve_entry - one inet_interfaces entry as addresses."""
    entry = entry.strip().strip("[]")
    try:
        return {ipaddress.ip_address(entry)}
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(entry, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return set()
    return {ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos}


def own_addresses(inet_interfaces: list[str], proxy_interfaces: list[str]) -> frozenset[IPAddress]:
    """own_addresses - the union of inet_interfaces and proxy_interfaces addresses."""
    found: set[IPAddress] = set()
    for entry in inet_interfaces:
        low = entry.lower()
        if low == "all":
            found |= all_interface_addresses()
        elif low == "loopback-only":
            found |= LOOPBACK
        else:
            found |= _resolve_entry(entry)
    for entry in proxy_interfaces:
        found |= _resolve_entry(entry)
    return frozenset(found)
