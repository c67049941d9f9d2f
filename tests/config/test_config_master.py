"""Tests for master.cf parsing (postel.config.master via Config.master_entries)."""

import pytest

from postel.config import ConfigError, load_config

MASTER = """\
# comment
smtp      inet  n       -       y       -       -       smtpd
  -o smtpd_banner=$myhostname
  -o { smtpd_helo_restrictions = permit_mynetworks, reject }
127.0.0.1:2525 inet n -  n   -  10  smtpd -osyslog_name=postel/alt
pickup    unix  n       -       y       60      1       pickup
tlsmgr    unix  -       -       y       1000?   1       tlsmgr
mailman   unix  -       n       n       -       -       pipe
  flags=FRX user=list argv=/bin/x { a b }
"""


def entries(tmp_path, master, main="default_process_limit = 42\n"):
    (tmp_path / "main.cf").write_text(main)
    (tmp_path / "master.cf").write_text(master)
    return load_config(str(tmp_path)).master_entries()


def test_master_entries(tmp_path):
    es = entries(tmp_path, MASTER)
    assert [e.key for e in es] == ["smtp/inet", "127.0.0.1:2525/inet", "pickup/unix",
                                   "tlsmgr/unix", "mailman/unix"]
    smtp, alt, pickup, tlsmgr, mailman = es
    assert (smtp.private, smtp.unpriv, smtp.chroot, smtp.maxproc) == (False, True, True, 42)
    assert smtp.overrides == {"smtpd_banner": "$myhostname",
                              "smtpd_helo_restrictions": "permit_mynetworks, reject"}
    assert smtp.args == [] and smtp.line == 2 and smtp.command == "smtpd"
    assert alt.overrides == {"syslog_name": "postel/alt"} and alt.maxproc == 10
    assert (pickup.wakeup, pickup.wakeup_conditional, pickup.maxproc) == (60, False, 1)
    assert (tlsmgr.wakeup, tlsmgr.wakeup_conditional) == (1000, True)
    assert mailman.args == ["flags=FRX", "user=list", "argv=/bin/x", "a b"]


def test_service_config_applies_overrides(tmp_path):
    (tmp_path / "main.cf").write_text("myhostname = m.example\n")
    (tmp_path / "master.cf").write_text(MASTER)
    cfg = load_config(str(tmp_path))
    smtp = cfg.master_entries()[0]
    scfg = cfg.service_config(smtp)
    assert scfg.get("smtpd_banner") == "m.example"
    assert scfg.get_list("smtpd_helo_restrictions") == ["permit_mynetworks", "reject"]
    assert cfg.get("smtpd_banner") == "m.example ESMTP Postel"


@pytest.mark.parametrize("line,message", [
    ("smtp inet n - y - - \n", "line 1: missing fields"),
    ("smtp tcp n - y - - smtpd\n", "line 1: bad transport type: tcp"),
    ("smtp inet x - y - - smtpd\n", "line 1: bad private field"),
    ("smtp inet n - y 1x - smtpd\n", "line 1: bad wakeup time"),
    ("smtp inet n - y - many smtpd\n", "line 1: bad process limit"),
    ("smtp inet n - y - - smtpd -o novalue\n", 'bad "-o" argument'),
    ("smtp inet n - y - - smtpd\nsmtp inet n - y - - smtpd\n", "line 2: duplicate service"),
])
def test_master_errors(tmp_path, line, message):
    with pytest.raises(ConfigError) as info:
        entries(tmp_path, line)
    assert message in str(info.value)
    assert str(info.value).startswith(str(tmp_path / "master.cf"))


def test_missing_master_cf(tmp_path):
    (tmp_path / "main.cf").write_text("")
    with pytest.raises(ConfigError, match="master.cf: No such file"):
        load_config(str(tmp_path)).master_entries()
