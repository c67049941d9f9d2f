"""postel - the Postel command

SYNOPSIS
    postel [-c config_dir] [-v] command [args...]

DESCRIPTION
    One entry point for the administrator, like postfix(1) plus the support
    commands.  Each command lives in its own module under postel.commands and
    is imported only when used, so that a simple command starts quickly.

      init DIR          create a self-contained instance in DIR
      start, start-fg, stop, abort, reload, status, check, set-permissions
                        control the mail system (postfix(1))
      conf              postconf(1)
      queue             postqueue(1)
      super             postsuper(1)
      map, alias        postmap(1), postalias(1)
      cat               postcat(1)
      drop              postdrop(1)
      log               postlog(1)
      lock, kick        postlock(1), postkick(1)
      flush             postqueue -f

    Each command takes -c DIR (or MAIL_CONFIG from the environment) to name
    the configuration directory, as Postfix's commands do.

DIAGNOSTICS
    Problems are reported on stderr with the command name; the exit status is
    non-zero on error.  No command prints a Python traceback for bad input.
"""

from __future__ import annotations

import importlib
import sys

# command name -> "module:function"; the function takes argv (after the
# command name) and the global config dir (or None) and returns an exit code.
COMMANDS: dict[str, str] = {
    "init": "postel.commands.control:init_main",
    "start": "postel.commands.control:start_main",
    "start-fg": "postel.commands.control:start_fg_main",
    "stop": "postel.commands.control:stop_main",
    "abort": "postel.commands.control:abort_main",
    "reload": "postel.commands.control:reload_main",
    "status": "postel.commands.control:status_main",
    "check": "postel.commands.control:check_main",
    "set-permissions": "postel.commands.control:set_permissions_main",
    "conf": "postel.commands.postconf:main",
    "queue": "postel.commands.postqueue:main",
    "flush": "postel.commands.postqueue:flush_main",
    "super": "postel.commands.postsuper:main",
    "map": "postel.commands.postmap:main",
    "alias": "postel.commands.postalias:main",
    "cat": "postel.commands.postcat:main",
    "drop": "postel.commands.postdrop:main",
    "log": "postel.commands.postlog:main",
    "lock": "postel.commands.postlock:main",
    "kick": "postel.commands.postkick:main",
    "master": "postel.master.master:main",
}

USAGE = "usage: postel [-c config_dir] [-v] command [args...]\ncommands: " + ", ".join(COMMANDS)


def _resolve(spec: str):
    module, _, func = spec.partition(":")
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and module.startswith(exc.name):
            return None
        raise
    return getattr(mod, func, None)


def run(name: str, argv: list[str], config_dir: str | None) -> int:
    """run - run one sub-command and return its exit status."""
    spec = COMMANDS.get(name)
    if spec is None:
        print(f"postel: unknown command: {name}\n{USAGE}", file=sys.stderr)
        return 2
    func = _resolve(spec)
    if func is None:
        print(f"postel: command not available in this build: {name}", file=sys.stderr)
        return 2
    try:
        rc = func(argv, config_dir)
    except KeyboardInterrupt:
        return 130
    return int(rc or 0)


def main(argv: list[str] | None = None) -> int:
    """main - parse the global options and dispatch."""
    argv = list(sys.argv[1:] if argv is None else argv)
    config_dir = None
    while argv and argv[0].startswith("-") and argv[0] != "-":
        opt = argv.pop(0)
        if opt == "-c" and argv:
            config_dir = argv.pop(0)
        elif opt.startswith("-c") and len(opt) > 2:
            config_dir = opt[2:]
        elif opt == "-v":
            continue
        elif opt in ("-h", "--help"):
            print(USAGE)
            return 0
        else:
            print(f"postel: invalid option: {opt}\n{USAGE}", file=sys.stderr)
            return 2
    if not argv:
        print(USAGE, file=sys.stderr)
        return 2
    sys.exit(run(argv[0], argv[1:], config_dir))


def mailq_main() -> int:
    """mailq - the same as postel queue -p."""
    sys.exit(run("queue", ["-p", *sys.argv[1:]], None))


def newaliases_main() -> int:
    """newaliases - the same as postel alias on $alias_database."""
    sys.exit(run("alias", ["-I", *sys.argv[1:]], None))


if __name__ == "__main__":
    sys.exit(main())
