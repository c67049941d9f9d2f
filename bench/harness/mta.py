"""mta - private Postfix and Postel instances, smtp-sink, process memory

SYNOPSIS
    from harness.mta import PostfixMTA, PostelMTA, Sink, Reaper, pss_kib

    with Reaper() as reaper:
        sink = reaper.add(Sink(workdir)).start()
        mta = reaper.add(PostfixMTA(workdir, "relay", {"relayhost": f"[127.0.0.1]:{sink.port}"}))
        mta.start()
        mta.smtp_port, mta.queue_counts(), mta.pids(), mta.purge()

DESCRIPTION
    PostfixMTA builds a private, real Postfix (the Debian package) in a
    directory of its own: etc/ (main.cf, master.cf), queue/, data/ (owned
    by postfix), maillog; SMTP on a free 127.0.0.1 port; no DNS, no TLS,
    stock defaults otherwise.  The master.cf is the package's
    master.cf.dist with chroot switched off (a chroot would need copies of
    /etc files in the queue directory).  Started with `postfix -c DIR
    start`, stopped with `postfix -c DIR stop`.  Needs root.

    PostelMTA builds a Postel instance with the real `postel init` (the
    venv's console script) and appends the same main.cf settings.

    mode "hold" comments the qmgr line out of master.cf on both, so that
    accepted mail stays in incoming/ (acceptance-only measurements).

    Sink runs Postfix's smtp-sink with -c and follows its running
    counters (sess=, quit=, mesg=) from a reader thread.

    Reaper stops everything it was given, newest first, when the block is
    left, on error or Ctrl-C (SIGTERM is turned into SystemExit by run.py).

    pss_kib(pids) sums the Pss: line of /proc/PID/smaps_rollup.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from .report import parse_counters

POSTEL = str(Path(sys.executable).with_name("postel"))
QUEUES = ("maildrop", "incoming", "active", "deferred", "hold")


def free_port() -> int:
    """free_port - an unused TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 20) -> None:
    """wait_port - until 127.0.0.1:port accepts connections."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"127.0.0.1:{port} does not accept connections") from None
            time.sleep(0.05)


def children_map() -> dict[int, list[int]]:
    """children_map - ppid -> live child pids, from /proc."""
    out: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if fields[0] == b"Z":
            continue
        out.setdefault(int(fields[1]), []).append(int(entry))
    return out


def process_tree(root: int) -> list[int]:
    """process_tree - root and all its live descendants."""
    if not os.path.exists(f"/proc/{root}"):
        return []
    kids = children_map()
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo.extend(kids.get(pid, []))
    return pids


def pss_kib(pids: list[int]) -> int:
    """pss_kib - summed proportional set size of pids, in KiB."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue
    return total


def count_files(path: str) -> int:
    """count_files - regular files under path (queue subdirectories included)."""
    n = 0
    for _dirpath, _dirs, files in os.walk(path):
        n += len(files)
    return n


def kill_tree(root: int | None) -> None:
    """kill_tree - SIGKILL root and its descendants (last resort)."""
    if root is None:
        return
    for pid in reversed(process_tree(root)):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class Reaper:
    """Stops every registered object (stop() method), newest first."""

    def __init__(self) -> None:
        self._items: list = []

    def add(self, item):
        """add - register item for stop(); returns it."""
        self._items.append(item)
        return item

    def stop_all(self) -> None:
        """stop_all - stop everything registered, ignoring errors."""
        while self._items:
            item = self._items.pop()
            try:
                item.stop()
            except Exception as exc:  # cleanup must go on
                print(f"bench: cleanup of {item!r}: {exc}", file=sys.stderr)

    def __enter__(self) -> Reaper:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


class Sink:
    """smtp-sink on a free port, with its running counters."""

    def __init__(self, workdir: str, backlog: int = 1000, dump_dir: str | None = None,
                 extra: list[str] | None = None) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.backlog = backlog
        self.dump_dir = dump_dir
        self.extra = extra or []
        self.proc: subprocess.Popen | None = None
        self.mesg = 0
        self.sess = 0
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"Sink(port={self.port})"

    def start(self) -> Sink:
        """start - run smtp-sink and wait until it listens."""
        argv = [shutil.which("smtp-sink") or "smtp-sink", "-c"]
        if os.geteuid() == 0:
            argv += ["-u", "nobody"]
        if self.dump_dir:
            os.makedirs(self.dump_dir, exist_ok=True)
            os.chmod(self.dump_dir, 0o777)
            argv += ["-d", os.path.join(self.dump_dir, "m")]
        argv += self.extra + [f"127.0.0.1:{self.port}", str(self.backlog)]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     cwd=self.workdir, start_new_session=True)
        self._thread = threading.Thread(target=self._follow, daemon=True)
        self._thread.start()
        wait_port(self.port)
        # Our own probe connection counted as a session; start from here.
        time.sleep(0.05)
        return self

    def _follow(self) -> None:
        """_follow - parse 'sess=N quit=N mesg=N' counters as they come."""
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        buf = b""
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            buf += chunk
            counters = parse_counters(buf)
            if counters is not None:
                with self._cond:
                    self.sess, _quit, self.mesg = counters
                    self._cond.notify_all()
            buf = buf[-200:]

    def wait_messages(self, n: int, timeout: float) -> float | None:
        """wait_messages - monotonic time when mesg >= n, None on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.mesg < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(min(left, 0.5))
        return time.monotonic()

    def stop(self) -> None:
        """stop - terminate smtp-sink (kill after 5 s)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _mkdir(path: str, mode: int = 0o755) -> str:
    os.makedirs(path, exist_ok=True)
    os.chmod(path, mode)
    return path


class _MTA:
    """What both instances share: queue inspection, memory, waiting."""

    name = "mta"
    queue_dir: str
    log_path: str
    smtp_port: int

    def master_pid(self) -> int | None:
        """master_pid - from queue/pid/master.pid, None when absent or dead."""
        try:
            with open(os.path.join(self.queue_dir, "pid", "master.pid")) as f:
                text = f.read().strip()
        except OSError:
            return None
        if not text.isdigit() or not os.path.exists(f"/proc/{text}"):
            return None
        return int(text)

    def pids(self) -> list[int]:
        """pids - master and all its descendants."""
        pid = self.master_pid()
        return process_tree(pid) if pid else []

    def memory(self) -> tuple[int, int]:
        """memory - (PSS KiB summed over all processes, process count)."""
        pids = self.pids()
        return pss_kib(pids), len(pids)

    def queue_counts(self) -> dict[str, int]:
        """queue_counts - files per queue (maildrop incoming active deferred hold)."""
        return {q: count_files(os.path.join(self.queue_dir, q)) for q in QUEUES}

    def log_size(self) -> int:
        """log_size - current maillog length (an offset for count_log)."""
        try:
            return os.path.getsize(self.log_path)
        except OSError:
            return 0

    def count_log(self, pattern: str, offset: int = 0) -> int:
        """count_log - maillog lines after offset that match pattern."""
        rx = re.compile(pattern)
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return 0
        return sum(1 for line in text.splitlines() if rx.search(line))

    def wait_queue_empty(self, timeout: float, queues=("incoming", "active", "maildrop")) -> float | None:
        """wait_queue_empty - monotonic time when the queues are empty, None on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            counts = self.queue_counts()
            if all(counts[q] == 0 for q in queues):
                return time.monotonic()
            if time.monotonic() > deadline:
                return None
            time.sleep(0.02)


class PostfixMTA(_MTA):
    """A private Postfix instance (needs root)."""

    name = "postfix"

    def __init__(self, workdir: str, mode: str, main: dict[str, str]) -> None:
        self.dir = _mkdir(os.path.join(workdir, f"postfix-{mode}"))
        self.etc = _mkdir(os.path.join(self.dir, "etc"))
        self.queue_dir = _mkdir(os.path.join(self.dir, "queue"))
        self.data_dir = _mkdir(os.path.join(self.dir, "data"), 0o700)
        pw = pwd.getpwnam("postfix")
        os.chown(self.data_dir, pw.pw_uid, pw.pw_gid)
        self.log_path = os.path.join(self.dir, "maillog")
        self.smtp_port = free_port()
        self.mode = mode
        base = {
            "compatibility_level": "3.6",
            "config_directory": self.etc,
            "queue_directory": self.queue_dir,
            "data_directory": self.data_dir,
            "maillog_file": self.log_path,
            "maillog_file_prefixes": self.dir,
            "myhostname": "localhost.localdomain",
            "mydestination": "",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "smtp_dns_support_level": "disabled",
            "alias_maps": "",
            "alias_database": "",
            "local_recipient_maps": "",
            "biff": "no",
        }
        base.update(main)
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write("# Postfix instance for Postel's bench/run.py\n")
            for k, v in base.items():
                f.write(f"{k} = {v}\n")
        with open("/usr/share/postfix/master.cf.dist") as f:
            lines = f.read().splitlines()
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            for line in lines:
                f.write(self._master_line(line) + "\n")

    def __repr__(self) -> str:
        return f"PostfixMTA({self.dir})"

    def _master_line(self, line: str) -> str:
        """_master_line - our port for smtpd, no chroot, qmgr off in hold mode."""
        fields = line.split()
        if not fields or line[0] in "# \t":
            return line
        if fields[:2] == ["smtp", "inet"]:
            fields[0] = f"127.0.0.1:{self.smtp_port}"
        if len(fields) >= 8 and fields[4] == "y":
            fields[4] = "n"
        if self.mode == "hold" and fields[0] == "qmgr":
            return "#" + " ".join(fields)
        return " ".join(fields)

    def postfix(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """postfix - run `postfix -c ETC args`."""
        return subprocess.run(["postfix", "-c", self.etc, *args], capture_output=True,
                              text=True, timeout=timeout)

    def start(self) -> None:
        """start - postfix start; wait for the SMTP port."""
        cp = self.postfix("start")
        if cp.returncode != 0:
            raise RuntimeError(f"postfix start failed: {cp.stderr.strip()} (see {self.log_path})")
        wait_port(self.smtp_port)

    def stop(self) -> None:
        """stop - postfix stop, wait for master to go, kill what is left."""
        pid = self.master_pid()
        if pid is None:
            return
        try:
            self.postfix("stop", timeout=30)
        except subprocess.TimeoutExpired:
            pass
        deadline = time.monotonic() + 10
        while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
            time.sleep(0.05)
        kill_tree(pid if os.path.exists(f"/proc/{pid}") else None)

    def purge(self) -> None:
        """purge - postsuper -d ALL."""
        subprocess.run(["postsuper", "-c", self.etc, "-d", "ALL"], capture_output=True, timeout=300)

    def mailq_argv(self) -> list[str]:
        return ["postqueue", "-c", self.etc, "-p"]

    def flush_argv(self) -> list[str]:
        return ["postqueue", "-c", self.etc, "-f"]

    @classmethod
    def delivery_missing(cls, services: tuple[str, ...] = ()) -> str | None:
        """delivery_missing - Postfix has every delivery agent."""
        return None


class PostelMTA(_MTA):
    """A Postel instance made with `postel init`."""

    name = "postel"

    def __init__(self, workdir: str, mode: str, main: dict[str, str]) -> None:
        self.dir = os.path.join(workdir, f"postel-{mode}")
        self.smtp_port = free_port()
        self.mode = mode
        cp = subprocess.run([POSTEL, "init", "--port", str(self.smtp_port), self.dir],
                            capture_output=True, text=True, timeout=60)
        if cp.returncode != 0:
            lines = cp.stderr.strip().splitlines() or ["(no message)"]
            raise RuntimeError(f"postel init failed: {lines[-1]}")
        self.queue_dir = os.path.join(self.dir, "queue")
        self.log_path = os.path.join(self.dir, "maillog")
        base = {"mydestination": "", "inet_interfaces": "127.0.0.1", "mynetworks": "127.0.0.0/8",
                "smtp_dns_support_level": "disabled"}
        base.update(main)
        with open(os.path.join(self.dir, "main.cf"), "a") as f:
            f.write("# bench/run.py\n")
            for k, v in base.items():
                f.write(f"{k} = {v}\n")
        if mode == "hold":
            path = os.path.join(self.dir, "master.cf")
            with open(path) as f:
                lines = f.read().splitlines()
            with open(path, "w") as f:
                for line in lines:
                    f.write(("#" + line if line.split()[:1] == ["qmgr"] else line) + "\n")

    def __repr__(self) -> str:
        return f"PostelMTA({self.dir})"

    def postel(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """postel - run `postel -c DIR args`."""
        return subprocess.run([POSTEL, "-c", self.dir, *args], capture_output=True, text=True,
                              timeout=timeout)

    def start(self, attempts: int = 2) -> None:
        """start - postel start; wait for the SMTP port (one retry after a stop)."""
        for attempt in range(attempts):
            cp = self.postel("start")
            if cp.returncode != 0 and attempt + 1 == attempts:
                raise RuntimeError(f"postel start failed: {cp.stderr.strip()} (see {self.log_path})")
            try:
                wait_port(self.smtp_port, timeout=15)
                return
            except TimeoutError:
                if attempt + 1 == attempts:
                    raise TimeoutError(f"postel: SMTP port {self.smtp_port} not accepting; "
                                       f"log tail: {self._log_tail()}") from None
                self.stop()
                time.sleep(1)

    def _log_tail(self, n: int = 3) -> str:
        """_log_tail - the last n maillog lines, for error messages."""
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return " | ".join(f.read().splitlines()[-n:])
        except OSError:
            return "(no maillog)"

    def stop(self) -> None:
        """stop - postel stop, then kill whatever is left of the tree."""
        pid = self.master_pid()
        if pid is None:
            return
        tree = process_tree(pid)
        try:
            self.postel("stop", timeout=30)
        except subprocess.TimeoutExpired:
            pass
        for p in tree:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def purge(self) -> None:
        """purge - postel super -d ALL (falls back to removing the files)."""
        cp = self.postel("super", "-d", "ALL", timeout=300)
        if cp.returncode != 0:
            for q in QUEUES:
                for dirpath, _dirs, files in os.walk(os.path.join(self.queue_dir, q)):
                    for name in files:
                        os.unlink(os.path.join(dirpath, name))

    def mailq_argv(self) -> list[str]:
        return [POSTEL, "-c", self.dir, "queue", "-p"]

    def flush_argv(self) -> list[str]:
        return [POSTEL, "-c", self.dir, "queue", "-f"]

    @classmethod
    def delivery_missing(cls, services: tuple[str, ...] = ("qmgr", "smtp")) -> str | None:
        """delivery_missing - the first needed daemon Postel lacks, e.g. 'no qmgr'."""
        for name in services:
            if importlib.util.find_spec(f"postel.{name}") is None:
                return f"no {name}"
            if importlib.util.find_spec(f"postel.{name}.service") is None:
                return f"no {name}"
        return None
