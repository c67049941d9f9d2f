"""faultlib - helpers for the crash/fault harness (tests/e2e/test_e2e_faults.py)

SYNOPSIS
    from faultlib import DumpSink, Sender, service_pids, queue_files, kill_and_recover

    sink = DumpSink(); sink.start()              # Postfix's smtp-sink -d DIR/
    inst = Instance(tmp_path, extra_main=relay_main(sink.port))
    inst.start()
    snd = Sender(inst.smtp_port, 500, sessions=20); snd.start()
    snd.wait_accepted(250)
    service_pids(inst)        # {"smtpd": [..], "cleanup": [..], "rewrite": [..], ...}
    snd.join()
    snd.accepted()            # {i: qid} of messages that got 250
    sink.arrivals()           # Counter {i: times arrived}
    queue_files(inst.queue_dir)   # {"incoming": [...], ...} of message files left

DESCRIPTION
    Every test message i goes to the envelope recipient <m{i}@remote.example>
    with "Subject: fault {i}", so that both the sink's dump files (their
    X-Rcpt-Args: line) and Postel's "to=<...>, ... status=sent" log lines
    name it without a queue ID.

    Sender runs `sessions` SMTP client threads (smtplib) that share the
    message numbers.  A message whose MAIL or RCPT fails (the server died,
    answered 4xx, or is not listening) is tried again on a new connection,
    as a real client would.  Once DATA has been sent the outcome is final:
    "250" (with the queue ID from "queued as QID"), "rejected" (any other
    reply, e.g. 451 or 452), or "unknown" (the connection broke before the
    reply: the message may or may not have been queued).

    service_pids() tells which child of master serves what by the sockets
    it holds: the listening socket of public/NAME or private/NAME (seen in
    /proc/net/unix), or the SMTP port (in /proc/net/tcp).  This also finds
    processes that have not logged anything yet (trivial-rewrite never
    logs when all goes well).
"""

from __future__ import annotations

import collections
import glob
import os
import re
import shutil
import smtplib
import subprocess
import tempfile
import threading
import time

from lib import free_port

from peerlib import require_peer

# Queues that hold message files; corrupt/ is listed separately.
MESSAGE_QUEUES = ("maildrop", "incoming", "active", "deferred", "hold")
RCPT_RX = re.compile(rb"^X-Rcpt-Args: <m(\d+)@remote\.example>", re.M)
QUEUED_RX = re.compile(r"queued as (\S+)")


def relay_main(sink_port: int, **extra: str) -> dict[str, str]:
    """relay_main - main.cf settings for relaying everything to the sink, quick retries."""
    main = {"relayhost": f"[127.0.0.1]:{sink_port}", "minimal_backoff_time": "1s",
            "maximal_backoff_time": "2s", "queue_run_delay": "1s"}
    main.update(extra)
    return main


class DumpSink:
    """Postfix's smtp-sink writing each received message into a file of its own."""

    def __init__(self, port: int | None = None) -> None:
        self.exe = require_peer("smtp-sink")
        self.port = port or free_port()
        # smtp-sink writes as "nobody": pytest's tmp_path (mode 0700) is out of reach
        self.dir = tempfile.mkdtemp(prefix="faults-sink-")
        os.chmod(self.dir, 0o777)
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        """start - run smtp-sink and wait until it answers."""
        self.proc = subprocess.Popen([self.exe, "-u", "nobody", "-d", self.dir + "/",
                                      f"127.0.0.1:{self.port}", "256"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                smtplib.SMTP("127.0.0.1", self.port, timeout=2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("smtp-sink did not start")

    def remove(self) -> None:
        """remove - stop smtp-sink and delete its files."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def files(self) -> list[str]:
        """files - the dump files written so far."""
        return glob.glob(os.path.join(self.dir, "*"))

    def arrivals(self) -> tuple[collections.Counter, list[str]]:
        """arrivals - (Counter of test message numbers, dump files of anything else)."""
        seen: collections.Counter = collections.Counter()
        other = []
        for path in self.files():
            try:
                with open(path, "rb") as f:
                    m = RCPT_RX.search(f.read(4096))
            except OSError:
                continue
            if m:
                seen[int(m.group(1))] += 1
            else:
                other.append(path)
        return seen, other


def message(i: int) -> bytes:
    """message - the text of test message i."""
    return (f"From: <a@sender.example>\r\nTo: <m{i}@remote.example>\r\n"
            f"Subject: fault {i}\r\nMessage-ID: <fault.{i}@sender.example>\r\n\r\n"
            f"test message {i}\r\n").encode()


class Sender:
    """Concurrent SMTP sessions sending test messages 0..n-1, recording each outcome."""

    def __init__(self, port: int, n: int, sessions: int = 20, give_up: float = 300.0) -> None:
        self.port = port
        self.n = n
        self.sessions = sessions
        self.give_up = give_up
        self.results: dict[int, tuple[str, str]] = {}
        self._next = 0
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._threads: list[threading.Thread] = []
        self._deadline = 0.0

    def start(self) -> None:
        """start - run the client threads."""
        self._deadline = time.monotonic() + self.give_up
        for _ in range(self.sessions):
            t = threading.Thread(target=self._worker, daemon=True)
            t.start()
            self._threads.append(t)

    def join(self) -> None:
        """join - wait until every message has an outcome."""
        for t in self._threads:
            t.join()

    def done(self) -> bool:
        """done - whether all client threads have finished."""
        return not any(t.is_alive() for t in self._threads)

    def count(self, status: str = "250") -> int:
        """count - how many messages have that outcome so far."""
        with self._lock:
            return sum(1 for s, _ in self.results.values() if s == status)

    def wait_accepted(self, k: int, timeout: float = 120.0) -> None:
        """wait_accepted - block until k messages got 250 (or all are done)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while sum(1 for s, _ in self.results.values() if s == "250") < k:
                if len(self.results) >= self.n:
                    return
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"only {len(self.results)} of {self.n} messages "
                                       f"finished; wanted {k} accepted")
                self._cond.wait(min(left, 1.0))

    def accepted(self) -> dict[int, str]:
        """accepted - {message number: queue ID} of the messages that got 250."""
        with self._lock:
            return {i: d for i, (s, d) in self.results.items() if s == "250"}

    def with_status(self, status: str) -> dict[int, str]:
        """with_status - {message number: detail} of the messages with that outcome."""
        with self._lock:
            return {i: d for i, (s, d) in self.results.items() if s == status}

    def _take(self) -> int | None:
        with self._lock:
            if self._next >= self.n:
                return None
            i = self._next
            self._next += 1
            return i

    def _record(self, i: int, status: str, detail: str) -> None:
        with self._cond:
            self.results[i] = (status, detail)
            self._cond.notify_all()

    def _connect(self) -> smtplib.SMTP | None:
        try:
            s = smtplib.SMTP("127.0.0.1", self.port, timeout=30)
            code, _ = s.ehlo("client.example")
            if code == 250:
                return s
            _close(s)
        except (OSError, smtplib.SMTPException):
            pass
        return None

    def _worker(self) -> None:
        """_worker - one client session loop (reconnects when the server goes away)."""
        s: smtplib.SMTP | None = None
        while (i := self._take()) is not None:
            while True:
                if time.monotonic() > self._deadline:
                    self._record(i, "unsent", "gave up")
                    break
                if s is None:
                    s = self._connect()
                    if s is None:
                        time.sleep(0.05)
                        continue
                try:
                    code, _ = s.mail("a@sender.example")
                    if code == 250:
                        code, _ = s.rcpt(f"m{i}@remote.example")
                    if code != 250:
                        raise smtplib.SMTPResponseException(code, "envelope refused")
                except (OSError, smtplib.SMTPException):
                    _close(s)           # try this message again on a new connection
                    s = None
                    continue
                try:
                    code, resp = s.data(message(i))
                except (OSError, smtplib.SMTPException) as exc:
                    self._record(i, "unknown", repr(exc))
                    _close(s)
                    s = None
                    break
                text = resp.decode(errors="replace")
                if code == 250:
                    m = QUEUED_RX.search(text)
                    self._record(i, "250", m.group(1) if m else "")
                else:
                    self._record(i, "rejected", f"{code} {text}")
                    _close(s)
                    s = None
                break
        if s is not None:
            try:
                s.quit()
            except (OSError, smtplib.SMTPException):
                _close(s)


def _close(s: smtplib.SMTP) -> None:
    try:
        s.close()
    except OSError:
        pass


def _socket_inodes(pid: int) -> set[int]:
    """_socket_inodes - inodes of the sockets a process has open."""
    out = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return out
    for fd in fds:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            out.add(int(link[8:-1]))
    return out


def _unix_listeners(queue_dir: str) -> dict[int, str]:
    """_unix_listeners - {inode: service name} of the instance's UNIX sockets."""
    out = {}
    prefix = os.path.abspath(queue_dir) + os.sep
    with open("/proc/net/unix") as f:
        next(f)
        for line in f:
            parts = line.split()
            if len(parts) >= 8 and parts[7].startswith(prefix):
                out[int(parts[6])] = os.path.basename(parts[7])
    return out


def _tcp_listeners(port: int) -> set[int]:
    """_tcp_listeners - inodes of the sockets listening on a TCP port."""
    out = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                        out.add(int(parts[9]))
        except OSError:
            continue
    return out


def children(ppid: int) -> list[int]:
    """children - live (non-zombie) processes whose parent is ppid."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != b"Z" and int(fields[1]) == ppid:
            out.append(int(entry))
    return out


def service_pids(inst) -> dict[str, list[int]]:
    """service_pids - {master.cf service name: pids}; "smtpd" for the SMTP port, "master" too."""
    master = inst.master_pid()
    out: dict[str, list[int]] = collections.defaultdict(list)
    if master is None:
        return out
    out["master"].append(master)
    unix = _unix_listeners(inst.queue_dir)
    tcp = _tcp_listeners(inst.smtp_port)
    for pid in children(master):
        inodes = _socket_inodes(pid)
        names = {unix[i] for i in inodes if i in unix}
        if inodes & tcp:
            names.add("smtpd")
        for name in names:
            out[name].append(pid)
    return out


def queue_files(queue_dir: str) -> dict[str, list[str]]:
    """queue_files - {queue: [relative paths]} of files in the message queues and corrupt/."""
    out = {}
    for q in (*MESSAGE_QUEUES, "corrupt"):
        top = os.path.join(queue_dir, q)
        found = []
        for dirpath, _dirs, files in os.walk(top):
            for name in files:
                found.append(os.path.relpath(os.path.join(dirpath, name), queue_dir))
        out[q] = found
    return out


def wait_gone(inst, timeout: float = 30.0) -> list[int]:
    """wait_gone - wait until no process of the instance is left; the survivors otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        left = inst.pids()
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def sent_counts(log_text: str) -> collections.Counter:
    """sent_counts - {message number: number of status=sent log lines}."""
    rx = re.compile(r": to=<m(\d+)@remote\.example>, relay=.* status=sent ")
    return collections.Counter(int(m.group(1)) for m in rx.finditer(log_text))


def classify_redeliveries(log_text: str, again: list[int]) -> dict[str, list[int]]:
    """classify_redeliveries - split messages with two status=sent lines by how it happened.

    "resend": qmgr activated the message once and yet two deliveries were
    logged: the request was sent again to a new agent after the first
    agent died (after delivering, before replying).  "overlap": the
    message was activated again (a restarted qmgr) before its first
    delivery had logged status=sent: two deliveries ran at the same time.
    "after_log": the second activation came after the first status=sent
    line (the crash hit between the log line and the done marker).
    """
    out: dict[str, list[int]] = {"resend": [], "overlap": [], "after_log": []}
    lines = log_text.splitlines()
    for i in again:
        first_sent, qid = None, None
        rx = re.compile(rf"(\w+): to=<m{i}@remote\.example>, relay=.* status=sent ")
        for n, line in enumerate(lines):
            m = rx.search(line)
            if m:
                first_sent, qid = n, m.group(1)
                break
        if qid is None:
            continue
        active = [n for n, line in enumerate(lines) if f"{qid}: from=<" in line
                  and "(queue active)" in line]
        if len(active) < 2:
            out["resend"].append(i)
        elif active[1] < first_sent:
            out["overlap"].append(i)
        else:
            out["after_log"].append(i)
    return out
