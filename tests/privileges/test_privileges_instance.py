"""End-to-end tests of the privilege model (non-negotiable 6), run as root as in CI.

An instance made and started by root runs master as root and every unpriv=y
service as the postel user; mail still flows; the queue is closed to other
users; an unprivileged user submits through sendmail -> postdrop -> the
set-group-ID front end; an instance made by an ordinary user runs as that user.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import smtplib
import socket
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))

from lib import Instance, free_port, instance_pids  # noqa: E402

from postel.commands import control, postdrop  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="privilege tests run as root")

USER = control.SYSTEM_USER
GROUP = control.SYSTEM_GROUP


def ids(pid: int) -> tuple[int, int]:
    """ids - effective (uid, gid) of a process from /proc/PID/status."""
    uid = gid = -1
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Uid:"):
                uid = int(line.split()[2])
            elif line.startswith("Gid:"):
                gid = int(line.split()[2])
    return uid, gid


def children(ppid: int) -> list[int]:
    """children - live child processes of ppid."""
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


def wait_file(directory: str, timeout: float = 20) -> str:
    """wait_file - the first file that appears in directory."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            names = os.listdir(directory)
        except OSError:
            names = []
        if names:
            return os.path.join(directory, names[0])
        time.sleep(0.05)
    raise TimeoutError(f"nothing arrived in {directory}")


def send(port: int, rcpt: str, subject: str) -> None:
    """send - one message over SMTP with smtplib."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.sendmail("sender@localhost", [rcpt], f"Subject: {subject}\r\n\r\nbody\r\n")


def banner_pid(port: int) -> int:
    """banner_pid - the pid a testsvc banner service reports."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        data = s.recv(512).decode()
    return int(re.search(r"pid (\d+)", data).group(1))


def as_nobody(argv: list[str], **kw) -> subprocess.CompletedProcess:
    """as_nobody - run argv as user nobody (runuser), from /."""
    return subprocess.run(["runuser", "-u", "nobody", "--", *argv], capture_output=True,
                          text=True, timeout=90, cwd="/", **kw)


def nobody_python() -> tuple[str, dict[str, str]]:
    """nobody_python - a Python 3.x (same minor) that nobody can run with Postel importable.

    The venv's interpreter may live under /root (pyenv), which other users
    cannot search; the distribution's python3.N with the venv's
    site-packages on PYTHONPATH is the same code for them.
    """
    env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"}
    if not postdrop.python_usable_by_others():
        return sys.executable, env
    cand = f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"
    env["PYTHONPATH"] = f"{postdrop.package_parent()}:{sysconfig.get_paths()['purelib']}"
    probe = as_nobody(["env", *[f"{k}={v}" for k, v in env.items()], cand, "-c",
                       "import postel.commands.sendmail"])
    if probe.returncode != 0:
        pytest.skip(f"no Python that user nobody can run: {probe.stderr.strip()[:200]}")
    return cand, env


def run_python_as_nobody(python: str, env: dict[str, str], code: str, *args: str,
                         stdin: str | None = None) -> subprocess.CompletedProcess:
    """run_python_as_nobody - python -c code args... as nobody with env."""
    return as_nobody(["env", "-i", *[f"{k}={v}" for k, v in env.items()], python, "-c", code,
                      *args], input=stdin)


@pytest.fixture
def root_instance(tmp_path):
    """root_instance - a started instance made by root, with two testsvc banners."""
    priv_port, root_port = free_port(), free_port()
    inst = Instance(tmp_path, extra_master=[
        f"{priv_port} inet n - n - 1 testsvc -m banner",
        f"{root_port} inet n n n - 1 testsvc -m banner",
    ])
    inst.banner_ports = (priv_port, root_port)
    try:
        inst.start()
        yield inst
    finally:
        inst.cleanup()


def test_root_instance_runs_services_as_mail_owner(root_instance):
    inst = root_instance
    pw = pwd.getpwnam(USER)
    assert inst.postel("conf", "-h", "mail_owner").stdout.strip() == USER
    assert inst.postel("conf", "-h", "setgid_group").stdout.strip() == GROUP
    master = inst.master_pid()
    assert ids(master) == (0, 0)

    send(inst.smtp_port, "anyone@localhost", "privileges")
    path = wait_file(os.path.join(inst.dir, "mail", "anyone", "new"))
    assert os.stat(path).st_uid == pw.pw_uid               # local delivered as postel
    inst.wait_log(r"postel/local\[\d+\]: .*status=sent")

    log = inst.log_text()
    live = set(children(master))
    for name in ("smtpd", "cleanup", "qmgr", "local"):
        pids = {int(p) for p in re.findall(rf"postel/{name}\[(\d+)\]", log)} & live
        assert pids, f"no live {name} process"
        for pid in pids:
            assert ids(pid) == (pw.pw_uid, pw.pw_gid), name
    priv_port, root_port = inst.banner_ports
    root_banner = banner_pid(root_port)
    assert ids(root_banner) == (0, 0)                      # unpriv n stays root
    assert ids(banner_pid(priv_port)) == (pw.pw_uid, pw.pw_gid)
    # every other child (pre-forked smtpd, trivial-rewrite, pickup, ...) is postel's
    others = [p for p in children(master) if p != root_banner]
    assert len(others) >= 6
    assert all(ids(p)[0] == pw.pw_uid for p in others)


def test_queue_is_closed_to_other_users(root_instance):
    inst = root_instance
    send(inst.smtp_port, "anyone@localhost", "queue")
    wait_file(os.path.join(inst.dir, "mail", "anyone", "new"))
    for sub in ("queue/incoming", "queue/active", "queue/deferred", "queue/maildrop",
                "queue/private", "data", "mail"):
        cp = as_nobody(["ls", os.path.join(inst.dir, sub)])
        assert cp.returncode != 0 and "Permission denied" in cp.stderr, sub
    cp = as_nobody(["touch", os.path.join(inst.queue_dir, "incoming", "x")])
    assert cp.returncode != 0
    st = os.stat(os.path.join(inst.queue_dir, "maildrop"))
    assert stat.S_IMODE(st.st_mode) == 0o1730
    assert (st.st_uid, st.st_gid) == (pwd.getpwnam(USER).pw_uid, control._gid(GROUP))


def test_nobody_submits_through_setgid_postdrop(root_instance):
    inst = root_instance
    python, env = nobody_python()
    wrapper = os.path.join(inst.dir, "libexec", "postdrop")
    st = os.stat(wrapper)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, control._gid(GROUP), 0o2755)
    if python != sys.executable:
        postdrop.build_setgid_wrapper(wrapper, inst.dir, GROUP, python=python)
    code = "from postel.commands.sendmail import main; main()"
    cp = run_python_as_nobody(python, env, code, "-C", inst.dir, "-f", "nobody@localhost",
                              "luser@localhost", stdin="Subject: from nobody\n\nhello\n")
    assert cp.returncode == 0, cp.stderr
    assert "Traceback" not in cp.stderr
    path = wait_file(os.path.join(inst.dir, "mail", "luser", "new"))
    with open(path) as f:
        assert "Subject: from nobody" in f.read()
    inst.wait_log(r"postel/pickup\[\d+\]: \S+: uid=65534 from=<nobody@localhost>")


def test_nobody_without_wrapper_gets_a_clear_error(root_instance):
    inst = root_instance
    python, env = nobody_python()
    os.unlink(os.path.join(inst.dir, "libexec", "postdrop"))
    code = "from postel.commands.sendmail import main; main()"
    cp = run_python_as_nobody(python, env, code, "-C", inst.dir, "luser@localhost",
                              stdin="Subject: x\n\nhello\n")
    assert cp.returncode != 0
    assert "Traceback" not in cp.stderr and "Permission denied" in cp.stderr


def test_check_and_set_permissions(root_instance):
    inst = root_instance
    incoming = os.path.join(inst.queue_dir, "incoming")
    data = os.path.join(inst.dir, "data")
    os.chmod(incoming, 0o755)
    os.chown(data, 0, 0)
    wrapper = os.path.join(inst.dir, "libexec", "postdrop")
    os.chmod(wrapper, 0o755)
    cp = inst.postel("check")
    assert "incoming: mode 0755, expected 0700" in cp.stderr
    assert f"{data}: not owned by {USER}" in cp.stderr
    assert "expected 2755" in cp.stderr
    cp = inst.postel("set-permissions")
    assert cp.returncode == 0, cp.stderr
    assert stat.S_IMODE(os.stat(incoming).st_mode) == 0o700
    assert os.stat(data).st_uid == pwd.getpwnam(USER).pw_uid
    assert stat.S_IMODE(os.stat(wrapper).st_mode) == 0o2755
    cp = inst.postel("check")
    assert cp.returncode == 0
    assert "expected" not in cp.stderr and "not owned" not in cp.stderr


def test_unprivileged_init_runs_entirely_as_that_user():
    python, env = nobody_python()
    top = tempfile.mkdtemp(prefix="postel-nobody-", dir="/tmp")
    nobody = pwd.getpwnam("nobody")
    os.chmod(top, 0o755)
    os.chown(top, nobody.pw_uid, nobody.pw_gid)
    inst_dir = os.path.join(top, "inst")
    port = free_port()
    code = "from postel.commands.main import main; main()"
    try:
        cp = run_python_as_nobody(python, env, code, "init", "--port", str(port), inst_dir)
        assert cp.returncode == 0, cp.stderr
        with open(os.path.join(inst_dir, "main.cf")) as f:
            text = f.read()
        assert "mail_owner = nobody" in text
        cp = run_python_as_nobody(python, env, code, "-c", inst_dir, "start")
        assert cp.returncode == 0, cp.stderr
        send(port, "someone@localhost", "unprivileged")
        path = wait_file(os.path.join(inst_dir, "mail", "someone", "new"))
        assert os.stat(path).st_uid == nobody.pw_uid
        pids = instance_pids(inst_dir)
        assert len(pids) >= 4
        assert all(ids(p)[0] == nobody.pw_uid for p in pids)
        for dirpath, _dirs, files in os.walk(inst_dir):
            for name in files:
                assert os.lstat(os.path.join(dirpath, name)).st_uid == nobody.pw_uid, name
    finally:
        run_python_as_nobody(python, env, code, "-c", inst_dir, "stop")
        for pid in instance_pids(inst_dir):
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        shutil.rmtree(top, ignore_errors=True)


def test_master_refuses_root_mail_owner(tmp_path):
    inst = Instance(tmp_path, extra_main={"mail_owner": "root"})
    try:
        with pytest.raises(RuntimeError, match="privileged user ID 0"):
            inst.start()
        assert not instance_pids(inst.dir)
    finally:
        inst.cleanup()


def test_mail_owner_can_reach_python_and_postel(tmp_path):
    inst = Instance(tmp_path)
    try:
        assert control.unreachable_code(USER) == []
        assert control.unsearchable_parents(inst.queue_dir, USER) == []
        cp = inst.postel("check")
        assert cp.returncode == 0 and "not searchable" not in cp.stderr
    finally:
        inst.cleanup()
