"""Tests for postel.ipc.trigger: FIFO, UNIX socket, and nobody listening."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest

from postel.ipc.trigger import QMGR_FLUSH_QUEUE, send_trigger, send_trigger_async


@pytest.fixture
def qdir(tmp_path):
    for d in ("public", "private"):
        (tmp_path / d).mkdir()
    return str(tmp_path)


def test_flush_queue_codes():
    assert QMGR_FLUSH_QUEUE == b"FADI"


def test_trigger_to_fifo(qdir):
    path = os.path.join(qdir, "public", "pickup")
    os.mkfifo(path, 0o622)
    # reader side open first, as the pickup service holds it
    rfd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        assert send_trigger(qdir, "public/pickup") is True
        assert send_trigger(qdir, "public/pickup", b"I") is True
        assert os.read(rfd, 100) == b"WI"
        assert asyncio.run(send_trigger_async(qdir, "public/pickup", b"D")) is True
        assert os.read(rfd, 100) == b"D"
    finally:
        os.close(rfd)


def test_trigger_to_fifo_without_reader(qdir):
    os.mkfifo(os.path.join(qdir, "public", "pickup"), 0o622)
    assert send_trigger(qdir, "public/pickup") is False
    assert asyncio.run(send_trigger_async(qdir, "public/pickup")) is False


def test_trigger_to_full_fifo_counts_as_delivered(qdir):
    path = os.path.join(qdir, "public", "pickup")
    os.mkfifo(path, 0o622)
    rfd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        wfd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        try:
            with pytest.raises(BlockingIOError):
                while True:
                    os.write(wfd, b"W" * 4096)
        finally:
            os.close(wfd)
        assert send_trigger(qdir, "public/pickup") is True
    finally:
        os.close(rfd)


def test_trigger_to_unix_socket(qdir):
    path = os.path.join(qdir, "public", "qmgr")
    lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lsock.bind(path)
    lsock.listen(4)
    try:
        assert send_trigger(qdir, "public/qmgr", QMGR_FLUSH_QUEUE, timeout=5) is True
        conn, _ = lsock.accept()
        conn.settimeout(5)
        got = b""
        while chunk := conn.recv(100):      # the client closes after writing
            got += chunk
        conn.close()
        assert got == b"FADI"
    finally:
        lsock.close()


def test_trigger_async_to_unix_socket(qdir):
    async def main():
        received = asyncio.Queue()

        async def handler(reader, writer):
            await received.put(await reader.read())
            writer.close()
        server = await asyncio.start_unix_server(handler, os.path.join(qdir, "public", "qmgr"))
        ok = await send_trigger_async(qdir, "public/qmgr", b"I", timeout=5)
        data = await asyncio.wait_for(received.get(), 5)
        server.close()
        return ok, data
    assert asyncio.run(main()) == (True, b"I")


def test_trigger_to_nothing(qdir):
    assert send_trigger(qdir, "public/qmgr") is False
    assert asyncio.run(send_trigger_async(qdir, "public/qmgr")) is False


def test_trigger_to_dead_socket(qdir):
    path = os.path.join(qdir, "public", "qmgr")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.close()                              # socket file left behind, no listener
    assert send_trigger(qdir, "public/qmgr") is False
    assert asyncio.run(send_trigger_async(qdir, "public/qmgr")) is False


def test_trigger_to_regular_file(qdir):
    open(os.path.join(qdir, "public", "flush"), "w").close()
    assert send_trigger(qdir, "public/flush") is False
