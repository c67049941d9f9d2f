"""peerlib - real peers for the tests (import require_peer from here or from conftest).

A test that needs a real peer program calls require_peer("swaks").  Without
the program the test skips with a message saying how to install it, except
when CI is set in the environment: then a missing peer is a failure.
"""

from __future__ import annotations

import os
import shutil

import pytest

INSTALL_HINT = "install the test peers with: sudo bash tests/peers/install.sh"


def peer_path(name: str) -> str | None:
    """peer_path - the absolute path of a peer program, or None."""
    found = shutil.which(name)
    if found:
        return found
    for d in ("/usr/sbin", "/usr/lib/postfix/sbin", "/sbin"):
        cand = os.path.join(d, name)
        if os.access(cand, os.X_OK):
            return cand
    return None


def require_peer(name: str) -> str:
    """require_peer - the peer's path; skip (or fail under CI) if missing."""
    path = peer_path(name)
    if path is None:
        msg = f"peer program {name!r} is not installed; {INSTALL_HINT}"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


class Unbound:
    """Unbound - a real DNS server on 127.0.0.1 answering a static test zone.

        with Unbound(zone_lines, "test.example.", probe=("mx1.test.example", "A")) as port:
            ... dns_nameservers = 127.0.0.1:port ...
    """

    def __init__(self, records: list[str], zone: str = "test.example.",
                 probe: tuple[str, str] | None = None) -> None:
        import socket
        import subprocess
        import tempfile
        path = require_peer("unbound")
        self.dir = tempfile.mkdtemp(prefix="postel-unbound-", dir="/tmp")
        os.chmod(self.dir, 0o755)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        lines = ["server:", f"  interface: 127.0.0.1@{self.port}", f"  port: {self.port}",
                 "  do-daemonize: no", '  username: ""', '  chroot: ""', "  use-syslog: no",
                 f'  directory: "{self.dir}"', "  do-not-query-localhost: no", "  verbosity: 0",
                 '  pidfile: ""', f'  local-zone: "{zone}" static']
        lines += [f"  local-data: '{rr}'" for rr in records]
        lines += ["remote-control:", "  control-enable: no"]
        conf = os.path.join(self.dir, "unbound.conf")
        with open(conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.proc = subprocess.Popen([path, "-c", conf], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        self._wait(probe or (zone.rstrip("."), "SOA"))

    def _wait(self, probe: tuple[str, str]) -> None:
        """_wait - until unbound answers the probe query (bounded)."""
        import time

        import dns.exception
        import dns.resolver
        res = dns.resolver.Resolver(configure=False)
        res.nameservers, res.port, res.lifetime = ["127.0.0.1"], self.port, 1
        for _ in range(100):
            try:
                res.resolve(*probe)
                return
            except (dns.exception.DNSException, OSError):
                if self.proc.poll() is not None:
                    self.stop()
                    pytest.fail(f"unbound exited: {self.proc.stdout.read().decode()}")
                time.sleep(0.05)
        self.stop()
        pytest.fail("unbound did not answer within 5 s")

    def stop(self) -> None:
        import shutil
        import subprocess
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> int:
        return self.port

    def __exit__(self, *exc: object) -> None:
        self.stop()
