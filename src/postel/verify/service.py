"""verify - Postel address verification server

SYNOPSIS
    verify [generic daemon options]

    master.cf:
        verify    unix  -       -       n       -       1       verify

DESCRIPTION
    Maintains the record of which recipient addresses are known to be
    deliverable or undeliverable, and sends probe messages to find out, as
    Postfix's verify(8).  smtpd(8) asks it for reject_unverified_recipient
    and reject_unverified_sender; delivery agents report probe results.

    A probe is an ordinary message submitted to cleanup(8) with sender
    $address_verify_sender and the address as its only recipient, marked
    with the trace_flags "verify,record": qmgr and the delivery agents
    treat it as a verification request (nothing is delivered; the smtp
    agent stops after RCPT TO), and the agent reports the outcome back to
    this service with an update request (postel.ipc.verify_client
    verify_append) instead of writing a trace log.  Probe messages are
    never retried: a new query sends a new probe.

    Requests (attribute lists, postel.ipc.attr):

        request=query  address=A
            -> status=S recipient_status=R reason=TEXT
        request=update address=A recipient_status=R reason=TEXT
            -> status=S

    S is VRFY_STAT_OK (0), VRFY_STAT_FAIL (-1: the service has a problem)
    or VRFY_STAT_BAD (-2: a malformed request).  R is a recipient status:
    0 deliverable, 1 undeliverable (temporary), 2 undeliverable, 3 unknown
    (verification in progress).  A query answers at once from the cache and
    starts a probe in the background when the cached result is missing or
    due for a refresh (see postel.verify.cache for the rules).

    The cache is $address_verify_map, opened for update (one verify
    process, one writer); an empty value keeps it in memory, so that it is
    lost when the process exits.  Every $address_verify_cache_cleanup_interval
    the expired entries are removed.

SECURITY
    The service is not reachable from the network; a query can at worst
    make the system send probe messages, which it rate-limits per address
    (one probe per address per 1000 s).

DIAGNOSTICS
    warning: verify: cannot open address_verify_map TYPE:NAME: reason
    warning: verify: probe for ADDR failed: cleanup's reason

CONFIGURATION PARAMETERS
    address_verify_map (btree:$data_directory/verify_cache)
    address_verify_sender ($double_bounce_sender)   probe sender; <> for null
    address_verify_positive_expire_time (31d)
    address_verify_positive_refresh_time (7d)
    address_verify_negative_expire_time (3d)
    address_verify_negative_refresh_time (3h)
    address_verify_negative_cache (yes)
    address_verify_cache_cleanup_interval (12h)     0 disables the cleanup
    cleanup_service_name (cleanup)
    ipc_idle (5s)               close a client connection idle this long

SEE ALSO
    Postfix's verify(8) and ADDRESS_VERIFICATION_README; postel.verify.cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time

from postel import log
from postel.ipc.attr import AttrError, AttrList, serve_requests
from postel.ipc.skeleton import ServiceContext, multi_server_main
from postel.verify.cache import (
    RCPT_STAT_NAMES,
    Policy,
    VerifyEntry,
    decide_query,
    expired,
    forget_after_reply,
    parse_entry,
    probed_entry,
    update_entry,
)

VRFY_STAT_OK = 0
VRFY_STAT_FAIL = -1
VRFY_STAT_BAD = -2

PROBE_FLAGS = "verify,record"     # trace_flags of a probe message
PROBE_CLEANUP_FLAGS = "map_ok"    # canonical/virtual mapping applies, as for other mail


class MemoryCache:
    """MemoryCache - the cache when address_verify_map is empty."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}

    def lookup(self, key: str) -> str | None:
        return self.data.get(key.lower())

    def update(self, key: str, value: str) -> None:
        self.data[key.lower()] = value

    def delete(self, key: str) -> bool:
        return self.data.pop(key.lower(), None) is not None

    def sequence(self):
        return iter(list(self.data.items()))


def open_cache(cfg):
    """open_cache - $address_verify_map for update, or a MemoryCache."""
    spec = cfg.get("address_verify_map").strip()
    if not spec:
        return MemoryCache()
    from postel.tables import LookupFlags, TableError, open_table
    type_name, _, name = spec.partition(":")
    if type_name in ("lmdb", "hash", "btree") and name:
        with contextlib.suppress(OSError):
            os.makedirs(os.path.dirname(name) or ".", exist_ok=True)
    try:
        return open_table(spec, LookupFlags.FOLD_FIX | LookupFlags.OPEN_WRITE, cfg)
    except TableError as exc:
        log.warning("cannot open address_verify_map %s: %s; using a memory cache", spec, exc)
        return MemoryCache()


class Verifier:
    """Verifier - the cache and the probe sender of one verify process."""

    def __init__(self, cfg, queue_directory: str, cache=None, prober=None) -> None:
        self.cfg = cfg
        self.policy = Policy.from_config(cfg)
        self.cache = cache if cache is not None else open_cache(cfg)
        self.queue_directory = queue_directory
        self.prober = prober or self.send_probe
        self.sender = cfg.get("address_verify_sender").strip()
        if self.sender == "<>":
            self.sender = ""
        self.cleanup_endpoint = "private/" + cfg.get("cleanup_service_name")
        self._cleanup = None
        self.probes: set[asyncio.Task] = set()
        self.cleanup_interval = int(cfg.get_time("address_verify_cache_cleanup_interval"))
        self.last_cleanup = time.time()

    # -- cache access

    def _get(self, addr: str) -> VerifyEntry | None:
        try:
            return parse_entry(self.cache.lookup(addr))
        except Exception as exc:  # noqa: BLE001 - a broken cache is a temporary failure
            raise CacheError(str(exc)) from None

    def _put(self, addr: str, entry: VerifyEntry) -> None:
        try:
            self.cache.update(addr, entry.format())
        except Exception as exc:  # noqa: BLE001
            raise CacheError(str(exc)) from None

    def _delete(self, addr: str) -> None:
        with contextlib.suppress(Exception):
            self.cache.delete(addr)

    # -- requests

    def query(self, addr: str, now: int | None = None) -> tuple[VerifyEntry, bool]:
        """query - the cached answer for addr, and whether a probe must go out now."""
        now = int(time.time()) if now is None else now
        stored = self._get(addr)
        answer, probe = decide_query(stored, now, self.policy)
        if stored is not None and answer.status != stored.status and not self.policy.negative_cache:
            self._delete(addr)
        if probe:
            self._put(addr, probed_entry(answer, now))
        elif forget_after_reply(answer, self.policy):
            self._delete(addr)
        return answer, probe

    def update(self, addr: str, status: int, text: str, now: int | None = None) -> None:
        """update - record a probe result (ValueError for a bad status)."""
        now = int(time.time()) if now is None else now
        entry = update_entry(self._get(addr), status, text, now, self.policy)
        if entry is not None:
            self._put(addr, entry)

    def cleanup_cache(self, now: int | None = None) -> int:
        """cleanup_cache - remove expired entries; returns how many."""
        now = int(time.time()) if now is None else now
        try:
            items = list(self.cache.sequence())
        except Exception as exc:  # noqa: BLE001 - a table without sequence()
            log.warning("address_verify_map cleanup: %s", exc)
            return 0
        gone = 0
        for key, raw in items:
            entry = parse_entry(raw)
            if entry is None or expired(entry, now, self.policy) \
                    or (entry.updated == 0 and now - entry.probed > 3 * 86400):
                self._delete(key)
                gone += 1
        if gone:
            log.info("cache %s full cleanup: retained=%d dropped=%d entries",
                     self.cfg.get("address_verify_map") or "memory", len(items) - gone, gone)
        return gone

    def maybe_cleanup(self) -> None:
        """maybe_cleanup - run cleanup_cache once per $address_verify_cache_cleanup_interval."""
        now = time.time()
        if self.cleanup_interval > 0 and now - self.last_cleanup >= self.cleanup_interval:
            self.last_cleanup = now
            self.cleanup_cache(int(now))

    def start_probe(self, addr: str, old: VerifyEntry) -> None:
        """start_probe - send a probe in the background; forget the probe time on failure."""
        async def run() -> None:
            ok = await self.prober(addr)
            if not ok:
                with contextlib.suppress(CacheError):
                    cur = self._get(addr)
                    if cur is not None:
                        self._put(addr, VerifyEntry(cur.status, 0, cur.updated, cur.text))
        task = asyncio.get_running_loop().create_task(run())
        self.probes.add(task)
        task.add_done_callback(self.probes.discard)

    async def send_probe(self, addr: str) -> bool:
        """send_probe - submit the probe message for addr to cleanup."""
        from postel.ipc.cleanup_client import CleanupClient
        if self._cleanup is None:
            self._cleanup = CleanupClient(self.queue_directory, self.cleanup_endpoint,
                                          timeout=300.0)
        content = (b"Subject: probe\r\n"
                   b"\r\n")
        try:
            result = await self._cleanup.submit(
                self.sender, [(addr, "", 0)], content,
                attrs={"trace_flags": PROBE_FLAGS, "rewrite_context": "local"},
                flags=PROBE_CLEANUP_FLAGS)
        except Exception as exc:  # noqa: BLE001 - ServiceUnavailable and transport errors
            log.warning("probe for %s failed: %s", addr, exc)
            return False
        if not result.ok:
            log.warning("probe for %s failed: %d %s %s", addr, result.status, result.dsn,
                        result.reason)
            return False
        log.verbose("%s: probe for <%s> submitted", result.queue_id, addr)
        return True

    # -- protocol

    async def handle(self, req: AttrList) -> list[tuple[str, object]]:
        """handle - answer one request list."""
        what = req.get("request", "")
        addr = req.get("address", "")
        if what not in ("query", "update") or not addr:
            log.warning("bad request: request=%s address=%s", what or "(none)", addr or "(none)")
            return [("status", VRFY_STAT_BAD)]
        self.maybe_cleanup()
        try:
            if what == "query":
                answer, probe = self.query(addr)
                if probe:
                    self.start_probe(addr, answer)
                log.verbose("query %s status=%d", addr, answer.status)
                return [("status", VRFY_STAT_OK), ("recipient_status", answer.status),
                        ("reason", answer.text)]
            try:
                status = req.get_int("recipient_status")
                self.update(addr, status, req.get("reason", ""))
            except (AttrError, ValueError, KeyError) as exc:
                log.warning("bad update request for %s: %s", addr, exc)
                return [("status", VRFY_STAT_BAD)]
            log.verbose("update %s status=%s", addr, RCPT_STAT_NAMES.get(status, status))
            return [("status", VRFY_STAT_OK)]
        except CacheError as exc:
            log.warning("%s: address_verify_map: %s", addr, exc)
            return [("status", VRFY_STAT_FAIL)]


class CacheError(Exception):
    """The address verification cache could not be read or written."""


def _verifier(ctx: ServiceContext) -> Verifier:
    v = ctx.state.get("verifier")
    if v is None:
        v = ctx.state["verifier"] = Verifier(ctx.cfg, ctx.queue_directory)
    return v


async def serve_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       ctx: ServiceContext) -> None:
    """serve_client - answer query and update requests on one connection."""
    verifier = _verifier(ctx)
    try:
        idle = float(ctx.cfg.get_time("ipc_idle")) * 60
    except (KeyError, ValueError):
        idle = 300.0
    try:
        await serve_requests(reader, writer, verifier.handle, idle_timeout=idle)
    except AttrError as exc:
        log.warning("bad request: %s", exc)


def post_init(ctx: ServiceContext) -> None:
    """post_init - open the cache once, after the privilege switch."""
    _verifier(ctx)


def main(argv: list[str]) -> int:
    """main - the verify daemon."""
    return multi_server_main("verify", argv, serve_client, post_init=post_init)
