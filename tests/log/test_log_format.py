"""log: the cached per-second line prefix gives exactly the uncached format."""

from __future__ import annotations

import os
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from postel import log

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun",
           "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _reference(text: str, now: float, pid: int) -> str:
    """The line as format_line() built it before the prefix cache."""
    t = time.localtime(now)
    stamp = f"{_MONTHS[t.tm_mon - 1]} {t.tm_mday:2d} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
    return f"{stamp} {log._s.hostname} {log.tag()}[{pid}]: {text}"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=4e9, allow_nan=False), min_size=1, max_size=8),
       st.text(max_size=40))
def test_log_cached_prefix_matches_reference(stamps, text):
    log.init("smtpd")
    try:
        for now in stamps + stamps[::-1]:
            assert log.format_line(text, now) == _reference(text, now, os.getpid())
            assert log.format_line(text, now, pid=4242) == _reference(text, now, 4242)
    finally:
        log.init("pytest")


def test_log_prefix_follows_tag_changes_within_a_second():
    now = 1764085582.25
    log.init("smtpd")
    try:
        assert " postel/smtpd[" in log.format_line("x", now)
        log.set_process_name("cleanup")
        assert " postel/cleanup[" in log.format_line("x", now)
        log.init("qmgr", syslog_name="postfix")
        assert log.format_line("x", now) == _reference("x", now, os.getpid())
        assert " postfix/qmgr[" in log.format_line("x", now)
    finally:
        log.init("pytest")


def test_log_forked_child_logs_its_own_pid(tmp_path):
    maillog = str(tmp_path / "maillog")
    log.init("smtpd", maillog_file=maillog)
    try:
        log.info("parent %s", "line")          # fills the prefix cache
        pid = os.fork()
        if pid == 0:                            # pragma: no cover - child
            try:
                log.info("child line")
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        lines = open(maillog).read().splitlines()
        assert lines[0].endswith(f"postel/smtpd[{os.getpid()}]: parent line")
        assert lines[1].endswith(f"postel/smtpd[{pid}]: child line")
    finally:
        log.init("pytest")


def test_log_info_writes_one_clean_line(tmp_path):
    maillog = str(tmp_path / "maillog")
    log.init("smtpd", maillog_file=maillog)
    try:
        log.info("%s: client=%s", "QID", "a\r\nforged")
        log.info("100%% literal, no args")
        log.info("bad %d format", "x")
        log.warning("w %s", 1)
        lines = open(maillog).read().split("\n")
        assert lines[-1] == ""
        assert lines[0].endswith("]: QID: client=a  forged")
        assert lines[1].endswith("]: 100%% literal, no args")
        assert lines[2].endswith("]: bad %d format x")
        assert lines[3].endswith("]: warning: w 1")
        assert len(lines) == 5
    finally:
        log.init("pytest")
