"""Tests for postel.ipc.client: connect retry, pooled reuse, reconnect, sync API."""

from __future__ import annotations

import asyncio
import os
import socket
import threading

import pytest

from postel.ipc.attr import AttrList, encode, read_attrs, serve_requests, write_attrs
from postel.ipc.client import (
    ServiceClient,
    ServiceUnavailable,
    SyncConnection,
    connect_service,
    get_client,
    request_sync,
    service_path,
)


@pytest.fixture
def qdir(tmp_path):
    """qdir - a queue directory with public/ and private/."""
    for d in ("public", "private"):
        (tmp_path / d).mkdir()
    return str(tmp_path)


class EchoServer:
    """EchoServer - answers each request with its attributes plus accept count."""

    def __init__(self, path: str, close_after: int = 0) -> None:
        self.path = path
        self.accepts = 0
        self.requests = 0
        self.close_after = close_after      # close the connection after N requests
        self.server: asyncio.base_events.Server | None = None

    async def start(self) -> EchoServer:
        self.server = await asyncio.start_unix_server(self.handle, self.path)
        return self

    async def handle(self, reader, writer):
        self.accepts += 1
        conn_no = self.accepts
        served = 0
        try:
            while True:
                try:
                    req = await read_attrs(reader, timeout=5)
                except EOFError:
                    break
                self.requests += 1
                served += 1
                await write_attrs(writer, list(req.items()) + [("conn", conn_no)])
                if self.close_after and served >= self.close_after:
                    break
        finally:
            writer.close()

    async def stop(self) -> None:
        self.server.close()
        await self.server.wait_closed()


def test_service_path(qdir):
    assert service_path(qdir, "private/cleanup") == os.path.join(qdir, "private", "cleanup")
    assert service_path(qdir, "public/showq") == os.path.join(qdir, "public", "showq")
    assert service_path(qdir, "/abs/sock") == "/abs/sock"
    for bad in ("cleanup", "other/x", "private/", "private/a/b", "private/.."):
        with pytest.raises(ValueError, match="bad service endpoint"):
            service_path(qdir, bad)


def test_connect_retries_until_the_socket_appears(qdir):
    async def main():
        path = service_path(qdir, "private/late")
        srv = EchoServer(path)

        async def start_later():
            await asyncio.sleep(0.3)
            await srv.start()
        task = asyncio.create_task(start_later())
        reader, writer = await connect_service(qdir, "private/late", timeout=2, retry_for=10)
        await write_attrs(writer, {"a": "1"})
        reply = await read_attrs(reader, timeout=5)
        writer.close()
        await task
        await srv.stop()
        return reply
    assert asyncio.run(main()).get("a") == "1"


def test_connect_retries_refused_socket(qdir):
    # A socket file with no listener (a dead service) gives ECONNREFUSED.
    path = service_path(qdir, "private/dead")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.close()

    async def main():
        with pytest.raises(ServiceUnavailable) as info:
            await connect_service(qdir, "private/dead", timeout=1, retry_for=0.2)
        return info.value
    exc = asyncio.run(main())
    assert exc.endpoint == "private/dead"
    assert "Connection refused" in str(exc) and "retried for 0.2s" in str(exc)


def test_no_server_gives_service_unavailable(qdir):
    async def main():
        with pytest.raises(ServiceUnavailable) as info:
            await connect_service(qdir, "private/nothing", timeout=1, retry_for=0.3)
        return str(info.value)
    msg = asyncio.run(main())
    assert msg.startswith("connect to private/nothing service: ")
    assert "No such file or directory (retried for 0.3s)" in msg


def test_permanent_error_is_not_retried(qdir):
    # A path that is far too long for AF_UNIX cannot work: fail at once.
    async def main():
        with pytest.raises(ServiceUnavailable, match="too long"):
            await connect_service(qdir, "/" + "x" * 200, timeout=1, retry_for=3600)
    asyncio.run(main())


def test_client_reuses_one_connection(qdir):
    async def main():
        srv = await EchoServer(service_path(qdir, "private/echo")).start()
        client = ServiceClient(qdir, "private/echo", timeout=5)
        replies = [await client.request({"n": i}) for i in range(20)]
        await client.close()
        await srv.stop()
        return srv, client, replies
    srv, client, replies = asyncio.run(main())
    assert [r.get_int("n") for r in replies] == list(range(20))
    assert srv.accepts == 1 and client.connects == 1
    assert {r.get_int("conn") for r in replies} == {1}


def test_client_reconnects_after_server_side_close(qdir):
    async def main():
        srv = await EchoServer(service_path(qdir, "private/echo"), close_after=3).start()
        client = ServiceClient(qdir, "private/echo", timeout=5)
        replies = []
        for i in range(7):
            replies.append(await client.request({"n": i}))
            if i == 2:
                await asyncio.sleep(0.05)   # let the close arrive, as between messages
        await client.close()
        await srv.stop()
        return srv, replies
    srv, replies = asyncio.run(main())
    assert [r.get_int("n") for r in replies] == list(range(7))
    assert [r.get_int("conn") for r in replies] == [1, 1, 1, 2, 2, 2, 3]
    assert srv.requests == 7                # nothing was sent twice


def test_client_resends_once_when_idle_close_races(qdir):
    # The server closes right after reading the next request, without answering
    # (it was already closing when the request came): the client resends once.
    async def main():
        state = {"accepts": 0}

        async def handler(reader, writer):
            state["accepts"] += 1
            first = state["accepts"] == 1
            try:
                req = await read_attrs(reader, timeout=5)
                await write_attrs(writer, req)
                if first:
                    await read_attrs(reader, timeout=5)   # swallow, then close
                else:
                    await serve_requests(reader, writer, _echo, idle_timeout=5)
            finally:
                writer.close()
        path = service_path(qdir, "private/racy")
        server = await asyncio.start_unix_server(handler, path)
        client = ServiceClient(qdir, "private/racy", timeout=5)
        a = await client.request({"n": 1})
        b = await client.request({"n": 2})
        with pytest.raises(ServiceUnavailable, match="closed the connection before replying"):
            fresh = ServiceClient(qdir, "private/racy", timeout=5)
            state["accepts"] = 0                # next accept is "first" again
            await fresh.request({"n": 3})
            await fresh.request({"n": 4}, resend=False)
        await client.close()
        server.close()
        return a, b, client.connects
    a, b, connects = asyncio.run(main())
    assert a.get_int("n") == 1 and b.get_int("n") == 2
    assert connects == 2                    # the second request went out again, fresh


async def _echo(req: AttrList):
    return req


def test_client_pool_serves_concurrent_requests(qdir):
    async def main():
        gate = asyncio.Event()
        active = {"now": 0, "max": 0}

        async def handle(req):
            active["now"] += 1
            active["max"] = max(active["max"], active["now"])
            await gate.wait()
            active["now"] -= 1
            return req

        async def handler(reader, writer):
            await serve_requests(reader, writer, handle, idle_timeout=5)
            writer.close()
        server = await asyncio.start_unix_server(handler, service_path(qdir, "private/slow"))
        client = ServiceClient(qdir, "private/slow", timeout=5, pool_size=3)
        tasks = [asyncio.create_task(client.request({"n": i})) for i in range(9)]
        while active["now"] < 3:
            await asyncio.sleep(0.01)
        gate.set()
        replies = await asyncio.gather(*tasks)
        await client.close()
        server.close()
        return client, active, replies
    client, active, replies = asyncio.run(main())
    assert sorted(r.get_int("n") for r in replies) == list(range(9))
    assert active["max"] == 3 and client.connects == 3


def test_client_reply_timeout_is_service_unavailable(qdir):
    async def main():
        async def handler(reader, writer):
            await reader.read()             # never answers
            writer.close()
        server = await asyncio.start_unix_server(handler, service_path(qdir, "private/mute"))
        client = ServiceClient(qdir, "private/mute", timeout=0.1)
        with pytest.raises(ServiceUnavailable, match="no reply within 0.1s"):
            await client.request({"a": 1})
        await client.close()
        server.close()
    asyncio.run(main())


def test_connection_context_streams_several_lists(qdir):
    async def main():
        async def handler(reader, writer):
            while True:
                try:
                    lists = [await read_attrs(reader, timeout=5) for _ in range(3)]
                except EOFError:
                    break
                await write_attrs(writer, {"got": len(lists)})
            writer.close()
        server = await asyncio.start_unix_server(handler, service_path(qdir, "private/multi"))
        client = ServiceClient(qdir, "private/multi", timeout=5)
        results = []
        for _ in range(2):
            async with client.connection() as conn:
                await conn.send({"a": 1})
                conn.send_nowait(encode({"b": 2}) + encode({"c": 3}))
                results.append((await conn.recv()).get_int("got"))
        await client.close()
        server.close()
        return client, results
    client, results = asyncio.run(main())
    assert results == [3, 3] and client.connects == 1


def test_get_client_is_shared(qdir):
    a = get_client(qdir, "private/x")
    assert get_client(qdir, "private/x") is a
    assert get_client(qdir, "private/y") is not a


# ------------------------------------------------------------------ blocking API

def run_thread_server(path: str, handler) -> threading.Thread:
    """run_thread_server - a blocking one-connection server in a thread."""
    lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lsock.bind(path)
    lsock.listen(1)

    def serve():
        conn, _ = lsock.accept()
        with conn:
            handler(conn)
        lsock.close()
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return t


def test_request_sync(qdir):
    def handler(conn):
        data = b""
        while not data.endswith(b"\n"):
            data += conn.recv(100)
        conn.sendall(b"status=1:0,")
        conn.sendall(b"echo=" + str(len(data)).encode() + b":" + data + b",\n")
    t = run_thread_server(service_path(qdir, "public/showq"), handler)
    reply = request_sync(qdir, "public/showq", {"request": "list"}, timeout=5)
    t.join(5)
    assert reply.get_int("status") == 0
    assert reply.get_bytes("echo") == b"request=4:list,\n"


def test_sync_connection_many_replies_and_eof(qdir):
    def handler(conn):
        conn.recv(100)
        conn.sendall(b"".join(encode({"qid": f"Q{i}"}) for i in range(3)))
    t = run_thread_server(service_path(qdir, "public/showq"), handler)
    with SyncConnection(qdir, "public/showq", timeout=5) as conn:
        conn.send({"request": "list"})
        qids = [conn.recv().get("qid") for _ in range(3)]
        with pytest.raises(EOFError):
            conn.recv()
    t.join(5)
    assert qids == ["Q0", "Q1", "Q2"]


def test_request_sync_no_server(qdir):
    with pytest.raises(ServiceUnavailable, match="public/showq service: .*retried for 0.2s"):
        request_sync(qdir, "public/showq", {"request": "list"}, timeout=1, retry_for=0.2)


def test_request_sync_timeout(qdir):
    done = threading.Event()

    def handler(conn):
        done.wait(5)
    t = run_thread_server(service_path(qdir, "public/mute"), handler)
    with pytest.raises(ServiceUnavailable, match="no reply within 0.1s"):
        request_sync(qdir, "public/mute", {"a": 1}, timeout=0.1)
    done.set()
    t.join(5)


def test_client_survives_a_new_event_loop(qdir):
    # Commands and tests may call asyncio.run() more than once with one client.
    client = ServiceClient(qdir, "private/echo", timeout=5)

    async def once():
        srv = await EchoServer(service_path(qdir, "private/echo")).start()
        reply = await client.request({"n": 1})
        client._idle[-1].close()            # as asyncio.run's loop teardown would
        await srv.stop()
        os.unlink(service_path(qdir, "private/echo"))
        return reply.get_int("n")
    assert asyncio.run(once()) == 1
    assert asyncio.run(once()) == 1
    assert client.connects == 2
