"""spawn - Postel external command spawner

SYNOPSIS
    spawn [generic daemon options] user=USERNAME argv=COMMAND [ARGS...]

    master.cf (a policy server written as a stdin/stdout program):
        policy  unix  -  n  n  -  0  spawn
            user=nobody argv=/usr/local/bin/policy-script --flag

DESCRIPTION
    Postfix's spawn(8): for each client connection, run COMMAND with its
    standard input, output and error connected to the client socket, so
    that a program that only reads stdin and writes stdout can serve a
    Postel service endpoint (typically check_policy_service
    unix:private/policy).  master.cf's process limit bounds how many
    commands run at once; each process of the service serves one client at
    a time, as in Postfix.

    Command attributes (after the generic options):
      user=USERNAME[:GROUPNAME]   run as this user (required when spawn runs
                                  as root; root itself is refused)
      argv=COMMAND ARGS...        the program and its arguments (required,
                                  last attribute; no shell is involved)

    The command gets the environment named by $export_environment, plus
    nothing else.  It is killed (SIGKILL) when it runs longer than
    $SERVICE_time_limit, where SERVICE is the master.cf service name
    (default $command_time_limit).  An abnormal exit status or a kill is
    logged as a warning; the client connection is closed either way.

SECURITY
    The command never runs as root or as $mail_owner's privileged parent:
    when spawn runs as root it switches to user= for the command only.

DIAGNOSTICS
    fatal: spawn: missing argv= attribute
    warning: command /path exit status N
    warning: command /path killed after time limit N s

CONFIGURATION PARAMETERS
    SERVICE_time_limit ($command_time_limit)   time limit per command
    command_time_limit (1000s)
    export_environment (TZ MAIL_CONFIG LANG)
"""

from __future__ import annotations

import asyncio
import grp
import os
import pwd
import signal
import socket
from dataclasses import dataclass, field

from postel import log
from postel.ipc.skeleton import ServiceContext, multi_server_main


@dataclass(slots=True)
class SpawnAttrs:
    """The user= and argv= attributes of a spawn service."""

    user: str = ""
    group: str = ""
    argv: list[str] = field(default_factory=list)


class SpawnConfigError(Exception):
    """A bad spawn attribute in master.cf."""


def parse_attrs(args: list[str]) -> SpawnAttrs:
    """parse_attrs - user= and argv= from the master.cf arguments."""
    attrs = SpawnAttrs()
    for i, arg in enumerate(args):
        name, sep, value = arg.partition("=")
        if not sep:
            raise SpawnConfigError(f"bad attribute: {arg!r}: expected name=value")
        if name == "user":
            attrs.user, _, attrs.group = value.partition(":")
        elif name == "argv":
            attrs.argv = [value, *args[i + 1:]]
            break
        else:
            raise SpawnConfigError(f"unknown attribute name: {name}")
    if not attrs.argv or not attrs.argv[0]:
        raise SpawnConfigError("missing argv= attribute")
    return attrs


def _ids(attrs: SpawnAttrs) -> tuple[int, int] | None:
    """_ids - (uid, gid) to run the command as; None: stay as we are (not root)."""
    if os.geteuid() != 0:
        return None
    if not attrs.user:
        raise SpawnConfigError("missing user= attribute")
    try:
        pw = pwd.getpwnam(attrs.user)
    except KeyError:
        raise SpawnConfigError(f"unknown user name: {attrs.user}") from None
    gid = pw.pw_gid
    if attrs.group:
        try:
            gid = grp.getgrnam(attrs.group).gr_gid
        except KeyError:
            raise SpawnConfigError(f"unknown group name: {attrs.group}") from None
    if pw.pw_uid == 0 or gid == 0:
        raise SpawnConfigError(f"user= attribute specifies privileged user or group: {attrs.user}")
    return pw.pw_uid, gid


def _environment(cfg) -> dict[str, str]:
    """_environment - the variables listed in $export_environment."""
    env = {}
    for item in cfg.get_list("export_environment"):
        name, sep, value = item.partition("=")
        if sep:
            env[name] = value
        elif name in os.environ:
            env[name] = os.environ[name]
    return env


def _time_limit(ctx: ServiceContext) -> float:
    """_time_limit - $SERVICE_time_limit, else $command_time_limit."""
    for name in (f"{ctx.service_name}_time_limit", "command_time_limit"):
        try:
            return float(ctx.cfg.get_time(name))
        except (KeyError, ValueError):
            continue
    return 1000.0


async def run_command(conn: socket.socket, attrs: SpawnAttrs, ids, env: dict[str, str],
                      limit: float) -> int | None:
    """run_command - run the command on conn; its exit status, None when killed."""
    fd = conn.fileno()
    kwargs = {}
    if ids is not None:
        kwargs = {"user": ids[0], "group": ids[1], "extra_groups": []}
    proc = await asyncio.create_subprocess_exec(
        *attrs.argv, stdin=fd, stdout=fd, stderr=fd, env=env, close_fds=True,
        start_new_session=True, **kwargs)
    try:
        return await asyncio.wait_for(proc.wait(), limit)
    except TimeoutError:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        await proc.wait()
        return None


async def serve_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       ctx: ServiceContext) -> None:
    """serve_client - one command per client connection."""
    attrs, ids, env, limit = ctx.state["spawn"]
    # The command reads the client itself: the event loop must not.
    writer.transport.pause_reading()
    sock = writer.get_extra_info("socket")
    conn = socket.socket(fileno=os.dup(sock.fileno()))
    try:
        conn.setblocking(True)
        try:
            status = await run_command(conn, attrs, ids, env, limit)
        except OSError as exc:
            log.warning("command %s: cannot run: %s", attrs.argv[0], exc.strerror or exc)
            return
    finally:
        conn.close()
    if status is None:
        log.warning("command %s killed after time limit %g s", attrs.argv[0], limit)
    elif status < 0:
        log.warning("command %s killed by signal %d", attrs.argv[0], -status)
    elif status != 0:
        log.warning("command %s exit status %d", attrs.argv[0], status)


def pre_init(ctx: ServiceContext) -> None:
    """pre_init - check the attributes before serving anyone."""
    try:
        attrs = parse_attrs(ctx.args)
        ids = _ids(attrs)
    except SpawnConfigError as exc:
        log.fatal("%s", exc)
        return
    ctx.state["spawn"] = (attrs, ids, _environment(ctx.cfg), _time_limit(ctx))


def main(argv: list[str]) -> int:
    """main - the spawn daemon; one client at a time per process."""
    return multi_server_main("spawn", argv, serve_client, pre_init=pre_init, concurrency=1)
