"""services - map a master.cf command to the code that runs it

SYNOPSIS
    from postel.master.services import resolve, module_name
    runner = resolve("smtpd")        # Runner, or raises NotAvailable

DESCRIPTION
    The command column of master.cf names a program.  Postel's own daemons
    are Python modules: master imports the module once, before it forks,
    and each child calls its main(argv) directly (no exec), so that a new
    process costs a fork and not an interpreter start-up.

    The mapping, in one place:

        command "X"          module "postel.X.service", function main(argv)
                             ("-" in X becomes "_": trivial-rewrite ->
                             postel.trivial_rewrite.service)
        command "lmtp"       postel.smtp.service with argv[0] = "lmtp"
        command "testsvc"    postel.master.testsvc (test services)
        command "/abs/path"  fork + exec of that program (not a Postel
                             daemon); the listening sockets are passed as
                             descriptors, see postel.master.master.

    A command whose module does not exist (a daemon not written yet) is not
    available: master logs one warning and skips the master.cf entry.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass

# command -> (module, argv[0]); entries not listed use the default rule.
SPECIAL: dict[str, tuple[str, str]] = {
    "lmtp": ("postel.smtp.service", "lmtp"),
    "testsvc": ("postel.master.testsvc", "testsvc"),
}


class NotAvailable(Exception):
    """The command cannot be run; str() says why."""


@dataclass(slots=True)
class Runner:
    """How to run one master.cf command."""

    command: str
    argv0: str
    main: Callable[[list[str]], int] | None = None   # a Postel daemon, called after fork
    path: str = ""                                   # otherwise: program to exec


def module_name(command: str) -> tuple[str, str]:
    """module_name - the Python module and argv[0] for a Postel command."""
    if command in SPECIAL:
        return SPECIAL[command]
    return f"postel.{command.replace('-', '_')}.service", command


def resolve(command: str) -> Runner:
    """resolve - import a Postel daemon or locate an external program."""
    if "/" in command:
        if os.path.isfile(command) and os.access(command, os.X_OK):
            return Runner(command, os.path.basename(command), path=command)
        raise NotAvailable(f"{command}: no such executable")
    if not command.replace("-", "").replace("_", "").isalnum():
        raise NotAvailable(f"{command}: bad command name")
    modname, argv0 = module_name(command)
    try:
        mod = importlib.import_module(modname)
    except ModuleNotFoundError as exc:
        if exc.name and modname.startswith(exc.name):
            raise NotAvailable("not available") from None
        raise NotAvailable(f"{modname}: {exc}") from None
    except Exception as exc:  # a broken module must not take master down
        raise NotAvailable(f"{modname}: {type(exc).__name__}: {exc}") from None
    main = getattr(mod, "main", None)
    if not callable(main):
        raise NotAvailable(f"{modname} has no main()")
    return Runner(command, argv0, main=main)

