"""_qadmin - helpers shared by the queue administration commands

SYNOPSIS
    from postel.commands._qadmin import Fatal, load, queue_dir, privileged, fatal

DESCRIPTION
    postqueue, postsuper, postcat, postkick, postlock and postlog report
    problems the way Postfix's commands do: "PROG: fatal: text" (or
    "warning:") on stderr, the same text in the mail log, and a non-zero
    exit status.  A Fatal exception carries the message and the status up to
    the command's main(), which prints it and returns the status.

    privileged(cfg) is the Postfix rule for administrative commands: the
    caller is the superuser, or the mail_owner, or owns queue_directory
    (an unprivileged instance created by `postel init`).
"""

from __future__ import annotations

import os
import pwd
import sys

from postel import log

TYPE_CHECKING = False      # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from postel.queue import QueueDir

EX_USAGE = 64
EX_NOINPUT = 66
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_TEMPFAIL = 75
EX_NOPERM = 77


class Fatal(Exception):
    """A command must stop: message (without "fatal: ") and exit status."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def load(prog: str, config_dir: str | None):
    """load - main.cf for a command, with logging to the mail log (Fatal on error)."""
    from postel.config import ConfigError, load_config
    try:
        cfg = load_config(config_dir)
        syslog_name = cfg.get("syslog_name")
        maillog_file = cfg.get("maillog_file")
    except (ConfigError, KeyError, ValueError) as exc:
        raise Fatal(str(exc), 1) from None
    if maillog_file in ("/dev/stdout", "/dev/stderr") or not maillog_writable(maillog_file):
        maillog_file = ""           # a command's output must stay clean; users may not write the log
    log.init(prog, syslog_name=syslog_name, maillog_file=maillog_file, use_syslog=False)
    return cfg


def options(argv: list[str], spec: str, usage: str) -> tuple[list[tuple[str, str]], list[str]]:
    """options - getopt(3)-style short options: (("c", value), ...), operands; Fatal(EX_USAGE)."""
    import getopt  # here: it pulls in gettext, which postqueue -p never needs
    try:
        pairs, rest = getopt.getopt(argv, spec)
    except getopt.GetoptError as exc:
        # glibc getopt(3)'s wording, as Postfix's commands print it
        why = "option requires an argument" if "requires argument" in exc.msg else "invalid option"
        raise Fatal(f"{why} -- '{exc.opt}'\n{usage}", EX_USAGE) from None
    return [(opt[1:], value) for opt, value in pairs], rest


def maillog_writable(path: str) -> bool:
    """maillog_writable - may this (real) user append to the mail log file?"""
    if not path or path.startswith("/dev/"):
        return True
    if os.path.exists(path):
        return os.access(path, os.W_OK)
    return os.access(os.path.dirname(path) or ".", os.W_OK)


def queue_dir(cfg) -> QueueDir:
    """queue_dir - the QueueDir that main.cf describes (Fatal on a bad setting)."""
    from postel.queue import QueueDir  # here: postqueue -p through showq never needs it
    try:
        return QueueDir(cfg.get("queue_directory"), cfg.get("hash_queue_names"),
                        cfg.get_int("hash_queue_depth"))
    except (ValueError, KeyError) as exc:
        raise Fatal(str(exc), 1) from None


def privileged(cfg) -> bool:
    """privileged - superuser, mail_owner, or owner of queue_directory?"""
    euid = os.geteuid()
    if euid == 0:
        return True
    try:
        if pwd.getpwnam(cfg.get("mail_owner")).pw_uid == euid:
            return True
    except (KeyError, ValueError):
        pass
    try:
        return os.stat(cfg.get("queue_directory")).st_uid == euid
    except OSError:
        return False


def say(prog: str, text: str) -> None:
    """say - an informational line on stderr and in the mail log."""
    log.info("%s", text)
    _stderr(f"{prog}: {text}")


def warn(prog: str, text: str) -> None:
    """warn - a warning on stderr and in the mail log."""
    log.warning("%s", text)
    _stderr(f"{prog}: warning: {text}")


def fatal(prog: str, exc: Fatal) -> int:
    """fatal - report a Fatal and return its exit status."""
    _log_fatal(exc.message)
    _stderr(f"{prog}: fatal: {exc.message}")
    return exc.status


def _log_fatal(text: str) -> None:
    """_log_fatal - the fatal line in the mail log without exiting."""
    try:
        log.fatal("%s", text)
    except log.FatalError:
        pass


def _stderr(line: str) -> None:
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
