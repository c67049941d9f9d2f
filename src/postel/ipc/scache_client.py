"""scache_client - hand connections to scache(8) and take them back

SYNOPSIS
    from postel.ipc.scache_client import ScacheClient
    sc = ScacheClient(path)                       # $queue_directory/private/scache
    sc.save_endp("smtp:192.0.2.1:25", "props", sock.fileno(), ttl=2)
    fd, props = sc.find_endp("smtp:192.0.2.1:25") or (None, None)
    sc.save_dest("smtp:example.com", "props", "smtp:192.0.2.1:25", ttl=2)
    fd, dest_props, endp_props = sc.find_dest("smtp:example.com") or (...)

DESCRIPTION
    Blocking client for postel.scache.service: each request is one
    attribute list in one sendmsg(2), a descriptor rides along as
    SCM_RIGHTS.  save_* hands over a duplicate: the caller closes its own
    descriptor afterwards.  find_* returns a descriptor the caller owns, or
    None when nothing is cached.  A service that is absent makes every
    call return None/False: connection caching is an optimization.
"""

from __future__ import annotations

import socket

from postel.ipc.attr import AttrDecoder, AttrError, encode

MSG_MAX = 65536


class ScacheClient:
    """ScacheClient - one connection to scache, reused."""

    def __init__(self, path: str, timeout: float = 5.0) -> None:
        self.path = path
        self.timeout = timeout
        self.sock: socket.socket | None = None

    def _call(self, attrs: dict, fd: int | None = None):
        """_call - send a request (with fd) and return (reply list, descriptors)."""
        try:
            if self.sock is None:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.settimeout(self.timeout)
                self.sock.connect(self.path)
            socket.send_fds(self.sock, [encode(attrs)], [fd] if fd is not None else [])
            data, fds, _f, _a = socket.recv_fds(self.sock, MSG_MAX, 4)
            lists = AttrDecoder().feed(data) if data else []
        except (OSError, AttrError):
            self.close()
            return None, []
        if len(lists) != 1:
            self.close()
            return None, fds
        return lists[0], fds

    def save_endp(self, label: str, props: str, fd: int, ttl: float) -> bool:
        """save_endp - give scache a duplicate of fd for endpoint label."""
        reply, _ = self._call({"request": "save_endp", "ttl": int(ttl), "label": label,
                               "properties": props}, fd)
        return reply is not None and reply.get("status") == "0"

    def find_endp(self, label: str) -> tuple[int, str] | None:
        """find_endp - a cached descriptor for endpoint label, or None."""
        reply, fds = self._call({"request": "find_endp", "label": label})
        if reply is None or reply.get("status") != "0" or not fds:
            return None
        return fds[0], reply.get("properties", "")

    def save_dest(self, label: str, props: str, endp_label: str, ttl: float) -> bool:
        """save_dest - remember that endp_label serves destination label."""
        reply, _ = self._call({"request": "save_dest", "ttl": int(ttl), "label": label,
                               "properties": props, "endpoint": endp_label})
        return reply is not None and reply.get("status") == "0"

    def find_dest(self, label: str) -> tuple[int, str, str] | None:
        """find_dest - (fd, destination properties, endpoint properties), or None."""
        reply, fds = self._call({"request": "find_dest", "label": label})
        if reply is None or reply.get("status") != "0" or not fds:
            return None
        return fds[0], reply.get("properties", ""), reply.get("endpoint_properties", "")

    def close(self) -> None:
        """close - drop the connection."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None
