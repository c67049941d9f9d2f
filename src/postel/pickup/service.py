"""pickup - Postel local mail pickup

SYNOPSIS
    pickup [generic daemon options]
    (master.cf: pickup unix n - n 60 1 pickup)

DESCRIPTION
    pickup(8) waits for triggers on public/pickup (sent by sendmail(1) and
    postdrop(1), and by master every $wakeup seconds), scans the maildrop
    queue, and feeds each complete file to cleanup(8):

      * the file must be a regular file (not a symlink); its owner is the
        submitting user: "QID: uid=N from=<sender>" is logged;
      * the file is read and checked with the queue file reader; a damaged
        file is moved to corrupt/ ("warning: QID: corrupt queue file: ...");
      * cleanup gets the envelope (sender, recipients with their DSN
        NOTIFY/ORCPT, full name, DSN ENVID/RET, arrival time) with
        rewrite_context=local, and the content preceded by
        "Received: by $myhostname ($mail_name, from userid N)";
      * only the cleanup flags a user may ask for are passed on
        (extract_recipients for sendmail -t; verify for -bv and trace for -v, passed on as the trace_flags attribute), and
        only the "encoding" attribute: a local user cannot forge
        client_name, protocol and the like;
      * the maildrop file is removed only after cleanup answered: status 0
        (queued), or a permanent reject (5XX).  Rejected local mail is
        returned to the sender, as Postfix's cleanup does: pickup logs
        "warning: QID: uid=N: message rejected by cleanup: CODE DSN TEXT;
        returned to sender" and queues an RFC 3464 non-delivery
        notification (the failure template of bounce(5), from
        MAILER-DAEMON, each recipient "failed" with cleanup's status and
        reason, the message or its header returned per RET and
        $bounce_size_limit).  No notice goes to the null sender or to
        recipients with NOTIFY=NEVER (without FAILURE).  When the notice
        cannot be queued (cleanup unreachable) the file stays and is tried
        again later; when cleanup rejects the notice too, the file is
        removed with a warning.  A temporary failure (4XX, cleanup
        unreachable) keeps the file and ends the scan; the next trigger or
        wakeup tries again.

    Temporary files (names with a dot) are never touched: postdrop renames
    a file into place only once it is complete and on disk.

SECURITY
    pickup reads files written by local users; everything in them is
    checked by the queue file reader, with its hard limits, before use.

CONFIGURATION PARAMETERS
    queue_directory                 where the maildrop queue is
    myhostname, mail_name           for the Received: header
    bounce_size_limit (50000), bounce_template_file, myorigin
                                    for notices about rejected mail
    hash_queue_names, hash_queue_depth
"""

from __future__ import annotations

import os
import stat
import sys
import time

from postel import log
from postel.ipc.skeleton import ServiceContext, trigger_server_main
from postel.mail import dsn as dsnmod
from postel.mail.bounce_templates import load_templates
from postel.mail.headers import local_received_header
from postel.queue import QueueDir, QueueFileCorrupt, QueueFileReader, quarantine
from postel.queue.records import DSN_NOTIFY_FAILURE

MAILDROP = "maildrop"
CLEANUP_ENDPOINT = "public/cleanup"
# Cleanup flags a local user may ask for in the maildrop "flags" attribute.
USER_FLAGS = ("extract_recipients",)
# Delivery report requests (sendmail -bv, -v): stored as the trace_flags attribute for qmgr.
TRACE_FLAGS = ("verify", "trace")
DEFAULT_FLAGS = ("bcc_ok", "map_ok", "milter_ok")
# Maildrop attributes passed on to cleanup.
USER_ATTRS = ("encoding",)
RET_NAMES = {1: "FULL", 2: "HDRS"}

# pickup_file outcomes
DONE, KEEP, RETRY_LATER = "done", "keep", "retry"


class Pickup:
    """Pickup - per-process state: queue directory, cleanup client."""

    def __init__(self, cfg, queue_directory: str, cleanup=None) -> None:
        self.cfg = cfg
        self.qd = QueueDir(queue_directory, _get(cfg, "hash_queue_names", "deferred, defer"),
                           int(_get(cfg, "hash_queue_depth", "1")))
        self.myhostname = _get(cfg, "myhostname", "localhost")
        self.mail_name = _get(cfg, "mail_name", "Postel")
        try:
            self.bounce_size_limit = int(_get(cfg, "bounce_size_limit", "50000"))
        except ValueError:
            self.bounce_size_limit = 50000
        if cleanup is None:
            from postel.ipc.cleanup_client import CleanupClient
            cleanup = CleanupClient(queue_directory, CLEANUP_ENDPOINT)
        self.cleanup = cleanup

    async def scan(self) -> int:
        """scan - feed every complete maildrop file to cleanup; returns how many."""
        count = 0
        for qid in sorted(self.qd.scan(MAILDROP)):
            outcome = await self.pickup_file(qid)
            if outcome == DONE:
                count += 1
            elif outcome == RETRY_LATER:
                break
        return count

    async def pickup_file(self, qid: str) -> str:
        """pickup_file - one maildrop file to cleanup; DONE, KEEP or RETRY_LATER."""
        path = self.qd.path(MAILDROP, qid)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return KEEP
        if not stat.S_ISREG(st.st_mode):
            log.warning("%s: not a regular file: %s", qid, path)
            quarantine(path, "not a regular file")
            return KEEP
        try:
            reader = QueueFileReader(path, writable=False)
        except QueueFileCorrupt as exc:
            log.warning("uid=%d: %s", st.st_uid, "malformed maildrop file")
            quarantine(path, str(exc))
            return KEEP
        except FileNotFoundError:
            return KEEP
        except OSError as exc:
            log.warning("%s: open: %s", path, exc.strerror)
            return KEEP
        with reader:
            return await self._submit(qid, path, st.st_uid, reader)

    async def _submit(self, qid: str, path: str, uid: int, reader: QueueFileReader) -> str:
        """_submit - stream one checked file to cleanup and act on the verdict."""
        from postel.ipc.cleanup_client import CleanupRefused
        from postel.ipc.client import ServiceUnavailable
        env = reader.envelope
        requested = {f.strip() for f in env.attrs.get("flags", "").split(",")}
        flags = list(DEFAULT_FLAGS) + [f for f in USER_FLAGS if f in requested]
        rcpts = [(r.address, r.dsn_orcpt, r.dsn_notify) for r in reader.recipients if not r.done]
        attrs = {"rewrite_context": "local", "fullname": env.full_name or None,
                 "dsn_envid": env.dsn_envid or None,
                 "dsn_ret": RET_NAMES.get(env.dsn_ret),
                 "arrival_time": f"{env.time:.6f}" if env.time else None}
        for name in USER_ATTRS:
            if env.attrs.get(name):
                attrs[name] = env.attrs[name]
        trace = [f for f in TRACE_FLAGS if f in requested]
        if trace:
            attrs["trace_flags"] = ",".join(trace)
        try:
            msg = await self.cleanup.open(",".join(flags))
        except CleanupRefused as exc:
            log.warning("%s: cleanup: %s %s %s; will retry", qid, exc.result.status,
                        exc.result.dsn, exc.result.reason)
            return RETRY_LATER
        except (ServiceUnavailable, OSError) as exc:
            log.warning("%s: cleanup service unavailable: %s; will retry", qid, exc)
            return RETRY_LATER
        new_qid = msg.queue_id
        log.info("%s: uid=%d from=<%s>", new_qid, uid, env.sender)
        try:
            await msg.envelope(env.sender, rcpts, attrs)
            received = local_received_header(myhostname=self.myhostname, qid=new_qid, uid=uid,
                                             mail_name=self.mail_name)
            await msg.write(received.encode("utf-8", "surrogateescape") + b"\n")
            for chunk in reader.iter_content(eol=b"\n"):
                await msg.write(chunk)
        except QueueFileCorrupt as exc:
            await msg.abort()
            quarantine(path, str(exc))
            return KEEP
        result = await msg.close()
        if result.ok:
            _unlink(path)
            return DONE
        if 500 <= result.status < 600:
            log.warning("%s: uid=%d: message rejected by cleanup: %d %s %s; %s",
                        new_qid, uid, result.status, result.dsn, result.reason,
                        "returned to sender" if env.sender else "removed")
            if not await self.return_to_sender(new_qid, path, reader, result):
                return RETRY_LATER
            _unlink(path)
            return DONE
        log.warning("%s: uid=%d: cleanup: %d %s %s; %s stays in the maildrop queue",
                    new_qid, uid, result.status, result.dsn, result.reason, qid)
        return RETRY_LATER


    async def return_to_sender(self, qid: str, path: str, reader: QueueFileReader,
                               result) -> bool:
        """return_to_sender - a non-delivery notice for rejected mail; False: try again later."""
        from postel.ipc.cleanup_client import CleanupRefused
        from postel.ipc.client import ServiceUnavailable
        env = reader.envelope
        status = result.dsn if str(result.dsn or "").startswith("5.") else "5.0.0"
        reason = f"message rejected by cleanup: {result.reason}".strip()
        entries = [{"recipient": r.address, "orig_rcpt": r.orig_rcpt, "dsn_orcpt": r.dsn_orcpt,
                    "dsn_notify": str(r.dsn_notify), "status": status, "action": "failed",
                    "reason": reason}
                   for r in reader.recipients if not r.done
                   and (r.dsn_notify == 0 or r.dsn_notify & DSN_NOTIFY_FAILURE)]
        if not env.sender or not entries:
            return True
        report = dsnmod.Report(kind="failure", queue_id=qid, notice_qid="", to=env.sender,
                               sender=env.sender, entries=entries, dsn_envid=env.dsn_envid,
                               now=time.time())
        try:
            msg = await self.cleanup.open("map_ok")
        except (CleanupRefused, ServiceUnavailable, OSError) as exc:
            log.warning("%s: sender non-delivery notification: cannot queue: %s", qid, exc)
            return False
        report.notice_qid = msg.queue_id
        try:
            orig = dsnmod.read_original(path, dsnmod.returned_headers_only(report, env.dsn_ret),
                                        self.bounce_size_limit)
            data = dsnmod.build_notice(report, load_templates(self.cfg).failure, self.cfg, orig)
            attrs = {"rewrite_context": "local"}
            if not data.isascii():
                attrs["encoding"] = "8bitmime"
            await msg.envelope("", [(env.sender, "", 0)], attrs)
            await msg.write(data)
            notice = await msg.close()
        except (ServiceUnavailable, OSError) as exc:
            log.warning("%s: sender non-delivery notification: %s", qid, exc)
            return False
        if not notice.ok:
            log.warning("%s: sender non-delivery notification: cleanup said %s %s %s; "
                        "message removed", qid, notice.status, notice.dsn, notice.reason)
            return notice.status >= 500
        log.info("%s: sender non-delivery notification: %s", qid, notice.queue_id or msg.queue_id)
        return True


def _unlink(path: str) -> None:
    """_unlink - remove a maildrop file that cleanup has taken over."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("remove %s: %s", path, exc.strerror)


def _get(cfg, name: str, default: str) -> str:
    """_get - a parameter, or default when it is not declared."""
    try:
        return cfg.get(name) or default
    except KeyError:
        return default


def _state(ctx: ServiceContext) -> Pickup:
    """_state - the process's Pickup, made on first use."""
    pk = ctx.state.get("pickup")
    if pk is None:
        pk = ctx.state["pickup"] = Pickup(ctx.cfg, ctx.queue_directory)
    return pk


async def on_trigger(data: bytes, ctx: ServiceContext) -> None:
    """on_trigger - any trigger (W, or master's wakeup) means: scan maildrop."""
    del data
    await _state(ctx).scan()


async def on_wakeup(ctx: ServiceContext) -> None:
    """on_wakeup - the timer: scan too, in case a trigger was lost."""
    await _state(ctx).scan()


def main(argv: list[str] | None = None) -> int:
    """main - run the pickup trigger server."""
    argv = list(sys.argv if argv is None else argv)
    return trigger_server_main("pickup", argv, on_trigger, wakeup_hook=on_wakeup,
                               wakeup_interval=60.0)


if __name__ == "__main__":
    sys.exit(main())
