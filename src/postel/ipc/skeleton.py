"""skeleton - the shared main loop of every Postel service process

SYNOPSIS
    from postel.ipc.skeleton import multi_server_main, trigger_server_main, ServiceContext

    def main(argv: list[str]) -> int:
        return multi_server_main("cleanup", argv, serve_client)

    async def serve_client(reader, writer, ctx: ServiceContext) -> None:
        ...                                  # the skeleton closes writer afterwards

    def main(argv: list[str]) -> int:        # pickup, qmgr, flush
        return trigger_server_main("pickup", argv, on_trigger)

    async def on_trigger(data: bytes, ctx: ServiceContext) -> None: ...

DESCRIPTION
    The counterpart of Postfix's multi_server(3) and trigger_server(3).  A
    service module supplies a handler; the skeleton does the rest:

      1. parses the generic daemon options (below) and reads main.cf, then
         applies the -o overrides: ctx.cfg = load_config(dir).derive(-o ...);
      2. initializes logging (tag $syslog_name/PROCESS_NAME, $maillog_file);
      3. calls pre_init(ctx) - still with root privileges when started as
         root: open files that need them here;
      4. drops privileges to $mail_owner when running as root and the
         master.cf unpriv column is y (setgid, initgroups, setuid); a
         mail_owner that is unknown or has user ID 0 is fatal, so such a
         process never serves as root (see docs/security.md);
      5. calls post_init(ctx), then serves on every inherited listener with
         an asyncio loop (uvloop when importable).

    multi_server_main: each client connection of an inet, unix or pass
    listener runs handler(reader, writer, ctx) as its own task; many run at
    once.  With takes_socket=True the handler is called as handler(sock,
    ctx) with the accepted non-blocking socket instead, and owns it: it
    must close it (smtpd drives its own asyncio Protocol, without the
    StreamReader/StreamWriter layers).  A process accepts at most `concurrency` clients at the same time
    (default 200); when it has that many it tells master it is busy, and
    master forks another process if the service is below its process
    limit.  pass listeners receive a client descriptor with SCM_RIGHTS and
    serve it like an accepted connection.

    trigger_server_main: a FIFO, unix stream or unix-dgram listener delivers
    trigger requests (a few bytes, e.g. b"W"); on_trigger(data, ctx) runs
    for each, one at a time.  wakeup_hook(ctx), if given, runs every
    wakeup_interval seconds, serialized with the triggers.

    A handler exception is logged as a warning with the exception summary
    (the traceback too with -v) and never ends the process.

    The process exits with status 0:
      * after SIGTERM (or SIGINT, or when master goes away): it stops
        accepting, waits for in-flight handlers for at most
        $daemon_timeout seconds, cancels the rest;
      * after $max_idle seconds without a client (unless idle_exit=False);
      * after serving $max_use clients per concurrency slot, i.e.
        $max_use x concurrency clients (0: no limit): a process serving
        many clients at once stands for that many Postfix processes.

GENERIC DAEMON OPTIONS
    -c dir          configuration directory (default: $MAIL_CONFIG, /etc/postel)
    -n name         the master.cf service name (default: the process name)
    -t type         the master.cf service type
    -o name=value   parameter override (repeatable), as from master.cf
    -v              verbose logging (handler tracebacks)
    -S type:where   standalone: listen here instead of on inherited
                    descriptors (repeatable); type is unix, inet, fifo or
                    unix-dgram; where is a path, or host:port for inet.
                    Example: cleanup -c DIR -S unix:/tmp/cleanup.sock
    Other arguments are left, in order, in ctx.args for the service.

    For tests inside one Python process use run_standalone() instead: it
    runs the server on a thread with its own event loop and returns a
    handle with .addresses and .stop().

MASTER INTERFACE
    master passes, in the environment:
      POSTEL_LISTEN_FDS      "fd:type,fd:type" - inherited listeners
      POSTEL_STATUS_FD       pipe to master for status records
      POSTEL_LIFELINE_FD     pipe whose EOF means master has gone
      POSTEL_SERVICE_UNPRIV  "1" when the unpriv column is y
      POSTEL_LOG_STDOUT      "1": also log on stdout (postel start-fg)
    A status record is struct "=iB": pid and one of STAT_AVAIL (b"A",
    accepting), STAT_BUSY (b"B", at its concurrency bound or shutting down)
    and STAT_USED (b"U", sent once, after the first client or trigger: the
    process started correctly - master throttles a service whose processes
    die abnormally before that).

CONFIGURATION PARAMETERS
    syslog_name (postel)     log tag prefix
    maillog_file (empty)     log file
    mail_owner (postel)      user to run as, when started as root
    max_idle (100s)          exit after this long without clients
    max_use (100)            exit after this many clients (0: no limit)
    daemon_timeout (18000s)  bound on draining in-flight clients at exit
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import struct
import sys
import threading
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from postel import log

ENV_LISTEN = "POSTEL_LISTEN_FDS"
ENV_STATUS = "POSTEL_STATUS_FD"
ENV_LIFELINE = "POSTEL_LIFELINE_FD"
ENV_UNPRIV = "POSTEL_SERVICE_UNPRIV"
ENV_LOG_STDOUT = "POSTEL_LOG_STDOUT"

STATUS_FMT = "=iB"
STATUS_SIZE = struct.calcsize(STATUS_FMT)
STAT_AVAIL = ord("A")
STAT_BUSY = ord("B")
STAT_USED = ord("U")

DEFAULT_CONCURRENCY = 200
ORPHAN_DRAIN_LIMIT = 5.0    # seconds of draining after master has gone
TRIGGER_MAX = 1024          # bytes read from one trigger request
ACCEPT_BATCH = 64           # connections accepted per listener readiness callback
TRIGGER_TIMEOUT = 10.0      # seconds to wait for a unix-socket trigger's bytes

ClientHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "ServiceContext"], Awaitable[None]]
TriggerHandler = Callable[[bytes, "ServiceContext"], Awaitable[None]]
Hook = Callable[["ServiceContext"], object]


_SOCKET_CLASSES: dict[tuple[int, int], type[socket.socket]] = {}


def _socket_class(family: socket.AddressFamily, stype: socket.SocketKind) -> type[socket.socket]:
    """_socket_class - socket.socket with constant family and type attributes.

    socket.socket's family and type properties convert the numbers to enums
    on every access (the event loop reads them when it adopts an accepted
    connection); an accepted socket's family and type are its listener's.
    """
    key = (int(family), int(stype))
    cls = _SOCKET_CLASSES.get(key)
    if cls is None:
        cls = _SOCKET_CLASSES[key] = type("AcceptedSocket", (socket.socket,),
                                          {"__slots__": (), "family": family, "type": stype})
    return cls


def _set_done(fut: asyncio.Future) -> None:
    """_set_done - complete a readiness future once."""
    if not fut.done():
        fut.set_result(None)


@dataclass(slots=True)
class ServiceContext:
    """What a service handler knows about its process."""

    cfg: object
    service_name: str
    process_name: str
    config_dir: str
    queue_directory: str
    service_type: str = ""
    args: list[str] = field(default_factory=list)
    verbose: int = 0
    loop: asyncio.AbstractEventLoop | None = None
    stopping: asyncio.Event | None = None
    state: dict = field(default_factory=dict)   # for the service's own use

    @staticmethod
    def peer_addr(writer: asyncio.StreamWriter) -> tuple[str, int] | None:
        """peer_addr - (address, port) of a TCP client; None for UNIX peers."""
        peer = writer.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            return str(peer[0]), int(peer[1])
        return None

    @staticmethod
    def local_addr(writer: asyncio.StreamWriter) -> tuple[str, int] | None:
        """local_addr - (address, port) the client connected to; None for UNIX."""
        sock = writer.get_extra_info("sockname")
        if isinstance(sock, tuple) and len(sock) >= 2:
            return str(sock[0]), int(sock[1])
        return None


@dataclass(slots=True)
class _Options:
    """Generic daemon options from argv."""

    config_dir: str | None = None
    service_name: str = ""
    service_type: str = ""
    overrides: dict[str, str] = field(default_factory=dict)
    verbose: int = 0
    standalone: list[tuple[str, str]] = field(default_factory=list)
    args: list[str] = field(default_factory=list)


class UsageError(Exception):
    """A bad generic daemon option."""


def parse_options(argv: list[str]) -> _Options:
    """parse_options - split argv into generic options and service arguments."""
    opts = _Options()
    it = iter(argv[1:])
    for arg in it:
        if arg in ("-c", "-n", "-t", "-o", "-S"):
            val = next(it, None)
            if val is None:
                raise UsageError(f"option {arg} requires a value")
            if arg == "-c":
                opts.config_dir = val
            elif arg == "-n":
                opts.service_name = val
            elif arg == "-t":
                opts.service_type = val
            elif arg == "-o":
                name, sep, value = val.partition("=")
                if not sep or not name.strip():
                    raise UsageError(f"-o {val}: expected name=value")
                opts.overrides[name.strip()] = value.strip()
            else:
                kind, sep, where = val.partition(":")
                if not sep or kind not in ("unix", "inet", "fifo", "unix-dgram"):
                    raise UsageError(f"-S {val}: expected unix:PATH, inet:HOST:PORT, fifo:PATH")
                opts.standalone.append((kind, where))
        elif arg == "-v":
            opts.verbose += 1
        else:
            opts.args.append(arg)
    return opts


def _load_context(process_name: str, opts: _Options) -> ServiceContext:
    """_load_context - read main.cf, apply -o overrides, start logging."""
    from postel.config import ConfigError, load_config
    try:
        cfg = load_config(opts.config_dir)
        if opts.overrides:
            cfg = cfg.derive(opts.overrides)
        syslog_name = cfg.get("syslog_name")
        maillog_file = cfg.get("maillog_file")
        queue_directory = cfg.get("queue_directory")
        config_dir = cfg.config_directory
    except (ConfigError, KeyError, ValueError) as exc:
        log.init(process_name, stderr=True)
        log.fatal("%s", exc)
        raise AssertionError("unreachable") from None
    to_stdout = os.environ.get(ENV_LOG_STDOUT) == "1"
    log.init(process_name, syslog_name=syslog_name, maillog_file=maillog_file,
             stdout=to_stdout, verbose=opts.verbose)
    return ServiceContext(cfg=cfg, service_name=opts.service_name or process_name,
                          process_name=process_name, config_dir=config_dir,
                          queue_directory=queue_directory, service_type=opts.service_type,
                          args=list(opts.args), verbose=opts.verbose)


def drop_privileges(cfg) -> None:
    """drop_privileges - become $mail_owner when running as root."""
    if os.geteuid() != 0:
        return
    import pwd
    owner = cfg.get("mail_owner")
    try:
        pw = pwd.getpwnam(owner)
    except KeyError:
        log.fatal("unknown mail_owner user: %s", owner)
        return
    if pw.pw_uid == 0:
        # Postfix, too, refuses a mail_owner with a privileged user ID
        log.fatal("mail_owner %s has privileged user ID 0", owner)
        return
    os.setgid(pw.pw_gid)
    os.initgroups(pw.pw_name, pw.pw_gid)
    os.setuid(pw.pw_uid)
    if os.getuid() != pw.pw_uid or os.geteuid() != pw.pw_uid or os.getegid() != pw.pw_gid:
        log.fatal("cannot switch to mail_owner %s", owner)     # never serve as root


def _inherited_listeners() -> list[tuple[str, object]]:
    """_inherited_listeners - (type, socket or fifo fd) passed by master."""
    spec = os.environ.get(ENV_LISTEN, "")
    out: list[tuple[str, object]] = []
    for item in filter(None, spec.split(",")):
        fd_text, _, kind = item.partition(":")
        fd = int(fd_text)
        if kind == "fifo":
            out.append((kind, fd))
        else:
            sock = socket.socket(fileno=fd)
            sock.setblocking(False)
            out.append((kind, sock))
    return out


def _standalone_listeners(items: list[tuple[str, str]]) -> list[tuple[str, object]]:
    """_standalone_listeners - bind our own endpoints (-S, run_standalone)."""
    out: list[tuple[str, object]] = []
    for kind, where in items:
        if kind == "inet":
            host, _, port = where.rpartition(":")
            host = host.strip("[]") or "127.0.0.1"
            fam = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.socket(fam, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, int(port or 0)))
            sock.listen(128)
        elif kind == "fifo":
            with contextlib.suppress(FileNotFoundError):
                os.unlink(where)
            os.mkfifo(where, 0o622)
            out.append((kind, os.open(where, os.O_RDWR | os.O_NONBLOCK)))
            continue
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(where)
            stype = socket.SOCK_DGRAM if kind == "unix-dgram" else socket.SOCK_STREAM
            sock = socket.socket(socket.AF_UNIX, stype)
            sock.bind(where)
            if stype == socket.SOCK_STREAM:
                sock.listen(128)
        sock.setblocking(False)
        out.append((kind, sock))
    return out


class _StatusPipe:
    """Reports busy/idle to master (a no-op when standalone)."""

    def __init__(self) -> None:
        text = os.environ.get(ENV_STATUS, "")
        self.fd = int(text) if text.isdigit() else -1
        self.last = -1
        self.used = False

    def send(self, code: int) -> None:
        """send - write one status record, once per change."""
        if self.fd < 0 or code == self.last:
            return
        self.last = code
        try:
            os.write(self.fd, struct.pack(STATUS_FMT, os.getpid(), code))
        except OSError:
            self.fd = -1

    def mark_used(self) -> None:
        """mark_used - tell master once that this process did real work."""
        if self.used or self.fd < 0:
            return
        self.used = True
        try:
            os.write(self.fd, struct.pack(STATUS_FMT, os.getpid(), STAT_USED))
        except OSError:
            self.fd = -1


class _Server:
    """The asyncio side shared by multi and trigger servers."""

    def __init__(self, ctx: ServiceContext, listeners: list[tuple[str, object]], *,
                 handler: ClientHandler | None = None, trigger: TriggerHandler | None = None,
                 concurrency: int = DEFAULT_CONCURRENCY, idle_exit: bool = True,
                 wakeup_hook: Hook | None = None, wakeup_interval: float = 0.0,
                 takes_socket: bool = False) -> None:
        self.ctx = ctx
        self.listeners = listeners
        self.handler = handler
        self.takes_socket = takes_socket
        self.trigger = trigger
        self.concurrency = max(1, concurrency) if handler else 1
        self.idle_exit = idle_exit
        self.wakeup_hook = wakeup_hook
        self.wakeup_interval = wakeup_interval
        self.status = _StatusPipe()
        self.tasks: set[asyncio.Task] = set()
        self.active = 0
        self.served = 0
        self.last_activity = time.monotonic()
        self.slot_free: asyncio.Event | None = None
        self.lock: asyncio.Lock | None = None
        self.accepting: list[asyncio.Task] = []
        cfg = ctx.cfg
        self.max_idle = _cfg_time(cfg, "max_idle", 100.0) if idle_exit else 0.0
        # Postfix's max_use counts the clients of a process that serves one at a
        # time.  A Postel process serves up to `concurrency` at once: each of
        # those slots may serve max_use clients, as that many Postfix processes
        # would.  (A limit of 100 per process made master re-fork smtpd every
        # 100 one-message connections: -30% throughput, see docs/performance.md.)
        self.max_use = _cfg_int(cfg, "max_use", 100) * self.concurrency
        self.drain_limit = _cfg_time(cfg, "daemon_timeout", 18000.0)
        self.addresses: list[object] = []

    # -- life cycle

    async def run(self) -> None:
        """run - serve until told to stop, then drain."""
        loop = asyncio.get_running_loop()
        self.ctx.loop = loop
        self.ctx.stopping = asyncio.Event()
        self.slot_free = asyncio.Event()
        self.slot_free.set()
        self.lock = asyncio.Lock()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.ctx.stopping.set)
            with contextlib.suppress(ValueError, OSError):
                loop.add_signal_handler(signal.SIGHUP, lambda: None)
        lifeline = os.environ.get(ENV_LIFELINE, "")
        if lifeline.isdigit():
            loop.add_reader(int(lifeline), self._lifeline, int(lifeline))
        for kind, handle in self.listeners:
            self.accepting.append(loop.create_task(self._listen(kind, handle)))
            self.addresses.append(handle.getsockname() if isinstance(handle, socket.socket)
                                  else ("fifo", handle))
        if self.wakeup_hook and self.wakeup_interval > 0:
            self.accepting.append(loop.create_task(self._wakeups()))
        if self.max_idle > 0:
            self.accepting.append(loop.create_task(self._idle_watch()))
        self.status.send(STAT_AVAIL)
        await self.ctx.stopping.wait()
        await self._drain()

    def _lifeline(self, fd: int) -> None:
        """_lifeline - master has gone: shut down gracefully."""
        try:
            data = os.read(fd, 64)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            asyncio.get_running_loop().remove_reader(fd)
            # Master died (killed): nobody supervises us any more.  Postfix's
            # children exit at once; give in-flight work a few seconds only,
            # not $daemon_timeout, so that no orphan keeps serving.
            self.drain_limit = min(self.drain_limit, ORPHAN_DRAIN_LIMIT)
            self.ctx.stopping.set()

    async def _drain(self) -> None:
        """_drain - stop accepting, finish in-flight work (bounded)."""
        self.status.send(STAT_BUSY)
        for task in self.accepting:
            task.cancel()
        for _kind, handle in self.listeners:
            with contextlib.suppress(OSError):
                if isinstance(handle, socket.socket):
                    handle.close()
                else:
                    asyncio.get_running_loop().remove_reader(handle)
                    os.close(handle)
        if self.tasks:
            _done, pending = await asyncio.wait(set(self.tasks), timeout=self.drain_limit)
            for task in pending:
                task.cancel()
            if pending:
                log.warning("shutdown: cancelled %d unfinished client(s)", len(pending))
                await asyncio.wait(pending, timeout=5)

    async def _idle_watch(self) -> None:
        """_idle_watch - exit after $max_idle seconds without clients."""
        while True:
            left = self.last_activity + self.max_idle - time.monotonic()
            if self.active == 0 and left <= 0:
                log.verbose("idle timeout -- exiting")
                self.ctx.stopping.set()
                return
            await asyncio.sleep(max(0.05, min(left, self.max_idle)) if left > 0 else self.max_idle)

    async def _wakeups(self) -> None:
        """_wakeups - call wakeup_hook every wakeup_interval seconds."""
        while True:
            await asyncio.sleep(self.wakeup_interval)
            async with self.lock:
                await self._guard("wakeup", self.wakeup_hook(self.ctx))

    async def _guard(self, what: str, coro) -> None:
        """_guard - run a handler; log, never propagate, its exception."""
        try:
            if asyncio.iscoroutine(coro):
                await coro
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("%s: %s: %s", what, type(exc).__name__, exc)
            if self.ctx.verbose:
                for line in traceback.format_exc().splitlines():
                    log.warning("%s", line)

    # -- accounting

    def _begin(self) -> None:
        """_begin - one more client in progress."""
        self.active += 1
        self.served += 1
        self.last_activity = time.monotonic()
        self.status.mark_used()
        if self.max_use and self.served >= self.max_use:
            self.slot_free.clear()          # accept no more; master forks a successor
            self.ctx.stopping.set()
        if self.active >= self.concurrency:
            self.slot_free.clear()
            self.status.send(STAT_BUSY)

    def _end(self) -> None:
        """_end - a client is done."""
        self.active -= 1
        self.last_activity = time.monotonic()
        if self.active < self.concurrency and not self.ctx.stopping.is_set():
            self.slot_free.set()
            self.status.send(STAT_AVAIL)

    # -- listeners

    async def _listen(self, kind: str, handle) -> None:
        """_listen - one accept (or trigger read) loop per listener."""
        if self.trigger is not None:
            if kind == "fifo":
                await self._fifo_loop(handle)
            elif kind == "unix-dgram":
                await self._dgram_loop(handle)
            else:
                await self._accept_loop(handle, self._trigger_conn)
        else:
            if kind in ("fifo", "unix-dgram"):
                log.warning("service %s: %s listener is not supported by a multi server",
                            self.ctx.service_name, kind)
                return
            await self._accept_loop(handle, self._pass_conn if kind == "pass" else self._client)

    async def _accept_loop(self, sock: socket.socket, serve) -> None:
        """_accept_loop - accept while below the concurrency bound.

        The listener stays registered with the event loop while the process
        has a free slot, and connections are accepted in the readiness
        callback itself: no epoll_ctl() add/remove and no task wake-up per
        connection (prefork processes share the listener, and each of them
        wakes for every connection).  It is unregistered only while the
        process is busy, or for a second after an accept error."""
        loop = asyncio.get_running_loop()
        # socket.accept() converts family and type to enums for every
        # connection; the listener's numbers are known once.
        family, stype, proto = int(sock.family), int(sock.type), sock.proto
        new_socket = _socket_class(sock.family, sock.type)
        # A handler that owns the socket runs as the task itself (no wrapper
        # coroutine to resume at every await); _client_done logs its failure.
        direct = self.handler if serve == self._client and self.takes_socket else None
        ctx = self.ctx
        slot_free = self.slot_free
        stopped = asyncio.Event()        # the callback gave up: busy, or an error
        failed = False
        fd = sock.fileno()
        accept = sock._accept

        def ready() -> None:
            """accept what is pending (bounded), start a task for each."""
            nonlocal failed
            for _ in range(ACCEPT_BATCH):
                if not slot_free.is_set():
                    break
                try:
                    cfd, _addr = accept()
                except (BlockingIOError, InterruptedError):
                    return
                except ConnectionAbortedError:
                    continue
                except OSError as exc:
                    if sock.fileno() < 0:
                        break            # closed at stop: the task ends soon
                    log.warning("accept: %s", exc.strerror or exc)
                    failed = True
                    break
                conn = new_socket(family, stype, proto, fileno=cfd)
                if direct is not None:
                    try:
                        coro = direct(conn, ctx)
                    except Exception as exc:
                        self._log_failure(exc)
                        continue
                    if not asyncio.iscoroutine(coro):
                        continue
                    self._begin()
                    task = loop.create_task(coro)
                    self.tasks.add(task)
                    task.add_done_callback(self._client_done)
                    continue
                self._begin()
                task = loop.create_task(serve(conn))
                self.tasks.add(task)
                task.add_done_callback(self._task_done)
            else:
                return                   # more may wait: the next callback takes them
            loop.remove_reader(fd)
            stopped.set()

        try:
            while True:
                if not slot_free.is_set():
                    await slot_free.wait()
                if sock.fileno() < 0:
                    return               # closed at stop
                stopped.clear()
                loop.add_reader(fd, ready)
                await stopped.wait()
                if failed:
                    failed = False
                    await asyncio.sleep(1)
        finally:
            with contextlib.suppress(Exception):
                loop.remove_reader(fd)

    def _task_done(self, task: asyncio.Task) -> None:
        self.tasks.discard(task)
        self._end()

    def _client_done(self, task: asyncio.Task) -> None:
        """_client_done - _task_done, and log the handler's exception as _guard does."""
        self.tasks.discard(task)
        self._end()
        if not task.cancelled():
            exc = task.exception()
            if isinstance(exc, Exception):
                self._log_failure(exc)

    def _log_failure(self, exc: Exception) -> None:
        """_log_failure - a client handler's exception, as _guard logs it."""
        log.warning("%s: %s: %s", "client", type(exc).__name__, exc)
        if self.ctx.verbose:
            for line in "".join(traceback.format_exception(exc)).splitlines():
                log.warning("%s", line)

    async def _client(self, conn: socket.socket) -> None:
        """_client - run the handler for one connection, then close it."""
        if self.takes_socket:
            # The handler owns the socket (and closes it).
            await self._guard("client", self.handler(conn, self.ctx))
            return
        writer = None
        try:
            reader, writer = await asyncio.open_connection(sock=conn)
            await self._guard("client", self.handler(reader, writer, self.ctx))
        except OSError as exc:
            log.verbose("client: %s", exc)
        finally:
            if writer is not None:
                writer.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(writer.wait_closed(), 5)
            else:
                conn.close()

    async def _pass_conn(self, conn: socket.socket) -> None:
        """_pass_conn - receive a client descriptor (SCM_RIGHTS) and serve it."""
        try:
            await _wait_readable(conn.fileno(), TRIGGER_TIMEOUT)
            _msg, fds, _flags, _addr = socket.recv_fds(conn, 1024, 4)
        except (OSError, asyncio.TimeoutError) as exc:
            log.warning("pass: receiving client descriptor: %s", exc)
            conn.close()
            return
        conn.close()
        if not fds:
            log.warning("pass: no descriptor received")
            return
        for extra in fds[1:]:
            os.close(extra)
        client = socket.socket(fileno=fds[0])
        client.setblocking(False)
        await self._client(client)

    async def _trigger_conn(self, conn: socket.socket) -> None:
        """_trigger_conn - read one trigger request from a stream connection."""
        loop = asyncio.get_running_loop()
        data = b""
        try:
            while len(data) < TRIGGER_MAX:
                chunk = await asyncio.wait_for(loop.sock_recv(conn, TRIGGER_MAX), TRIGGER_TIMEOUT)
                if not chunk:
                    break
                data += chunk
        except (OSError, asyncio.TimeoutError):
            pass
        finally:
            conn.close()
        if data:
            await self._run_trigger(data)

    async def _run_trigger(self, data: bytes) -> None:
        """_run_trigger - call the trigger handler, one at a time."""
        async with self.lock:
            await self._guard("trigger", self.trigger(data, self.ctx))

    async def _fifo_loop(self, fd: int) -> None:
        """_fifo_loop - triggers written into a FIFO."""
        while True:
            await _wait_readable(fd, None)
            try:
                data = os.read(fd, TRIGGER_MAX)
            except BlockingIOError:
                continue
            if data:
                await self._counted_trigger(data)

    async def _dgram_loop(self, sock: socket.socket) -> None:
        """_dgram_loop - triggers sent as datagrams."""
        loop = asyncio.get_running_loop()
        while True:
            data = await loop.sock_recv(sock, TRIGGER_MAX)
            if data:
                await self._counted_trigger(data)

    async def _counted_trigger(self, data: bytes) -> None:
        """_counted_trigger - account a FIFO/datagram trigger like a client."""
        self._begin()
        try:
            await self._run_trigger(data)
        finally:
            self._end()


async def _wait_readable(fd: int, timeout: float | None) -> None:
    """_wait_readable - wait until a descriptor is readable."""
    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    loop.add_reader(fd, lambda: fut.done() or fut.set_result(None))
    try:
        await asyncio.wait_for(fut, timeout)
    finally:
        loop.remove_reader(fd)


def _cfg_time(cfg, name: str, default: float) -> float:
    """_cfg_time - a time parameter, or default when the registry lacks it."""
    try:
        return float(cfg.get_time(name))
    except KeyError:
        return default


def _cfg_int(cfg, name: str, default: int) -> int:
    """_cfg_int - an integer parameter, or default when the registry lacks it."""
    try:
        return int(cfg.get_int(name))
    except KeyError:
        return default


def _run_loop(server: _Server) -> None:
    """_run_loop - asyncio.run with uvloop when it is installed."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(server.run())
    else:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(server.run())


def _server_main(process_name: str, argv: list[str], pre_init: Hook | None,
                 post_init: Hook | None, **kwargs) -> int:
    """_server_main - the steps shared by multi_server_main and trigger_server_main."""
    try:
        opts = parse_options(argv or [process_name])
    except UsageError as exc:
        print(f"{process_name}: fatal: {exc}", file=sys.stderr)
        return 1
    try:
        ctx = _load_context(process_name, opts)
        listeners = (_standalone_listeners(opts.standalone) if opts.standalone
                     else _inherited_listeners())
        if not listeners:
            log.fatal("no listeners: run me from master, or with -S type:address")
        if pre_init:
            pre_init(ctx)
        if os.environ.get(ENV_UNPRIV, "1") == "1":
            drop_privileges(ctx.cfg)
        if post_init:
            post_init(ctx)
        _run_loop(_Server(ctx, listeners, **kwargs))
    except log.FatalError as exc:
        return int(exc.code or 1)
    except OSError as exc:
        log.error("%s", exc)
        with contextlib.suppress(log.FatalError):
            log.fatal("%s: cannot start: %s", process_name, exc.strerror or exc)
        return 1
    return 0


def multi_server_main(process_name: str, argv: list[str], handler: ClientHandler, *,
                      pre_init: Hook | None = None, post_init: Hook | None = None,
                      pre_accept: Hook | None = None, concurrency: int = DEFAULT_CONCURRENCY,
                      idle_exit: bool = True, takes_socket: bool = False) -> int:
    """multi_server_main - serve many stream clients at once; returns the exit status."""
    del pre_accept  # accepted for API compatibility; per-client setup belongs in handler
    return _server_main(process_name, argv, pre_init, post_init, handler=handler,
                        concurrency=concurrency, idle_exit=idle_exit, takes_socket=takes_socket)


def trigger_server_main(process_name: str, argv: list[str], on_trigger: TriggerHandler, *,
                        pre_init: Hook | None = None, post_init: Hook | None = None,
                        wakeup_hook: Hook | None = None, wakeup_interval: float = 0.0,
                        idle_exit: bool = True) -> int:
    """trigger_server_main - serve trigger requests one at a time; returns the exit status."""
    return _server_main(process_name, argv, pre_init, post_init, trigger=on_trigger,
                        idle_exit=idle_exit, wakeup_hook=wakeup_hook,
                        wakeup_interval=wakeup_interval)


class Standalone:
    """A server running on a thread (run_standalone)."""

    def __init__(self, server: _Server, thread: threading.Thread) -> None:
        self.server = server
        self.thread = thread
        self.ctx = server.ctx

    @property
    def addresses(self) -> list[object]:
        """addresses - sockname of each listener (path, or (host, port))."""
        return self.server.addresses

    def stop(self, timeout: float = 10.0) -> None:
        """stop - graceful stop, as after SIGTERM; waits for the thread."""
        loop, stopping = self.ctx.loop, self.ctx.stopping
        if loop is not None and stopping is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stopping.set)
        self.thread.join(timeout)

    def __enter__(self) -> Standalone:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_standalone(process_name: str, endpoints: list[str], *, handler: ClientHandler | None = None,
                   trigger: TriggerHandler | None = None, config_dir: str | None = None,
                   overrides: dict[str, str] | None = None, args: list[str] | None = None,
                   concurrency: int = DEFAULT_CONCURRENCY, post_init: Hook | None = None,
                   idle_exit: bool = False, takes_socket: bool = False) -> Standalone:
    """run_standalone - serve on ["unix:/path", "inet:127.0.0.1:0", ...] in a thread (tests)."""
    argv = [process_name] + (["-c", config_dir] if config_dir else [])
    for name, value in (overrides or {}).items():
        argv += ["-o", f"{name}={value}"]
    opts = parse_options(argv)
    opts.args = list(args or [])
    from postel.config import load_config
    cfg = load_config(opts.config_dir)
    if opts.overrides:
        cfg = cfg.derive(opts.overrides)
    ctx = ServiceContext(cfg=cfg, service_name=process_name, process_name=process_name,
                         config_dir=cfg.config_directory, queue_directory=cfg.get("queue_directory"),
                         args=opts.args)
    listeners = _standalone_listeners([tuple(e.split(":", 1)) for e in endpoints])
    if post_init:
        post_init(ctx)
    server = _Server(ctx, listeners, handler=handler, trigger=trigger,
                     concurrency=concurrency, idle_exit=idle_exit, takes_socket=takes_socket)
    started = threading.Event()

    async def _main() -> None:
        task = asyncio.get_running_loop().create_task(server.run())
        while ctx.stopping is None:
            await asyncio.sleep(0)
        started.set()
        await task

    thread = threading.Thread(target=lambda: asyncio.run(_main()), daemon=True,
                              name=f"standalone-{process_name}")
    thread.start()
    started.wait(10)
    while len(server.addresses) < len(listeners) and thread.is_alive():
        time.sleep(0.01)
    return Standalone(server, thread)
