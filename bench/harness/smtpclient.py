"""smtpclient - small SMTP clients for what smtp-source cannot measure

SYNOPSIS
    from harness.smtpclient import latency_run, hold_idle, send_many_rcpts, message

    lat, elapsed, errors = latency_run(port, sessions=20, per_session=50, size=1024)
    opened = hold_idle(port, 100, measure=lambda: mta.memory())
    send_many_rcpts(port, ["u1@d1.example", ...], size=1024)

DESCRIPTION
    latency_run opens `sessions` concurrent SMTP sessions (asyncio
    streams, no pipelining) and sends `per_session` messages on each; for
    every message it records the time from writing the final "." line
    (RFC 5321 4.1.1.4: <CRLF>.<CRLF> ends the mail data) to reading the
    complete 250 reply.  Returns the latencies in seconds, the wall time
    and the number of transactions that did not get a 2xx.

    hold_idle opens n sessions, reads each 220 greeting, calls measure()
    while all of them sit idle, then closes them (QUIT is not sent: an idle
    client that goes away is the case being measured).  Returns
    (greetings received, measure's result).

    send_many_rcpts sends one message to many recipients with smtplib
    (smtp-source names its recipients after one address, so it cannot
    spread them over domains).
"""

from __future__ import annotations

import asyncio
import smtplib
import time


def message(size: int, subject: str = "bench") -> bytes:
    """message - an RFC 5322 message of about size bytes (CRLF lines)."""
    head = (f"From: <bench@example.org>\r\nTo: <sink@example.com>\r\nSubject: {subject}\r\n"
            "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\n").encode()
    line = b"x" * 78 + b"\r\n"
    body = line * max(1, (size - len(head)) // len(line))
    return head + body


async def _reply(reader: asyncio.StreamReader) -> int:
    """_reply - read one (multi-line) SMTP reply; return its code."""
    while True:
        line = await reader.readline()
        if len(line) < 4:
            raise ConnectionError(f"short reply {line!r}")
        if line[3:4] != b"-":
            return int(line[:3])


async def _session(port: int, count: int, data: bytes, lat: list[float]) -> int:
    """_session - one client: count transactions; returns failures."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    failures = 0
    try:
        await _reply(reader)
        writer.write(b"EHLO bench.example.org\r\n")
        await _reply(reader)
        for _ in range(count):
            writer.write(b"MAIL FROM:<bench@example.org>\r\n")
            if await _reply(reader) != 250:
                failures += 1
                continue
            writer.write(b"RCPT TO:<sink@example.com>\r\n")
            if await _reply(reader) >= 300:
                failures += 1
                writer.write(b"RSET\r\n")
                await _reply(reader)
                continue
            writer.write(b"DATA\r\n")
            if await _reply(reader) != 354:
                failures += 1
                continue
            writer.write(data)
            t0 = time.perf_counter()
            writer.write(b".\r\n")
            code = await _reply(reader)
            lat.append(time.perf_counter() - t0)
            if code != 250:
                failures += 1
        writer.write(b"QUIT\r\n")
        await _reply(reader)
    finally:
        writer.close()
    return failures


async def _latency(port: int, sessions: int, per_session: int, size: int,
                   timeout: float) -> tuple[list[float], float, int]:
    data = message(size)
    lat: list[float] = []
    t0 = time.perf_counter()
    results = await asyncio.wait_for(
        asyncio.gather(*[_session(port, per_session, data, lat) for _ in range(sessions)],
                       return_exceptions=True), timeout)
    elapsed = time.perf_counter() - t0
    errors = 0
    for r in results:
        errors += r if isinstance(r, int) else per_session
    return lat, elapsed, errors


def latency_run(port: int, sessions: int, per_session: int, size: int = 1024,
                timeout: float = 120) -> tuple[list[float], float, int]:
    """latency_run - (DATA-end-to-250 latencies, wall seconds, failed transactions)."""
    return asyncio.run(_latency(port, sessions, per_session, size, timeout))


async def _hold(port: int, n: int, measure, timeout: float):
    sem = asyncio.Semaphore(100)
    conns: list[asyncio.StreamWriter] = []

    async def one() -> bool:
        async with sem:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                return False
            conns.append(writer)
            try:
                return await asyncio.wait_for(_reply(reader), timeout) == 220
            except (OSError, ConnectionError, asyncio.TimeoutError):
                return False
    try:
        greeted = sum(await asyncio.gather(*[one() for _ in range(n)]))
        await asyncio.sleep(1.0)          # let process start-up settle
        result = measure()
    finally:
        for w in conns:
            w.close()
    await asyncio.sleep(0.1)
    return greeted, result


def hold_idle(port: int, n: int, measure, timeout: float = 30):
    """hold_idle - (greetings received, measure()) with n idle sessions open."""
    return asyncio.run(_hold(port, n, measure, timeout))


def send_many_rcpts(port: int, rcpts: list[str], size: int = 1024, timeout: float = 120) -> dict:
    """send_many_rcpts - one transaction to every rcpt; smtplib's refused dict."""
    with smtplib.SMTP("127.0.0.1", port, timeout=timeout) as s:
        return s.sendmail("bench@example.org", rcpts, message(size, "many recipients"))
