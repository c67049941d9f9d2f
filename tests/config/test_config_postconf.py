"""Tests for `postel conf` (postel.commands.postconf)."""

import os

from postel.commands.postconf import main

MASTER = """\
# services
smtp      inet  n       -       y       -       -       smtpd
relay     unix  -       -       n       -       -       smtp
        -o syslog_name=postel/$service_name
# trailing comment
"""


def setup(tmp_path, main_cf="# top\nmyhostname = h.example\n\n# mid\nfoo = 1\n  continued\nbar = 2\n"):
    (tmp_path / "main.cf").write_text(main_cf)
    (tmp_path / "master.cf").write_text(MASTER)
    return str(tmp_path)


def run(capsys, d, *argv):
    rc = main(list(argv), d)
    out, err = capsys.readouterr()
    return rc, out, err


def test_show_names_and_flags(tmp_path, capsys):
    d = setup(tmp_path)
    rc, out, err = run(capsys, d, "myhostname", "myorigin", "nosuch_param")
    assert rc == 0
    assert out == "myhostname = h.example\nmyorigin = $myhostname\n"
    assert "postconf: warning: nosuch_param: unknown parameter" in err
    assert run(capsys, d, "-x", "-h", "myorigin")[1] == "h.example\n"
    assert run(capsys, d, "-d", "myorigin")[1] == "myorigin = $myhostname\n"
    assert run(capsys, d, "-d", "queue_directory")[1] == "queue_directory = /var/spool/postel\n"


def test_show_explicit_and_unused(tmp_path, capsys):
    d = setup(tmp_path)
    rc, out, err = run(capsys, d, "-n")
    assert out == "bar = 2\nfoo = 1  continued\nmyhostname = h.example\n"
    assert "main.cf, line 5: unused parameter: foo=1  continued" in err
    assert "line 7: unused parameter: bar=2" in err


def test_show_all_lists_every_parameter(tmp_path, capsys):
    d = setup(tmp_path)
    out = run(capsys, d)[1]
    assert "smtpd_timeout = ${stress?{10}:{300}}s\n" in out
    assert len(out.splitlines()) > 800


def test_edit_keeps_comments_and_order(tmp_path, capsys):
    d = setup(tmp_path)
    before = os.stat(tmp_path / "main.cf").st_ino
    assert run(capsys, d, "-e", "foo=new value", "added = x")[0] == 0
    text = (tmp_path / "main.cf").read_text()
    assert text == "# top\nmyhostname = h.example\n\n# mid\nfoo = new value\nbar = 2\nadded = x\n"
    assert os.stat(tmp_path / "main.cf").st_ino != before       # replaced by rename
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".postconf")]
    run(capsys, d, "-X", "bar")
    run(capsys, d, "-#", "myhostname")
    text = (tmp_path / "main.cf").read_text()
    assert text == "# top\n#myhostname = h.example\n\n# mid\nfoo = new value\nadded = x\n"


def test_edit_bad_input(tmp_path, capsys):
    d = setup(tmp_path)
    rc, out, err = run(capsys, d, "-e", "novalue")
    assert rc == 1 and "requires name=value" in err
    assert "Traceback" not in err


def test_config_error_exit(tmp_path, capsys):
    d = setup(tmp_path, "junk\n")
    rc, out, err = run(capsys, d, "myhostname")
    assert rc == 1
    assert err == f"postconf: fatal: {tmp_path}/main.cf, line 1: missing '=' after attribute name: \"junk\"\n"


def test_master_show_and_edit(tmp_path, capsys):
    d = setup(tmp_path)
    out = run(capsys, d, "-M", "relay/unix")[1]
    assert out == ("relay      unix  -       -       n       -       -       smtp "
                   "-o syslog_name=postel/$service_name\n")
    out = run(capsys, d, "-F", "smtp/inet/chroot")[1]
    assert out == "smtp/inet/chroot = y\n"
    assert run(capsys, d, "-P")[1] == "relay/unix/syslog_name = postel/$service_name\n"
    run(capsys, d, "-Fe", "smtp/inet/process_limit=7")
    run(capsys, d, "-Pe", "smtp/inet/smtpd_banner=hi there")
    run(capsys, d, "-Me", "new/unix=new unix - n n - 1 pipe argv=/bin/cat")
    run(capsys, d, "-MX", "relay/unix")
    text = (tmp_path / "master.cf").read_text()
    assert text == ("# services\n"
                    "smtp       inet  n       -       y       -       7       smtpd\n"
                    "    -o { smtpd_banner = hi there }\n"
                    "# trailing comment\n"
                    "new        unix  -       n       n       -       1       pipe\n"
                    "    argv=/bin/cat\n")
    from postel.config import load_config
    es = load_config(d).master_entries()
    assert es[0].overrides == {"smtpd_banner": "hi there"} and es[0].maxproc == 7
    rc, out, err = run(capsys, d, "-M", "nosuch/unix")
    assert 'unmatched request: "nosuch/unix"' in err
