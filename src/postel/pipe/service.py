"""pipe - Postel delivery to external commands

SYNOPSIS
    master.cf:
        name  unix  -  n  n  -  -  pipe
          flags=FRq user=nobody size=10000000 eol=\\n argv=/path/cmd -f ${sender} -- ${recipient}

DESCRIPTION
    Hands each message to a command, as pipe(8).  The master.cf arguments
    after "pipe" (ctx.args) say how:

      flags=CHARS     B  append an empty line to the message
                      D  prepend "Delivered-To: recipient" (and bounce with
                         5.4.6 when the message already has that header)
                      F  prepend a "From sender time" line
                      O  prepend "X-Original-To: original recipient"
                      R  prepend "Return-Path: <sender>"
                      X  final delivery: status action "delivered" rather
                         than "relayed"
                      h  fold $nexthop, $domain and the domain part of
                         $recipient/$original_recipient to lower case
                      q  quote the local part of $sender, $recipient and
                         $original_recipient per RFC 5322 where needed
                      u  fold the local part of $recipient and
                         $original_recipient to lower case
                      .  prepend "." to lines that start with "."
                      >  prepend ">" to lines that start with "From "
      user=USER[:GROUP]   run the command with these rights (required when
                      running as root; never root itself)
      size=N          bounce (5.2.3) messages larger than N bytes
      eol=STRING      line terminator written to the command (default \\n;
                      \\r \\n \\t and \\\\ are understood)
      directory=DIR   working directory of the command
      null_sender=ADDR    $sender for the null sender (default MAILER-DAEMON)
      argv=COMMAND ARGS...   the command; must come last

    In the argv words ${name} and $name are replaced: client_address,
    client_helo, client_hostname, client_port, client_protocol, domain,
    extension, mailbox, nexthop, original_recipient, queue_id, recipient,
    sasl_method, sasl_sender, sasl_username, sender, size, user.  A word
    that mentions a per-recipient name (recipient, original_recipient,
    user, extension, mailbox, domain) is repeated once per recipient.  No
    shell is involved.

    The command's exit status decides every recipient of the request: 0 is
    success; a sysexits(3) status maps to its DSN (EX_TEMPFAIL 75 and
    EX_OSERR 71 defer, the others bounce); another status bounces with
    5.3.0; a signal or the time limit ($TRANSPORT_time_limit, default
    $command_time_limit) defers with 4.3.0.  The first lines of the
    command's output are part of the status text (see
    postel.deliver.command).

CONFIGURATION PARAMETERS
    command_time_limit (1000s)        default for TRANSPORT_time_limit
    TRANSPORT_time_limit              time limit for one command
    export_environment                environment passed to the command
    recipient_delimiter               for ${extension}, ${user}

SEE ALSO
    docs/pipe.md, postel.deliver.command
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import re
from dataclasses import dataclass, field

from postel.deliver.agent import delivery_agent_main
from postel.deliver.command import run_command
from postel.deliver.mailbox import from_line
from postel.deliver.request import DeliverRcpt, DeliverRequest
from postel.deliver.status import DeliveryContext, bounce, defer, sent
from postel.ipc.skeleton import ServiceContext
from postel.mail.address import quote_local, split_addr, split_extension

FLAG_CHARS = set("BDFORXhqu.>")
RCPT_MACROS = {"recipient", "original_recipient", "user", "extension", "mailbox", "domain"}
ALL_MACROS = RCPT_MACROS | {"client_address", "client_helo", "client_hostname", "client_port",
                            "client_protocol", "nexthop", "queue_id", "sasl_method",
                            "sasl_sender", "sasl_username", "sender", "size"}
_MACRO = re.compile(r"\$(?:\{([A-Za-z_]+)\}|([A-Za-z_]+))")


class PipeConfigError(Exception):
    """Bad master.cf arguments for a pipe service."""


@dataclass(slots=True)
class PipeArgs:
    """The parsed master.cf arguments of one pipe service."""

    argv: list[str]
    flags: str = ""
    uid: int | None = None
    gid: int | None = None
    size_limit: int = 0
    eol: bytes = b"\n"
    directory: str = ""
    null_sender: str = "MAILER-DAEMON"
    macros_used: set[str] = field(default_factory=set)


def _unescape(text: str) -> bytes:
    """_unescape - eol=... with \\r \\n \\t \\\\ escapes."""
    out = text.replace("\\\\", "\0").replace("\\r", "\r").replace("\\n", "\n").replace("\\t", "\t")
    return out.replace("\0", "\\").encode()


def parse_args(args: list[str]) -> PipeArgs:
    """parse_args - master.cf "flags=... user=... argv=..." into PipeArgs; PipeConfigError."""
    result = PipeArgs(argv=[])
    for i, word in enumerate(args):
        name, eq, value = word.partition("=")
        if not eq:
            raise PipeConfigError(f"unknown attribute name: {word}")
        if name == "argv":
            result.argv = [value] + list(args[i + 1:])
            if not value:
                raise PipeConfigError("argv= needs a command")
            break
        if name == "flags":
            bad = set(value) - FLAG_CHARS
            if bad:
                raise PipeConfigError(f"unknown flag: {''.join(sorted(bad))}")
            result.flags = value
        elif name == "user":
            user, _, group = value.partition(":")
            try:
                pw = pwd.getpwnam(user)
            except KeyError:
                raise PipeConfigError(f"unknown user name: {user}") from None
            result.uid, result.gid = pw.pw_uid, pw.pw_gid
            if group:
                try:
                    result.gid = grp.getgrnam(group).gr_gid
                except KeyError:
                    raise PipeConfigError(f"unknown group name: {group}") from None
            if result.uid == 0:
                raise PipeConfigError("user= command-line attribute specifies root privileges")
        elif name == "size":
            if not value.isdigit():
                raise PipeConfigError(f"bad size= value: {value}")
            result.size_limit = int(value)
        elif name == "eol":
            result.eol = _unescape(value)
        elif name == "directory":
            result.directory = value
        elif name == "null_sender":
            result.null_sender = value
        else:
            raise PipeConfigError(f"unknown attribute name: {name}")
    if not result.argv:
        raise PipeConfigError("missing argv= command-line attribute")
    for word in result.argv:
        for m in _MACRO.finditer(word):
            macro = m.group(1) or m.group(2)
            if macro not in ALL_MACROS:
                raise PipeConfigError(f"unknown macro name ${{{macro}}} in argv")
            result.macros_used.add(macro)
    return result


def _address(addr: str, flags: str) -> str:
    """_address - apply the q, u and h flags to an address."""
    local, domain = split_addr(addr) if "@" in addr else (addr, "")
    if "u" in flags:
        local = local.lower()
    if "h" in flags:
        domain = domain.lower()
    text = f"{local}@{domain}" if "@" in addr else local
    return quote_local(text) if "q" in flags else text


def rcpt_macros(rcpt: DeliverRcpt, flags: str, delimiters: str) -> dict[str, str]:
    """rcpt_macros - the per-recipient macro values."""
    local, domain = split_addr(rcpt.address)
    user, ext = split_extension(local, delimiters)
    if "u" in flags:
        local, user, ext = local.lower(), user.lower(), ext.lower() if ext is not None else None
    if "h" in flags:
        domain = domain.lower()
    return {
        "recipient": _address(rcpt.address, flags),
        "original_recipient": _address(rcpt.orig_rcpt or rcpt.address, flags),
        "user": user, "extension": ext or "", "mailbox": local, "domain": domain,
    }


def message_macros(req: DeliverRequest, pa: PipeArgs, size: int) -> dict[str, str]:
    """message_macros - the per-message macro values."""
    sender = _address(req.sender, pa.flags) if req.sender else pa.null_sender
    nexthop = req.nexthop.lower() if "h" in pa.flags else req.nexthop
    return {
        "sender": sender, "nexthop": nexthop, "queue_id": req.queue_id, "size": str(size),
        "client_address": req.client_address, "client_hostname": req.client_name,
        "client_helo": req.client_helo, "client_protocol": req.client_protocol,
        "client_port": "", "sasl_method": "", "sasl_sender": "",
        "sasl_username": req.sasl_username,
    }


def _subst(word: str, values: dict[str, str]) -> str:
    """_subst - replace $name / ${name} in one argv word."""
    return _MACRO.sub(lambda m: values.get(m.group(1) or m.group(2), ""), word)


def expand_argv(pa: PipeArgs, msg_values: dict[str, str],
                rcpt_values: list[dict[str, str]]) -> list[str]:
    """expand_argv - the command argv; words with recipient macros repeat per recipient."""
    out: list[str] = []
    for word in pa.argv:
        names = {m.group(1) or m.group(2) for m in _MACRO.finditer(word)}
        if names & RCPT_MACROS:
            for rv in rcpt_values:
                out.append(_subst(word, {**msg_values, **rv}))
        else:
            out.append(_subst(word, msg_values))
    return out


def message_stream(req: DeliverRequest, rcpt: DeliverRcpt, lines, pa: PipeArgs):
    """message_stream - the bytes written to the command, per the flags."""
    eol = pa.eol
    flags = pa.flags
    head: list[bytes] = []
    if "F" in flags:
        head.append(from_line(req.sender))
    if "R" in flags:
        head.append(f"Return-Path: <{quote_local(req.sender)}>".encode("utf-8", "surrogateescape"))
    if "O" in flags:
        head.append(f"X-Original-To: {quote_local(rcpt.orig_rcpt or rcpt.address)}"
                    .encode("utf-8", "surrogateescape"))
    if "D" in flags:
        head.append(f"Delivered-To: {quote_local(rcpt.address).lower()}"
                    .encode("utf-8", "surrogateescape"))
    if head:
        yield eol.join(head) + eol
    dot = "." in flags
    quote = ">" in flags
    buf: list[bytes] = []
    for line in lines:
        if dot and line.startswith(b"."):
            line = b"." + line
        if quote and line.startswith(b"From "):
            line = b">" + line
        buf.append(line)
        if len(buf) >= 512:
            yield eol.join(buf) + eol
            buf = []
    if buf:
        yield eol.join(buf) + eol
    if "B" in flags:
        yield eol


def _has_delivered_to(lines: list[bytes], address: str) -> bool:
    """_has_delivered_to - the message header has Delivered-To: address."""
    want = address.lower().encode("utf-8", "surrogateescape")
    for line in lines:
        if not line:
            return False
        if line[:13].lower() == b"delivered-to:" and line[13:].strip().lower() == want:
            return True
    return False


def _settings(ctx: ServiceContext) -> PipeArgs | str:
    """_settings - the parsed arguments (cached), or the configuration error text."""
    cached = ctx.state.get("pipe_args")
    if cached is None:
        try:
            cached = parse_args(list(ctx.args))
        except PipeConfigError as exc:
            cached = f"{ctx.service_name}: {exc}"
        ctx.state["pipe_args"] = cached
    return cached


def _time_limit(ctx: ServiceContext, transport: str) -> float:
    """_time_limit - $TRANSPORT_time_limit, else $command_time_limit."""
    with contextlib.suppress(Exception):
        return ctx.cfg.get_time(f"{transport}_time_limit")
    return ctx.cfg.get_time("command_time_limit")


def _environment(ctx: ServiceContext) -> dict[str, str]:
    """_environment - export_environment variables, plus a PATH."""
    env = {"PATH": "/usr/bin:/bin"}
    with contextlib.suppress(Exception):
        for name in ctx.cfg.get_list("export_environment"):
            if name in os.environ:
                env[name] = os.environ[name]
    return env


async def deliver(req: DeliverRequest, dctx: DeliveryContext, ctx: ServiceContext) -> None:
    """deliver - run the command once for the request's recipients."""
    transport = req.transport or ctx.service_name
    pa = _settings(ctx)
    if isinstance(pa, str):
        for rcpt in req.recipients:
            defer(dctx, rcpt, transport, "4.3.5", f"mail system configuration error: {pa}")
        return
    size = dctx.qf.message_size
    if pa.size_limit and size > pa.size_limit:
        for rcpt in req.recipients:
            bounce(dctx, rcpt, transport, "5.2.3", "message too large")
        return
    lines = list(dctx.qf.iter_lines())
    todo: list[DeliverRcpt] = []
    for rcpt in req.recipients:
        if "D" in pa.flags and _has_delivered_to(lines, rcpt.address):
            bounce(dctx, rcpt, transport, "5.4.6", f"mail forwarding loop for {rcpt.address}")
        else:
            todo.append(rcpt)
    if not todo:
        return
    uid, gid = pa.uid, pa.gid
    if os.geteuid() == 0 and uid is None:
        for rcpt in todo:
            defer(dctx, rcpt, transport, "4.3.5",
                  "mail system configuration error: missing user= command-line attribute")
        return
    delimiters = ctx.cfg.get("recipient_delimiter")
    msg_values = message_macros(req, pa, size)
    argv = expand_argv(pa, msg_values, [rcpt_macros(r, pa.flags, delimiters) for r in todo])
    stdin = message_stream(req, todo[0], lines, pa)
    dctx.mark_conn_start()
    dctx.mark_xfer_start()
    result = await run_command(argv, stdin, uid=uid, gid=gid, env=_environment(ctx),
                               cwd=pa.directory or None,
                               time_limit=_time_limit(ctx, transport), label=pa.argv[0])
    for rcpt in todo:
        if result.status == "sent":
            action = "delivered" if "X" in pa.flags else "relayed"
            sent(dctx, rcpt, transport, "2.0.0", f"delivered via {transport} service"
                 + (f" ({result.output})" if result.output else ""), action=action)
        elif result.status == "bounce":
            bounce(dctx, rcpt, transport, result.dsn, result.text,
                   diag=("x-unix", result.output or result.text))
        else:
            defer(dctx, rcpt, transport, result.dsn, result.text,
                  diag=("x-unix", result.output or result.text))


def main(argv: list[str]) -> int:
    """main - the pipe(8) service."""
    return delivery_agent_main("pipe", argv, deliver)
