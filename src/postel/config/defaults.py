"""defaults - parameter defaults computed at run time

SYNOPSIS
    from postel.config.defaults import computed_default
    computed_default("myhostname", get)

DESCRIPTION
    Postfix computes a few defaults from the system; Postel does the same:

      myhostname   the host name; when it has no dot, the fully-qualified
                   name from the resolver, else the name + ".localdomain"
      mydomain     $myhostname without its first label ("localdomain" when
                   there is only one label)
      mynetworks   from mynetworks_style: "host" lists this machine's
                   addresses, "subnet" (default) the subnets of its
                   interfaces, "class" the whole class A/B/C networks
      mail_version the Postel version
"""

from __future__ import annotations

import fcntl
import functools
import ipaddress
import socket
import struct
from collections.abc import Callable

import postel

RELEASE_DATE = "20250101"
_SIOCGIFADDR = 0x8915
_SIOCGIFNETMASK = 0x891B


@functools.cache
def system_hostname() -> str:
    """system_hostname - the machine's name, fully qualified if possible."""
    name = socket.gethostname()
    if "." not in name:
        fqdn = socket.getfqdn(name)
        name = fqdn if "." in fqdn and not fqdn.startswith("localhost") else name + ".localdomain"
    return name.lower()


@functools.cache
def interface_networks() -> tuple[tuple[ipaddress.IPv4Interface | ipaddress.IPv6Interface, ...]]:
    """interface_networks - (address/prefix of each local interface,)."""
    found: list = []
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for _, ifname in socket.if_nameindex():
            req = struct.pack("256s", ifname.encode()[:15])
            try:
                addr = socket.inet_ntoa(fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, req)[20:24])
                mask = socket.inet_ntoa(fcntl.ioctl(sock.fileno(), _SIOCGIFNETMASK, req)[20:24])
            except OSError:
                continue
            found.append(ipaddress.IPv4Interface(f"{addr}/{mask}"))
    except OSError:
        pass
    finally:
        sock.close()
    try:
        with open("/proc/net/if_inet6") as f:
            for row in f:
                hexaddr, _, plen = row.split()[:3]
                addr = ipaddress.IPv6Address(bytes.fromhex(hexaddr))
                found.append(ipaddress.IPv6Interface(f"{addr}/{int(plen, 16)}"))
    except (OSError, ValueError):
        pass
    if not found:
        found = [ipaddress.IPv4Interface("127.0.0.1/8"), ipaddress.IPv6Interface("::1/128")]
    return tuple(found)


def _fmt(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    """_fmt - Postfix's notation: 10.0.0.0/8, [fe80::]/64."""
    if net.version == 6:
        return f"[{net.network_address}]/{net.prefixlen}"
    return str(net)


def mynetworks(style: str) -> str:
    """mynetworks - the default mynetworks for a mynetworks_style."""
    nets: list[str] = []
    for iface in interface_networks():
        if style == "host":
            net = ipaddress.ip_network(f"{iface.ip}/{iface.max_prefixlen}")
        elif style == "class" and iface.version == 4:
            first = int(iface.ip) >> 24
            plen = 8 if first < 128 else 16 if first < 192 else 24
            net = ipaddress.ip_network(f"{iface.ip}/{plen}", strict=False)
        else:
            net = iface.network
        text = _fmt(net)
        if text not in nets:
            nets.append(text)
    return " ".join(nets)


def computed_default(name: str, get: Callable[[str], str]) -> str:
    """computed_default - the run-time default of a COMPUTED parameter."""
    if name == "myhostname":
        return system_hostname()
    if name == "mydomain":
        host = get("myhostname")
        return host.split(".", 1)[1] if "." in host else "localdomain"
    if name == "mynetworks":
        return mynetworks(get("mynetworks_style").strip().lower())
    if name == "mail_version":
        return postel.__version__
    if name == "mail_release_date":
        return RELEASE_DATE
    raise KeyError(name)
