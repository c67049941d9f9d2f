"""lib - run a whole Postel instance in a temporary directory (end-to-end tests)

SYNOPSIS
    from lib import Instance
    with Instance(tmp_path, extra_main={"max_idle": "5s"},
                  extra_master=["2600 inet n - n - - testsvc -m echo"]) as inst:
        inst.start()
        inst.smtp_port, inst.dir, inst.queue_dir, inst.log_path
        inst.wait_log(r"daemon started")
        inst.postel("conf", "-h", "myhostname")     # CompletedProcess
        inst.reload(); inst.stop()

DESCRIPTION
    Instance creates the instance with the real `postel init` (the console
    script in the venv), on a free 127.0.0.1 port, then appends extra_main
    to main.cf and extra_master lines to master.cf.  start() runs `postel -c
    DIR start` and waits until the SMTP port accepts connections; when
    smtp=False (or smtpd does not exist yet) it waits for "daemon started"
    in the log instead.  free_port() gives more ports for extra services.

    Leaving the with-block (and the `instance` fixture's teardown) always
    runs `postel stop`, then kills any process left whose command line
    names the instance directory, so a failing test leaves nothing behind.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

POSTEL = str(Path(sys.executable).with_name("postel"))


def free_port() -> int:
    """free_port - an unused TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """port_open - True when something accepts TCP connections there."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def instance_pids(dirpath: str) -> list[int]:
    """instance_pids - processes whose command line names the instance directory."""
    pids = []
    needle = os.fsencode(os.path.abspath(dirpath))
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read()
            with open(f"/proc/{entry}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if state == b"Z":
            continue
        if needle in cmd.split(b"\0"):
            pids.append(int(entry))
    return pids


class Instance:
    """A Postel instance in a temporary directory."""

    def __init__(self, tmp_path, extra_main: dict[str, str] | None = None,
                 extra_master: list[str] | None = None, smtp: bool = True,
                 name: str = "postel") -> None:
        self.dir = str(Path(tmp_path) / name)
        self.smtp_port = free_port()
        self.smtp = smtp
        self.queue_dir = os.path.join(self.dir, "queue")
        self.log_path = os.path.join(self.dir, "maillog")
        self._log_offset = 0
        self._create(extra_main or {}, extra_master or [])

    def _create(self, extra_main: dict[str, str], extra_master: list[str]) -> None:
        """_create - postel init, then the test's additions."""
        cp = subprocess.run([POSTEL, "init", "--port", str(self.smtp_port), self.dir],
                            capture_output=True, text=True, timeout=60)
        if cp.returncode != 0:
            raise RuntimeError(f"postel init failed: {cp.stderr}")
        if extra_main:
            with open(os.path.join(self.dir, "main.cf"), "a") as f:
                for name, value in extra_main.items():
                    f.write(f"{name} = {value}\n")
        if extra_master:
            self.add_master(extra_master)

    def add_master(self, lines: list[str]) -> None:
        """add_master - append entries to master.cf (reload to apply)."""
        with open(os.path.join(self.dir, "master.cf"), "a") as f:
            for line in lines:
                f.write(line.rstrip("\n") + "\n")

    def remove_master(self, pattern: str) -> None:
        """remove_master - delete master.cf lines that start with pattern."""
        path = os.path.join(self.dir, "master.cf")
        with open(path) as f:
            lines = [ln for ln in f if not ln.startswith(pattern)]
        with open(path, "w") as f:
            f.writelines(lines)

    def postel(self, *args: str, check: bool = False, timeout: float = 60) -> subprocess.CompletedProcess:
        """postel - run `postel -c DIR args...`, capturing text output."""
        return subprocess.run([POSTEL, "-c", self.dir, *args], capture_output=True, text=True,
                              timeout=timeout, check=check)

    def start(self, timeout: float = 20) -> subprocess.CompletedProcess:
        """start - postel start; wait for the SMTP port (or the start log line)."""
        self._log_offset = self._log_size()
        cp = self.postel("start")
        if cp.returncode != 0:
            raise RuntimeError(f"postel start failed ({cp.returncode}): {cp.stderr}")
        if self.smtp and self._smtpd_exists():
            deadline = time.monotonic() + timeout
            while not port_open(self.smtp_port):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"SMTP port {self.smtp_port} not accepting")
                time.sleep(0.05)
        else:
            self.wait_log(r"daemon started", timeout=timeout, from_start=False)
        return cp

    @staticmethod
    def _smtpd_exists() -> bool:
        """_smtpd_exists - whether postel.smtpd.service is importable."""
        import importlib.util
        try:
            return importlib.util.find_spec("postel.smtpd.service") is not None
        except ModuleNotFoundError:
            return False

    def _log_size(self) -> int:
        try:
            return os.path.getsize(self.log_path)
        except OSError:
            return 0

    def log_text(self) -> str:
        """log_text - the whole maillog."""
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def wait_log(self, pattern: str, timeout: float = 10, from_start: bool = True) -> str:
        """wait_log - the first maillog line matching pattern (since start() unless from_start)."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        offset = 0 if from_start else self._log_offset
        while True:
            text = self.log_text()[offset:]
            for line in text.splitlines():
                if rx.search(line):
                    return line
            if time.monotonic() > deadline:
                raise TimeoutError(f"no log line matching {pattern!r} within {timeout}s; "
                                   f"log tail:\n{text[-3000:]}")
            time.sleep(0.05)

    def count_log(self, pattern: str) -> int:
        """count_log - how many maillog lines match pattern."""
        rx = re.compile(pattern)
        return sum(1 for line in self.log_text().splitlines() if rx.search(line))

    def master_pid(self) -> int | None:
        """master_pid - from the pid file, None when absent."""
        try:
            with open(os.path.join(self.queue_dir, "pid", "master.pid")) as f:
                text = f.read().strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    def reload(self, wait: bool = True) -> subprocess.CompletedProcess:
        """reload - postel reload; wait for master's "reload" log line."""
        before = self.count_log(r"postel/master\[\d+\]: reload -- ")
        cp = self.postel("reload")
        if wait and cp.returncode == 0:
            deadline = time.monotonic() + 10
            while self.count_log(r"postel/master\[\d+\]: reload -- ") <= before:
                if time.monotonic() > deadline:
                    raise TimeoutError("master did not log a reload")
                time.sleep(0.05)
        return cp

    def stop(self) -> subprocess.CompletedProcess:
        """stop - postel stop (waits until master has gone)."""
        return self.postel("stop")

    def pids(self) -> list[int]:
        """pids - live processes of this instance."""
        return instance_pids(self.dir)

    def cleanup(self) -> None:
        """cleanup - stop, then kill whatever is left of this instance."""
        if self.master_pid() is not None:
            try:
                self.stop()
            except subprocess.TimeoutExpired:
                pass
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def __enter__(self) -> Instance:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
