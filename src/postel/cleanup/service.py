"""service - the cleanup(8) server: protocol, queue file, verdict

SYNOPSIS
    cleanup [generic daemon options]
    (python -m postel.cleanup.service -c DIR -S unix:/path, for tests)

DESCRIPTION
    serve_client() speaks the cleanup protocol (see postel.cleanup) on one
    connection, one message after the other.  Per message:

      open      reserve a queue ID, create "<qid>.tmp" in incoming/
                (queue_minfree is checked first: 452 4.3.1)
      envelope  rewrite the sender and recipients (trivial-rewrite,
                canonical, masquerading, virtual aliases, duplicates)
      data      stream the content through MessageState; once the primary
                headers are done the envelope is written, then every line
                goes straight to the queue file
      close     finish: extracted recipients (-t, BCC actions, always_bcc,
                sender_bcc_maps, recipient_bcc_maps), then group commit
                (fsync file, rename, fsync directory) and only then the
                reply.  A rejected, discarded or failed message is removed.
      abort     remove the file.
    A client that disconnects in the middle of a message leaves nothing
    behind: the temporary file is removed.

    HOLD puts the file straight into the hold queue.  FILTER sets the
    envelope content_filter when it comes from a header; a body FILTER or
    REDIRECT becomes an extracted attribute (content_filter, redirect).

CONFIGURATION PARAMETERS
    queue_minfree (0), message_size_limit (10240000), header_size_limit
    (102400), line_length_limit (2048), hopcount_limit (50),
    body_checks_size_limit (51200), header_checks, mime_header_checks,
    nested_header_checks, body_checks, always_add_missing_headers (no),
    undisclosed_recipients_header (), message_drop_headers,
    header_from_format (standard), duplicate_filter_limit (1000),
    enable_original_recipient (yes), append_at_myorigin, append_dot_mydomain,
    myorigin, mydomain, myhostname, delay_warning_time (0h: a delay warning
    record at arrival + this time when set), and those of postel.cleanup.addr.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sys
import time

from postel import log
from postel.cleanup.addr import AddressMaps, AliasExpansionError
from postel.cleanup.checks import CheckTables
from postel.cleanup.message import PRIMARY, MessageState, Settings
from postel.ipc.attr import AttrError, Limits, read_attrs, write_attrs
from postel.ipc.trigger import QMGR_SCAN_INCOMING, send_trigger_async
from postel.queue import Committer, Envelope, QueueDir, QueueFileWriter, QueueFull, Recipient
from postel.queue.commit import COMMIT_METHODS
from postel.queue.qid import new_qid
from postel.queue.records import DSN_RET_FULL, DSN_RET_HDRS
from postel.queue.recycle import Recycler
from postel.tables import TableError, TableUnavailable, open_table

DEFAULT_FLAGS = frozenset({"bcc_ok", "map_ok", "milter_ok"})
KNOWN_FLAGS = DEFAULT_FLAGS | {"extract_recipients", "hold", "none"}
# Envelope attributes stored as named attributes in the queue file.
LOG_ATTRS = ("client_name", "client_address", "client_port", "helo_name", "protocol",
             "sasl_username", "sasl_method", "rewrite_context", "encoding", "smtputf8",
             "reverse_client_name", "server_address", "server_port", "trace_flags")
REQUEST_LIMITS = Limits(max_value=256 * 1024, max_count=100000, max_total=64 * 1024 * 1024)
HEADER_BUFFER_LIMIT = 4 * 1024 * 1024     # primary header records held before the envelope
HEADER_ADDR_CACHE = 1024                  # header addresses whose rewrite is remembered
SPACE_CACHE = 1.0                         # seconds one statvfs(2) answers queue_minfree checks

R_STORAGE = (452, "4.3.1", "Insufficient system storage")
R_WRITE = (451, "4.3.0", "Error: queue file write error")
R_LOOKUP = (451, "4.3.0", "Error: temporary lookup failure")
R_ALIAS = (451, "4.6.0", "Alias expansion error")
R_NORCPT = (554, "5.1.3", "No recipients specified")


def _cfg(cfg, kind: str, name: str, default):
    """_cfg - a typed parameter, or default when it is not declared."""
    try:
        return getattr(cfg, "get" if kind == "str" else f"get_{kind}")(name)
    except KeyError:
        return default


class CleanupService:
    """CleanupService - per-process state: settings, tables, clients, committer."""

    def __init__(self, cfg, queue_directory: str, *, rewrite_client=None) -> None:
        self.cfg = cfg
        self.queue_directory = queue_directory
        self.qd = QueueDir.from_params({
            "queue_directory": queue_directory,
            "hash_queue_names": _cfg(cfg, "str", "hash_queue_names", "deferred, defer"),
            "hash_queue_depth": str(_cfg(cfg, "int", "hash_queue_depth", 1))})
        self.qd.space_cache = SPACE_CACHE
        recycle_limit = _cfg(cfg, "int", "queue_file_recycle_limit", 200)
        if recycle_limit > 0:
            self.qd.recycler = Recycler(self.qd, recycle_limit,
                                        _cfg(cfg, "size", "queue_file_recycle_size", 262144))
        method = _cfg(cfg, "str", "queue_commit_method", "syncfs").strip().lower() or "syncfs"
        if method not in COMMIT_METHODS:
            log.warning("queue_commit_method: unknown value %r, using fsync", method)
            method = "fsync"
        self.committer = Committer(method=method)
        if self.committer.fallback_reason:
            log.warning("queue_commit_method = syncfs: %s; using fsync",
                        self.committer.fallback_reason)
        self._qmgr_trigger_pending = False
        self.open_jobs = 0               # messages between open and close (Job)
        self.settings = settings_from_config(cfg)
        self.maps = AddressMaps.from_config(cfg)
        self.queue_minfree = _cfg(cfg, "size", "queue_minfree", 0)
        self.dup_limit = _cfg(cfg, "int", "duplicate_filter_limit", 1000)
        self.orcpt = _cfg(cfg, "bool", "enable_original_recipient", True)
        self.myorigin = _cfg(cfg, "str", "myorigin", "") or self.settings.myhostname
        self.mydomain = _cfg(cfg, "str", "mydomain", "")
        self.append_at = _cfg(cfg, "bool", "append_at_myorigin", True)
        self.append_dot = _cfg(cfg, "bool", "append_dot_mydomain", False)
        self.delay_warning = _cfg(cfg, "time", "delay_warning_time", 0)
        if rewrite_client is None:
            from postel.ipc.rewrite_client import RewriteClient
            rewrite_client = RewriteClient(queue_directory)
        self.rewrite_client = rewrite_client
        maps = self.maps
        if not (maps.canonical_maps or maps.sender_canonical_maps
                or maps.recipient_canonical_maps):
            # Without canonical tables the header rewrite depends on main.cf
            # alone (read once per process): remember the answers.
            self.rewrite_header_addr = functools.lru_cache(maxsize=HEADER_ADDR_CACHE)(
                self.rewrite_header_addr)

    async def rewrite_envelope(self, context: str, addr: str) -> str:
        """rewrite_envelope - trivial-rewrite an internal-form address."""
        if not addr:
            return addr
        return await self.rewrite_client.rewrite_internal(context, addr)

    def rewrite_header_addr(self, addr: str, hclass: str) -> str:
        """rewrite_header_addr - local-context header address rewriting.

        XXX The rules of trivial-rewrite(8) local context (append_at_myorigin,
        append_dot_mydomain) are applied here without a round trip, since
        header processing is synchronous; see docs/cleanup.md.  When no
        canonical table is configured the answers are cached per process
        (HEADER_ADDR_CACHE addresses, least recently used out first).
        """
        if "@" not in addr:
            if self.append_at and self.myorigin and "!" not in addr and "%" not in addr:
                addr = f"{addr}@{self.myorigin}"
        else:
            user, _, host = addr.rpartition("@")
            if self.append_dot and self.mydomain and "." not in host and \
                    not host.startswith("["):
                addr = f"{user}@{host}.{self.mydomain}"
        addr = self.maps.canonical(addr, hclass)
        return self.maps.masquerade(addr, hclass)

    def notify_qmgr(self) -> None:
        """notify_qmgr - tell qmgr that incoming/ has new mail (one trigger per burst)."""
        if self._qmgr_trigger_pending:
            return
        self._qmgr_trigger_pending = True
        asyncio.get_running_loop().create_task(self._trigger_qmgr())

    async def _trigger_qmgr(self) -> None:
        try:
            await asyncio.sleep(0)
            await send_trigger_async(self.queue_directory, "public/qmgr", QMGR_SCAN_INCOMING)
        finally:
            self._qmgr_trigger_pending = False

    def close(self) -> None:
        """close - stop the committer's threads."""
        self.committer.close()


def settings_from_config(cfg) -> Settings:
    """settings_from_config - Settings with every check table opened once."""
    def checks(name: str) -> CheckTables | None:
        names = _cfg(cfg, "list", name, [])
        return CheckTables(names, open_table) if names else None
    drop = _cfg(cfg, "str", "message_drop_headers", "bcc, content-length, resent-bcc, return-path")
    return Settings(
        myhostname=_cfg(cfg, "str", "myhostname", "") or "localhost",
        message_size_limit=_cfg(cfg, "size", "message_size_limit", 10240000),
        header_size_limit=_cfg(cfg, "size", "header_size_limit", 102400),
        line_length_limit=_cfg(cfg, "int", "line_length_limit", 2048),
        hopcount_limit=_cfg(cfg, "int", "hopcount_limit", 50),
        body_checks_size_limit=_cfg(cfg, "size", "body_checks_size_limit", 51200),
        always_add_missing_headers=_cfg(cfg, "bool", "always_add_missing_headers", False),
        undisclosed_recipients_header=_cfg(cfg, "str", "undisclosed_recipients_header", ""),
        message_drop_headers=frozenset(w.lower() for w in drop.replace(",", " ").split()),
        header_from_format=_cfg(cfg, "str", "header_from_format", "standard"),
        header_checks=checks("header_checks"),
        mime_header_checks=checks("mime_header_checks"),
        nested_header_checks=checks("nested_header_checks"),
        body_checks=checks("body_checks"),
    )


def parse_flags(value: str | None) -> frozenset:
    """parse_flags - the cleanup flags of an open request (absent: the defaults)."""
    if value is None or not value.strip():
        return DEFAULT_FLAGS
    words = {w.strip().lower() for w in value.replace(" ", ",").split(",") if w.strip()}
    return frozenset(words & KNOWN_FLAGS - {"none"})


class Job:
    """Job - one message between open and close."""

    def __init__(self, svc: CleanupService, flags: frozenset, qid: str | None = None) -> None:
        self.svc = svc
        self.flags = flags
        self.qid = qid or new_qid()
        self.writer: QueueFileWriter | None = None
        self.status: tuple | None = None          # a failure found by the service
        self.state: MessageState | None = None
        self.env: Envelope | None = None
        self.context = "remote"
        self.env_written = False
        self.held: list = []                      # records before the envelope is written
        self.held_size = 0
        self.cont = bytearray()
        self.rcpts: list[Recipient] = []
        self.dups: set = set()
        svc.qd.check_space(None, svc.queue_minfree, svc.settings.message_size_limit)
        self.writer = QueueFileWriter(svc.qd, "incoming", qid=self.qid,
                                      line_length_limit=svc.settings.line_length_limit,
                                      lazy=True)
        self._live = True
        svc.open_jobs += 1

    def release(self) -> None:
        """release - this message is no longer in progress (idempotent)."""
        if self._live:
            self._live = False
            self.svc.open_jobs -= 1

    # ------------------------------------------------------------ failures

    def fail(self, status: tuple) -> None:
        """fail - remember the first failure and drop the file."""
        if self.status is None:
            self.status = status
        self.drop()

    def drop(self) -> None:
        """drop - remove the temporary file (if any)."""
        if self.writer is not None:
            self.writer.abort()
            self.writer = None
        self.release()

    def _io(self, exc: Exception) -> None:
        """_io - a queue file write error."""
        if isinstance(exc, QueueFull):
            log.warning("%s: %s", self.qid, exc)
            self.fail(R_STORAGE)
        else:
            log.warning("%s: queue file write error: %s", self.qid, exc)
            self.fail(R_WRITE)

    # ------------------------------------------------------------ envelope

    async def envelope(self, req) -> None:
        """envelope - sender, recipients and attributes, rewritten and mapped."""
        svc = self.svc
        # One pass over the request: the first value of each name (as req.get()),
        # every rcpt, orcpt and notify in order (as req.getall()).
        first: dict = {}
        rcpts: list[str] = []
        orcpts: list[str] = []
        notifies: list[bytes] = []
        for name, v in req:
            if name == "rcpt":
                rcpts.append(v.decode("utf-8", "surrogateescape"))
            elif name == "orcpt":
                orcpts.append(v.decode("utf-8", "surrogateescape"))
            elif name == "notify":
                notifies.append(v)
            elif name not in first:
                first[name] = v
        attrs = {}
        for name in LOG_ATTRS:
            v = first.get(name)
            if v:
                attrs[name] = v.decode("utf-8", "surrogateescape")
        self.context = "local" if first.get("rewrite_context") == b"local" else "remote"
        v = first.get("sender")
        sender = v.decode("utf-8", "surrogateescape") if v else ""
        v = first.get("arrival_time")
        try:
            arrival = float(v.decode("utf-8", "surrogateescape")) if v else 0.0
        except ValueError:
            arrival = 0.0
        v = first.get("dsn_ret")
        ret = v.decode("utf-8", "surrogateescape").upper() if v else ""
        dsn_ret = {"FULL": DSN_RET_FULL, "HDRS": DSN_RET_HDRS, "1": DSN_RET_FULL,
                   "2": DSN_RET_HDRS}.get(ret, 0)
        try:
            if sender:
                sender = await svc.rewrite_envelope(self.context, sender)
                if "map_ok" in self.flags:
                    sender = svc.maps.canonical(sender, "envelope_sender")
                sender = svc.maps.masquerade(sender, "envelope_sender")
            rewritten = await self._rewrite_rcpts(rcpts)
            for i, rcpt in enumerate(rcpts):
                orcpt = orcpts[i] if i < len(orcpts) else ""
                try:
                    notify = int(notifies[i]) if i < len(notifies) else 0
                except ValueError:
                    notify = 0
                await self.add_recipient(rcpt, orcpt, notify,
                                         rewritten[i] if rewritten is not None else None)
        except (TableUnavailable, TableError) as exc:
            log.warning("%s: %s", self.qid, exc)
            self.fail(R_LOOKUP)
        except AliasExpansionError:
            self.fail(R_ALIAS)
        except Exception as exc:  # noqa: BLE001 - trivial-rewrite down etc.
            log.warning("%s: address rewriting failed: %s", self.qid, exc)
            self.fail(R_LOOKUP)
        v = first.get("dsn_envid")
        envid = v.decode("utf-8", "surrogateescape") if v else ""
        v = first.get("fullname")
        self.env = Envelope(sender=sender, recipients=[], time=arrival, attrs=attrs,
                            dsn_envid=envid, dsn_ret=dsn_ret,
                            full_name=v.decode("utf-8", "surrogateescape") if v else "",
                            warn_time=int((arrival or time.time()) + svc.delay_warning)
                            if svc.delay_warning > 0
                            else 0)
        st = MessageState(svc.settings, self.qid, sender=sender,
                          fullname=self.env.full_name, attrs=attrs,
                          local=self.context == "local",
                          extract="extract_recipients" in self.flags,
                          first_rcpt=self.rcpts[0].address if self.rcpts else "")
        if self.context == "local":
            st.rewrite = svc.rewrite_header_addr
        self.state = st

    async def _rewrite_rcpts(self, rcpts: list[str]) -> list[str] | None:
        """_rewrite_rcpts - the envelope recipients rewritten in one pipelined exchange.

        None when there is only one (add_recipient asks for it), when the
        rewrite client has no rewrite_internal_many (a test double), or when
        the exchange failed: add_recipient then asks for each recipient, and
        a failure is reported as it always was.  As rewrite_envelope, an
        empty address is not sent."""
        if len(rcpts) < 2:
            return None
        many = getattr(self.svc.rewrite_client, "rewrite_internal_many", None)
        if many is None:
            return None
        asked = [r for r in rcpts if r]
        try:
            answers = iter(await many(self.context, asked) if asked else [])
        except Exception:       # noqa: BLE001 - the one-by-one path reports it
            return None
        return [next(answers) if r else r for r in rcpts]

    async def add_recipient(self, rcpt: str, orcpt: str = "", notify: int = 0,
                            rewritten: str | None = None) -> None:
        """add_recipient - rewrite, map, expand and de-duplicate one recipient.

        rewritten: the recipient already rewritten by trivial-rewrite (the
        envelope's recipients are asked for together), else it is asked here."""
        svc = self.svc
        orig = rcpt
        addr = rewritten if rewritten is not None else \
            await svc.rewrite_envelope(self.context, rcpt)
        if "map_ok" in self.flags:
            addr = svc.maps.canonical(addr, "envelope_recipient")
        addr = svc.maps.masquerade(addr, "envelope_recipient")
        targets = svc.maps.virtual_expand(addr) if "map_ok" in self.flags else [addr]
        for target in targets:
            key = (target.lower(), orcpt, notify, orig)
            if key in self.dups:
                continue
            if len(self.dups) < svc.dup_limit:
                self.dups.add(key)
            r = Recipient(target, orig_rcpt=orig if svc.orcpt else "", dsn_notify=notify,
                          dsn_orcpt=orcpt)
            if self.env_written and self.writer is not None:
                self.writer.add_recipient(r)
            self.rcpts.append(r)

    # ------------------------------------------------------------ content

    async def data(self, chunk: bytes) -> None:
        """data - one content chunk."""
        st = self.state
        if self.status is not None or st is None:
            return
        try:
            st.feed(chunk)
        except (TableUnavailable, TableError) as exc:
            log.warning("%s: %s", self.qid, exc)
            self.fail(R_LOOKUP)
            return
        await self._store(st.take_runs())

    async def _store(self, records: list) -> None:
        """_store - write records (MessageState.take_runs() entries); hold them
        until the primary headers are done."""
        st = self.state
        if st.status[0] != 0:
            self.drop()
            return
        if not self.env_written:
            self.held.extend(records)
            if st._state == PRIMARY and not st._finished:
                # Runs come from the body only: these are all (kind, line).
                self.held_size += sum([len(r[1]) for r in records])
                if self.held_size < HEADER_BUFFER_LIMIT:
                    return
            records, self.held = self.held, []
            if not await self._write_envelope():
                return
        w = self.writer
        if w is None or not records:
            return
        lines = content_lines(records, self.cont, st.conts > 0)
        if not lines:
            return
        try:
            w.write_lines(lines)
        except (OSError, QueueFull) as exc:
            self._io(exc)

    async def _write_envelope(self) -> bool:
        """_write_envelope - the envelope segment, once header checks are done."""
        st, env, w = self.state, self.env, self.writer
        if w is None or env is None:
            return False
        try:
            for addr in st.recipients_extracted():
                await self.add_recipient(addr)
            if st.filter:
                env.content_filter, st.filter = st.filter, ""
            if st.redirect:
                env.attrs["redirect"], st.redirect = st.redirect, ""
        except (TableUnavailable, TableError):
            self.fail(R_LOOKUP)
            return False
        except AliasExpansionError:
            self.fail(R_ALIAS)
            return False
        except Exception as exc:  # noqa: BLE001
            log.warning("%s: address rewriting failed: %s", self.qid, exc)
            self.fail(R_LOOKUP)
            return False
        st.extracted.clear()
        st.resent_extracted.clear()
        env.recipients = list(self.rcpts)
        try:
            w.write_envelope(env)
        except (OSError, QueueFull) as exc:
            self._io(exc)
            return False
        self.env_written = True
        return True

    async def close(self) -> tuple:
        """close - finish the message; returns (status, dsn, reason)."""
        st = self.state
        if self.status is None and st is None:
            self.fail((451, "4.3.0", "Error: no envelope"))
        if self.status is None:
            try:
                st.finish()
            except (TableUnavailable, TableError) as exc:
                log.warning("%s: %s", self.qid, exc)
                self.fail(R_LOOKUP)
        if self.status is None:
            await self._store(st.take_runs())
            if self.cont and self.writer is not None and self.status is None:
                await self._store([(b"N", b"")])
        if self.status is None and st.status[0] != 0:
            self.fail(st.status)
        if self.status is not None:
            self.drop()
            return self.status
        if st.discard:
            self.drop()
            return (0, "2.0.0", "")
        try:
            await self._extracted()
        except (TableUnavailable, TableError):
            self.fail(R_LOOKUP)
        except AliasExpansionError:
            self.fail(R_ALIAS)
        except (OSError, QueueFull) as exc:
            self._io(exc)
        except Exception as exc:  # noqa: BLE001
            log.warning("%s: address rewriting failed: %s", self.qid, exc)
            self.fail(R_LOOKUP)
        if self.status is not None:
            return self.status
        if not self.rcpts:
            self.fail(R_NORCPT)
            return self.status
        w = self.writer
        if st.hold or "hold" in self.flags:
            self._to_hold(w)
        try:
            # With no other message in progress, commit without the thread hand-off.
            await self.svc.committer.commit(w, inline=self.svc.open_jobs <= 1)
        except (OSError, QueueFull) as exc:
            self._io(exc)
            return self.status
        self.writer = None
        if w.queue_name == "incoming":
            self.svc.notify_qmgr()
        return (0, "2.0.0", "")

    async def _extracted(self) -> None:
        """_extracted - BCC recipients and late attributes after the content."""
        st, svc, w = self.state, self.svc, self.writer
        bcc = list(st.bcc)
        if "bcc_ok" in self.flags:
            if svc.maps.always_bcc:
                bcc.append(svc.maps.always_bcc)
            extra = svc.maps.bcc_for_sender(self.env.sender)
            if extra:
                bcc.append(extra)
            for r in list(self.rcpts):
                extra = svc.maps.bcc_for_recipient(r.address)
                if extra:
                    bcc.append(extra)
        attrs = {}
        if st.filter:
            attrs["content_filter"] = st.filter
        if st.redirect:
            attrs["redirect"] = st.redirect
        if attrs:
            w.write_extracted((), attrs)
        for addr in bcc:
            await self.add_recipient(addr)

    def _to_hold(self, w: QueueFileWriter) -> None:
        """_to_hold - make the commit rename the file into the hold queue."""
        qd = self.svc.qd
        qd.ensure_dir("hold", self.qid)
        w.queue_name = "hold"
        w.path = qd.path("hold", self.qid)
        w.dir_path = qd.dir_path("hold", self.qid)
        log.info("%s: hold: %s", self.qid, self.state.hold_reason or "queue file held")


def content_lines(records: list, cont: bytearray, cut: bool) -> list[bytes]:
    """content_lines - the stored lines of MessageState.take_runs() entries.

    An L record's piece waits in cont (across calls) for the rest of its
    line; cut says whether any L record was made so far (if not, every
    entry is a whole line)."""
    if not cont and not cut:
        # No L record so far (the usual message): the lines as they are.
        if len(records) == 1 and type(records[0]) is list:
            return records[0]            # one bulk run of body lines: no copy
        lines = []
        for entry in records:
            if type(entry) is list:
                lines += entry
            else:
                lines.append(entry[1])
        return lines
    lines = []
    for entry in records:
        if type(entry) is list:
            if cont:
                lines.append(bytes(cont) + entry[0])
                cont.clear()
                lines += entry[1:]
            else:
                lines += entry
            continue
        kind, line = entry
        if kind == b"L":
            cont += line
            continue
        if cont:
            lines.append(bytes(cont) + line)
            cont.clear()
        else:
            lines.append(line)
    return lines


def _reply(status: tuple, qid: str) -> dict:
    code, dsn, reason = status
    return {"status": code, "dsn": dsn, "reason": reason, "queue_id": qid}


def get_service(ctx) -> CleanupService:
    """get_service - the process' CleanupService, made on first use."""
    svc = ctx.state.get("cleanup")
    if svc is None:
        svc = ctx.state["cleanup"] = CleanupService(ctx.cfg, ctx.queue_directory)
    return svc


async def serve_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ctx) -> None:
    """serve_client - the cleanup protocol on one connection."""
    svc = get_service(ctx)
    job: Job | None = None
    try:
        while True:
            try:
                req = await read_attrs(reader, REQUEST_LIMITS, timeout=3600)
            except (EOFError, TimeoutError, ConnectionError):
                break
            except AttrError as exc:
                log.warning("cleanup protocol error: %s", exc)
                break
            request = req.get("request", "")
            if request == "data":
                if job is not None:
                    await job.data(req.get_bytes("data", b""))
                continue
            if request == "open":
                if job is not None:
                    job.drop()
                try:
                    # No disk access here: the writer is lazy (the committer's
                    # thread creates small files) and statvfs is cached.
                    job = Job(svc, parse_flags(req.get("flags")), new_qid())
                except QueueFull as exc:
                    log.warning("%s", exc)
                    await write_attrs(writer, _reply(R_STORAGE, ""))
                    job = None
                    continue
                except OSError as exc:
                    log.warning("cannot create queue file: %s", exc)
                    await write_attrs(writer, _reply(R_WRITE, ""))
                    job = None
                    continue
                await write_attrs(writer, {"status": 0, "queue_id": job.qid})
            elif request == "envelope" and job is not None:
                await job.envelope(req)
            elif request == "close" and job is not None:
                status = await job.close()
                job.release()
                await write_attrs(writer, _reply(status, job.qid))
                job = None
            elif request == "abort":
                if job is not None:
                    job.drop()
                    job = None
                await write_attrs(writer, {"status": 0})
            else:
                log.warning("cleanup: unexpected request %r", request[:40])
                break
    finally:
        if job is not None:
            # The client went away in the middle of a message.
            log.warning("%s: client disconnected before the end of the message", job.qid)
            job.drop()


def main(argv: list[str] | None = None) -> int:
    """main - the cleanup daemon."""
    from postel.ipc.skeleton import multi_server_main
    argv = list(sys.argv if argv is None else argv)
    return multi_server_main("cleanup", argv, serve_client, post_init=_post_init)


def _post_init(ctx) -> None:
    """_post_init - open tables now, so that a bad table stops the process early."""
    try:
        get_service(ctx)
    except TableError as exc:
        log.fatal("cleanup: %s", exc)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
