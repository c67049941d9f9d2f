"""log - Postfix-style log lines

SYNOPSIS
    from postel import log
    log.init("smtpd", maillog_file="/dev/stdout")
    log.info("%s: client=%s", qid, peer)

DESCRIPTION
    Every Postel process logs through this module.  A line looks exactly like
    Postfix's, so that pflogsumm, fail2ban filters and grep habits keep working:

        Nov 25 13:09:33 host postel/smtpd[1234]: 4XyZ...: client=localhost[127.0.0.1]

    The tag is "$syslog_name/$process_name".  Severity is written as a prefix
    of the text, as Postfix does: "warning: ", "error: ", "fatal: ",
    "panic: "; informational lines have no prefix.

    Destinations (any combination):
      * syslog, through the /dev/log datagram socket (facility
        $syslog_facility, default mail).  The default when running as root
        and no maillog_file is set.
      * maillog_file: a file appended to with O_APPEND, one write(2) per line
        so that lines of concurrent processes never interleave.  The values
        "/dev/stdout" and "/dev/stderr" write to the inherited descriptors.
      * stdout, in addition (log.init(..., stdout=True)), for postel start-fg.
      * stderr, in addition, for interactive commands (log.init(..., stderr=True)),
        where the message is printed without the timestamp prefix.
      * postlogd(8): a command that may not be able to open maillog_file
        (run by an ordinary user) passes postlog_socket=$queue_directory/
        public/postlog; when maillog_file is set and that socket exists,
        each line is sent there as one datagram instead, and written
        directly only when the send fails.  Daemons write directly: a
        datagram costs twice an O_APPEND write (docs/postlogd.md).

    Each line is written at once with one write(2) (or send(2)): lines are
    never batched, not even those of one event-loop tick.  Postfix logs
    each line with its own syslog() call, so a daemon killed with SIGKILL
    loses none of the lines it logged before, and the lines of smtpd,
    cleanup and qmgr about one message appear in the order they happened;
    a batch would give up both for a saving of a few microseconds per line.
    What is cached is the line prefix ("Nov 25 13:09:33 host postel/smtpd
    [1234]: "), built once per second (and again after fork or a change of
    the process name).

    fatal() logs and exits with status 1 (a configuration or environment
    problem: master restarts the process later); panic() logs and aborts (a
    bug).

CONFIGURATION PARAMETERS
    syslog_name (postel)        the first part of the tag
    syslog_facility (mail)      syslog facility
    maillog_file (empty)        file to append log lines to
"""

from __future__ import annotations

import os
import socket
import sys
import time

_FACILITIES = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5,
    "lpr": 6, "news": 7, "uucp": 8, "cron": 9, "authpriv": 10,
    "local0": 16, "local1": 17, "local2": 18, "local3": 19,
    "local4": 20, "local5": 21, "local6": 22, "local7": 23,
}
_PRIO = {"info": 6, "warning": 4, "error": 3, "fatal": 2, "panic": 0}
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun",
           "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

# Hard limit on one logged line, as Postfix truncates overlong records.
LINE_LIMIT = 8192


class _State:
    syslog_name = "postel"
    process_name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "postel"
    facility = 2
    hostname = socket.gethostname().split(".")[0]
    file_fd: int | None = None
    file_path = ""
    syslog_sock: socket.socket | None = None
    use_syslog = False
    stderr = False
    stdout = False
    verbose = 0
    postlog_sock: socket.socket | None = None
    pid = os.getpid()
    # "Nov 25 15:46:22 host postel/smtpd[1234]: " is the same for every line
    # logged within one second: built once per second (localtime() and the
    # formatting cost more than the rest of a line).
    prefix_sec = -1
    prefix = ""


_s = _State()


def _forget_prefix() -> None:
    """_forget_prefix - the tag or the pid changed: rebuild the line prefix."""
    _s.prefix_sec = -1


def _after_fork() -> None:
    """_after_fork - a child has its own pid in every line."""
    _s.pid = os.getpid()
    _s.prefix_sec = -1


os.register_at_fork(after_in_child=_after_fork)


def init(process_name: str, *, syslog_name: str = "postel", maillog_file: str = "",
         use_syslog: bool | None = None, facility: str = "mail", stderr: bool = False,
         stdout: bool = False, verbose: int = 0, postlog_socket: str = "") -> None:
    """init - choose the tag and destinations for this process.

    stdout=True copies every full log line to standard output as well
    (postel start-fg), unless maillog_file is already /dev/stdout.
    """
    _s.process_name = process_name
    _s.syslog_name = syslog_name or "postel"
    _forget_prefix()
    _s.facility = _FACILITIES.get(facility.lower(), 2)
    _s.stderr = stderr
    _s.stdout = stdout and maillog_file != "/dev/stdout"
    _s.verbose = verbose
    _close_file()
    _s.file_path = maillog_file
    if _s.postlog_sock is not None:
        _s.postlog_sock.close()
        _s.postlog_sock = None
    if maillog_file and postlog_socket and maillog_file not in ("/dev/stdout", "/dev/stderr"):
        _s.postlog_sock = _connect_postlog(postlog_socket)
    if maillog_file and _s.postlog_sock is None:
        _open_file(maillog_file)
    if use_syslog is None:
        use_syslog = not maillog_file and os.geteuid() == 0
    _s.use_syslog = use_syslog
    if _s.syslog_sock is not None:
        _s.syslog_sock.close()
        _s.syslog_sock = None


def set_process_name(process_name: str) -> None:
    """set_process_name - change the tag after fork."""
    _s.process_name = process_name
    _forget_prefix()


def reopen() -> None:
    """reopen - reopen maillog_file (after rotation, or after fork)."""
    if _s.file_path and _s.postlog_sock is None:
        _close_file()
        _open_file(_s.file_path)


def _connect_postlog(path: str) -> socket.socket | None:
    """_connect_postlog - a datagram socket connected to postlogd, or None."""
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    except OSError:
        return None
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        return None
    return sock


def _close_file() -> None:
    if _s.file_fd is not None and _s.file_fd > 2:
        try:
            os.close(_s.file_fd)
        except OSError:
            pass
    _s.file_fd = None


def _open_file(path: str) -> None:
    if path == "/dev/stdout":
        _s.file_fd = 1
    elif path == "/dev/stderr":
        _s.file_fd = 2
    else:
        try:
            _s.file_fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            _s.file_fd = 2
            sys.stderr.write(f"postel: warning: cannot open maillog_file {path}: {exc.strerror}\n")


def tag() -> str:
    """tag - the syslog tag of this process: postel/smtpd."""
    return f"{_s.syslog_name}/{_s.process_name}"


def _stamp(t: time.struct_time) -> str:
    """_stamp - "Nov 25 13:09:33" (syslog's RFC 3164 timestamp)."""
    return f"{_MONTHS[t.tm_mon - 1]} {t.tm_mday:2d} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"


def _line_prefix(now: float) -> str:
    """_line_prefix - "STAMP host tag[pid]: " for this second, cached."""
    sec = int(now)
    if sec != _s.prefix_sec:
        _s.prefix = f"{_stamp(time.localtime(sec))} {_s.hostname} {tag()}[{_s.pid}]: "
        _s.prefix_sec = sec
    return _s.prefix


def format_line(text: str, now: float | None = None, pid: int | None = None) -> str:
    """format_line - a complete log line in Postfix's format, without newline."""
    if now is None:
        now = time.time()
    if pid is None or pid == _s.pid:
        return _line_prefix(now) + text
    return f"{_stamp(time.localtime(int(now)))} {_s.hostname} {tag()}[{pid}]: {text}"


def _emit(level: str, text: str) -> None:
    text = text.replace("\n", " ").replace("\r", " ")
    if len(text) > LINE_LIMIT:
        text = text[:LINE_LIMIT] + "..."
    if level != "info":
        text = f"{level}: {text}"
    line = None
    if _s.postlog_sock is not None:
        line = (_line_prefix(time.time()) + text + "\n").encode("utf-8", "backslashreplace")
        try:
            _s.postlog_sock.send(line)
        except OSError:
            _s.postlog_sock.close()
            _s.postlog_sock = None
            _open_file(_s.file_path)        # postlogd went away: write directly
    if _s.file_fd is not None or _s.stdout:
        if line is None:
            line = (_line_prefix(time.time()) + text + "\n").encode("utf-8", "backslashreplace")
        # One write(2) per line, at once: no buffering across lines, so that
        # a process killed right after logging loses nothing, and lines of
        # concurrent processes keep their order, as with Postfix's syslog().
        if _s.file_fd is not None:
            try:
                os.write(_s.file_fd, line)
            except OSError:
                pass
        if _s.stdout:
            try:
                os.write(1, line)
            except OSError:
                pass
    if _s.use_syslog:
        _syslog(level, text)
    if _s.stderr and _s.file_fd not in (1, 2) and not _s.stdout:
        try:
            sys.stderr.write(f"{_s.syslog_name}/{_s.process_name}: {text}\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass


def _syslog(level: str, text: str) -> None:
    pri = _s.facility * 8 + _PRIO[level]
    data = f"<{pri}>{_stamp(time.localtime())} {tag()}[{_s.pid}]: {text}".encode("utf-8", "backslashreplace")
    try:
        if _s.syslog_sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.connect("/dev/log")
            _s.syslog_sock = sock
        _s.syslog_sock.send(data)
    except OSError:
        _s.syslog_sock = None


def _fmt(fmt: str, args: tuple) -> str:
    if not args:
        return fmt
    try:
        return fmt % args
    except (TypeError, ValueError):
        return fmt + " " + " ".join(map(str, args))


def info(fmt: str, *args: object) -> None:
    """info - an informational line."""
    if args:
        fmt = _fmt(fmt, args)
    _emit("info", fmt)


def verbose(fmt: str, *args: object) -> None:
    """verbose - logged only with -v (debug_peer_list and friends later)."""
    if _s.verbose:
        _emit("info", _fmt(fmt, args))


def warning(fmt: str, *args: object) -> None:
    """warning - something is wrong, but processing continues."""
    _emit("warning", _fmt(fmt, args))


def error(fmt: str, *args: object) -> None:
    """error - a hard error; processing continues."""
    _emit("error", _fmt(fmt, args))


class FatalError(SystemExit):
    """Raised by fatal(): the process must exit with status 1."""


def fatal(fmt: str, *args: object) -> None:
    """fatal - log a configuration/environment error and exit(1)."""
    _emit("fatal", _fmt(fmt, args))
    raise FatalError(1)


def panic(fmt: str, *args: object) -> None:
    """panic - log a software bug and abort."""
    _emit("panic", _fmt(fmt, args))
    os.abort()
