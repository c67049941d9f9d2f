"""The accept path of a multi server whose handler owns the socket
(takes_socket): accepted sockets keep the listener's family and type, a
failing handler is logged and does not stop the service, and the busy count
returns to zero."""

import socket
import time

from postel.ipc import skeleton


def _serve(tmp_path, handler):
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "main.cf").write_text(f"queue_directory = {tmp_path}/q\n")
    return skeleton.run_standalone("test", ["inet:127.0.0.1:0"], handler=handler,
                                   config_dir=str(cfg), takes_socket=True)


def _talk(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        c.settimeout(5)
        out = b""
        while True:
            data = c.recv(100)
            if not data:
                return out
            out += data


def test_handler_owns_socket_and_failures_do_not_stop_service(tmp_path):
    seen = []

    async def handler(sock, ctx):
        seen.append((sock.family, sock.type, type(sock.family)))
        if len(seen) == 1:
            sock.close()
            raise ValueError("boom")
        sock.sendall(b"hello\n")
        sock.close()

    srv = _serve(tmp_path, handler)
    try:
        port = srv.addresses[0][1]
        assert _talk(port) == b""                 # the failing handler
        assert _talk(port) == b"hello\n"          # the service goes on
        assert seen[1][:2] == (socket.AF_INET, socket.SOCK_STREAM)
        assert seen[1][2] is socket.AddressFamily
        for _ in range(100):
            if srv.server.active == 0:
                break
            time.sleep(0.02)
        assert srv.server.active == 0 and srv.server.served == 2
    finally:
        srv.stop()
    assert not srv.thread.is_alive()
