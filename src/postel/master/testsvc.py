"""testsvc - tiny services for testing master and the skeleton

SYNOPSIS
    master.cf:
    2526      inet  n - n - - testsvc -m banner
    2527      inet  n - n - - testsvc -m echo
    2528      inet  n - n - - testsvc -m crash
    tick      unix  n - n 1 1 testsvc -m trigger

DESCRIPTION
    Not a mail service: these exist so that master, the skeleton and the
    end-to-end test library can be tested before (and independently of)
    the real daemons.  The -m option chooses the behaviour:

    banner   write "220 NAME testsvc pid PID ready" and close the connection
             (NAME is the master.cf service name).
    echo     write the banner, then echo each line back prefixed with
             "250 " until the client sends QUIT ("221 bye") or closes.
    crash    exit with status 1 before serving anything (a bad command
             startup, for throttling tests).
    trigger  a trigger server; logs "trigger: DATA" for each request.

    Each handler logs "testsvc: connect from ADDR" so tests can count.
"""

from __future__ import annotations

import asyncio
import os

from postel import log
from postel.ipc.skeleton import ServiceContext, multi_server_main, trigger_server_main


def _mode(argv: list[str]) -> str:
    """_mode - the -m argument, default banner."""
    for i, arg in enumerate(argv):
        if arg == "-m" and i + 1 < len(argv):
            return argv[i + 1]
    return "banner"


def _banner(ctx: ServiceContext) -> bytes:
    """_banner - the greeting line."""
    return f"220 {ctx.service_name} testsvc pid {os.getpid()} ready\r\n".encode()


async def serve_banner(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       ctx: ServiceContext) -> None:
    """serve_banner - greet and hang up."""
    log.info("testsvc: connect from %s", ctx.peer_addr(writer))
    writer.write(_banner(ctx))
    await writer.drain()


async def serve_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     ctx: ServiceContext) -> None:
    """serve_echo - greet, then echo lines until QUIT."""
    log.info("testsvc: connect from %s", ctx.peer_addr(writer))
    writer.write(_banner(ctx))
    await writer.drain()
    while True:
        line = await reader.readline()
        if not line:
            return
        text = line.rstrip(b"\r\n")
        if text.upper() == b"QUIT":
            writer.write(b"221 bye\r\n")
            await writer.drain()
            return
        writer.write(b"250 " + text + b"\r\n")
        await writer.drain()


async def on_trigger(data: bytes, ctx: ServiceContext) -> None:
    """on_trigger - log the trigger request."""
    log.info("trigger: %s", data.decode("ascii", "replace"))


def main(argv: list[str]) -> int:
    """main - run the test service chosen with -m."""
    mode = _mode(argv)
    if mode == "crash":
        return 1
    if mode == "trigger":
        return trigger_server_main("testsvc", argv, on_trigger)
    handler = serve_echo if mode == "echo" else serve_banner
    return multi_server_main("testsvc", argv, handler)
