"""postel.ipc.attr fast paths: coarse deadlines, decoder state, same results as before."""

from __future__ import annotations

import asyncio
import time

import pytest

from postel.ipc import attr
from postel.ipc.attr import encode, read_attrs, wait_coarse


@pytest.fixture
def coarse(monkeypatch):
    """Make every limit of 0.05 s or more use the watchdog, ticking every 10 ms."""
    monkeypatch.setattr(attr, "COARSE_MIN", 0.05)
    monkeypatch.setattr(attr, "COARSE_TICK", 0.01)


async def _pair(tmp_path, handler):
    path = str(tmp_path / "s")
    server = await asyncio.start_unix_server(handler, path)
    reader, writer = await asyncio.open_unix_connection(path)
    return server, reader, writer


def test_coarse_deadline_expires_as_timeout_error(tmp_path, coarse):
    async def main():
        async def handler(r, w):
            await r.read(1)                   # never answers
            w.close()
        server, reader, writer = await _pair(tmp_path, handler)
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            await read_attrs(reader, timeout=0.1)
        waited = time.monotonic() - t0
        assert not attr._WATCHDOG.armed
        writer.close()
        server.close()
        return waited
    assert 0.1 <= asyncio.run(main()) < 5


def test_coarse_deadline_not_reached_returns_the_list(tmp_path, coarse):
    async def main():
        async def handler(r, w):
            await asyncio.sleep(0.02)
            w.write(encode({"n": 7}))
            await w.drain()
            await r.read(1)
            w.close()
        server, reader, writer = await _pair(tmp_path, handler)
        lst = await read_attrs(reader, timeout=0.5)
        assert not attr._WATCHDOG.armed
        await asyncio.sleep(0.6)             # an expired deadline must not fire later
        writer.close()
        server.close()
        return lst.get_int("n")
    assert asyncio.run(main()) == 7


def test_coarse_deadline_leaves_foreign_cancel_alone(coarse):
    async def main():
        async def victim():
            await wait_coarse(asyncio.sleep(10), 0.2)
        task = asyncio.ensure_future(victim())
        await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return task.cancelled()
    assert asyncio.run(main()) is True


def test_coarse_and_precise_paths_agree(monkeypatch):
    async def main(limit):
        results = []
        results.append(await wait_coarse(asyncio.sleep(0, "ok"), limit))
        try:
            await wait_coarse(asyncio.sleep(5), limit)
        except TimeoutError:
            results.append("timeout")
        return results
    precise = asyncio.run(main(0.05))
    monkeypatch.setattr(attr, "COARSE_MIN", 0.01)
    monkeypatch.setattr(attr, "COARSE_TICK", 0.01)
    assert asyncio.run(main(0.05)) == precise == ["ok", "timeout"]


def test_wait_coarse_without_limit():
    assert asyncio.run(wait_coarse(asyncio.sleep(0, 3), None)) == 3
