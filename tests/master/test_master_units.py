"""Unit tests: command table, endpoints, skeleton options and standalone servers, init."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from postel.ipc import skeleton
from postel.master import listeners, services

POSTEL = str(Path(sys.executable).with_name("postel"))


def test_module_names():
    assert services.module_name("smtpd") == ("postel.smtpd.service", "smtpd")
    assert services.module_name("trivial-rewrite") == ("postel.trivial_rewrite.service",
                                                       "trivial-rewrite")
    assert services.module_name("lmtp") == ("postel.smtp.service", "lmtp")


def test_resolve_missing_and_bad():
    with pytest.raises(services.NotAvailable):
        services.resolve("no-such-daemon")
    with pytest.raises(services.NotAvailable):
        services.resolve("../etc")
    with pytest.raises(services.NotAvailable):
        services.resolve("/nonexistent/program")
    r = services.resolve("testsvc")
    assert r.main is not None and r.argv0 == "testsvc"
    r = services.resolve("/bin/true")
    assert r.main is None and r.path == "/bin/true"


@dataclass
class Entry:
    service: str
    type: str
    private: bool = True


@dataclass
class Cfg:
    values: dict = field(default_factory=dict)

    def get(self, name):
        return self.values[name]

    def get_list(self, name):
        return self.values[name].replace(",", " ").split()


def test_endpoints_inet_forms():
    cfg = Cfg({"inet_interfaces": "127.0.0.1", "inet_protocols": "ipv4", "queue_directory": "/q"})
    eps = listeners.endpoints(Entry("2525", "inet"), cfg)
    assert [(e.address, e.port) for e in eps] == [("127.0.0.1", 2525)]
    eps = listeners.endpoints(Entry("127.0.0.2:smtp", "inet"), cfg)
    assert [(e.address, e.port) for e in eps] == [("127.0.0.2", 25)]
    eps = listeners.endpoints(Entry("[::1]:2525", "inet"), cfg)
    assert eps[0].address == "::1" and eps[0].describe() == "[::1]:2525"
    cfg.values["inet_interfaces"] = "all"
    assert [e.address for e in listeners.endpoints(Entry("25", "inet"), cfg)] == ["0.0.0.0"]
    with pytest.raises(listeners.ListenError):
        listeners.endpoints(Entry("99999", "inet"), cfg)
    with pytest.raises(listeners.ListenError):
        listeners.endpoints(Entry("nosuchservicename", "inet"), cfg)


def test_endpoints_local_forms(tmp_path):
    cfg = Cfg({"queue_directory": str(tmp_path)})
    (tmp_path / "private").mkdir()
    (tmp_path / "public").mkdir()
    ep = listeners.endpoints(Entry("cleanup", "unix", private=False), cfg)[0]
    assert ep.address == str(tmp_path / "public" / "cleanup")
    ep = listeners.endpoints(Entry("smtp", "unix"), cfg)[0]
    assert ep.address == str(tmp_path / "private" / "smtp")
    with pytest.raises(listeners.ListenError):
        listeners.endpoints(Entry("../x", "unix"), cfg)
    sock = listeners.open_endpoint(ep)
    assert os.path.exists(ep.address)
    listeners.close_endpoint(ep, sock)
    assert not os.path.exists(ep.address)
    fifo = listeners.endpoints(Entry("pickup", "fifo", private=False), cfg)[0]
    fd = listeners.open_endpoint(fifo)
    assert isinstance(fd, int)
    listeners.close_endpoint(fifo, fd)
    (tmp_path / "private" / "plain").write_text("x")
    with pytest.raises(listeners.ListenError):
        listeners.open_endpoint(listeners.Endpoint("unix", str(tmp_path / "private" / "plain")))


def test_parse_options():
    o = skeleton.parse_options(["smtpd", "-c", "/d", "-n", "2525", "-t", "inet", "-o",
                                "smtpd_banner=a b", "-v", "-m", "x"])
    assert o.config_dir == "/d" and o.service_name == "2525" and o.service_type == "inet"
    assert o.overrides == {"smtpd_banner": "a b"} and o.verbose == 1 and o.args == ["-m", "x"]
    with pytest.raises(skeleton.UsageError):
        skeleton.parse_options(["x", "-o", "novalue"])
    with pytest.raises(skeleton.UsageError):
        skeleton.parse_options(["x", "-S", "tcp:1"])
    with pytest.raises(skeleton.UsageError):
        skeleton.parse_options(["x", "-c"])


@pytest.fixture
def confdir(tmp_path):
    d = tmp_path / "inst"
    cp = subprocess.run([POSTEL, "init", "--port", "2999", str(d)], capture_output=True, text=True)
    assert cp.returncode == 0, cp.stderr
    return str(d)


def test_init_layout_and_refusal(confdir):
    main_cf = Path(confdir, "main.cf").read_text()
    assert f"config_directory = {confdir}" in main_cf
    assert "mail_spool_directory = $config_directory/mail/" in main_cf
    master_cf = Path(confdir, "master.cf").read_text()
    assert "127.0.0.1:2999 inet" in master_cf and "smtpd" in master_cf
    for name in ("maildrop", "incoming", "active", "deferred", "hold", "corrupt", "bounce",
                 "defer", "trace", "flush", "saved", "public", "private", "pid"):
        assert os.path.isdir(os.path.join(confdir, "queue", name)), name
    assert os.path.isdir(os.path.join(confdir, "mail"))
    cp = subprocess.run([POSTEL, "init", confdir], capture_output=True, text=True)
    assert cp.returncode == 1 and "not overwriting" in cp.stderr
    cp = subprocess.run([POSTEL, "init", "--port", "x", confdir + "2"], capture_output=True,
                        text=True)
    assert cp.returncode == 2 and "bad port" in cp.stderr


def test_status_not_running(confdir):
    cp = subprocess.run([POSTEL, "-c", confdir, "status"], capture_output=True, text=True)
    assert cp.returncode == 1
    assert "postel/postel-script: the Postel mail system is not running" in cp.stderr
    cp = subprocess.run([POSTEL, "-c", confdir, "stop"], capture_output=True, text=True)
    assert cp.returncode == 1 and "not running" in cp.stderr


async def _echo(reader, writer, ctx):
    line = await reader.readline()
    if line.startswith(b"boom"):
        raise ValueError("handler failure")
    writer.write(ctx.service_name.encode() + b" " + line)
    await writer.drain()


def _ask(path: str, data: bytes, half_close: bool = False) -> bytes:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(path)
        s.sendall(data)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := s.recv(100):
            out += chunk
        return out


def test_standalone_multi_server(confdir, tmp_path):
    path = str(tmp_path / "svc.sock")
    with skeleton.run_standalone("echo", [f"unix:{path}", "inet:127.0.0.1:0"], handler=_echo,
                                 config_dir=confdir) as srv:
        assert _ask(path, b"hi\n") == b"echo hi\n"
        # a failing handler is logged and the process keeps serving
        assert _ask(path, b"boom\n") == b""
        assert _ask(path, b"again\n") == b"echo again\n"
        host, port = srv.addresses[1][:2]
        with socket.create_connection((host, port), timeout=5) as s:
            s.sendall(b"tcp\n")
            assert s.makefile("rb").readline() == b"echo tcp\n"
    assert not srv.thread.is_alive()


def test_standalone_drains_in_flight_client(confdir, tmp_path):
    path = str(tmp_path / "slow.sock")
    async def slow(reader, writer, ctx):
        await reader.readline()
        await asyncio.sleep(0.3)
        writer.write(b"done\n")
        await writer.drain()

    srv = skeleton.run_standalone("slow", [f"unix:{path}"], handler=slow, config_dir=confdir)
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    s.sendall(b"go\n")
    time.sleep(0.05)
    srv.stop()                      # graceful: the client in progress still gets its answer
    assert s.recv(100) == b"done\n"
    s.close()


def test_standalone_trigger_server(confdir, tmp_path):
    got: list[bytes] = []

    async def on_trigger(data, ctx):
        got.append(data)

    fifo = str(tmp_path / "fifo")
    sock = str(tmp_path / "trig.sock")
    with skeleton.run_standalone("trig", [f"fifo:{fifo}", f"unix:{sock}"], trigger=on_trigger,
                                 config_dir=confdir):
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.write(fd, b"W")
        os.close(fd)
        assert _ask(sock, b"A", half_close=True) == b""
        deadline = time.monotonic() + 5
        while len(got) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    assert sorted(got) == [b"A", b"W"]


@pytest.mark.parametrize("concurrency", [1, 3])
def test_max_use_counts_clients_per_concurrency_slot(confdir, tmp_path, concurrency):
    """max_use: a process exits after max_use x concurrency clients (one-at-a-time: max_use)."""
    path = str(tmp_path / "use.sock")
    srv = skeleton.run_standalone("echo", [f"unix:{path}"], handler=_echo, config_dir=confdir,
                                  overrides={"max_use": "2"}, concurrency=concurrency)
    try:
        for i in range(2 * concurrency):
            assert srv.thread.is_alive(), f"exited after {i} clients"
            assert _ask(path, b"x\n") == b"echo x\n"
        srv.thread.join(10)
        assert not srv.thread.is_alive()
    finally:
        srv.stop()
