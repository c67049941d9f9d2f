"""workloads - the eight workloads of issue 8, on Postfix and Postel alike

SYNOPSIS
    from harness.workloads import Bench
    bench = Bench(workdir, reaper, quick=False, rounds=3, log=print)
    rows = bench.run(["1", "2", "3", "4", "5", "6", "7", "8"])

DESCRIPTION
    Each workload builds a pair of instances configured the same way (see
    mta), runs its rounds alternating the order of the two MTAs (round 1:
    Postfix first, round 2: Postel first, ...), and returns Rows of
    samples.  Every run is bounded in messages and in seconds; a run that
    does not finish in time is reported with a note instead of a figure.
    When Postel lacks a daemon a workload needs (no qmgr, smtp or local
    package yet) its column reads "n/a (no qmgr)" and Postel is not started.

    1  relay 1 KiB, 1/20/100 sessions: smtp-source -> MTA -> smtp-sink,
       messages/s from the first connection until the sink counted all.
    2  relay 100 KiB, 20 sessions, the same way.
    3  acceptance only (qmgr commented out of master.cf), 20 sessions:
       smtp-source messages/s, then DATA-end-to-250 p50/p99 from
       smtpclient.latency_run.  The queue is purged between runs.
    4  one message to 1000 recipients in 50 domains; transport_maps
       (texthash) send each domain to its own smtp-sink; seconds until
       all 50 sinks have their delivery.
    5  local delivery to Maildir (mail_spool_directory ending in "/"),
       20 sessions, to nobody@localhost.localdomain; messages/s until the
       Maildir new/ holds them all.
    6  PSS of every MTA process (master and descendants): idle, with 100
       idle sessions on both, with 1000 on Postel.
    7  a deferred queue of 100 000 messages (QUICK: 5 000; relayhost is a
       closed port): seconds for mailq, seconds for a full pass after a
       flush (until every message has logged status=deferred again), and
       the acceptance rate of new mail during that pass.
    8  smtp-source straight into smtp-sink: the runs of 1 and 2 without
       an MTA, the ceiling.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable

from .mta import PostelMTA, PostfixMTA, Reaper, Sink, count_files, free_port
from .report import Row, percentile
from .smtpclient import hold_idle, latency_run, send_many_rcpts

SMTP_SOURCE = shutil.which("smtp-source") or "/usr/sbin/smtp-source"


def smtp_source(port: int, sessions: int, count: int, size: int, timeout: float,
                to: str = "sink@example.com") -> tuple[float, int]:
    """smtp_source - run Postfix's smtp-source; (wall seconds, exit status; -1 = timed out)."""
    argv = [SMTP_SOURCE, "-s", str(sessions), "-m", str(count), "-l", str(size),
            "-f", "bench@example.org", "-t", to, f"127.0.0.1:{port}"]
    t0 = time.monotonic()
    try:
        cp = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            timeout=timeout)
        rc = cp.returncode
    except subprocess.TimeoutExpired:
        rc = -1
    return time.monotonic() - t0, rc


def _source_into(result: dict, port: int, count: int) -> None:
    """_source_into - smtp_source for a thread: elapsed and rc into result."""
    result["elapsed"], result["rc"] = smtp_source(port, 20, count, 1024, 120)


class Bench:
    """Runs workloads; collects Rows."""

    def __init__(self, workdir: str, reaper: Reaper, quick: bool = False, rounds: int = 3,
                 log: Callable[[str], None] = print, run_postel: bool = True,
                 run_postfix: bool = True) -> None:
        self.workdir = workdir
        self.reaper = reaper
        self.quick = quick
        self.rounds = rounds
        self.log = log
        self.run_postel = run_postel
        self.run_postfix = run_postfix
        self.rows: list[Row] = []

    # ---- sizes -------------------------------------------------------

    def n(self, full: int, quick: int) -> int:
        """n - a message count for the current mode."""
        return quick if self.quick else full

    # ---- plumbing ------------------------------------------------------

    def _order(self, rnd: int) -> list[str]:
        """_order - MTAs in this round's order (alternating)."""
        names = ["postfix", "postel"] if rnd % 2 == 0 else ["postel", "postfix"]
        return [n for n in names if (n == "postfix" and self.run_postfix)
                or (n == "postel" and self.run_postel)]

    def _pair(self, mode: str, main: dict[str, str], needs: tuple[str, ...],
              setup: Callable | None = None) -> tuple[dict, dict[str, str]]:
        """_pair - start Postfix and Postel in mode; ({name: mta}, {name: reason n/a})."""
        mtas, missing = {}, {}
        for cls in (PostfixMTA, PostelMTA):
            if (cls is PostfixMTA and not self.run_postfix) or (cls is PostelMTA and not self.run_postel):
                missing[cls.name] = "skipped"
                continue
            probe = cls.delivery_missing(needs) if needs else None
            if probe:
                missing[cls.name] = probe
                continue
            mta = cls(self.workdir, mode, main)
            if setup is not None:
                setup(mta)
            self.reaper.add(mta)
            try:
                mta.start()
            except (RuntimeError, TimeoutError) as exc:
                missing[cls.name] = f"start failed: {exc}"[:120]
                mta.stop()
                continue
            mtas[cls.name] = mta
        return mtas, missing

    def _stop(self, mtas: dict) -> None:
        for mta in mtas.values():
            mta.stop()

    @staticmethod
    def _add(row: Row, name: str, value: float | None, note: str = "") -> None:
        """_add - a sample (or a note) for one side of a row."""
        if value is not None:
            getattr(row, name).append(value)
        elif note:
            setattr(row, f"note_{name}", note)

    @staticmethod
    def _na(rows: list[Row], missing: dict[str, str]) -> None:
        for row in rows:
            for name, why in missing.items():
                setattr(row, f"note_{name}", why)

    # ---- workloads ------------------------------------------------------

    def relay(self) -> None:
        """relay - workloads 1 and 2 (relay through the MTA to smtp-sink)."""
        runs = [(1, 1024, self.n(500, 150)), (20, 1024, self.n(5000, 500)),
                (100, 1024, self.n(5000, 500)), (20, 102400, self.n(1000, 200))]
        sink = self.reaper.add(Sink(self.workdir, backlog=1000)).start()
        relay = f"[127.0.0.1]:{sink.port}"
        mtas, missing = self._pair("relay", {"relayhost": relay}, ("qmgr", "smtp"))
        for sessions, size, count in runs:
            wl = "1" if size == 1024 else "2"
            tag = f"{wl} relay {size // 1024}KiB s={sessions} n={count}"
            e2e = Row(tag, "msg/s end-to-end", "higher")
            acc = Row(tag, "msg/s accepted", "higher")
            self._na([e2e, acc], missing)
            limit = 30 + count / 20
            for rnd in range(self.rounds):
                for name in self._order(rnd):
                    if name not in mtas:
                        continue
                    mta = mtas[name]
                    base = sink.mesg
                    t0 = time.monotonic()
                    elapsed, rc = smtp_source(mta.smtp_port, sessions, count, size, limit)
                    done = sink.wait_messages(base + count, max(1.0, limit - elapsed))
                    if rc != 0:
                        self._add(acc, name, None, f"smtp-source exit {rc}")
                    else:
                        self._add(acc, name, count / elapsed)
                    if done is None:
                        self._add(e2e, name, None,
                                  f"timeout: {sink.mesg - base}/{count} in {limit:.0f}s")
                        mta.wait_queue_empty(30)
                    else:
                        self._add(e2e, name, count / (done - t0))
                    self.log(f"  {tag} {name}: {e2e.__getattribute__(name)[-1:]} e2e")
            self.rows += [e2e, acc]
        self._stop(mtas)
        sink.stop()

    def accept(self) -> None:
        """accept - workload 3 (delivery held) and 6 (idle memory) on the same pair."""
        count, per = self.n(5000, 500), self.n(100, 25)
        # in_flow_delay: without qmgr nobody refills master's flow-control
        # pipe, and Postfix's cleanup would then wait 1 s before every message.
        mtas, missing = self._pair("hold", {"relayhost": f"[127.0.0.1]:{free_port()}",
                                            "in_flow_delay": "0s"}, ())
        tag = f"3 accept 1KiB s=20 n={count}"
        rate = Row(tag, "msg/s (smtp-source)", "higher")
        ltag = f"3 accept 1KiB s=20 n={20 * per}"
        lrate = Row(ltag, "msg/s (latency client)", "higher")
        p50 = Row(ltag, "ms DATA-end->250 p50", "lower")
        p99 = Row(ltag, "ms DATA-end->250 p99", "lower")
        self._na([rate, lrate, p50, p99], missing)
        for rnd in range(self.rounds):
            for name in self._order(rnd):
                if name not in mtas:
                    continue
                mta = mtas[name]
                mta.purge()
                elapsed, rc = smtp_source(mta.smtp_port, 20, count, 1024, 30 + count / 20)
                queued = mta.queue_counts()["incoming"]
                if rc != 0 or queued < count:
                    self._add(rate, name, None, f"exit {rc}, {queued}/{count} queued")
                else:
                    self._add(rate, name, count / elapsed)
                mta.purge()
                try:
                    lat, wall, errors = latency_run(mta.smtp_port, 20, per, 1024,
                                                    timeout=30 + per)
                except (OSError, TimeoutError) as exc:
                    self._add(lrate, name, None, f"{type(exc).__name__}")
                    continue
                if errors or not lat:
                    self._add(lrate, name, None, f"{errors} failed transactions")
                    continue
                self._add(lrate, name, len(lat) / wall)
                self._add(p50, name, percentile(lat, 50) * 1000)
                self._add(p99, name, percentile(lat, 99) * 1000)
                self.log(f"  {tag} {name}: {rate.__getattribute__(name)[-1:]} msg/s, "
                         f"p50 {p50.__getattribute__(name)[-1:]} ms")
        self.rows += [rate, lrate, p50, p99]
        for mta in mtas.values():
            mta.purge()
        self._stop(mtas)

    def idle(self) -> None:
        """idle - workload 6: PSS of all MTA processes with idle sessions."""
        mtas, missing = self._pair("idle", {"relayhost": f"[127.0.0.1]:{free_port()}"}, ())
        rows = {0: Row("6 idle, no sessions", "MiB PSS", "lower"),
                100: Row("6 idle, 100 sessions", "MiB PSS", "lower"),
                1000: Row("6 idle, 1000 sessions", "MiB PSS", "lower")}
        procs = {k: Row(r.workload, "processes", "lower") for k, r in rows.items()}
        self._na([*rows.values(), *procs.values()], missing)
        for k in (1000,):
            rows[k].note_postfix = procs[k].note_postfix = "not run (process_limit 100)"
        for rnd in range(self.rounds):
            for name in self._order(rnd):
                if name not in mtas:
                    continue
                mta = mtas[name]
                mta.stop()          # a fresh start: no processes left from the last round
                mta.start()
                for n in (0, 100, 1000):
                    if n == 1000 and name == "postfix":
                        continue
                    if n == 0:
                        time.sleep(0.5)
                        kib, nproc = mta.memory()
                        greeted = 0
                    else:
                        greeted, (kib, nproc) = hold_idle(mta.smtp_port, n, mta.memory)
                        time.sleep(1.0)        # sessions gone before the next size
                    if n and greeted < n:
                        self._add(rows[n], name, None, f"only {greeted}/{n} greeted")
                        continue
                    self._add(rows[n], name, kib / 1024)
                    self._add(procs[n], name, float(nproc))
        for n in (0, 100, 1000):
            self.rows += [rows[n], procs[n]]
        self._stop(mtas)

    def many_rcpts(self) -> None:
        """many_rcpts - workload 4: one message, 1000 recipients, 50 domains."""
        sinks = [self.reaper.add(Sink(self.workdir, backlog=100)).start() for _ in range(50)]
        tmap = os.path.join(self.workdir, "transport-50")
        with open(tmap, "w") as f:
            for i, sink in enumerate(sinks):
                f.write(f"d{i}.example smtp:[127.0.0.1]:{sink.port}\n")
        main = {"relayhost": f"[127.0.0.1]:{free_port()}", "transport_maps": f"texthash:{tmap}"}
        mtas, missing = self._pair("rcpt", main, ("qmgr", "smtp"))
        rcpts = [f"u{j}@d{j % 50}.example" for j in range(1000)]
        row = Row("4 1 msg x 1000 rcpt, 50 domains", "s until all delivered", "lower")
        self._na([row], missing)
        for rnd in range(self.rounds):
            for name in self._order(rnd):
                if name not in mtas:
                    continue
                mta = mtas[name]
                base = [s.mesg for s in sinks]
                t0 = time.monotonic()
                try:
                    refused = send_many_rcpts(mta.smtp_port, rcpts)
                except Exception as exc:   # smtplib raises several kinds
                    self._add(row, name, None, f"send failed: {type(exc).__name__}: {exc}"[:80])
                    continue
                if refused:
                    self._add(row, name, None, f"{len(refused)} recipients refused")
                    continue
                deadline = t0 + 120
                while time.monotonic() < deadline:
                    if all(s.mesg > b for s, b in zip(sinks, base, strict=True)) \
                            and mta.wait_queue_empty(0, ("incoming", "active")):
                        break
                    time.sleep(0.01)
                else:
                    got = sum(1 for s, b in zip(sinks, base, strict=True) if s.mesg > b)
                    self._add(row, name, None, f"timeout: {got}/50 domains")
                    continue
                self._add(row, name, time.monotonic() - t0)
                self.log(f"  {row.workload} {name}: {getattr(row, name)[-1]:.2f}s")
        self.rows.append(row)
        self._stop(mtas)
        for s in sinks:
            s.stop()

    def local(self) -> None:
        """local - workload 5: local delivery into Maildir, 20 sessions."""
        count = self.n(2000, 500)

        def setup(mta) -> None:
            maildir = os.path.join(mta.dir, "mail")
            os.makedirs(maildir, exist_ok=True)
            os.chmod(maildir, 0o1777)
            mta.maildir = maildir

        main = {"mydestination": "localhost.localdomain", "relayhost": f"[127.0.0.1]:{free_port()}"}
        mtas, missing = {}, {}
        for cls in (PostfixMTA, PostelMTA):
            extra = dict(main)
            if cls is PostfixMTA:      # Postel's `postel init` already points into its dir
                extra["mail_spool_directory"] = os.path.join(self.workdir, "postfix-local", "mail") + "/"
            sub, sub_missing = self._pair_one(cls, "local", extra, ("qmgr", "local"), setup)
            mtas.update(sub)
            missing.update(sub_missing)
        tag = f"5 local Maildir s=20 n={count}"
        row = Row(tag, "msg/s end-to-end", "higher")
        self._na([row], missing)
        for rnd in range(self.rounds):
            for name in self._order(rnd):
                if name not in mtas:
                    continue
                mta = mtas[name]
                base = count_files(mta.maildir)
                t0 = time.monotonic()
                limit = 30 + count / 20
                elapsed, rc = smtp_source(mta.smtp_port, 20, count, 1024, limit,
                                          to="nobody@localhost.localdomain")
                while count_files(mta.maildir) < base + count and time.monotonic() - t0 < limit:
                    time.sleep(0.02)
                got = count_files(mta.maildir) - base
                if got < count:
                    self._add(row, name, None, f"{got}/{count} delivered in {limit:.0f}s")
                else:
                    self._add(row, name, count / (time.monotonic() - t0))
                self.log(f"  {tag} {name}: {getattr(row, name)[-1:]}")
        self.rows.append(row)
        self._stop(mtas)

    def _pair_one(self, cls, mode: str, main: dict[str, str], needs: tuple[str, ...],
                  setup: Callable | None) -> tuple[dict, dict[str, str]]:
        """_pair_one - _pair for one MTA class."""
        keep_fix, keep_tel = self.run_postfix, self.run_postel
        try:
            self.run_postfix, self.run_postel = cls is PostfixMTA and keep_fix, cls is PostelMTA and keep_tel
            mtas, missing = self._pair(mode, main, needs, setup)
        finally:
            self.run_postfix, self.run_postel = keep_fix, keep_tel
        missing.pop("postfix" if cls is PostelMTA else "postel", None)
        return mtas, missing

    def deferred(self) -> None:
        """deferred - workload 7: a big deferred queue, mailq, a full pass, acceptance meanwhile."""
        size = self.n(100000, 5000)
        extra = self.n(2000, 500)
        rounds = self.rounds if not self.quick else 1
        main = {"relayhost": f"[127.0.0.1]:{free_port()}"}
        mtas, missing = self._pair("deferred", main, ("qmgr", "smtp"))
        mq = Row(f"7 deferred queue {size}", "s mailq", "lower")
        pas = Row(f"7 deferred queue {size}", "s full pass (flush)", "lower")
        acc = Row(f"7 deferred queue {size}", "msg/s accepted during pass", "higher")
        self._na([mq, pas, acc], missing)
        filled = {}
        for name, mta in mtas.items():
            t0 = time.monotonic()
            limit = 60 + size / 50
            smtp_source(mta.smtp_port, 50, size, 1024, limit)
            while mta.queue_counts()["deferred"] < size and time.monotonic() - t0 < limit:
                time.sleep(0.5)
            got = mta.queue_counts()["deferred"]
            filled[name] = got >= size
            self.log(f"  7 fill {name}: {got}/{size} deferred in {time.monotonic() - t0:.0f}s")
            if not filled[name]:
                for row in (mq, pas, acc):
                    setattr(row, f"note_{name}", f"fill: {got}/{size} deferred")
        for rnd in range(rounds):
            for name in self._order(rnd):
                if not filled.get(name):
                    continue
                mta = mtas[name]
                t0 = time.monotonic()
                cp = subprocess.run(mta.mailq_argv(), stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, timeout=300)
                self._add(mq, name, time.monotonic() - t0 if cp.returncode == 0 else None,
                          f"mailq exit {cp.returncode}")
                queued = mta.queue_counts()["deferred"]
                counter = LogCounter(mta.log_path, r"status=deferred")
                t0 = time.monotonic()
                subprocess.run(mta.flush_argv(), capture_output=True, timeout=60)
                result: dict = {}
                th = threading.Thread(target=_source_into, args=(result, mta.smtp_port, extra))
                th.start()
                limit = 120 + queued / 100
                while counter.poll() < queued + extra and time.monotonic() - t0 < limit:
                    time.sleep(0.2)
                th.join()
                if counter.count < queued + extra:
                    self._add(pas, name, None, f"timeout: {counter.count}/{queued + extra}")
                else:
                    self._add(pas, name, time.monotonic() - t0)
                if result.get("rc") == 0:
                    self._add(acc, name, extra / result["elapsed"])
                self.log(f"  7 {name}: mailq {getattr(mq, name)[-1:]}, pass {getattr(pas, name)[-1:]}")
        self.rows += [mq, pas, acc]
        for mta in mtas.values():
            mta.purge()
        self._stop(mtas)

    def wire(self) -> None:
        """wire - workload 8: smtp-source straight into smtp-sink."""
        runs = [(1, 1024, self.n(500, 150)), (20, 1024, self.n(5000, 500)),
                (100, 1024, self.n(5000, 500)), (20, 102400, self.n(1000, 200))]
        sink = self.reaper.add(Sink(self.workdir, backlog=1000)).start()
        for sessions, size, count in runs:
            row = Row(f"8 wire {size // 1024}KiB s={sessions} n={count}", "msg/s", "higher",
                      wire_only=True)
            for _rnd in range(self.rounds):
                base = sink.mesg
                t0 = time.monotonic()
                elapsed, rc = smtp_source(sink.port, sessions, count, size, 60)
                done = sink.wait_messages(base + count, 10)
                if rc == 0 and done is not None:
                    row.postfix.append(count / (done - t0))
                else:
                    row.note_postfix = f"exit {rc}"
            self.rows.append(row)
        sink.stop()

    WORKLOADS = {"8": "wire", "3": "accept", "6": "idle", "1": "relay", "2": "relay",
                 "4": "many_rcpts", "5": "local", "7": "deferred"}

    def run(self, which: list[str]) -> list[Row]:
        """run - the named workloads (each method once), in a fixed order."""
        done = set()
        for key in ("8", "3", "6", "1", "2", "4", "5", "7"):
            if key not in which:
                continue
            method = self.WORKLOADS[key]
            if method in done:
                continue
            done.add(method)
            self.log(f"bench: workload {key} ({method})")
            before = len(self.rows)
            try:
                getattr(self, method)()
            except Exception as exc:         # one broken workload must not lose the others
                self.log(f"bench: workload {key} failed: {type(exc).__name__}: {exc}")
                del self.rows[before:]
                self.rows.append(Row(f"{key} ({method})", "failed", "higher",
                                     note_postfix=f"{type(exc).__name__}", note_postel=str(exc)[:100]))
                self.reaper.stop_all()
        return self.rows


class LogCounter:
    """Counts maillog lines matching a pattern, reading only what is new."""

    def __init__(self, path: str, pattern: str) -> None:
        import re
        self.path = path
        self.rx = re.compile(pattern.encode())
        try:
            self.offset = os.path.getsize(path)
        except OSError:
            self.offset = 0
        self.count = 0
        self._tail = b""

    def poll(self) -> int:
        """poll - the count of matching lines written since creation."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return self.count
        self.offset += len(data)
        data = self._tail + data
        lines = data.split(b"\n")
        self._tail = lines.pop()
        self.count += sum(1 for line in lines if self.rx.search(line))
        return self.count
