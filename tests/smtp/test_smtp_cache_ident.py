"""ConnectionCache finds and removes entries by identity (equal keys, distinct sessions)."""

from __future__ import annotations

import asyncio
import time

from postel.smtp.cache import ConnectionCache


class _Sess:
    def __init__(self, name: str) -> None:
        self.name, self.created, self.uses, self.closed = name, time.monotonic(), 0, False

    def alive(self) -> bool:
        return not self.closed

    def close(self) -> None:
        self.closed = True

    def __eq__(self, other) -> bool:         # every session "equal": identity must decide
        return True

    __hash__ = object.__hash__


def test_take_returns_each_session_once_in_order():
    async def run() -> list[str]:
        cache = ConnectionCache(idle_limit=60.0)
        sessions = [_Sess(f"s{i}") for i in range(5)]
        for s in sessions:
            assert cache.put(["relay:[127.0.0.1]:25", "127.0.0.1:25"], s)
        got = []
        while (s := cache.take("relay:[127.0.0.1]:25")) is not None:
            got.append(s.name)
        assert len(cache) == 0
        return got

    assert asyncio.run(run()) == ["s0", "s1", "s2", "s3", "s4"]
