"""postmap - Postel lookup table management

SYNOPSIS
    postel map [-bfFhimnNoprsuUvw] [-c config_dir] [-d key] [-q key]
               [file_type:]file_name ...

DESCRIPTION
    Creates, queries or updates lookup tables, as postmap(1).  Without -q,
    -s or -d, each named source file is turned into the indexed table
    file_name.lmdb (types lmdb:, hash: and btree:, which Postel stores in one
    format; see docs/tables.md).  The new file is written next to the old
    one and renamed into place, so that a reader never sees a half-built
    table.

    -q key     print the first value found for key in the named tables; exit
               status 1 when not found.  "-q -" reads keys from stdin and
               prints "key<TAB>value" for each key found; exit status 0 when
               at least one key was found.  Works with every table type.
    -s         print every "key<TAB>value" of each table.
    -d key     delete key ("-d -": keys from stdin) from each table.
    -i         incremental: add entries read from stdin to an existing table.
    -f         do not fold keys to lower case.
    -F         querying/listing: base64-decode values; building: each value
               is a list of file names whose contents (newline between files)
               are stored base64-encoded.
    -N, -n     store keys and values with (-N, the default) or without (-n)
               a terminating null byte.  A lookup accepts both.
    -r, -w     on a duplicate key: replace silently (-r) or keep the first
               entry silently (-w); the default keeps the first and warns.
    -h, -b     with "-q -": the keys are the header lines (-h, continuation
               lines joined with a newline) or body lines (-b) of a message
               read from stdin.  -m (MIME parsing) is accepted and ignored:
               attachments are not parsed.  XXX
    -o, -p     -o is accepted (Postel never changes file ownership); -p
               creates new files with mode 0644 instead of the source's mode.
    -u, -U, -v accepted; no effect.

DIAGNOSTICS
    Messages go to stderr as "postel/postmap: warning: FILE, line N: ...",
    in Postfix's words.  The exit status is 0 on success.  A table is still
    built when some source lines are bad (as Postfix does), but then the
    exit status is 1, so that a script notices the skipped lines.  Duplicate
    keys are only warnings.  Fatal errors exit with status 1 and change no
    table.

CONFIGURATION PARAMETERS
    default_database_type (lmdb)   type used when file_type is omitted
"""

from __future__ import annotations

import base64
import getopt
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from postel import log
from postel.tables import LookupFlags, TableError, open_table, split_spec
from postel.tables.indexed import open_writer
from postel.tables.source import Entry, parse_aliases, parse_postmap

BUILDABLE = ("lmdb", "hash", "btree")


class Fatal(Exception):
    """A problem that ends the command with exit status 1."""


@dataclass(slots=True)
class Options:
    """Options - the parsed command line."""

    query: str | None = None
    delete: str | None = None
    dump: bool = False
    incremental: bool = False
    fold: bool = True
    base64: bool = False
    null: bool | None = None
    dup: LookupFlags = LookupFlags.DUP_WARN
    header_mode: bool = False
    body_mode: bool = False
    plain_mode: bool = False
    init_aliases: bool = False
    config_dir: str | None = None
    maps: list[str] = field(default_factory=list)


def parse_args(prog: str, argv: list[str], config_dir: str | None, extra: str = "") -> Options:
    """parse_args - Options from argv; Fatal on a bad option."""
    try:
        opts, args = getopt.getopt(argv, "bc:d:fFhimnNopq:rsuUvw" + extra)
    except getopt.GetoptError as exc:
        raise Fatal(f"usage: {prog} [-Nfinoprsvw] [-c config_dir] [-d key] [-q key] "
                    f"[map_type:]file... ({exc.msg})") from None
    o = Options(config_dir=config_dir or os.environ.get("MAIL_CONFIG"), maps=args)
    for opt, val in opts:
        if opt == "-c":
            o.config_dir = val
        elif opt == "-d":
            o.delete = val
        elif opt == "-q":
            o.query = val
        elif opt == "-s":
            o.dump = True
        elif opt == "-i":
            o.incremental = True
        elif opt == "-f":
            o.fold = False
        elif opt == "-F":
            o.base64 = True
        elif opt == "-N":
            o.null = True
        elif opt == "-n":
            o.null = False
        elif opt == "-r":
            o.dup = LookupFlags.DUP_REPLACE
        elif opt == "-w":
            o.dup = LookupFlags.DUP_IGNORE
        elif opt == "-h":
            o.header_mode = True
        elif opt == "-b":
            o.body_mode = True
        elif opt == "-p":
            o.plain_mode = True
        elif opt == "-I":
            o.init_aliases = True
    if sum(bool(x) for x in (o.query is not None, o.delete is not None, o.dump)) > 1:
        raise Fatal("specify only one of -s -q or -d")
    return o


def config_value(config_dir: str | None, name: str, default: str) -> str:
    """config_value - a main.cf parameter, or default when there is no config."""
    try:
        from postel.config import load_config  # type: ignore[attr-defined]
    except ImportError:
        return default
    try:
        value = load_config(config_dir).get(name)
    except Exception:  # noqa: BLE001 - a broken main.cf must not stop table work
        return default
    return value if isinstance(value, str) and value else default


def table_flags(o: Options) -> LookupFlags:
    """table_flags - LookupFlags from the options."""
    flags = o.dup
    if o.fold:
        flags |= LookupFlags.FOLD_FIX
    if o.null is False:
        flags |= LookupFlags.TRY0NULL
    elif o.null is True:
        flags |= LookupFlags.TRY1NULL
    return flags


def with_type(spec: str, default_type: str) -> tuple[str, str]:
    """with_type - (type, name), adding the default type to a bare file name."""
    if ":" in spec and not spec.startswith("/"):
        return split_spec(spec)
    return default_type, spec


class Reporter:
    """Reporter - counts problems and logs them in Postfix's words."""

    def __init__(self) -> None:
        self.syntax_errors = 0

    def line_warning(self, path: str) -> Callable[[int | None, str], None]:
        """line_warning - a warn(line, msg) function for source file path."""
        def warn(line: int | None, msg: str) -> None:
            if line is None or not msg.startswith("duplicate"):
                self.syntax_errors += 1
            where = f", line {line}" if line else ""
            log.warning("%s%s: %s", path, where, msg)
        return warn


def read_source(path: str, stream=None) -> list[str]:
    """read_source - the lines of a source file (or stream)."""
    if stream is not None:
        return stream.readlines()
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as fp:
            return fp.readlines()
    except OSError as exc:
        raise Fatal(f"open {path}: {exc.strerror}") from None


def base64_files(value: str, where: str) -> str:
    """base64_files - postmap -F: the base64 of the named files' contents."""
    chunks = []
    for name in value.replace(",", " ").split():
        try:
            with open(name, "rb") as fp:
                chunks.append(fp.read())
        except OSError as exc:
            raise Fatal(f"{where}: open {name}: {exc.strerror}") from None
    return base64.b64encode(b"\n".join(chunks)).decode("ascii")


Parser = Callable[[Iterable[str], Callable], Iterator[Entry]]


def build(spec_type: str, name: str, o: Options, rep: Reporter, parser: Parser,
          extra: list[tuple[str, str]] | None = None, stream=None) -> None:
    """build - create (or with -i, update) table name from its source."""
    if spec_type not in BUILDABLE:
        raise Fatal(f"unsupported dictionary type: {spec_type} does not support "
                    "bulk-mode creation.")
    label = "-" if stream is not None else name
    lines = read_source(name, stream)
    warn = rep.line_warning(label)
    flags = table_flags(o)
    entries: list[tuple[str, str]] = []
    for entry in parser(lines, warn):
        key = entry.key.lower() if o.fold else entry.key
        value = entry.value
        if o.base64:
            value = base64_files(value, f"{label}, line {entry.line}")
        entries.append((key, value))
    if not o.incremental:
        entries.extend(extra or [])
    mode = 0o644
    if not o.plain_mode:
        try:
            mode = os.stat(name).st_mode & 0o666 if stream is None else 0o644
        except OSError:
            mode = 0o644
    try:
        writer = open_writer(name, flags, incremental=o.incremental, mode=mode)
    except TableError as exc:
        raise Fatal(str(exc)) from None
    try:
        writer.put_all(entries, lambda msg: log.warning("%s:%s: %s", spec_type, name, msg))
        writer.commit()
    except BaseException:
        writer.abort()
        raise


def open_for_query(spec: str, o: Options, default_type: str):
    """open_for_query - the open table for a -q/-s/-d argument."""
    type_name, name = with_type(spec, default_type)
    flags = LookupFlags.FOLD_FIX if o.fold else LookupFlags.NONE
    try:
        return open_table(f"{type_name}:{name}", flags, cache=False)
    except TableError as exc:
        raise Fatal(str(exc)) from None


def decode_value(value: str, o: Options) -> str:
    """decode_value - the value as printed (base64-decoded with -F)."""
    if not o.base64:
        return value
    try:
        return base64.b64decode(value, validate=True).decode("utf-8", "surrogateescape")
    except ValueError:
        raise Fatal(f"malformed BASE64 value: {value[:40]}") from None


def message_keys(stream, header_mode: bool, body_mode: bool) -> Iterator[str]:
    """message_keys - keys from a message on stream for postmap -h / -b."""
    lines = [line.rstrip("\r\n") for line in stream]
    i = 0
    header: list[str] = []
    while i < len(lines) and lines[i] != "":
        line = lines[i]
        if line[:1] in (" ", "\t") and header:
            header[-1] += "\n" + line
        else:
            header.append(line)
        i += 1
    if header_mode:
        yield from header
    if body_mode:
        yield from lines[i + 1:]


def query(o: Options, default_type: str, out, show_key_sep: str = "\t",
          key_suffix: str = "") -> int:
    """query - postmap -q: 0 when found, 1 when not."""
    from postel.tables import TableUnavailable
    tables = [open_for_query(m, o, default_type) for m in o.maps]

    def find(key: str) -> str | None:
        for table in tables:
            try:
                value = table.lookup(key)
            except TableUnavailable:
                raise Fatal(f"table {table.spec}: query error") from None
            if value is not None:
                return decode_value(value, o)
        return None
    if o.query != "-":
        value = find(o.query)
        if value is None:
            return 1
        out.write(value + "\n")
        return 0
    if o.header_mode or o.body_mode:
        keys: Iterable[str] = message_keys(sys.stdin, o.header_mode, o.body_mode)
    else:
        keys = (line.rstrip("\r\n") for line in sys.stdin)
    found = False
    for key in keys:
        value = find(key)
        if value is not None:
            found = True
            out.write(f"{key}{key_suffix}{show_key_sep}{value}\n")
    return 0 if found else 1


def dump(o: Options, default_type: str, out, key_suffix: str = "") -> int:
    """dump - postmap -s."""
    for spec in o.maps:
        table = open_for_query(spec, o, default_type)
        try:
            for key, value in table.sequence():
                out.write(f"{key}{key_suffix}\t{decode_value(value, o)}\n")
        except TableError as exc:
            raise Fatal(str(exc)) from None
    return 0


def delete(o: Options, default_type: str) -> int:
    """delete - postmap -d: 0 when a key was found and removed."""
    keys = [line.rstrip("\r\n") for line in sys.stdin] if o.delete == "-" else [o.delete]
    found = False
    for spec in o.maps:
        type_name, name = with_type(spec, default_type)
        if type_name not in BUILDABLE:
            raise Fatal(f"unsupported dictionary type for -d: {type_name}")
        incremental = Options(incremental=True, fold=o.fold, null=o.null, dup=o.dup)
        try:
            writer = open_writer(name, table_flags(incremental), incremental=True)
        except TableError as exc:
            raise Fatal(str(exc)) from None
        try:
            for key in keys:
                found |= writer.delete(key.lower() if o.fold else key)
            writer.commit()
        except BaseException:
            writer.abort()
            raise
    return 0 if found else 1


def run(prog: str, argv: list[str], config_dir: str | None, parser: Parser,
        key_suffix: str = "", extra_entries: list[tuple[str, str]] | None = None) -> int:
    """run - the shared body of postel map and postel alias."""
    log.init(prog, stderr=True, use_syslog=False)
    try:
        o = parse_args(prog, argv, config_dir, extra="I" if prog == "postalias" else "")
        default_type = config_value(o.config_dir, "default_database_type", "lmdb")
        if not o.maps and o.init_aliases:
            o.maps = [m for m in config_value(o.config_dir, "alias_database",
                                                        "hash:/etc/aliases").replace(
                ",", " ").split() if m]
        if not o.maps:
            raise Fatal(f"usage: {prog} [-Nfinoprsvw] [-c config_dir] [-d key] [-q key] "
                        "[map_type:]file...")
        if o.query is not None:
            return query(o, default_type, sys.stdout, key_suffix=key_suffix)
        if o.dump:
            return dump(o, default_type, sys.stdout, key_suffix=key_suffix)
        if o.delete is not None:
            return delete(o, default_type)
        rep = Reporter()
        for spec in o.maps:
            type_name, name = with_type(spec, default_type)
            build(type_name, name, o, rep, parser, extra=extra_entries,
                  stream=sys.stdin if o.incremental else None)
        return 1 if rep.syntax_errors else 0
    except (Fatal, TableError) as exc:
        try:
            log.fatal("%s", exc)
        except log.FatalError:
            return 1
    return 1


def main(argv: list[str], config_dir: str | None) -> int:
    """main - postel map."""
    return run("postmap", argv, config_dir, parse_postmap)


__all__ = ["main", "run", "parse_aliases"]
