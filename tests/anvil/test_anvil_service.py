"""anvil: the service on a UNIX socket, driven by AnvilClient."""

from __future__ import annotations

import asyncio
import os

from postel.anvil.service import post_init, serve_client
from postel.ipc.anvil_client import AnvilClient
from postel.ipc.skeleton import run_standalone


def _cfgdir(tmp_path) -> str:
    d = tmp_path / "etc"
    d.mkdir()
    (d / "main.cf").write_text(f"queue_directory = {tmp_path}\nmaillog_file = {tmp_path}/log\n")
    return str(d)


def test_service_counts_across_clients_and_forgets_a_closed_stream(tmp_path):
    sock = os.path.join(str(tmp_path), "anvil")
    srv = run_standalone("anvil", [f"unix:{sock}"], handler=serve_client,
                         config_dir=_cfgdir(tmp_path), post_init=post_init)
    try:
        async def scenario():
            one, two = AnvilClient(str(tmp_path), sock), AnvilClient(str(tmp_path), sock)
            assert await one.connect("smtp", "192.0.2.1") == (1, 1)
            assert await two.connect("smtp", "192.0.2.1") == (2, 2)
            assert await one.recipient("smtp", "192.0.2.1") == 1
            assert await two.message("smtp", "192.0.2.1") == 1
            await one.disconnect("smtp", "192.0.2.1")
            assert (await two.lookup("smtp", "192.0.2.1"))["count"] == 1
            await two.close()                # as if that smtpd process died
            for _ in range(100):
                if (await one.lookup("smtp", "192.0.2.1"))["count"] == 0:
                    break
                await asyncio.sleep(0.02)
            assert (await one.lookup("smtp", "192.0.2.1"))["count"] == 0
            await one.close()
        asyncio.run(scenario())
    finally:
        srv.stop()


def test_client_without_anvil_returns_none_and_warns_once(tmp_path, capsys):
    from postel import log
    log.init("smtpd", stderr=True, use_syslog=False)

    async def scenario():
        c = AnvilClient(str(tmp_path), os.path.join(str(tmp_path), "nothing"), timeout=1)
        assert await c.connect("smtp", "192.0.2.1") is None
        assert await c.recipient("smtp", "192.0.2.1") is None
        assert await c.message("smtp", "192.0.2.1") is None
    asyncio.run(scenario())
    err = capsys.readouterr().err
    assert err.count("continuing without client limits") == 1
