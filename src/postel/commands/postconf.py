"""postconf - Postel configuration utility (postel conf)

SYNOPSIS
    postel conf [-c config_dir] [-dhnx] [name...]
    postel conf [-c config_dir] -e name=value...
    postel conf [-c config_dir] -X name...
    postel conf [-c config_dir] -# name...
    postel conf [-c config_dir] -M [-fx] [service[/type]...]
    postel conf [-c config_dir] -Me service/type=entry...
    postel conf [-c config_dir] -MX service/type...
    postel conf [-c config_dir] -M# service/type...
    postel conf [-c config_dir] -F [-hx] [service[/type[/field]]...]
    postel conf [-c config_dir] -Fe service/type/field=value...
    postel conf [-c config_dir] -P [-hx] [service[/type[/name]]...]
    postel conf [-c config_dir] -Pe service/type/name=value...
    postel conf [-c config_dir] -PX service/type/name...

DESCRIPTION
    Prints and edits main.cf and master.cf, like Postfix's postconf(1).

    Without names, every parameter is printed ("name = value"); with names,
    only those.  -d prints defaults instead of the actual values, -n only
    parameters set in main.cf, -h the value without "name = ", -x with every
    $name expanded.  -e sets parameters, -X removes them and -# comments
    them out; main.cf keeps its comments and order and is replaced
    atomically.

    -M prints master.cf entries (-f folds -o options onto their own lines),
    -Me adds or replaces one, -MX removes it and -M# comments it out.  -F
    prints or (-Fe) edits individual columns by their names service, type,
    private, unprivileged, chroot, wakeup, process_limit, command.  -P
    prints, edits (-Pe) or removes (-PX) "-o name=value" parameters.

    Messages keep Postfix's program name "postconf" ("postconf: warning:
    NAME: unknown parameter"), so that the habits and log filters of Postfix
    administrators keep working.

DIAGNOSTICS
    Warnings for unknown names, and for user-defined parameters in main.cf
    that nothing uses ("main.cf, line N: unused parameter: name=value").
    Configuration errors: a message naming the file, line and parameter,
    exit status 1.

ENVIRONMENT
    MAIL_CONFIG   configuration directory when -c is not given
"""

from __future__ import annotations

import getopt
import re
import sys

from postel.config import Config, ConfigError, load_config, resolve_config_dir
from postel.config.edit import edit_main_cf, edit_master_cf, format_entry
from postel.config.master import FIELD_NAMES, MasterEntry, parse_master_line
from postel.config.params import PARAMS, lookup_param

PROG = "postconf"
_REF = re.compile(r"\$(?:([A-Za-z0-9_]+)|[{(]([A-Za-z0-9_]+))")


class UsageError(Exception):
    """Bad command-line usage."""


def warn(text: str) -> None:
    """warn - a warning on stderr."""
    print(f"{PROG}: warning: {text}", file=sys.stderr)


def fatal(text: str) -> int:
    """fatal - an error on stderr; returns the exit status."""
    print(f"{PROG}: fatal: {text}", file=sys.stderr)
    return 1


def main(argv: list[str], config_dir: str | None) -> int:
    """main - postel conf entry point."""
    try:
        opts, args = getopt.getopt(argv, "c:dehnxXMFPfo:#v")
    except getopt.GetoptError as exc:
        return fatal(f"{exc.msg}; usage: postel conf [-c dir] [-dehnxXMFP#] [name...]")
    flags = {o for o, _ in opts}
    overrides: dict[str, str] = {}
    for o, v in opts:
        if o == "-c":
            config_dir = v
        elif o == "-o":
            name, eq, value = v.partition("=")
            if not eq:
                return fatal(f'-o option requires name=value: "{v}"')
            overrides[name.strip()] = value.strip()
    try:
        return _run(flags, args, config_dir, overrides)
    except UsageError as exc:
        return fatal(str(exc))
    except ConfigError as exc:
        return fatal(str(exc))
    except OSError as exc:
        return fatal(f"{exc.filename or ''}: {exc.strerror}")


def _run(flags: set[str], args: list[str], config_dir: str | None,
         overrides: dict[str, str]) -> int:
    """_run - dispatch on the mode flags."""
    editing = flags & {"-e", "-X", "-#"}
    if len(editing) > 1:
        raise UsageError("specify only one of -e, -X, -#")
    modes = flags & {"-M", "-F", "-P"}
    if len(modes) > 1:
        raise UsageError("specify only one of -M, -F, -P")
    if editing and not modes:
        return _edit_main(resolve_config_dir(config_dir), editing.pop(), args)
    cfg = load_config(config_dir)
    if overrides:
        cfg = cfg.derive(overrides)
    for w in cfg.warnings:
        warn(w)
    if "-M" in modes:
        return _master_mode(cfg, flags, args)
    if "-F" in modes:
        return _fields_mode(cfg, flags, args)
    if "-P" in modes:
        return _params_mode(cfg, flags, args)
    return _show_main(cfg, flags, args)


# main.cf ----------------------------------------------------------------

def _show_value(cfg: Config, name: str, flags: set[str]) -> str | None:
    """_show_value - the value of name to print, per -d/-x."""
    if "-d" in flags:
        value = cfg.default(name)
        if value is not None and "-x" in flags:
            value = cfg.expand(value, name)
        return value
    if "-x" in flags:
        return cfg.get(name)
    return cfg.raw(name)


def _print(name: str, value: str, flags: set[str]) -> None:
    """_print - one "name = value" line (or the value alone with -h)."""
    if "-h" in flags:
        print(value)
    else:
        print(f"{name} = {value}" if value else f"{name} =")


def _show_main(cfg: Config, flags: set[str], args: list[str]) -> int:
    """_show_main - print parameters (postconf, -d, -n, names...)."""
    status = 0
    if args:
        names = args
    elif "-n" in flags:
        names = sorted(cfg.explicit)
    else:
        used = used_names(cfg)
        names = sorted(set(PARAMS) | {n for n in cfg.explicit
                                      if n in used or lookup_param(n) is not None})
    for name in names:
        if "-n" in flags and not cfg.is_set(name):
            continue
        if not cfg.is_known(name):
            warn(f"{name}: unknown parameter")
            status = 0
            continue
        value = _show_value(cfg, name, flags)
        if value is None:
            warn(f"{name}: unknown parameter")
            continue
        _print(name, value, flags)
    report_unused(cfg)
    return status


def used_names(cfg: Config) -> set[str]:
    """used_names - parameter names referenced from main.cf values or master.cf."""
    used: set[str] = set()
    texts = list(cfg.explicit.values())
    try:
        for e in cfg.master_entries():
            used.update(e.overrides)
            texts.extend(e.overrides.values())
            texts.extend(e.args)
    except ConfigError:
        pass
    for text in texts:
        for m in _REF.finditer(text):
            used.add(m.group(1) or m.group(2))
    return used


def report_unused(cfg: Config) -> None:
    """report_unused - warn about user-defined main.cf parameters nobody uses."""
    used = used_names(cfg)
    for name, value in cfg.explicit.items():
        if lookup_param(name) is None and name not in used:
            file, line = cfg.where(name)
            where = f"{file}, line {line}" if line else f"{file}"
            warn(f"{where}: unused parameter: {name}={value}")


def _edit_main(config_dir: str, mode: str, args: list[str]) -> int:
    """_edit_main - -e name=value..., -X name..., -# name..."""
    path = f"{config_dir}/main.cf"
    settings: dict[str, str | None] = {}
    for arg in args:
        if mode == "-e":
            name, eq, value = arg.partition("=")
            name = name.strip()
            if not eq or not name or any(c.isspace() for c in name):
                raise UsageError(f'-e requires name=value input, got: "{arg}"')
            settings[name] = " ".join(value.strip().splitlines())
        else:
            if "=" in arg:
                raise UsageError(f'{mode} requires parameter names without "=value", got: "{arg}"')
            settings[arg.strip()] = None
    if not settings:
        raise UsageError(f"{mode} requires at least one argument")
    for name in settings:
        if mode == "-e" and lookup_param(name) is None:
            warn(f"{name}: unknown parameter")
    edit_main_cf(path, settings, comment=(mode == "-#"))
    return 0


# master.cf --------------------------------------------------------------

def _select(entries: list[MasterEntry], patterns: list[str]) -> list[MasterEntry]:
    """_select - the entries matching service[/type] patterns (all without)."""
    if not patterns:
        return entries
    out = []
    for pat in patterns:
        service, _, stype = pat.partition("/")
        matched = [e for e in entries if e.service == service and (not stype or e.type == stype)]
        if not matched:
            warn(f'unmatched request: "{pat}"')
        out.extend(m for m in matched if m not in out)
    return out


def _default_limit(cfg: Config) -> int:
    """_default_limit - $default_process_limit for master.cf "-"."""
    return cfg.get_int("default_process_limit")


def _master_mode(cfg: Config, flags: set[str], args: list[str]) -> int:
    """_master_mode - -M, -Me, -MX, -M#."""
    if "-e" in flags:
        for arg in args:
            key, eq, text = arg.partition("=")
            if not eq or key.count("/") != 1:
                raise UsageError(f'-Me requires service/type=entry input, got: "{arg}"')
            entry = parse_master_line(text, "command line", 1, _default_limit(cfg))
            if entry.key != key.strip():
                raise UsageError(f'-Me: entry "{entry.key}" does not match "{key}"')
            edit_master_cf(cfg.master_cf, entry.key, entry)
        return 0
    if "-X" in flags or "-#" in flags:
        for key in args:
            if not edit_master_cf(cfg.master_cf, key, None, comment="-#" in flags,
                                  default_process_limit=_default_limit(cfg)):
                warn(f'unmatched request: "{key}"')
        return 0
    for e in _select(cfg.master_entries(), args):
        text = format_entry(e, fold="-f" in flags)
        print(cfg.expand(text) if "-x" in flags else text)
    return 0


def _command_field(e: MasterEntry) -> str:
    """_command_field - command with -o options and arguments, as one field."""
    return format_entry(e).split(None, 7)[7]


def _fields_mode(cfg: Config, flags: set[str], args: list[str]) -> int:
    """_fields_mode - -F and -Fe."""
    if "-e" in flags:
        for arg in args:
            spec, eq, value = arg.partition("=")
            service, stype, fname = (spec.split("/") + ["", "", ""])[:3]
            if not eq or fname not in FIELD_NAMES:
                raise UsageError(f'-Fe requires service/type/field=value with a valid field name, got: "{arg}"')
            entry = _find(cfg, f"{service}/{stype}")
            fields = list(entry.fields)
            index = FIELD_NAMES.index(fname)
            if fname == "command":
                line = " ".join(fields[:7]) + " " + value
            else:
                if fname in ("service", "type"):
                    raise UsageError(f"-Fe cannot change the {fname} field; use -Me")
                fields[index] = value.strip()
                line = " ".join(fields) + " " + " ".join(_command_field(entry).split(None, 1)[1:])
            new = parse_master_line(line, cfg.master_cf, entry.line, _default_limit(cfg))
            edit_master_cf(cfg.master_cf, entry.key, new)
        return 0
    for spec in args or [""]:
        parts = spec.split("/") if spec else []
        field_filter = parts[2] if len(parts) > 2 else None
        if field_filter is not None and field_filter not in FIELD_NAMES:
            warn(f'unmatched request: "{spec}"')
            continue
        for e in _select(cfg.master_entries(), ["/".join(parts[:2])] if parts else []):
            values = e.fields[:7] + [_command_field(e)]
            for fname, value in zip(FIELD_NAMES, values, strict=True):
                if field_filter in (None, fname):
                    value = cfg.expand(value) if "-x" in flags else value
                    _print(f"{e.key}/{fname}", value, flags)
    return 0


def _find(cfg: Config, key: str) -> MasterEntry:
    """_find - the master.cf entry with this service/type."""
    for e in cfg.master_entries():
        if e.key == key:
            return e
    raise UsageError(f'unmatched request: "{key}"')


def _params_mode(cfg: Config, flags: set[str], args: list[str]) -> int:
    """_params_mode - -P, -Pe, -PX."""
    if "-e" in flags or "-X" in flags:
        for arg in args:
            spec, eq, value = arg.partition("=")
            parts = spec.split("/")
            if len(parts) != 3 or ("-e" in flags) != bool(eq):
                raise UsageError(f'bad service/type/name{"=value" if "-e" in flags else ""}: "{arg}"')
            entry = _find(cfg, "/".join(parts[:2]))
            if "-e" in flags:
                entry.overrides[parts[2]] = value.strip()
            elif entry.overrides.pop(parts[2], None) is None:
                warn(f'unmatched request: "{arg}"')
                continue
            edit_master_cf(cfg.master_cf, entry.key, entry)
        return 0
    for spec in args or [""]:
        parts = spec.split("/") if spec else []
        pname = parts[2] if len(parts) > 2 else None
        for e in _select(cfg.master_entries(), ["/".join(parts[:2])] if parts else []):
            for name, value in e.overrides.items():
                if pname in (None, name):
                    value = cfg.expand(value) if "-x" in flags else value
                    _print(f"{e.key}/{name}", value, flags)
    return 0
