"""errors - the configuration error type

SYNOPSIS
    from postel.config import ConfigError
    raise ConfigError("bad boolean configuration: maybe", file=path, line=12, param="biff")

DESCRIPTION
    One exception for every problem with main.cf or master.cf.  Its text is
    what an administrator sees: "FILE, line N: parameter NAME: message",
    with the parts that are unknown left out.
"""

from __future__ import annotations


class ConfigError(Exception):
    """A problem with main.cf, master.cf or a parameter value."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 param: str | None = None) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.param = param
        super().__init__(format_where(file, line, param) + message)


def format_where(file: str | None, line: int | None, param: str | None) -> str:
    """format_where - the "FILE, line N: parameter NAME: " prefix."""
    parts = ""
    if file:
        parts = f"{file}, line {line}: " if line else f"{file}: "
    if param:
        parts += f"parameter {param}: "
    return parts
