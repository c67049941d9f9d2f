"""sendmail - Postel to Sendmail compatibility interface

SYNOPSIS
    sendmail [option ...] [recipient ...]
    mailq            (sendmail -bp)
    newaliases       (sendmail -bi)

DESCRIPTION
    sendmail reads a message from standard input until end of file, or
    until a line with only "." (unless -i or -oi), and queues it for the
    recipients named on the command line (and/or, with -t, in the message
    headers).  The message goes into the maildrop queue as a queue file:

      * when the invoking user can write maildrop/ (an unprivileged instance
        made by `postel init`, or root) sendmail writes the file itself with
        postdrop's write_maildrop() (temp file, fsync, rename, fsync dir);
      * otherwise it writes the same queue-file stream into `postel drop`,
        which is installed set-group-ID setgid_group, as Postfix's
        sendmail runs postdrop.
    Then pickup(8) is woken up; it hands the message to cleanup(8).

    The envelope sender is -f/-r, or the login name of the real user ID;
    a bare login name is stored and cleanup(8) appends @$myorigin
    (local rewriting context).  A leading UNIX "From " line is skipped.

OPTIONS
    -bm             read mail from standard input (default)
    -bs             speak SMTP on standard input/output: a small loop around
                    postel.protocol's SMTP server state machine; each
                    accepted message is dropped exactly as with -bm (as
                    Postfix's smtpd in sendmail mode submits through postdrop)
    -bp             list the queue (postel queue -p); also `mailq`
    -bi, -I         rebuild the alias database (postel alias); also `newaliases`
    -bv             address verification: the message is queued with the
                    "verify" flag (the report is the bounce service's part)
    -bd, -bD        start the mail system (postel start)
    -C config_file  main.cf file or configuration directory
    -F full_name    sender full name (default: $NAME, else the GECOS field)
    -f sender, -r sender
                    envelope sender; "" or <> is the null sender
    -i, -oi         a line with only "." does not end the input
    -N dsn          DSN NOTIFY: never, or a list of success, delay, failure
    -R return       DSN RET: full or hdrs
    -V envid, -XV envid
                    DSN ENVID (RFC 3461)
    -B body_type    7BIT or 8BITMIME
    -t              extract recipients from To:, Cc:, Bcc: (added to any
                    recipients on the command line)
    -q              flush the queue (postel queue -f)
    -qRsite, -qSsite
                    flush mail for site (postel queue -s site)
    -qIqueue_id     flush one message (postel queue -i queue_id)
    -qinterval      ignored, as by Postfix
    -v              verbose
    -L label, -O option=value, -o x (other than -oi/-o7/-o8), -U, -G,
    -h hops, -n, -m, -c, -x, -A x, -e x, -p x, -X log_file
                    accepted and ignored, as Postfix does

EXIT STATUS
    0 success; 64 (EX_USAGE) bad usage or no recipients; 65 (EX_DATAERR)
    message too big or malformed; 66 (EX_NOINPUT) cannot read input; 69
    (EX_UNAVAILABLE) a helper command is missing; 70 (EX_SOFTWARE); 71
    (EX_OSERR) the user ID has no login name; 75 (EX_TEMPFAIL) the queue
    cannot be written.  Problems are written as "sendmail: fatal: ...".

CONFIGURATION PARAMETERS
    queue_directory, message_size_limit (10240000), myhostname (for -bs),
    syslog_name, maillog_file

ENVIRONMENT
    MAIL_CONFIG     configuration directory (overridden by -C)
    NAME            sender full name when -F is not given
"""

from __future__ import annotations

import contextlib
import os
import pwd
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

from postel import log
from postel.commands._qadmin import (
    EX_NOINPUT,
    EX_SOFTWARE,
    EX_TEMPFAIL,
    EX_UNAVAILABLE,
    EX_USAGE,
    Fatal,
    fatal,
    load,
    maillog_writable,
    queue_dir,
    warn,
)
from postel.commands.postdrop import (
    EX_DATAERR,
    MAILDROP,
    PICKUP_ENDPOINT,
    DropError,
    wake_pickup,
    write_maildrop,
    write_queue_stream,
)
from postel.queue import Envelope, QueueDir, QueueFileWriter, Recipient
from postel.queue.records import DSN_RET_FULL, DSN_RET_HDRS

TYPE_CHECKING = False      # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    import tempfile
    from typing import BinaryIO

PROG = "sendmail"
EX_OSERR = 71
READ_CHUNK = 64 * 1024
USAGE = "usage: sendmail [-bm|-bs|-bp|-bi|-bv] [-t] [-i] [-f sender] [-F name] [recipient ...]"
# Options that take a value, as in Postfix's sendmail getopt string.
VALUE_OPTS = set("ABCFLNORVXbfhopqre")
_NOTIFY = {"success": 2, "failure": 4, "delay": 8}
ENVID_LIMIT = 100           # RFC 3461 4.4: ENVID is at most 100 characters


@dataclass(slots=True)
class Request:
    """Request - what the command line asks for."""

    mode: str = "bm"                 # bm bs bp bi bv bd q
    queue_arg: tuple[str, str] = ("", "")
    config: str | None = None
    sender: str | None = None
    full_name: str | None = None
    dot_ends: bool = True            # without -i a line "." ends the input
    extract: bool = False
    notify: int = 0
    ret: int = 0
    envid: str = ""
    body: str = ""
    verbose: int = 0
    recipients: list[str] = field(default_factory=list)


# -- command line

def _notify_mask(value: str) -> int:
    """_notify_mask - -N never | success,delay,failure (RFC 3461 4.1)."""
    words = [w.strip().lower() for w in value.split(",") if w.strip()]
    if words == ["never"]:
        return 1
    if not words or any(w not in _NOTIFY for w in words):
        raise Fatal(f"-N option: bad value {value!r}: use never, or a combination "
                    "of success, delay, failure", EX_USAGE)
    mask = 0
    for w in words:
        mask |= _NOTIFY[w]
    return mask


def _check_text(what: str, value: str, limit: int = 0) -> str:
    """_check_text - refuse control characters (and overlong values)."""
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise Fatal(f"{what} contains a control character", EX_USAGE)
    if limit and len(value) > limit:
        raise Fatal(f"{what} is longer than {limit} characters", EX_USAGE)
    return value


def _apply(req: Request, opt: str, value: str) -> None:
    """_apply - one option with its value (if it takes one)."""
    if opt == "b":
        if value in ("m", "s", "p", "i", "v"):
            req.mode = "b" + value
        elif value in ("d", "D"):
            req.mode = "bd"
        elif value in ("h", "H", "l"):
            pass                                    # ignored, as by Postfix
        else:
            raise Fatal(f"unsupported: -b{value}", EX_USAGE)
    elif opt == "C":
        req.config = value
    elif opt == "F":
        req.full_name = _check_text("-F full name", value)
    elif opt in ("f", "r"):
        sender = value.strip()
        if sender.startswith("<") and sender.endswith(">"):
            sender = sender[1:-1]
        req.sender = _check_text("-f sender", sender)
    elif opt == "N":
        req.notify = _notify_mask(value)
    elif opt == "R":
        ret = value.strip().lower()
        if ret not in ("full", "hdrs"):
            raise Fatal(f"-R option: bad value {value!r}: use full or hdrs", EX_USAGE)
        req.ret = DSN_RET_FULL if ret == "full" else DSN_RET_HDRS
    elif opt == "V":
        req.envid = _check_text("-V envid", value, ENVID_LIMIT)
    elif opt == "X":
        if value.startswith("V"):                   # -XV envid
            req.envid = _check_text("-V envid", value[1:], ENVID_LIMIT)
    elif opt == "B":
        body = value.upper()
        if body not in ("7BIT", "8BITMIME"):
            raise Fatal("-B option needs 8BITMIME or 7BIT", EX_USAGE)
        req.body = body.lower()
    elif opt == "o":
        if value.startswith("i"):
            req.dot_ends = False
    elif opt == "q":
        if value[:1] in ("R", "S"):
            req.mode, req.queue_arg = "q", ("-s", value[1:])
        elif value[:1] == "I":
            req.mode, req.queue_arg = "q", ("-i", value[1:])
        elif not value:
            req.mode, req.queue_arg = "q", ("-f", "")
        # -q30m: a queue run interval; ignored, as by Postfix
    # A L O e h p: ignored


def parse_args(argv: list[str]) -> Request:
    """parse_args - Sendmail's command line into a Request (Fatal on bad usage)."""
    req = Request()
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            req.recipients += argv[i:]
            break
        if not arg.startswith("-") or arg == "-":
            req.recipients.append(arg)
            continue
        j = 1
        while j < len(arg):
            c = arg[j]
            j += 1
            if c in VALUE_OPTS:
                value = arg[j:]
                if not value and c not in ("q",):
                    if i >= len(argv):
                        raise Fatal(f"option -{c} requires an argument\n{USAGE}", EX_USAGE)
                    value = argv[i]
                    i += 1
                _apply(req, c, value)
                break
            if c == "t":
                req.extract = True
            elif c == "i":
                req.dot_ends = False
            elif c == "I":
                req.mode = "bi"
            elif c == "v":
                req.verbose += 1
            elif c in "GUnmcx":
                pass                                # ignored, as by Postfix
            else:
                raise Fatal(f"invalid option -- '{c}'\n{USAGE}", EX_USAGE)
    return req


def config_dir_of(value: str | None) -> str | None:
    """config_dir_of - -C names main.cf or its directory (Postfix accepts both)."""
    if value is None:
        return None
    if os.path.basename(value) == "main.cf" or os.path.isfile(value):
        return os.path.dirname(os.path.abspath(value))
    return value


# -- identity

def login_name(uid: int | None = None) -> str:
    """login_name - the name of the real user ID (Fatal EX_OSERR when none)."""
    uid = os.getuid() if uid is None else uid
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        raise Fatal(f"no login name found for user ID {uid}", EX_OSERR) from None


def default_full_name(uid: int | None = None) -> str:
    """default_full_name - $NAME, else the GECOS full name ("&" is the login name)."""
    name = os.environ.get("NAME", "")
    if name:
        return name
    try:
        pw = pwd.getpwuid(os.getuid() if uid is None else uid)
    except KeyError:
        return ""
    gecos = pw.pw_gecos.split(",", 1)[0]
    return gecos.replace("&", pw.pw_name[:1].upper() + pw.pw_name[1:])


def split_recipients(args: list[str]) -> list[str]:
    """split_recipients - command-line arguments into addresses (commas separate)."""
    from email.utils import getaddresses  # here: urllib, email.charset, ... at start-up otherwise
    out: list[str] = []
    for arg in args:
        for _name, addr in getaddresses([arg]):
            if addr:
                out.append(_check_text("recipient", addr))
    return out


# -- input

def read_message(stream: BinaryIO, dot_ends: bool) -> Iterator[bytes]:
    """read_message - content chunks from stdin: skip a From_ line; "." ends unless -i."""
    first = True
    at_line_start = True
    while True:
        if dot_ends or first:
            chunk = stream.readline(READ_CHUNK)
        else:
            chunk = stream.read(READ_CHUNK)
        if not chunk:
            return
        if first:
            first = False
            if chunk.startswith(b"From ") and chunk.endswith(b"\n"):
                continue                            # the UNIX mailbox separator
        if dot_ends and at_line_start and chunk in (b".\n", b".\r\n", b"."):
            return
        at_line_start = chunk.endswith(b"\n")
        yield chunk


# -- submission

def build_envelope(req: Request, sender: str, recipients: list[str]) -> Envelope:
    """build_envelope - the maildrop envelope for one message."""
    attrs: dict[str, str] = {}
    flags = []
    if req.extract:
        flags.append("extract_recipients")
    if req.mode == "bv":
        flags.append("verify")
    elif req.verbose == 1:
        flags.append("trace")      # sendmail -v: mail a record of the first delivery attempt
    if flags:
        attrs["flags"] = ",".join(flags)
    if req.body:
        attrs["encoding"] = req.body
    full_name = req.full_name if req.full_name is not None else default_full_name()
    return Envelope(sender=sender,
                    recipients=[Recipient(r, dsn_notify=req.notify) for r in recipients],
                    attrs=attrs, dsn_envid=req.envid, dsn_ret=req.ret, full_name=full_name)


def _postdrop_command(config_dir: str) -> list[str]:
    """_postdrop_command - `postel -c DIR drop`, preferring the installed program."""
    import shutil
    here = os.path.dirname(os.path.abspath(sys.argv[0] or ""))
    for cand in (os.path.join(here, "postel"), shutil.which("postel") or ""):
        if cand and os.access(cand, os.X_OK):
            return [cand, "-c", config_dir, "drop"]
    return [sys.executable, "-c", "from postel.commands.main import main; main()",
            "-c", config_dir, "drop"]


def drop_via_postdrop(config_dir: str, env: Envelope, chunks: Iterator[bytes],
                      size_limit: int) -> None:
    """drop_via_postdrop - write the queue-file stream into `postel drop`."""
    import subprocess
    import tempfile
    with tempfile.TemporaryDirectory(prefix="sendmail.") as tmp:
        os.mkdir(os.path.join(tmp, MAILDROP), 0o700)
        writer = QueueFileWriter(QueueDir(tmp), MAILDROP)
        try:
            write_queue_stream(writer, env, chunks, size_limit)
            with open(writer.temp_path, "rb") as stream:
                try:
                    cp = subprocess.run(_postdrop_command(config_dir), stdin=stream)
                except OSError as exc:
                    raise Fatal(f"cannot run postdrop: {exc.strerror}", EX_UNAVAILABLE) from None
        finally:
            writer.abort()
    if cp.returncode != 0:
        # postdrop has printed its own message.
        raise Fatal(f"postdrop exited with status {cp.returncode}",
                    cp.returncode if 64 <= cp.returncode <= 78 else EX_TEMPFAIL)


def submit(cfg, req: Request, sender: str, recipients: list[str],
           chunks: Iterator[bytes], rcpts: list[tuple[str, int, str]] | None = None) -> str:
    """submit - one message into maildrop/, then wake pickup; returns the qid or ""."""
    qd = queue_dir(cfg)
    size_limit = cfg.get_size("message_size_limit")
    env = build_envelope(req, sender, recipients)
    for addr, notify, orcpt in rcpts or ():
        env.recipients.append(Recipient(addr, dsn_notify=notify, dsn_orcpt=orcpt))
    maildrop = os.path.join(qd.queue_directory, MAILDROP)
    try:
        if os.access(maildrop, os.W_OK | os.X_OK):
            qid = write_maildrop(qd, env, chunks, size_limit)
            log.verbose("%s: dropped by uid=%d", qid, os.getuid())
        else:
            drop_via_postdrop(cfg.config_directory, env, chunks, size_limit)
            return ""                               # postdrop woke pickup
    except DropError as exc:
        raise Fatal(exc.message, exc.status) from None
    except OSError as exc:
        raise Fatal(f"{maildrop}: {exc.strerror}", EX_TEMPFAIL) from None
    if not wake_pickup(qd.queue_directory):
        warn(PROG, f"unable to look up {PICKUP_ENDPOINT}: pickup is not running; "
                   f"{qid} waits in the maildrop queue")
    return qid


def send_mail(cfg, req: Request) -> int:
    """send_mail - -bm/-bv: stdin to the queue."""
    sender = req.sender if req.sender is not None else login_name()
    recipients = split_recipients(req.recipients)
    if not recipients and not req.extract:
        raise Fatal("Recipient addresses must be specified on the command line or "
                    "via the -t option", EX_USAGE)
    try:
        stdin = sys.stdin.buffer
    except (AttributeError, ValueError):
        raise Fatal("no standard input", EX_NOINPUT) from None
    try:
        submit(cfg, req, sender, recipients, read_message(stdin, req.dot_ends))
    except OSError as exc:
        raise Fatal(f"read standard input: {exc.strerror}", EX_NOINPUT) from None
    return 0


# -- sendmail -bs

def _server_config(cfg):
    """_server_config - the SMTP state machine's settings for -bs."""
    from postel.protocol.smtp_server import ServerConfig
    return ServerConfig(myhostname=cfg.get("myhostname"),
                        message_size_limit=cfg.get_size("message_size_limit"),
                        chunking=False, etrn=False, starttls=False, auth=False)


def _notify_of(params) -> int:
    """_notify_of - RCPT NOTIFY= as a DSN mask."""
    words = [w.lower() for w in (params.notify or ())]
    if words == ["never"]:
        return 1
    return sum(_NOTIFY.get(w, 0) for w in set(words))


def smtp_session(cfg, req: Request, stdin: BinaryIO, stdout: BinaryIO) -> int:
    """smtp_session - sendmail -bs: SMTP on stdin/stdout, messages dropped as with -bm."""
    import tempfile

    from postel.protocol import events as ev
    from postel.protocol import replies as R
    from postel.protocol.smtp_server import SMTPServerConnection, ehlo_reply, enabled_keywords

    conf = _server_config(cfg)
    conn = SMTPServerConnection(conf)
    host = conf.myhostname
    out = bytearray()
    mail: ev.MailFrom | None = None
    rcpts: list[tuple[str, int, str]] = []
    spool: tempfile.SpooledTemporaryFile | None = None

    def flush() -> None:
        if out:
            stdout.write(bytes(out))
            stdout.flush()
            out.clear()

    def queue_message(event: ev.DataEnd) -> R.Reply:
        """queue_message - the finished DATA content into maildrop/."""
        if event.too_big:
            return R.Reply(552, "5.3.4", "Error: message file too big")
        spool.seek(0)
        sub = Request(mode="bm", full_name=req.full_name, body=(mail.params.body or "").lower()
                      if (mail.params.body or "").upper() in ("7BIT", "8BITMIME") else "",
                      envid=mail.params.envid or "",
                      ret={"FULL": DSN_RET_FULL, "HDRS": DSN_RET_HDRS}.get(mail.params.ret or "", 0))
        chunks = iter(lambda: spool.read(READ_CHUNK), b"")
        try:
            qid = submit(cfg, sub, mail.address, [], chunks, rcpts=rcpts)
        except Fatal as exc:
            log.warning("%s", exc.message)
            return R.R451_QUEUE_WRITE
        return R.R250_QUEUED.format(qid=qid or "(postdrop)")

    try:
        while True:
            event = conn.next_event()
            if event is ev.NEED_DATA:
                flush()
                data = stdin.read1(READ_CHUNK) if hasattr(stdin, "read1") else stdin.read(READ_CHUNK)
                if not data:
                    return 0
                conn.receive_data(data)
                continue
            if event is ev.CLOSED:
                flush()
                return 0
            if isinstance(event, ev.Connected):
                reply = R.R220_BANNER.format(host=host, name=cfg.get("mail_name"))
            elif isinstance(event, ev.Ehlo):
                reply = ehlo_reply(host, conf.message_size_limit, enabled_keywords(conf))
            elif isinstance(event, ev.Helo):
                reply = R.R250_HELO.format(host=host)
            elif isinstance(event, ev.MailFrom):
                mail, rcpts = event, []
                reply = R.R250_SENDER_OK
            elif isinstance(event, ev.RcptTo):
                orcpt = f"{event.params.orcpt[0]};{event.params.orcpt[1]}" if event.params.orcpt else ""
                rcpts.append((event.address, _notify_of(event.params), orcpt))
                reply = R.R250_RCPT_OK
            elif isinstance(event, ev.Data):
                spool = tempfile.SpooledTemporaryFile(max_size=1024 * 1024)
                reply = R.R354_DATA
            elif isinstance(event, ev.DataChunk):
                spool.write(event.data)
                continue
            elif isinstance(event, ev.DataEnd):
                reply = queue_message(event)
                spool.close()
                spool, mail, rcpts = None, None, []
            elif isinstance(event, ev.Quit):
                reply = R.R221_BYE
                out += conn.send_reply(reply, close=True)
                flush()
                return 0
            elif isinstance(event, ev.Rset):
                mail, rcpts, reply = None, [], R.R250_OK
            elif isinstance(event, ev.Noop):
                reply = R.R250_OK
            elif isinstance(event, ev.Vrfy):
                reply = R.R252_VRFY.format(rcpt=event.arg)
            elif isinstance(event, (ev.UnknownCommand, ev.BadSyntax, ev.ProtocolError,
                                    ev.NonSmtpCommand)):
                reply = event.reply
            elif isinstance(event, ev.Help):
                reply = R.R214_HELP
            else:
                reply = R.R500_NOT_RECOGNIZED
            if not event.needs_reply:
                continue
            out += conn.send_reply(reply)
    except (BrokenPipeError, ConnectionError):
        return 0


def run_other(name: str, argv: list[str], config_dir: str | None) -> int:
    """run_other - another postel command (mailq, newaliases, flush)."""
    from postel.commands.main import run
    return run(name, argv, config_dir)


def dispatch(req: Request, config_dir: str | None) -> int:
    """dispatch - run the mode the command line chose."""
    if req.mode == "bp":
        return run_other("queue", ["-p"], config_dir)
    if req.mode == "bi":
        return run_other("alias", ["-I"], config_dir)
    if req.mode == "bd":
        return run_other("start", [], config_dir)
    if req.mode == "q":
        opt, arg = req.queue_arg
        return run_other("queue", [opt, arg] if arg else [opt], config_dir)
    cfg = load(PROG, config_dir)
    if req.verbose:
        log.init(PROG, syslog_name=cfg.get("syslog_name"), maillog_file=_log_file(cfg),
                 use_syslog=False, verbose=req.verbose)
    if req.mode == "bs":
        return smtp_session(cfg, req, sys.stdin.buffer, sys.stdout.buffer)
    return send_mail(cfg, req)


def _log_file(cfg) -> str:
    f = cfg.get("maillog_file")
    return "" if f in ("/dev/stdout", "/dev/stderr") or not maillog_writable(f) else f


def sendmail_main(argv: list[str], config_dir: str | None = None) -> int:
    """sendmail_main - the sendmail command with argv after the program name."""
    try:
        req = parse_args(argv)
        return dispatch(req, config_dir_of(req.config) or config_dir)
    except Fatal as exc:
        return fatal(PROG, exc)
    except KeyboardInterrupt:
        return EX_TEMPFAIL
    except BrokenPipeError:
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
        return EX_SOFTWARE


def main() -> int:
    """main - console script entry: sendmail [options] [recipients]."""
    sys.exit(sendmail_main(sys.argv[1:]))


__all__ = ["main", "sendmail_main", "parse_args", "Request", "read_message", "submit",
           "build_envelope", "EX_DATAERR"]
