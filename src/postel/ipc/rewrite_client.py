"""client - ask trivial-rewrite(8) to rewrite or resolve an address

SYNOPSIS
    from postel.ipc.rewrite_client import RewriteClient
    rw = RewriteClient(queue_directory)
    addr = await rw.rewrite("local", "user")            # "user@example.com"
    r = await rw.resolve("user@example.com", sender)   # Resolved
    r = await rw.verify("user@example.com", sender)    # with address_verify_* overrides

DESCRIPTION
    The one interface cleanup(8), smtpd(8), qmgr(8) and verify(8) use to
    reach trivial-rewrite on private/rewrite (Postfix's rewrite_clnt(3) and
    resolve_clnt(3)).  The connection is kept open between requests (see
    postel.ipc.client.ServiceClient).

    rewrite() takes and returns the external (quoted) form;
    rewrite_internal() converts from and to the internal form around it.
    resolve() and verify() take internal forms and return a Resolved
    record (transport, nexthop, recipient, flags).

    Like Postfix's clients, it remembers recent answers: up to cache_size
    results, each for at most cache_ttl seconds.  An answer with FLAG_FAIL
    is never cached.

    rewrite_many(), rewrite_internal_many() and resolve_many() answer a
    list of addresses (cleanup's recipients of one message, a slice of
    qmgr's recipients) with the same cache; the addresses not cached are
    asked on one connection with up to PIPELINE_WINDOW requests in
    flight (the service answers requests on a connection in order), so
    the round trips of a thousand recipients overlap instead of adding
    up.  A failure of the pipelined exchange raises ServiceUnavailable
    or the attribute error; callers that want the exact error of the
    one-by-one path fall back to it.

DIAGNOSTICS
    ServiceUnavailable (from postel.ipc.client) when the service cannot be
    reached or does not answer; the caller treats that as a temporary
    failure, like FLAG_FAIL.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from postel.ipc.attr import encode
from postel.ipc.client import ServiceClient, ServiceUnavailable, _reason
from postel.mail.address import quote_local, unquote_local
from postel.mail.resolve_types import FLAG_FAIL, Resolved

ENDPOINT = "private/rewrite"
PIPELINE_WINDOW = 64            # requests in flight on one connection (rewrite_many etc.)


class RewriteClient:
    """A cached, connection-keeping client for private/rewrite."""

    def __init__(self, queue_directory: str, endpoint: str = ENDPOINT, *,
                 cache_size: int = 100, cache_ttl: float = 10.0, timeout: float = 60.0):
        self.service = ServiceClient(queue_directory, endpoint, timeout=timeout)
        self.cache_size = cache_size
        self.cache_ttl = cache_ttl
        self.requests = 0                    # requests sent to the service
        self._cache: OrderedDict[tuple, tuple[float, object]] = OrderedDict()

    def _cached(self, key: tuple):
        """_cached - a fresh cached answer, or None."""
        hit = self._cache.get(key)
        if hit is None:
            return None
        stamp, value = hit
        if time.monotonic() - stamp > self.cache_ttl:
            del self._cache[key]
            return None
        self._cache.move_to_end(key)
        return value

    def _remember(self, key: tuple, value: object) -> None:
        """_remember - cache an answer, dropping the oldest beyond cache_size."""
        self._cache[key] = (time.monotonic(), value)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def flush(self) -> None:
        """flush - forget every cached answer."""
        self._cache.clear()

    async def rewrite(self, rule: str, addr: str) -> str:
        """rewrite - rewrite an external-form address with rule "local" or "remote"."""
        key = ("rewrite", rule, addr)
        hit = self._cached(key)
        if hit is not None:
            return hit  # type: ignore[return-value]
        self.requests += 1
        reply = await self.service.request({"request": "rewrite", "rule": rule,
                                            "address": addr})
        result = reply.get("address", addr) or ""
        if not (reply.get_int("flags", 0) or 0) & FLAG_FAIL:
            self._remember(key, result)
        return result

    async def rewrite_internal(self, rule: str, addr: str) -> str:
        """rewrite_internal - as rewrite(), for internal-form addresses."""
        return unquote_local(await self.rewrite(rule, quote_local(addr)))

    async def _resolve(self, kind: str, addr: str, sender: str) -> Resolved:
        """_resolve - one resolve or verify request, through the cache."""
        key = (kind, addr, sender)
        hit = self._cached(key)
        if hit is not None:
            return hit  # type: ignore[return-value]
        self.requests += 1
        reply = await self.service.request({"request": kind, "sender": sender,
                                            "address": addr})
        result = Resolved(reply.get("transport", "") or "", reply.get("nexthop", "") or "",
                          reply.get("recipient", "") or "", reply.get_int("flags", 0) or 0)
        if not result.flags & FLAG_FAIL:
            self._remember(key, result)
        return result

    async def resolve(self, addr: str, sender: str = "") -> Resolved:
        """resolve - (transport, nexthop, recipient, flags) for an internal-form address."""
        return await self._resolve("resolve", addr, sender)

    async def verify(self, addr: str, sender: str = "") -> Resolved:
        """verify - resolve with the address_verify_* overrides (probes)."""
        return await self._resolve("verify", addr, sender)

    async def _pipeline(self, requests: list[dict]) -> list:
        """_pipeline - requests on one connection, PIPELINE_WINDOW in flight; replies in order.

        Errors as ServiceClient.request(): a pooled connection that the
        service closed while idle is replaced once; otherwise EOF, a
        connection error or a timeout is ServiceUnavailable."""
        wires = [encode(r) for r in requests]
        n = len(wires)
        svc = self.service
        for attempt in (1, 2):
            replies: list = []
            reused = False
            try:
                async with svc.connection() as conn:
                    reused = conn.uses > 0
                    sent = min(n, PIPELINE_WINDOW)
                    conn.send_nowait(b"".join(wires[:sent]))
                    while len(replies) < n:
                        replies.append(await conn.recv())
                        # Refill when half the window is answered: one write
                        # per PIPELINE_WINDOW/2 requests, not one per reply.
                        if sent < n and sent - len(replies) <= PIPELINE_WINDOW // 2:
                            more = min(n, len(replies) + PIPELINE_WINDOW)
                            conn.send_nowait(b"".join(wires[sent:more]))
                            sent = more
                return replies
            except (EOFError, ConnectionError) as exc:
                if reused and not replies and attempt == 1:
                    continue            # closed while idle: once more, fresh
                what = "closed the connection" if isinstance(exc, EOFError) else _reason(exc)
                raise ServiceUnavailable(svc.endpoint,
                                         f"{svc.path}: {what} before replying") from None
            except TimeoutError:
                raise ServiceUnavailable(svc.endpoint,
                                         f"{svc.path}: no reply within {svc.timeout:g}s") from None
        raise AssertionError("not reached")  # pragma: no cover

    async def _many(self, kind: str, addrs: list[str], extra: dict, key_of, result_of) -> list:
        """_many - answers for addrs through the cache; the misses pipelined, once each."""
        out: list = [None] * len(addrs)
        todo: dict[str, list[int]] = {}
        for i, addr in enumerate(addrs):
            hit = self._cached(key_of(addr))
            if hit is not None:
                out[i] = hit
            else:
                todo.setdefault(addr, []).append(i)
        if not todo:
            return out
        keys = list(todo)
        self.requests += len(keys)
        replies = await self._pipeline([{"request": kind, **extra, "address": a} for a in keys])
        for addr, reply in zip(keys, replies, strict=True):
            result = result_of(addr, reply)
            if not (reply.get_int("flags", 0) or 0) & FLAG_FAIL:
                self._remember(key_of(addr), result)
            for i in todo[addr]:
                out[i] = result
        return out

    async def rewrite_many(self, rule: str, addrs: list[str]) -> list[str]:
        """rewrite_many - rewrite() of each external-form address, pipelined."""
        return await self._many("rewrite", addrs, {"rule": rule},
                                lambda a: ("rewrite", rule, a),
                                lambda a, reply: reply.get("address", a) or "")

    async def rewrite_internal_many(self, rule: str, addrs: list[str]) -> list[str]:
        """rewrite_internal_many - rewrite_internal() of each internal-form address."""
        done = await self.rewrite_many(rule, [quote_local(a) for a in addrs])
        return [unquote_local(a) for a in done]

    async def resolve_many(self, addrs: list[str], sender: str = "") -> list[Resolved]:
        """resolve_many - resolve() of each internal-form address, pipelined."""
        return await self._many("resolve", addrs, {"sender": sender},
                                lambda a: ("resolve", a, sender),
                                lambda a, reply: Resolved(
                                    reply.get("transport", "") or "",
                                    reply.get("nexthop", "") or "",
                                    reply.get("recipient", "") or "",
                                    reply.get_int("flags", 0) or 0))

    async def close(self) -> None:
        """close - close the connection to the service."""
        await self.service.close()
