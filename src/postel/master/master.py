"""master - Postel master process

SYNOPSIS
    postel [-c config_dir] master [-f] [-w fd] [-v]
    python -m postel.master -c config_dir [-w fd]      (what `postel start` runs)

DESCRIPTION
    The resident supervisor, as Postfix's master(8).  It reads master.cf,
    opens every listening endpoint itself (see postel.master.listeners),
    imports each service's Python module once, and forks service processes
    on demand; they inherit the listeners and call the module's main(argv)
    without an exec (see postel.master.services for the command -> module
    table).  A master.cf command that is an absolute path is run with
    fork+exec instead; such a program finds its descriptors as described
    under EXTERNAL PROGRAMS.

    Process management follows Postfix's master_avail/master_status model.
    Each child reports over a status pipe whether it can take more clients
    (postel.ipc.skeleton: "A" available, "B" busy, "U" used).  While a
    service has no available process and is below its process limit,
    master watches the service's listeners; a waiting client makes master
    fork one more process.  inet services are pre-forked with
    min(2, maxproc) processes at start and at reload, so that both cores
    take connections from the first one.

    A process that exits abnormally is logged ("warning: process smtpd pid
    123 exit status 1", "... killed by signal 9"); a new one is forked when
    the next client arrives.  If it exited abnormally before it ever served
    a client, the command is considered broken: master logs "warning:
    smtpd: bad command startup -- throttling" and forks nothing for that
    service for $service_throttle_time seconds (clients wait in the listen
    queue).

    wakeup: every N seconds master writes a "W" trigger to the service's
    endpoint (unix, unix-dgram, fifo); with the "?" suffix only once the
    service has been used.  A non-conditional wakeup is also sent at start.

PRIVILEGES
    Started as root, master stays root (it binds, forks and reaps); each
    child of an entry with unpriv y switches to $mail_owner in the service
    skeleton before it serves, after the listeners it inherits were opened.
    Entries with unpriv n keep root.  master refuses to start as root when
    $mail_owner is unknown or has user ID 0.  See docs/security.md.

SIGNALS
    SIGHUP   reload: re-read main.cf and master.cf.  Listeners of entries
             whose key (service/type) and addresses did not change stay
             open (no refused connection); removed entries close theirs;
             new ones open.  Every running child gets SIGTERM: it stops
             accepting, finishes its in-flight clients, and exits; new
             processes pick up the new configuration.  A configuration
             error at reload is logged ("error: ... -- configuration not
             reloaded") and the old configuration keeps running (Postfix
             exits instead; Postel prefers staying up).
    SIGTERM  stop: close the listeners, SIGTERM the children, wait until
             they have finished in-flight work (at most STOP_GRACE seconds,
             then SIGKILL), remove the pid file, exit.
    SIGINT   abort: SIGKILL the children, remove the pid file, exit.

EXTERNAL PROGRAMS
    Descriptor 3 is the status pipe, 4 the lifeline pipe (EOF: master has
    gone), 5.. the listeners in master.cf order.  The environment has
    POSTEL_LISTEN_FDS ("5:inet,6:inet"), POSTEL_STATUS_FD, POSTEL_LIFELINE_FD,
    POSTEL_SERVICE_NAME, POSTEL_SERVICE_TYPE, POSTEL_SERVICE_UNPRIV and
    MAIL_CONFIG.  argv is: command -c DIR -n SERVICE -t TYPE [-o name=value]...
    [args from master.cf].

FILES
    $queue_directory/pid/master.pid   process id, locked with fcntl while
                                      master runs (a second master refuses
                                      to start)

CONFIGURATION PARAMETERS
    default_process_limit (100)   maxproc for "-" (applied by the config module)
    service_throttle_time (60s)   pause after a bad command startup
    inet_interfaces, inet_protocols, queue_directory (listeners)
    syslog_name, maillog_file     logging
    mail_owner                    user of unpriv services when started as root
"""

from __future__ import annotations

import fcntl
import os
import pwd
import selectors
import signal
import socket
import struct
import sys
import time
from dataclasses import dataclass, field

from postel import __version__ as _pkg_version
from postel import log
from postel.ipc import skeleton
from postel.master import listeners as lst
from postel.master import services

STOP_GRACE = 30.0        # seconds children get to finish at stop before SIGKILL
PREFORK_INET = 2         # processes started at once for an inet service
PID_FILE = "pid/master.pid"


def version() -> str:
    """version - the Postel version string for log lines."""
    return _pkg_version or "0"


@dataclass(slots=True, eq=False)
class Child:
    """One service process."""

    pid: int
    avail: bool = True
    used: bool = False
    retired: bool = False


@dataclass(slots=True, eq=False)
class Service:
    """One master.cf entry that master runs."""

    key: str
    entry: object
    runner: services.Runner
    endpoints: list = field(default_factory=list)
    handles: list = field(default_factory=list)
    children: dict = field(default_factory=dict)     # pid -> Child
    throttled_until: float = 0.0
    used: bool = False
    next_wakeup: float = 0.0
    removed: bool = False

    @property
    def name(self) -> str:
        """name - the command as shown in log lines."""
        return self.entry.command

    def live(self) -> list[Child]:
        """live - children that are not retiring."""
        return [c for c in self.children.values() if not c.retired]

    def avail_count(self) -> int:
        """avail_count - processes that can take another client."""
        return sum(1 for c in self.children.values() if c.avail and not c.retired)


class StartupError(Exception):
    """master cannot start; str() is the message for the administrator."""


class Master:
    """The master process state and event loop."""

    def __init__(self, config_dir: str | None, foreground: bool = False,
                 ready_fd: int = -1, verbose: int = 0) -> None:
        self.config_dir = config_dir
        self.foreground = foreground
        self.ready_fd = ready_fd
        self.verbose = verbose
        self.cfg = None
        self.services: dict[str, Service] = {}
        self.children: dict[int, tuple[Service, Child]] = {}
        self.sel = selectors.DefaultSelector()
        self.registered: dict[int, Service] = {}
        self.pid_fd = -1
        self.pid_path = ""
        self.sig_r = self.sig_w = -1
        self.status_r = self.status_w = -1
        self.life_r = self.life_w = -1
        self.status_buf = b""
        self.stopping = False
        self.stop_deadline = 0.0
        self.throttle_time = 60.0
        self.warned: set[tuple[str, str]] = set()

    # -- start-up

    def start(self) -> None:
        """start - read the configuration, lock the pid file, open listeners."""
        from postel.config import ConfigError, load_config
        try:
            cfg = load_config(self.config_dir)
            entries = cfg.master_entries()
            syslog_name, maillog = cfg.get("syslog_name"), cfg.get("maillog_file")
            queue_dir = cfg.get("queue_directory")
        except (ConfigError, KeyError, ValueError, OSError) as exc:
            raise StartupError(str(exc)) from None
        self.cfg = cfg
        log.init("master", syslog_name=syslog_name, maillog_file=maillog,
                 stdout=self.foreground, verbose=self.verbose)
        _check_mail_owner(cfg)
        if self.foreground:
            os.environ[skeleton.ENV_LOG_STDOUT] = "1"
        os.umask(0o022)
        try:
            os.chdir(queue_dir)
        except OSError as exc:
            raise StartupError(f"chdir {queue_dir}: {exc.strerror}") from None
        os.environ["MAIL_CONFIG"] = cfg.config_directory
        self._lock_pid_file(queue_dir)
        self._read_throttle_time(cfg)
        self._open_pipes()
        seen: set[str] = set()
        for entry in entries:
            if entry.key in seen:
                raise StartupError(f"{entry.file}, line {entry.line}: duplicate service {entry.key}")
            seen.add(entry.key)
            serv = self._make_service(entry, cfg, fatal=True)
            if serv is not None:
                self.services[entry.key] = serv
        log.info("daemon started -- version %s, configuration %s", version(), cfg.config_directory)
        now = time.monotonic()
        for serv in self.services.values():
            self._schedule_wakeup(serv, now, initial=True)
            self._prefork(serv)

    def _read_throttle_time(self, cfg) -> None:
        """_read_throttle_time - $service_throttle_time in seconds."""
        try:
            self.throttle_time = float(cfg.get_time("service_throttle_time"))
        except KeyError:
            self.throttle_time = 60.0

    def _lock_pid_file(self, queue_dir: str) -> None:
        """_lock_pid_file - refuse to start when another master holds the lock."""
        self.pid_path = os.path.join(queue_dir, PID_FILE)
        os.makedirs(os.path.dirname(self.pid_path), mode=0o755, exist_ok=True)
        try:
            fd = os.open(self.pid_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StartupError(f"open lock file {self.pid_path}: {exc.strerror}") from None
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise StartupError("the Postel mail system is already running") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid():>10}\n".encode(), 0)
        self.pid_fd = fd

    def _open_pipes(self) -> None:
        """_open_pipes - signal self-pipe, status pipe, lifeline pipe."""
        self.sig_r, self.sig_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.status_r, self.status_w = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(self.status_r, False)
        self.life_r, self.life_w = os.pipe2(os.O_CLOEXEC)
        signal.set_wakeup_fd(self.sig_w)
        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(sig, lambda s, f: None)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        self.sel.register(self.sig_r, selectors.EVENT_READ, "signal")
        self.sel.register(self.status_r, selectors.EVENT_READ, "status")

    def _make_service(self, entry, cfg, fatal: bool) -> Service | None:
        """_make_service - resolve the command and open the listeners of one entry."""
        runner = self._resolve(entry)
        if runner is None:
            return None
        serv = Service(entry.key, entry, runner)
        try:
            serv.endpoints = lst.endpoints(entry, cfg)
            for ep in serv.endpoints:
                serv.handles.append(lst.open_endpoint(ep))
        except lst.ListenError as exc:
            self._close_handles(serv)
            msg = f"{entry.file}, line {entry.line}: service {entry.key}: {exc}"
            if fatal:
                raise StartupError(msg) from None
            log.error("%s -- service not started", msg)
            return None
        return serv

    def _resolve(self, entry) -> services.Runner | None:
        """_resolve - the entry's runner; warn once per command when it is missing."""
        try:
            return services.resolve(entry.command)
        except services.NotAvailable as exc:
            if (entry.key, entry.command) not in self.warned:
                self.warned.add((entry.key, entry.command))
                reason = "" if str(exc) == "not available" else f" ({exc})"
                log.warning("service %s: command %s not available%s -- entry skipped",
                            entry.service, entry.command, reason)
            return None

    # -- the loop

    def run(self) -> int:
        """run - the event loop; returns the exit status."""
        _set_comm("master")
        while True:
            self._update_listen()
            if self.stopping and not self.children:
                break
            timeout = self._next_timeout()
            for key, _mask in self.sel.select(timeout):
                if key.data == "signal":
                    self._on_signals()
                elif key.data == "status":
                    self._on_status()
                elif isinstance(key.data, Service):
                    self._on_listener(key.data)
            self._reap()
            self._timers()
        self._cleanup()
        return 0

    def _next_timeout(self) -> float | None:
        """_next_timeout - seconds until the next timer, None when none."""
        now = time.monotonic()
        deadlines = [s.next_wakeup for s in self.services.values() if s.next_wakeup]
        deadlines += [s.throttled_until for s in self.services.values() if s.throttled_until]
        if self.stopping:
            deadlines.append(self.stop_deadline)
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - now)

    def _on_signals(self) -> None:
        """_on_signals - act on signals caught through the self-pipe."""
        try:
            data = os.read(self.sig_r, 512)
        except BlockingIOError:
            return
        for signo in data:
            if signo == signal.SIGHUP and not self.stopping:
                self.reload()
            elif signo == signal.SIGTERM and not self.stopping:
                log.info("terminating on signal %d", signo)
                self._begin_stop(signal.SIGTERM, STOP_GRACE)
            elif signo == signal.SIGINT:
                log.info("terminating on signal %d", signo)
                self._begin_stop(signal.SIGKILL, 0.0)

    def _on_status(self) -> None:
        """_on_status - read status records from children."""
        try:
            data = os.read(self.status_r, 4096)
        except BlockingIOError:
            return
        buf = self.status_buf + data
        size = skeleton.STATUS_SIZE
        while len(buf) >= size:
            pid, code = struct.unpack(skeleton.STATUS_FMT, buf[:size])
            buf = buf[size:]
            item = self.children.get(pid)
            if item is None:
                continue
            child = item[1]
            if code == skeleton.STAT_AVAIL:
                child.avail = True
            elif code == skeleton.STAT_BUSY:
                child.avail = False
            elif code == skeleton.STAT_USED:
                child.used = True
        self.status_buf = buf

    def _on_listener(self, serv: Service) -> None:
        """_on_listener - a client waits and no process is available: fork one."""
        if self._may_spawn(serv):
            self.spawn(serv)

    def _may_spawn(self, serv: Service) -> bool:
        """_may_spawn - below the process limit, not throttled, not stopping."""
        if self.stopping or serv.removed or serv.throttled_until:
            return False
        limit = serv.entry.maxproc
        return limit == 0 or len(serv.live()) < limit

    def _update_listen(self) -> None:
        """_update_listen - watch listeners of services that need another process."""
        want: dict[int, Service] = {}
        for serv in self.services.values():
            if self._may_spawn(serv) and serv.avail_count() == 0:
                for handle in serv.handles:
                    want[handle if isinstance(handle, int) else handle.fileno()] = serv
        for fd in list(self.registered):
            if fd not in want or want[fd] is not self.registered[fd]:
                self.sel.unregister(fd)
                del self.registered[fd]
        for fd, serv in want.items():
            if fd not in self.registered:
                self.sel.register(fd, selectors.EVENT_READ, serv)
                self.registered[fd] = serv

    def _timers(self) -> None:
        """_timers - wakeups, throttle expiry, stop deadline."""
        now = time.monotonic()
        for serv in list(self.services.values()):
            if serv.throttled_until and now >= serv.throttled_until:
                serv.throttled_until = 0.0
                log.verbose("%s: throttle released", serv.name)
            if serv.next_wakeup and now >= serv.next_wakeup:
                self._schedule_wakeup(serv, now)
                if serv.used or not serv.entry.wakeup_conditional:
                    self._wakeup(serv)
        if self.stopping and self.children and now >= self.stop_deadline:
            for pid in list(self.children):
                _kill(pid, signal.SIGKILL)
            self.stop_deadline = now + 3600

    def _schedule_wakeup(self, serv: Service, now: float, initial: bool = False) -> None:
        """_schedule_wakeup - set the next wakeup time of a service."""
        period = int(serv.entry.wakeup or 0)
        if period <= 0 or serv.entry.type == "inet" or self.stopping:
            serv.next_wakeup = 0.0
        elif initial and not serv.entry.wakeup_conditional:
            serv.next_wakeup = now
        else:
            serv.next_wakeup = now + period

    def _wakeup(self, serv: Service) -> None:
        """_wakeup - send a "W" trigger to a service, without blocking."""
        for ep in serv.endpoints:
            try:
                if ep.type == "fifo":
                    fd = os.open(ep.address, os.O_WRONLY | os.O_NONBLOCK)
                    try:
                        os.write(fd, b"W")
                    finally:
                        os.close(fd)
                else:
                    kind = socket.SOCK_DGRAM if ep.type == "unix-dgram" else socket.SOCK_STREAM
                    with socket.socket(socket.AF_UNIX, kind) as sock:
                        sock.setblocking(False)
                        sock.connect(ep.address)
                        sock.send(b"W")
            except OSError as exc:
                log.verbose("wakeup %s: %s", ep.address, exc)

    # -- processes

    def _prefork(self, serv: Service) -> None:
        """_prefork - start the first processes of an inet service."""
        if serv.entry.type != "inet":
            return
        limit = serv.entry.maxproc or PREFORK_INET
        while len(serv.live()) < min(PREFORK_INET, limit) and self._may_spawn(serv):
            if not self.spawn(serv):
                break

    def spawn(self, serv: Service) -> bool:
        """spawn - fork one process of a service; False when fork failed."""
        try:
            pid = os.fork()
        except OSError as exc:
            log.warning("%s: fork: %s -- throttling", serv.name, exc.strerror)
            self._throttle(serv)
            return False
        if pid == 0:
            status = 1
            try:
                status = self._child_main(serv)
            except SystemExit as exc:
                status = exc.code if isinstance(exc.code, int) else 1
            except BaseException as exc:  # the child must never return into master
                try:
                    log.error("%s: %s: %s", serv.name, type(exc).__name__, exc)
                except BaseException:
                    pass
            finally:
                os._exit(status)
        child = Child(pid)
        serv.children[pid] = child
        serv.used = True
        self.children[pid] = (serv, child)
        log.verbose("spawn: %s pid %d", serv.name, pid)
        return True

    def _child_main(self, serv: Service) -> int:
        """_child_main - in the new process: clean up master state, run the service."""
        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        keep = {self.status_w, self.life_r}
        mine = [h if isinstance(h, int) else h.fileno() for h in serv.handles]
        keep.update(mine)
        for fd in self._master_fds():
            if fd not in keep:
                _close(fd)
        for fd in (self.status_w, self.life_r, *mine):
            os.set_inheritable(fd, True)
        entry = serv.entry
        argv = [serv.runner.argv0, "-c", self.cfg.config_directory, "-n", entry.service,
                "-t", entry.type]
        for name, value in entry.overrides.items():
            argv += ["-o", f"{name}={value}"]
        argv += ["-v"] * self.verbose + list(entry.args)
        env = os.environ
        env[skeleton.ENV_UNPRIV] = "1" if entry.unpriv else "0"
        env["POSTEL_SERVICE_NAME"] = entry.service
        env["POSTEL_SERVICE_TYPE"] = entry.type
        if serv.runner.main is not None:
            env[skeleton.ENV_STATUS] = str(self.status_w)
            env[skeleton.ENV_LIFELINE] = str(self.life_r)
            env[skeleton.ENV_LISTEN] = ",".join(f"{fd}:{ep.type}"
                                                for fd, ep in zip(mine, serv.endpoints, strict=False))
            log.set_process_name(serv.runner.argv0)
            _set_comm(serv.runner.argv0)
            prof_dir = os.environ.get("POSTEL_PROFILE_DIR")
            if prof_dir:                 # developers: cProfile each child (docs/performance.md)
                return _profiled(serv.runner.main, argv, prof_dir, entry.service)
            rc = serv.runner.main(argv)
            return int(rc or 0)
        return self._exec_external(serv, mine, argv, env)

    def _exec_external(self, serv: Service, mine: list[int], argv: list[str], env) -> int:
        """_exec_external - move descriptors to 3..N and exec a program."""
        wanted = [self.status_w, self.life_r, *mine]
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 1000) for fd in wanted]
        for i, fd in enumerate(high):
            os.dup2(fd, 3 + i, inheritable=True)
        os.closerange(3 + len(high), 65536)
        env[skeleton.ENV_STATUS] = "3"
        env[skeleton.ENV_LIFELINE] = "4"
        env[skeleton.ENV_LISTEN] = ",".join(f"{5 + i}:{ep.type}"
                                            for i, ep in enumerate(serv.endpoints))
        argv[0] = serv.runner.path
        os.execve(serv.runner.path, argv, dict(env))
        return 1

    def _master_fds(self) -> list[int]:
        """_master_fds - descriptors a child must not keep."""
        fds = [self.sig_r, self.sig_w, self.status_r, self.life_w, self.pid_fd, self.ready_fd,
               self.sel.fileno() if hasattr(self.sel, "fileno") else -1]
        for serv in self.services.values():
            fds += [h if isinstance(h, int) else h.fileno() for h in serv.handles]
        return [fd for fd in fds if fd >= 0]

    def _reap(self) -> None:
        """_reap - collect exited children; log and throttle as Postfix does."""
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            item = self.children.pop(pid, None)
            if item is None:
                continue
            serv, child = item
            serv.children.pop(pid, None)
            self._account_exit(serv, child, status)

    def _account_exit(self, serv: Service, child: Child, status: int) -> None:
        """_account_exit - log an abnormal exit; throttle a bad command startup."""
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
            return
        if self.stopping and os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
            return
        if os.WIFSIGNALED(status):
            log.warning("process %s pid %d killed by signal %d",
                        serv.name, child.pid, os.WTERMSIG(status))
        else:
            log.warning("process %s pid %d exit status %d",
                        serv.name, child.pid, os.WEXITSTATUS(status))
        if not child.used and not child.retired and not serv.throttled_until \
                and not self.stopping and not serv.removed:
            log.warning("%s: bad command startup -- throttling", serv.name)
            self._throttle(serv)

    def _throttle(self, serv: Service) -> None:
        """_throttle - fork nothing for this service for a while."""
        serv.throttled_until = time.monotonic() + self.throttle_time

    def _retire(self, serv: Service, sig: int = signal.SIGTERM) -> None:
        """_retire - tell every child of a service to finish and exit."""
        for child in serv.children.values():
            if not child.retired:
                child.retired = True
                _kill(child.pid, sig)

    # -- reload and stop

    def reload(self) -> None:
        """reload - re-read the configuration; keep unchanged listeners open."""
        from postel.config import ConfigError, load_config
        try:
            cfg = load_config(self.config_dir)
            entries = cfg.master_entries()
            syslog_name, maillog = cfg.get("syslog_name"), cfg.get("maillog_file")
            keys = [e.key for e in entries]
            dup = next((k for k in keys if keys.count(k) > 1), None)
            if dup:
                raise ConfigError(f"duplicate master.cf service {dup}")
        except (ConfigError, KeyError, ValueError, OSError) as exc:
            log.error("%s -- configuration not reloaded", exc)
            return
        log.init("master", syslog_name=syslog_name, maillog_file=maillog,
                 stdout=self.foreground, verbose=self.verbose)
        self.cfg = cfg
        self._read_throttle_time(cfg)
        log.info("reload -- version %s, configuration %s", version(), cfg.config_directory)
        new = {e.key: e for e in entries}
        for key in list(self.services):
            if key not in new:
                self._remove_service(self.services.pop(key))
        now = time.monotonic()
        for key, entry in new.items():
            old = self.services.get(key)
            serv = self._reload_entry(old, entry, cfg)
            if serv is None:
                self.services.pop(key, None)
                continue
            self.services[key] = serv
            self._schedule_wakeup(serv, now)
            self._prefork(serv)

    def _reload_entry(self, old: Service | None, entry, cfg) -> Service | None:
        """_reload_entry - the Service for an entry after reload."""
        if old is None:
            return self._make_service(entry, cfg, fatal=False)
        try:
            eps = lst.endpoints(entry, cfg)
        except lst.ListenError as exc:
            log.error("%s, line %d: service %s: %s", entry.file, entry.line, entry.key, exc)
            eps = None
        runner = self._resolve(entry)
        if runner is None:
            self._remove_service(old)
            return None
        if eps != old.endpoints:
            self._remove_service(old)
            return self._make_service(entry, cfg, fatal=False)
        old.entry, old.runner = entry, runner
        old.throttled_until = 0.0
        self._retire(old)
        return old

    def _remove_service(self, serv: Service) -> None:
        """_remove_service - close a service's listeners and retire its children."""
        serv.removed = True
        for fd in [fd for fd, s in self.registered.items() if s is serv]:
            self.sel.unregister(fd)
            del self.registered[fd]
        self._close_handles(serv)
        self._retire(serv)

    def _close_handles(self, serv: Service) -> None:
        """_close_handles - close and unlink every listener of a service."""
        for ep, handle in zip(serv.endpoints, serv.handles, strict=False):
            lst.close_endpoint(ep, handle)
        serv.handles = []

    def _begin_stop(self, sig: int, grace: float) -> None:
        """_begin_stop - close listeners and signal every child."""
        self.stopping = True
        self.stop_deadline = time.monotonic() + grace
        for serv in self.services.values():
            for fd in [fd for fd, s in self.registered.items() if s is serv]:
                self.sel.unregister(fd)
                del self.registered[fd]
            self._close_handles(serv)
            serv.next_wakeup = 0.0
            for child in serv.children.values():
                child.retired = True
                _kill(child.pid, sig)
        # close the lifeline too: children that missed the signal notice EOF
        _close(self.life_w)
        self.life_w = -1

    def _cleanup(self) -> None:
        """_cleanup - remove the pid file and release the lock."""
        if self.pid_fd >= 0:
            try:
                os.unlink(self.pid_path)
            except OSError:
                pass
            _close(self.pid_fd)
            self.pid_fd = -1

    def _cleanup_partial(self) -> None:
        """_cleanup_partial - close what a failed start opened."""
        for serv in self.services.values():
            self._close_handles(serv)
        self._cleanup()

    def notify_ready(self, message: str = "") -> None:
        """notify_ready - tell `postel start` that start-up succeeded or failed."""
        if self.ready_fd < 0:
            return
        try:
            os.write(self.ready_fd, (f"error: {message}\n" if message else "ok\n").encode())
        except OSError:
            pass
        _close(self.ready_fd)
        self.ready_fd = -1


def _check_mail_owner(cfg) -> None:
    """_check_mail_owner - started as root, services need an unprivileged $mail_owner."""
    if os.geteuid() != 0:
        return
    owner = cfg.get("mail_owner")
    try:
        uid = pwd.getpwnam(owner).pw_uid
    except KeyError:
        raise StartupError(f"mail_owner: unknown user {owner!r} "
                           f"(create it, or run postel init again)") from None
    if uid == 0:
        raise StartupError(f"mail_owner: user {owner} has privileged user ID 0; "
                           f"set mail_owner to an unprivileged user (postel init uses postel)")


def _kill(pid: int, sig: int) -> None:
    """_kill - signal a process that may already be gone."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass



def _profiled(main, argv: list[str], prof_dir: str, name: str) -> int:
    """_profiled - run a service's main under cProfile; the statistics go to
    PROF_DIR/NAME.PID.prof when the process ends (postel stop)."""
    import cProfile

    prof = cProfile.Profile()
    try:
        return int(prof.runcall(main, argv) or 0)
    finally:
        prof.dump_stats(os.path.join(prof_dir, f"{name}.{os.getpid()}.prof"))


def _set_comm(name: str) -> None:
    """_set_comm - name a forked child in ps/top (/proc/PID/comm), as Postfix's
    processes show as smtpd, cleanup, qmgr; a no-op where prctl is missing."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(15, ctypes.c_char_p(os.path.basename(name).encode()[:15]), 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):
        pass


def _close(fd: int) -> None:
    """_close - close a descriptor, ignoring errors."""
    if fd >= 0:
        try:
            os.close(fd)
        except OSError:
            pass


def run_master(config_dir: str | None, *, foreground: bool = False, ready_fd: int = -1,
               verbose: int = 0) -> int:
    """run_master - start master and run it until stopped; returns the exit status."""
    master = Master(config_dir, foreground=foreground, ready_fd=ready_fd, verbose=verbose)
    try:
        master.start()
    except StartupError as exc:
        msg = str(exc)
        if log.tag() == "postel/master":
            try:
                log.error("%s", msg)
            except Exception:
                pass
        print(f"postel/master: fatal: {msg}", file=sys.__stderr__)
        master.notify_ready(msg)
        master._cleanup_partial()
        return 1
    master.notify_ready()
    try:
        return master.run()
    except KeyboardInterrupt:
        return 1


def main(argv: list[str], config_dir: str | None) -> int:
    """main - `postel master [-f] [-w fd] [-v]`."""
    foreground, ready_fd, verbose = False, -1, 0
    it = iter(argv)
    for arg in it:
        if arg == "-f":
            foreground = True
        elif arg == "-v":
            verbose += 1
        elif arg == "-w":
            val = next(it, "")
            if not val.isdigit():
                print("postel master: -w requires a descriptor number", file=sys.stderr)
                return 2
            ready_fd = int(val)
        elif arg == "-c":
            config_dir = next(it, None)
        else:
            print(f"postel master: unknown option: {arg}", file=sys.stderr)
            return 2
    return run_master(config_dir, foreground=foreground, ready_fd=ready_fd, verbose=verbose)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], None))
