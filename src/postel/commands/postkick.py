"""postkick - kick a Postel service

SYNOPSIS
    postel kick [-c config_dir] [-v] [-t timeout] class service request

DESCRIPTION
    postkick(1) sends request (a few characters, e.g. "W" for wakeup, or
    "I" / "D" / "A" / "F" for qmgr) to the service endpoint
    $queue_directory/class/service, a FIFO or UNIX socket, and reads
    nothing back; see postel.ipc.trigger for the codes.  Example:

        postel kick public qmgr D        # qmgr: scan the deferred queue

    -t timeout   give up after this many seconds (default 10)

DIAGNOSTICS
    "postkick: fatal: Cannot contact class CLASS service SERVICE" and exit
    status 1 when nobody listens there.

CONFIGURATION PARAMETERS
    queue_directory
"""

from __future__ import annotations

from postel.commands._qadmin import EX_USAGE, Fatal, fatal, load
from postel.ipc.trigger import send_trigger

PROG = "postkick"
USAGE = "usage: postkick [-c config_dir] [-v] [-t timeout] class service request"


def main(argv: list[str], config_dir: str | None) -> int:
    """main - postel kick."""
    try:
        args: list[str] = []
        timeout = 10.0
        it = iter(argv)
        for arg in it:
            if arg == "-c":
                config_dir = next(it, None) or ""
                if not config_dir:
                    raise Fatal(USAGE, EX_USAGE)
            elif arg == "-t":
                value = next(it, "")
                try:
                    timeout = float(value)
                except ValueError:
                    raise Fatal(f"bad timeout: {value!r}", EX_USAGE) from None
            elif arg == "-v":
                continue
            elif arg.startswith("-") and len(arg) > 1 and not args:
                raise Fatal(f"invalid option: {arg}\n{USAGE}", EX_USAGE)
            else:
                args.append(arg)
        if len(args) != 3:
            raise Fatal(USAGE, EX_USAGE)
        klass, service, request = args
        if klass not in ("public", "private") or "/" in service or not service:
            raise Fatal(f"bad service: {klass}/{service}", EX_USAGE)
        cfg = load(PROG, config_dir)
        data = request.encode("utf-8", "surrogateescape")
        if not send_trigger(cfg.get("queue_directory"), f"{klass}/{service}", data, timeout):
            raise Fatal(f"Cannot contact class {klass} service {service}", 1)
        return 0
    except Fatal as exc:
        return fatal(PROG, exc)
