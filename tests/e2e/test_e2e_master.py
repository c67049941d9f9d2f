"""End-to-end tests of master: a real instance started with the `postel` console script."""

from __future__ import annotations

import os
import re
import socket
import time

from lib import Instance, free_port, port_open

FAST = {"max_idle": "30s", "service_throttle_time": "60s"}


def _greeting(port: int) -> bytes:
    """_greeting - the first line a test service writes."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        return s.makefile("rb").readline()


def _pid_of(greeting: bytes) -> int:
    m = re.search(rb"pid (\d+)", greeting)
    assert m, greeting
    return int(m.group(1))


def _wait(cond, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


def test_start_status_stop_leaves_nothing(tmp_path):
    port = free_port()
    with Instance(tmp_path, extra_main=FAST,
                  extra_master=[f"{port} inet n - n - - testsvc -m banner"]) as inst:
        inst.start()
        assert _greeting(port).startswith(b"220 ")
        line = inst.wait_log(r"postel/master\[\d+\]: daemon started -- version \S+, configuration ")
        assert inst.dir in line
        st = inst.postel("status")
        assert st.returncode == 0
        assert f"the Postel mail system is running: PID: {inst.master_pid()}" in st.stderr
        assert len(inst.pids()) >= 2          # master and the pre-forked children
        cp = inst.stop()
        assert cp.returncode == 0, cp.stderr
        assert inst.pids() == []
        assert not port_open(port)
        assert not os.path.exists(os.path.join(inst.queue_dir, "pid", "master.pid"))
        st = inst.postel("status")
        assert st.returncode == 1
        assert "is not running" in st.stderr
        inst.wait_log(r"terminating on signal 15")


def test_second_start_refuses(instance):
    instance.start()
    pid = instance.master_pid()
    cp = instance.postel("start")
    assert cp.returncode == 1
    assert "already running" in cp.stderr
    assert instance.master_pid() == pid


def test_second_master_refuses_on_lock(instance):
    """Even bypassing `postel start`'s check, the pid file lock stops a second master."""
    instance.start()
    cp = instance.postel("master")
    assert cp.returncode == 1
    assert "already running" in cp.stderr


def test_kill_9_child_is_replaced(tmp_path):
    port = free_port()
    with Instance(tmp_path, extra_main=FAST,
                  extra_master=[f"{port} inet n - n - 1 testsvc -m banner"]) as inst:
        inst.start()
        first = _pid_of(_greeting(port))
        os.kill(first, 9)
        inst.wait_log(rf"warning: process testsvc pid {first} killed by signal 9")
        second = _pid_of(_greeting(port))
        assert second != first
        assert inst.count_log("throttling") == 0


def test_crash_loop_is_throttled(tmp_path):
    port = free_port()
    with Instance(tmp_path, extra_main=FAST,
                  extra_master=[f"{port} inet n - n - - testsvc -m crash"]) as inst:
        inst.start()
        inst.wait_log(r"warning: testsvc: bad command startup -- throttling")
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:      # clients keep arriving while throttled
            with socket.create_connection(("127.0.0.1", port), timeout=2):
                pass
            time.sleep(0.05)
        exits = inst.count_log(r"warning: process testsvc pid \d+ exit status 1")
        assert 1 <= exits <= 2                  # the pre-forked ones, nothing more
        assert inst.postel("status").returncode == 0


def test_reload_adds_and_removes_services_without_dropping(tmp_path):
    keep, gone, new = free_port(), free_port(), free_port()
    with Instance(tmp_path, extra_main=FAST,
                  extra_master=[f"{keep} inet n - n - - testsvc -m echo",
                                f"{gone} inet n - n - - testsvc -m banner"]) as inst:
        inst.start()
        conn = socket.create_connection(("127.0.0.1", keep), timeout=10)
        f = conn.makefile("rwb")
        old_pid = _pid_of(f.readline())
        inst.remove_master(str(gone))
        inst.add_master([f"{new} inet n - n - - testsvc -m banner"])
        master = inst.master_pid()
        assert inst.reload().returncode == 0
        assert _wait(lambda: port_open(new))
        assert _greeting(new).startswith(b"220 ")
        assert not port_open(gone)
        # the connection from before the reload is still served by its old process
        f.write(b"still there\r\n")
        f.flush()
        assert f.readline() == b"250 still there\r\n"
        # new clients of the unchanged service get a new process
        assert _pid_of(_greeting(keep)) != old_pid
        f.write(b"QUIT\r\n")
        f.flush()
        assert f.readline() == b"221 bye\r\n"
        conn.close()
        assert _wait(lambda: not os.path.exists(f"/proc/{old_pid}") or
                     open(f"/proc/{old_pid}/stat").read().split()[2] == "Z")
        assert inst.master_pid() == master


def test_bad_reload_keeps_running(tmp_path):
    port = free_port()
    with Instance(tmp_path, extra_main=FAST,
                  extra_master=[f"{port} inet n - n - - testsvc -m banner"]) as inst:
        inst.start()
        with open(os.path.join(inst.dir, "master.cf"), "a") as f:
            f.write("broken line\n")
        os.kill(inst.master_pid(), 1)
        inst.wait_log(r"configuration not reloaded")
        assert _greeting(port).startswith(b"220 ")


def test_wakeup_triggers_a_unix_service(tmp_path):
    with Instance(tmp_path, extra_main=FAST,
                  extra_master=["tick unix n - n 1 1 testsvc -m trigger"]) as inst:
        inst.start()
        inst.wait_log(r"postel/testsvc\[\d+\]: trigger: W")
        assert os.path.exists(os.path.join(inst.queue_dir, "public", "tick"))


def test_check_reports_missing_directory(instance):
    assert instance.postel("check").returncode == 0
    os.rmdir(os.path.join(instance.queue_dir, "hold"))
    cp = instance.postel("check")
    assert cp.returncode == 1
    assert "missing directory" in cp.stderr and "hold" in cp.stderr
    assert instance.postel("set-permissions").returncode == 0
    assert os.path.isdir(os.path.join(instance.queue_dir, "hold"))


def test_start_with_bad_config_fails_cleanly(instance):
    with open(os.path.join(instance.dir, "master.cf"), "a") as f:
        f.write("oops inet\n")
    cp = instance.postel("start")
    assert cp.returncode == 1
    assert "master.cf" in cp.stderr
    assert "Traceback" not in cp.stderr
    assert instance.pids() == []


def test_abort_kills_everything(tmp_path):
    port = free_port()
    with Instance(tmp_path, extra_main=FAST,
                  extra_master=[f"{port} inet n - n - - testsvc -m echo"]) as inst:
        inst.start()
        conn = socket.create_connection(("127.0.0.1", port), timeout=5)
        conn.recv(100)
        assert inst.postel("abort").returncode == 0
        assert _wait(lambda: inst.pids() == [])
        conn.close()


def test_pass_listener_serves_passed_descriptor(tmp_path):
    with Instance(tmp_path, extra_main=FAST,
                  extra_master=["passy pass n - n - - testsvc -m banner"]) as inst:
        inst.start()
        path = os.path.join(inst.queue_dir, "public", "passy")
        assert _wait(lambda: os.path.exists(path))
        ours, theirs = socket.socketpair()
        with socket.socket(socket.AF_UNIX) as ctl:
            ctl.connect(path)
            socket.send_fds(ctl, [b"x"], [theirs.fileno()])
        theirs.close()
        ours.settimeout(10)
        assert ours.makefile("rb").readline().startswith(b"220 passy testsvc")
        ours.close()


def test_start_fg_logs_on_stdout_and_stops_on_sigterm(tmp_path):
    import signal
    import subprocess

    from lib import POSTEL
    port = free_port()
    with Instance(tmp_path, extra_main=FAST,
                  extra_master=[f"{port} inet n - n - - testsvc -m banner"]) as inst:
        proc = subprocess.Popen([POSTEL, "-c", inst.dir, "start-fg"], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
        try:
            assert _wait(lambda: port_open(port))
            assert inst.postel("status").returncode == 0
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0
        # full Postfix-format lines on stdout: "Nov 25 13:09:33 host postel/master[123]: ..."
        assert re.search(rb"^\w{3} [ \d]\d \d\d:\d\d:\d\d \S+ postel/master\[\d+\]: daemon started",
                         out, re.M), out
        assert b"terminating on signal 15" in out
        assert "daemon started" in inst.log_text()     # and in maillog_file as well
        assert _wait(lambda: inst.pids() == [])


def test_start_refuses_a_bad_parameter_value_naming_file_and_line(tmp_path):
    inst = Instance(tmp_path, extra_main={"smtpd_timeout": "abc"})
    try:
        cp = inst.postel("start")
        assert cp.returncode == 1
        assert re.search(r"fatal: \S+/main\.cf, line \d+: parameter smtpd_timeout: bad time value",
                         cp.stderr), cp.stderr
        assert "Traceback" not in cp.stderr
        assert inst.master_pid() is None
        check = inst.postel("check")
        assert check.returncode == 1 and "smtpd_timeout" in check.stderr
    finally:
        inst.cleanup()


def test_start_removes_temporary_queue_files_left_by_a_crash(tmp_path):
    inst = Instance(tmp_path, extra_main=FAST)
    try:
        debris = os.path.join(inst.queue_dir, "incoming", "4bUIXXXXXXz0000001.tmp")
        dropping = os.path.join(inst.queue_dir, "maildrop", "4bUIXXXXXXz0000002.tmp")
        for path in (debris, dropping):
            with open(path, "wb") as f:
                f.write(b"half a message")
        inst.start()
        assert not os.path.exists(debris)
        assert os.path.exists(dropping)        # sendmail may be writing it right now
        assert "removed old temporary file" in inst.log_text()
    finally:
        inst.cleanup()
