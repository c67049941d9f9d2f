"""edit - in-place editing of main.cf and master.cf

SYNOPSIS
    from postel.config.edit import edit_main_cf, edit_master_cf, write_atomic

DESCRIPTION
    The editing half of postconf(1) -e, -X, -#, -Me, -MX, -M#, -Fe, -Pe,
    -PX.  Comments, blank lines and the order of everything that is not
    edited are kept.  A parameter that is set replaces its first definition
    (later duplicate definitions are removed); a new one is appended.  A
    master.cf entry that is edited is rewritten in postconf -Mf's layout.

    Files are replaced atomically: the new text goes to a temporary file in
    the same directory, which is fsync()ed and renamed over the old one
    (keeping its permissions), and the directory is fsync()ed.
"""

from __future__ import annotations

import os
import tempfile

from postel.config.errors import ConfigError
from postel.config.master import MasterEntry, parse_master_line


def write_atomic(path: str, text: str) -> None:
    """write_atomic - replace path with text: temp file, fsync, rename."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        mode = os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o644
    fd, tmp = tempfile.mkstemp(prefix=".postconf.", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    dfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _read(path: str) -> list[str]:
    """_read - the physical lines of a file, newline kept ([] when missing)."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            return f.readlines()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ConfigError(f"open {path}: {exc.strerror}") from None


def logical_ranges(lines: list[str]) -> list[tuple[int, int]]:
    """logical_ranges - (first, last+1) physical-line index ranges of logical lines.

    Comment and blank lines inside a continued entry belong to it only when
    more continuation text follows them."""
    ranges: list[tuple[int, int]] = []
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if line[0].isspace():
            if ranges:
                ranges[-1] = (ranges[-1][0], i + 1)
            continue
        ranges.append((i, i + 1))
    return ranges


def _entry_name(line: str) -> str:
    """_entry_name - the parameter name of a main.cf logical line."""
    return line.partition("=")[0].strip()


def edit_main_cf(path: str, settings: dict[str, str | None], *, comment: bool = False) -> None:
    """edit_main_cf - set (value), remove (None) or comment out parameters."""
    lines = _read(path)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    replaced: set[str] = set()
    out: list[str] = []
    pos = 0
    for first, last in logical_ranges(lines):
        out.extend(lines[pos:first])
        pos = last
        name = _entry_name(lines[first])
        if name not in settings:
            out.extend(lines[first:last])
            continue
        value = settings[name]
        if comment:
            out.extend("#" + ln for ln in lines[first:last])
        elif value is not None and name not in replaced:
            out.append(f"{name} = {value}\n")
        replaced.add(name)
    out.extend(lines[pos:])
    if not comment:
        for name, value in settings.items():
            if value is not None and name not in replaced:
                out.append(f"{name} = {value}\n")
    write_atomic(path, "".join(out))


def format_entry(entry: MasterEntry, fold: bool = False) -> str:
    """format_entry - one master.cf entry in postconf -M layout (no newline)."""
    f = entry.fields
    head = (f"{f[0]:<10} {f[1]:<5} {f[2]:<7} {f[3]:<7} {f[4]:<7} {f[5]:<7} {f[6]:<7} {f[7]}")
    words = [(f"-o {{ {n} = {v} }}" if (not v or any(c.isspace() for c in v)) else f"-o {n}={v}")
             for n, v in entry.overrides.items()]
    words += [("{ %s }" % a) if (not a or any(c.isspace() for c in a)) else a for a in entry.args]
    if not words:
        return head
    if fold:
        return head + "".join("\n    " + w for w in words)
    return head + " " + " ".join(words)


def edit_master_cf(path: str, key: str, new: MasterEntry | None, *, comment: bool = False,
                   default_process_limit: int = 100) -> bool:
    """edit_master_cf - replace/append (new), delete (None) or comment out entry key.

    Returns False when a delete/comment request matched no entry."""
    lines = _read(path)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    out: list[str] = []
    pos = 0
    found = False
    for first, last in logical_ranges(lines):
        out.extend(lines[pos:first])
        pos = last
        text = "".join(ln.rstrip("\r\n") for ln in lines[first:last])
        try:
            entry = parse_master_line(text, path, first + 1, default_process_limit)
            this_key = entry.key
        except ConfigError:
            this_key = None
        if this_key != key:
            out.extend(lines[first:last])
            continue
        found = True
        if comment:
            out.extend("#" + ln for ln in lines[first:last])
        elif new is not None:
            out.append(format_entry(new, fold=True) + "\n")
    out.extend(lines[pos:])
    if not found and new is not None and not comment:
        out.append(format_entry(new, fold=True) + "\n")
    if found or new is not None:
        write_atomic(path, "".join(out))
    return found or new is not None
