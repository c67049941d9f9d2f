"""postlog - write a line to the Postel mail log

SYNOPSIS
    postel log [-iv] [-c config_dir] [-p priority] [-t tag] [text...]

DESCRIPTION
    postlog(1) writes text (the arguments joined by spaces, or else each
    line of standard input) to the mail log, in Postfix's format, so that
    shell scripts can log like the mail system does.

    -p priority  info (default), warn or warning, error, fatal or crit,
                 panic: a non-info line is written with Postfix's
                 "warning: " / "error: " / "fatal: " / "panic: " prefix.
                 Nothing exits or aborts.
    -t tag       the tag: "name" gives "$syslog_name/name", and a tag with
                 a slash ("postfix/script") is used as it is.  Default:
                 "$syslog_name/postlog".
    -i           include the process ID (Postel log lines always do).
    -c dir       the configuration directory (maillog_file, syslog_name).

    Lines go where the mail system logs: $maillog_file when set, else
    syslog.

CONFIGURATION PARAMETERS
    maillog_file, syslog_name, syslog_facility
"""

from __future__ import annotations

import sys

from postel import log
from postel.commands._qadmin import EX_USAGE, Fatal, fatal, options

PROG = "postlog"
USAGE = "usage: postlog [-iv] [-c config_dir] [-p priority] [-t tag] [text...]"
PRIORITIES = {"info": "info", "notice": "info", "debug": "info", "warn": "warning",
              "warning": "warning", "error": "error", "err": "error", "fatal": "fatal",
              "crit": "fatal", "panic": "panic", "emerg": "panic", "alert": "panic"}


def _parse(argv: list[str]) -> tuple[str, str, str | None, list[str]]:
    """_parse - (level, tag, config_dir, text words)."""
    level, tag, config_dir = "info", "", None
    pairs, rest = options(argv, "c:ip:t:v", USAGE)
    for c, value in pairs:
        if c == "c":
            config_dir = value
        elif c == "t":
            tag = value
        elif c == "p":
            if value.lower() not in PRIORITIES:
                raise Fatal(f"unknown priority value: {value}", EX_USAGE)
            level = PRIORITIES[value.lower()]
    return level, tag, config_dir, rest


def _write(level: str, text: str) -> None:
    """_write - one line at a level, without exiting for fatal/panic."""
    if level == "info":
        log.info("%s", text)
    elif level == "warning":
        log.warning("%s", text)
    elif level == "error":
        log.error("%s", text)
    else:
        log._emit(level, text)  # fatal/panic text without exit or abort


def main(argv: list[str], config_dir: str | None, stdin=None) -> int:
    """main - postel log."""
    from postel.config import ConfigError, load_config
    try:
        level, tag, opt_dir, words = _parse(argv)
        try:
            cfg = load_config(opt_dir or config_dir)
            syslog_name = cfg.get("syslog_name")
            maillog_file = cfg.get("maillog_file")
            facility = cfg.get("syslog_facility")
        except (ConfigError, KeyError, ValueError) as exc:
            raise Fatal(str(exc), 1) from None
        name = tag or PROG
        if "/" in name:
            syslog_name, name = name.rsplit("/", 1)
        log.init(name, syslog_name=syslog_name, maillog_file=maillog_file,
                 use_syslog=not maillog_file, facility=facility)
        if words:
            _write(level, " ".join(words))
        else:
            for line in (stdin or sys.stdin):
                line = line.rstrip("\r\n")
                if line:
                    _write(level, line)
        return 0
    except Fatal as exc:
        return fatal(PROG, exc)
