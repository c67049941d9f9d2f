"""ipc_codec - micro-benchmark of the attribute-list codec

SYNOPSIS
    .venv/bin/python bench/ipc_codec.py [-n ROUNDS]

DESCRIPTION
    Encodes and decodes the lists smtpd sends cleanup for one typical
    message (an envelope list, a 1 KiB content list, the reply), and prints
    the cost per message.  The budget: >2000 messages/s on 2 cores leaves
    about 1 ms of CPU per message for everything; the codec should take a
    few per cent of that.  Not a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time

from postel.ipc.attr import AttrDecoder, encode, serve_requests
from postel.ipc.client import ServiceClient

ENVELOPE = {
    "request": "message", "flags": 0, "client_name": "mail.example.org",
    "client_address": "192.0.2.10", "helo_name": "mail.example.org",
    "protocol": "ESMTP", "sender": "alice@example.org",
    "rcpt": ["bob@example.com", "carol@example.com"], "size": 1024,
}
CONTENT = {"data": (b"Subject: test\r\nFrom: alice@example.org\r\n\r\n" + b"x" * 76 + b"\r\n") * 10}
REPLY = {"status": 0, "qid": "4XyZ3q1ab2zK9", "reason": ""}


def bench(rounds: int) -> None:
    """bench - time encode and decode of one message's lists."""
    lists = [ENVELOPE, CONTENT, {"eof": 1}, REPLY]
    wire = b"".join(encode(a) for a in lists)
    print(f"one message: {len(lists)} lists, {len(wire)} octets on the wire")

    t0 = time.perf_counter()
    for _ in range(rounds):
        for a in lists:
            encode(a)
    t1 = time.perf_counter()
    enc_us = (t1 - t0) / rounds * 1e6

    t0 = time.perf_counter()
    for _ in range(rounds):
        dec = AttrDecoder()
        out = dec.feed(wire)
        out[0].get("sender")
        out[0].getall("rcpt")
        out[1].get_bytes("data")
    t1 = time.perf_counter()
    dec_us = (t1 - t0) / rounds * 1e6

    t0 = time.perf_counter()
    step = 512
    for _ in range(rounds // 10):
        dec = AttrDecoder()
        for i in range(0, len(wire), step):
            dec.feed(wire[i:i + step])
    t1 = time.perf_counter()
    chunked_us = (t1 - t0) / (rounds // 10) * 1e6

    print(f"encode:            {enc_us:7.1f} us/message")
    print(f"decode (1 feed):   {dec_us:7.1f} us/message")
    print(f"decode (512 B feeds): {chunked_us:4.1f} us/message")
    print(f"codec total:       {enc_us + dec_us:7.1f} us/message "
          f"= {1e6 / (enc_us + dec_us):,.0f} messages/s on one core")


async def round_trips(rounds: int) -> float:
    """round_trips - microseconds per ServiceClient.request over a UNIX socket."""
    async def handle(req):
        return REPLY

    async def handler(reader, writer):
        await serve_requests(reader, writer, handle)
        writer.close()
    with tempfile.TemporaryDirectory() as qdir:
        os.mkdir(os.path.join(qdir, "private"))
        server = await asyncio.start_unix_server(handler, os.path.join(qdir, "private", "echo"))
        client = ServiceClient(qdir, "private/echo", timeout=10)
        await client.request(ENVELOPE)
        t0 = time.perf_counter()
        for _ in range(rounds):
            await client.request(ENVELOPE)
        t1 = time.perf_counter()
        await client.close()
        server.close()
    return (t1 - t0) / rounds * 1e6


def main() -> None:
    """main - parse arguments and run."""
    p = argparse.ArgumentParser()
    p.add_argument("-n", type=int, default=20000)
    rounds = p.parse_args().n
    bench(rounds)
    us = asyncio.run(round_trips(rounds // 4))
    print(f"request/reply over a UNIX socket (asyncio, same process): {us:6.1f} us")
    try:
        import uvloop
    except ImportError:
        return
    us = uvloop.run(round_trips(rounds // 4))
    print(f"request/reply over a UNIX socket (uvloop, same process):  {us:6.1f} us")


if __name__ == "__main__":
    main()
