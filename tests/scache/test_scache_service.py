"""scache(8): descriptors saved by one client, found by another, expired by ttl."""

from __future__ import annotations

import os
import socket

from postel import log
from postel.ipc.scache_client import ScacheClient
from postel.ipc.skeleton import run_standalone
from postel.scache import service
from postel.scache.service import ConnCache


def _serve(tmp_path):
    (tmp_path / "main.cf").write_text(f"queue_directory = {tmp_path}\nmaillog_file = {tmp_path}/log\n"
                                      "connection_cache_ttl_limit = 60s\ndaemon_timeout = 1s\n")
    log.init("scache", maillog_file=str(tmp_path / "log"))
    path = str(tmp_path / "scache")
    return run_standalone("scache", [f"unix:{path}"], handler=service.serve_client,
                          config_dir=str(tmp_path)), path


def test_scache_endpoint_and_destination_round_trip(tmp_path):
    srv, path = _serve(tmp_path)
    a, b = socket.socketpair()
    try:
        one, two = ScacheClient(path), ScacheClient(path)
        assert one.find_endp("smtp:192.0.2.1:25") is None
        assert one.save_endp("smtp:192.0.2.1:25", "ehlo=PIPELINING", a.fileno(), ttl=30)
        assert one.save_dest("smtp:example.com", "dest=1", "smtp:192.0.2.1:25", ttl=30)
        a.close()                       # scache holds its own duplicate now
        found = two.find_dest("smtp:example.com")
        assert found is not None
        fd, dprops, eprops = found
        assert (dprops, eprops) == ("dest=1", "ehlo=PIPELINING")
        with socket.socket(fileno=fd) as got:
            got.sendall(b"still connected")
            assert b.recv(100) == b"still connected"
        assert two.find_endp("smtp:192.0.2.1:25") is None        # one user at a time
        one.close()
        two.close()
    finally:
        b.close()
        srv.stop()


def test_scache_ttl_expiry_closes_descriptor():
    cache = ConnCache(ttl_limit=2.0)
    r, w = os.pipe()
    cache.save_endp("x", "", w, ttl=100, now=0.0)          # capped at 2 s
    assert cache.find_endp("x", now=3.0) is None
    assert os.read(r, 10) == b""                          # write end closed: EOF
    os.close(r)


def test_scache_absent_service_is_a_miss(tmp_path):
    c = ScacheClient(str(tmp_path / "nosuch"))
    assert c.find_dest("smtp:example.com") is None
    assert not c.save_dest("a", "", "b", 1)
