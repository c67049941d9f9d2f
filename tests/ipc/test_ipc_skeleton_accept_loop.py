"""The listener's accept loop: connections beyond the concurrency bound wait
until a slot frees (the listener is unregistered while busy, registered again
after), a burst of connections is accepted and served, and stop ends it."""

import asyncio
import socket
import threading
import time

from postel.ipc import skeleton


def _serve(tmp_path, handler, concurrency=200):
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "main.cf").write_text(f"queue_directory = {tmp_path}/q\n")
    return skeleton.run_standalone("test", ["inet:127.0.0.1:0"], handler=handler,
                                   config_dir=str(cfg), takes_socket=True,
                                   concurrency=concurrency)


def _read_all(c: socket.socket) -> bytes:
    out = b""
    while True:
        data = c.recv(100)
        if not data:
            return out
        out += data


def test_busy_process_accepts_again_when_a_slot_frees(tmp_path):
    release = threading.Event()
    order = []

    async def handler(sock, ctx):
        n = len(order)
        order.append(n)
        if n == 0:
            while not release.is_set():
                await asyncio.sleep(0.01)
        sock.sendall(b"%d\n" % n)
        sock.close()

    srv = _serve(tmp_path, handler, concurrency=1)
    try:
        port = srv.addresses[0][1]
        first = socket.create_connection(("127.0.0.1", port), timeout=5)
        for _ in range(200):
            if order:
                break
            time.sleep(0.01)
        second = socket.create_connection(("127.0.0.1", port), timeout=5)
        time.sleep(0.2)
        assert order == [0]                      # busy: the second one waits
        release.set()
        first.settimeout(5)
        second.settimeout(5)
        assert _read_all(first) == b"0\n"
        assert _read_all(second) == b"1\n"       # accepted once the slot freed
        first.close()
        second.close()
    finally:
        srv.stop()
    assert not srv.thread.is_alive()


def test_burst_of_connections_all_served(tmp_path):
    async def handler(sock, ctx):
        sock.sendall(b"ok\n")
        sock.close()

    srv = _serve(tmp_path, handler)
    try:
        port = srv.addresses[0][1]
        conns = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(150)]
        for c in conns:
            c.settimeout(5)
            assert _read_all(c) == b"ok\n"
            c.close()
        for _ in range(100):
            if srv.server.active == 0:
                break
            time.sleep(0.02)
        assert srv.server.active == 0 and srv.server.served == 150
    finally:
        srv.stop()
    assert not srv.thread.is_alive()
