"""Unit tests of the privilege model: master.cf text, path checks, wrapper source, drop_privileges."""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
import sys

import pytest

from postel.commands import control, postdrop
from postel.config import load_config

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="needs root")


def _local_line(text: str) -> list[str]:
    return next(ln.split() for ln in text.splitlines() if ln.startswith("local "))


def test_master_cf_local_runs_as_mail_owner_in_root_instance():
    fields = _local_line(control.master_cf_text("127.0.0.1:2525", local_unpriv=True))
    assert fields[:4] == ["local", "unix", "-", "-"]        # unpriv y
    fields = _local_line(control.master_cf_text("127.0.0.1:2525"))
    assert fields[3] == "n"                                  # Postfix's default


def test_master_cf_has_every_service_once():
    text = control.master_cf_text("127.0.0.1:2525", local_unpriv=True)
    names = [ln.split()[0] for ln in text.splitlines() if ln and not ln.startswith("#")]
    assert len(names) == len(set(names))
    assert "{local}" not in text


def test_c_bytes_is_an_exact_nul_terminated_array():
    text = 'a"b\\c\n/ü'
    arr = postdrop._c_bytes(text)
    values = [int(v) for v in arr.strip("{}").split(",")]
    assert bytes(values[:-1]) == os.fsencode(text) and values[-1] == 0


def test_wrapper_code_pins_package_and_calls_setgid_main():
    code = postdrop.WRAPPER_CODE.format(path="/opt/x'y")
    compile(code, "<wrapper>", "exec")                       # valid Python for any path
    assert "sys.path.insert(0, \"/opt/x'y\")" in code and "setgid_main" in code


def test_setgid_main_rejects_other_arguments(capsys):
    assert postdrop.setgid_main(["-c", "/etc"]) == 64
    assert postdrop.setgid_main([postdrop.SETGID_FLAG, "relative"]) == 64
    assert "usage" in capsys.readouterr().err


def test_unsafe_paths_finds_group_or_world_writable(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    f = d / "x.py"
    f.write_text("")
    os.chmod(d, 0o755)
    os.chmod(f, 0o666)
    bad = postdrop._unsafe_paths([str(f)])
    assert str(f) in bad
    os.chmod(f, 0o644)
    assert str(f) not in postdrop._unsafe_paths([str(f)])


def test_unsearchable_parents(tmp_path):
    if not ROOT:
        pytest.skip("needs root to own directories for another user")
    top = tmp_path / "a"
    (top / "b" / "c").mkdir(parents=True)
    os.chmod(tmp_path, 0o711)
    os.chmod(top, 0o700)
    os.chmod(top / "b", 0o755)
    bad = control.unsearchable_parents(str(top / "b" / "c"), "nobody")
    assert str(top) in bad and str(top / "b") not in bad
    said = control._grant_search(str(top / "b" / "c"), "nobody")
    assert said and stat.S_IMODE(os.stat(top).st_mode) == 0o701
    assert str(top) not in control.unsearchable_parents(str(top / "b" / "c"), "nobody")


@needs_root
def test_drop_privileges_in_a_forked_child(tmp_path):
    """skeleton.drop_privileges: uid, gid and supplementary groups become mail_owner's."""
    (tmp_path / "main.cf").write_text("mail_owner = nobody\n")
    cfg = load_config(str(tmp_path))
    code = (
        "import os, sys\n"
        "from postel.config import load_config\n"
        "from postel.ipc.skeleton import drop_privileges\n"
        f"drop_privileges(load_config({str(tmp_path)!r}))\n"
        "print(os.getuid(), os.geteuid(), os.getgid(), os.getegid(), sorted(os.getgroups()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout.split(None, 4)
    pw = pwd.getpwnam("nobody")
    assert cfg.get("mail_owner") == "nobody"
    assert [int(x) for x in out[:4]] == [pw.pw_uid, pw.pw_uid, pw.pw_gid, pw.pw_gid]
    assert "0" not in out[4].strip("[]\n").replace(" ", "").split(",")


@needs_root
def test_expected_modes_follow_postfix_for_a_privileged_owner():
    control.ensure_system_accounts()
    modes = control.expected_modes(control.SYSTEM_USER, control.SYSTEM_GROUP)
    pw = pwd.getpwnam(control.SYSTEM_USER)
    gid = control._gid(control.SYSTEM_GROUP)
    assert modes["maildrop"] == (0o1730, pw.pw_uid, gid)
    assert modes["public"] == (0o2710, pw.pw_uid, gid)
    assert modes["private"] == (0o700, pw.pw_uid, pw.pw_gid)
    assert modes["incoming"][0] == 0o700 and modes["pid"] == (0o755, 0, 0)


@needs_root
def test_build_wrapper_refuses_untrusted_interpreter(tmp_path):
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\n")
    os.chmod(fake, 0o777)
    control.ensure_system_accounts()
    with pytest.raises(postdrop.WrapperError, match="writable"):
        postdrop.build_setgid_wrapper(str(tmp_path / "postdrop"), str(tmp_path),
                                      control.SYSTEM_GROUP, python=str(fake))
    assert not (tmp_path / "postdrop").exists()
