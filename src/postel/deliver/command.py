"""command - run a delivery command and map its exit status to a DSN

SYNOPSIS
    from postel.deliver.command import CommandResult, run_command, sys_exits

    result = await run_command(argv, stdin_chunks, uid=uid, gid=gid, env=env,
                               cwd=home, time_limit=1000)
    result.status ("sent" | "defer" | "bounce"), result.dsn, result.text

DESCRIPTION
    Shared by local(8) (|command, mailbox_command) and pipe(8), like
    Postfix's global/pipe_command.c and sys_exits.c.  The command runs in
    a child process (the only fork in a delivery) with the message on its
    standard input; standard output and standard error are collected (the
    first OUTPUT_LIMIT bytes) for the delivery status text.

    When running as root the child runs with the given uid, gid and only
    that group; a uid of 0 is refused (Postfix never runs commands as
    root; default_privs is used instead by the callers).

    Outcome, as Postfix:
      exit 0                   sent
      exit status in the sysexits(3) table
                               that table's DSN and text; EX_TEMPFAIL (75) and
                               EX_OSERR (71) defer, the others bounce
      any other exit status    bounce 5.3.0 "Command died with status N: CMD"
      killed by a signal       defer 4.3.0 "Command died with signal N: CMD"
      time limit exceeded      the child is killed; defer 4.3.0 "Command time
                               limit exceeded: CMD"
      cannot execute           defer 4.3.0
    The command output, if any, follows the text: "... Command output: ..."
    (newlines turned into spaces).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Iterable
from dataclasses import dataclass

OUTPUT_LIMIT = 2048

# sysexits(3) -> (dsn, text), Postfix's sys_exits table.
SYS_EXITS: dict[int, tuple[str, str]] = {
    64: ("5.3.0", "command line usage error"),          # EX_USAGE
    65: ("5.6.0", "data format error"),                 # EX_DATAERR
    66: ("5.3.0", "cannot open input"),                 # EX_NOINPUT
    67: ("5.1.1", "user unknown"),                      # EX_NOUSER
    68: ("5.1.2", "host name unknown"),                 # EX_NOHOST
    69: ("5.3.0", "service unavailable"),               # EX_UNAVAILABLE
    70: ("5.3.0", "internal software error"),           # EX_SOFTWARE
    71: ("4.3.0", "system resource problem"),           # EX_OSERR
    72: ("5.3.0", "critical OS file missing"),          # EX_OSFILE
    73: ("5.2.0", "can't create user output file"),     # EX_CANTCREAT
    74: ("5.3.0", "input/output error"),                # EX_IOERR
    75: ("4.3.0", "temporary failure"),                 # EX_TEMPFAIL
    76: ("5.5.0", "remote error in protocol"),          # EX_PROTOCOL
    77: ("5.7.0", "permission denied"),                 # EX_NOPERM
    78: ("5.3.5", "local configuration error"),         # EX_CONFIG
}

EX_TEMPFAIL = 75
EX_NOUSER = 67
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70


@dataclass(slots=True)
class CommandResult:
    """The outcome of one command delivery."""

    status: str          # "sent", "defer" or "bounce"
    dsn: str
    text: str
    exit_status: int | None = None
    output: str = ""


def sys_exits(code: int) -> tuple[str, str] | None:
    """sys_exits - (dsn, text) for a sysexits(3) status, or None."""
    return SYS_EXITS.get(code)


def printable_output(data: bytes) -> str:
    """printable_output - command output for a status text: one line, printable."""
    text = data[:OUTPUT_LIMIT].decode("utf-8", "replace")
    text = "".join(ch if ch.isprintable() else " " for ch in text.replace("\r", ""))
    return " ".join(text.split())


def classify(returncode: int | None, output: bytes, label: str, timed_out: bool = False) -> CommandResult:
    """classify - turn a child's wait status into sent/defer/bounce with a DSN."""
    out = printable_output(output)
    tail = f". Command output: {out}" if out else ""
    if timed_out:
        return CommandResult("defer", "4.3.0", f"Command time limit exceeded: {label}{tail}",
                             returncode, out)
    if returncode is None:
        return CommandResult("defer", "4.3.0", f"Command died: {label}{tail}", None, out)
    if returncode < 0:
        return CommandResult("defer", "4.3.0", f"Command died with signal {-returncode}: "
                             f"{label}{tail}", returncode, out)
    if returncode == 0:
        return CommandResult("sent", "2.0.0", f"delivered to command: {label}", 0, out)
    known = SYS_EXITS.get(returncode)
    if known is not None:
        dsn, text = known
        status = "defer" if dsn.startswith("4") else "bounce"
        return CommandResult(status, dsn, f"{text}{tail}", returncode, out)
    return CommandResult("bounce", "5.3.0", f"Command died with status {returncode}: "
                         f"{label}{tail}", returncode, out)


def _drop_privileges(uid: int, gid: int):
    """_drop_privileges - a child-side function that becomes uid/gid for good."""
    def drop() -> None:
        os.setgroups([gid])
        os.setgid(gid)
        os.setuid(uid)
    return drop


async def run_command(argv: list[str], stdin: Iterable[bytes], *, uid: int | None = None,
                      gid: int | None = None, env: dict[str, str] | None = None,
                      cwd: str | None = None, time_limit: float = 1000.0,
                      label: str = "") -> CommandResult:
    """run_command - run argv with the message on stdin; never raises for command failures."""
    label = label or " ".join(argv)
    kwargs: dict = {}
    if os.geteuid() == 0 and uid is not None:
        if uid == 0:
            return CommandResult("defer", "4.3.0", f"mail system configuration error: "
                                 f"refusing to run command as root: {label}")
        # preexec_fn rather than Popen's user=/group=: uvloop's subprocess
        # support does not take those; the agent process has no threads.
        kwargs["preexec_fn"] = _drop_privileges(uid, gid if gid is not None else uid)
    if cwd and not os.path.isdir(cwd):
        cwd = "/"
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, env=env if env is not None else {},
            cwd=cwd or "/", start_new_session=True, **kwargs)
    except OSError as exc:
        return CommandResult("defer", "4.3.0", f"cannot execute command {label}: {exc.strerror}")
    output = bytearray()

    async def feed() -> None:
        """feed - write the message to the child; a child that stops reading is fine."""
        assert proc.stdin is not None
        try:
            for chunk in stdin:
                proc.stdin.write(chunk)
                await proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError, RuntimeError):
            pass    # RuntimeError: uvloop's word for a pipe the child closed
        finally:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError, RuntimeError):
                proc.stdin.close()

    async def drain_output() -> None:
        """drain_output - keep the first OUTPUT_LIMIT bytes, discard the rest."""
        assert proc.stdout is not None
        while True:
            data = await proc.stdout.read(65536)
            if not data:
                return
            if len(output) < OUTPUT_LIMIT:
                output.extend(data[:OUTPUT_LIMIT - len(output)])

    timed_out = False
    try:
        await asyncio.wait_for(asyncio.gather(feed(), drain_output(), proc.wait()), time_limit)
    except asyncio.TimeoutError:
        timed_out = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            await proc.wait()
    return classify(proc.returncode, bytes(output), label, timed_out)
