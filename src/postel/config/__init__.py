"""config - main.cf and master.cf for every Postel program

SYNOPSIS
    from postel.config import load_config, Config, ConfigError, MasterEntry
    cfg = load_config()                 # $MAIL_CONFIG or /etc/postel
    cfg.get("myhostname"); cfg.get_time("smtpd_timeout"); cfg.master_entries()

DESCRIPTION
    load_config(config_dir) reads config_dir/main.cf (it must exist) and
    returns a Config.  master.cf is read the first time master_entries() is
    called.  Nothing else in Postel parses these files.

    Values: get() returns a value with every $name expanded (see
    postel.config.expand), from main.cf when it is set there, else the
    registry default (postel.config.params).  Typed readers convert and
    check the value, and raise ConfigError naming the file, line and
    parameter:

      get_int   decimal integer, within the parameter's min/max
      get_bool  yes/no/true/false, any case
      get_time  seconds (float); units s m h d w, a bare number takes the
                parameter's default unit
      get_size  decimal integer (bytes)
      get_list  words split on whitespace and commas, { } grouping

    A name that is neither declared nor set raises KeyError: that is a bug
    in the caller.  A name set in main.cf (or through derive(), i.e.
    master.cf -o) but not declared is a user-defined parameter and has its
    value, as in Postfix.

    derive(overrides) returns a copy with master.cf "-o name=value"
    settings applied on top of main.cf; expansion sees them.

CONFIGURATION PARAMETERS
    config_directory (/etc/postel)   where main.cf and master.cf live
    default_process_limit (100)      maxproc of master.cf entries with "-"

ENVIRONMENT
    MAIL_CONFIG     configuration directory when none is given
"""

from __future__ import annotations

import os
import re

from postel.config import params as _params
from postel.config.errors import ConfigError
from postel.config.expand import ExpandError, expand
from postel.config.params import BOOL, COMPUTED, INT, SIZE, TIME, Param, lookup_param
from postel.config.parser import parse_main_cf, split_list

TYPE_CHECKING = False      # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from postel.config.master import MasterEntry
    from postel.config.params import PARAMS

__all__ = ["load_config", "Config", "ConfigError", "MasterEntry", "DEFAULT_CONFIG_DIR",
           "PARAMS", "Param", "lookup_param"]

DEFAULT_CONFIG_DIR = "/etc/postel"

_TIME_RE = re.compile(r"^(\d+)([smhdw]?)$", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def __getattr__(name: str):
    """__getattr__ - MasterEntry and PARAMS, imported or built when first asked for (PEP 562).

    A command that reads a few parameters (postqueue, sendmail) needs
    neither master.cf's parser nor the whole parameter table."""
    if name == "MasterEntry":
        from postel.config.master import MasterEntry
        value = MasterEntry
    elif name == "PARAMS":
        value = _params.PARAMS
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def resolve_config_dir(config_dir: str | None = None) -> str:
    """resolve_config_dir - config_dir, else $MAIL_CONFIG, else /etc/postel."""
    return config_dir or os.environ.get("MAIL_CONFIG") or DEFAULT_CONFIG_DIR


def load_config(config_dir: str | None = None) -> Config:
    """load_config - read config_dir/main.cf into a Config."""
    directory = resolve_config_dir(config_dir)
    path = os.path.join(directory, "main.cf")
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            text = f.read()
    except OSError as exc:
        raise ConfigError(f"open {path}: {exc.strerror}") from None
    warnings: list[str] = []
    entries = parse_main_cf(text, path, warnings)
    explicit: dict[str, str] = {}
    lines: dict[str, tuple[str, int]] = {}
    for e in entries:
        explicit[e.name] = e.value
        lines[e.name] = (path, e.line)
    cfg = Config(directory, explicit, lines)
    cfg.warnings = warnings
    return cfg


class Config:
    """The parameters of one Postel instance (main.cf plus defaults)."""

    def __init__(self, config_directory: str, explicit: dict[str, str],
                 where: dict[str, tuple[str, int]] | None = None) -> None:
        self.config_directory = os.path.abspath(config_directory)
        self.explicit = dict(explicit)
        self._where = dict(where or {})
        self._cache: dict[str, str] = {}
        self._master: list[MasterEntry] | None = None
        self.warnings: list[str] = []
        self.undefined: set[str] = set()

    @property
    def main_cf(self) -> str:
        """main_cf - the path of main.cf."""
        return os.path.join(self.config_directory, "main.cf")

    @property
    def master_cf(self) -> str:
        """master_cf - the path of master.cf."""
        return os.path.join(self.config_directory, "master.cf")

    def where(self, name: str) -> tuple[str | None, int | None]:
        """where - (file, line) where name was set, or (main.cf, None) for a default."""
        return self._where.get(name, (self.main_cf, None))

    def is_set(self, name: str) -> bool:
        """is_set - whether name is set explicitly (main.cf or derive())."""
        return name in self.explicit

    def is_known(self, name: str) -> bool:
        """is_known - whether name is declared (or per-transport) or set."""
        return name in self.explicit or lookup_param(name) is not None

    def default(self, name: str) -> str | None:
        """default - the unexpanded registry default of name, or None."""
        if name == "config_directory":
            return self.config_directory
        if name in COMPUTED:
            from postel.config.defaults import computed_default
            return computed_default(name, self.get)
        p = lookup_param(name)
        return None if p is None else p.default

    def raw(self, name: str) -> str | None:
        """raw - the unexpanded value of name, or None when it is undefined."""
        if name in self.explicit:
            return self.explicit[name]
        return self.default(name)

    def get(self, name: str) -> str:
        """get - the fully $-expanded value of name."""
        cached = self._cache.get(name)
        if cached is not None:
            return cached
        value = self.raw(name)
        if value is None:
            raise KeyError(name)
        p = lookup_param(name)
        if p is None or not p.raw:
            value = self.expand(value, name)
        self._cache[name] = value
        return value

    def expand(self, text: str, name: str | None = None) -> str:
        """expand - expand $references in text with this configuration's values."""
        try:
            return expand(text, self.raw, undefined=self.undefined)
        except ExpandError as exc:
            file, line = self.where(name) if name else (self.main_cf, None)
            raise ConfigError(str(exc), file=file, line=line, param=name) from None

    def _bad(self, name: str, message: str) -> ConfigError:
        """_bad - a ConfigError about the value of name."""
        file, line = self.where(name)
        return ConfigError(message, file=file, line=line, param=name)

    def _param(self, name: str) -> Param | None:
        """_param - the declaration of name (None for user-defined names)."""
        return lookup_param(name)

    def _check_range(self, name: str, number: int) -> None:
        """_check_range - enforce the parameter's min/max."""
        p = self._param(name)
        if p is None:
            return
        if p.min is not None and number < p.min:
            raise self._bad(name, f"invalid value {number} (minimum {p.min})")
        if p.max is not None and number > p.max:
            raise self._bad(name, f"invalid value {number} (maximum {p.max})")

    def get_int(self, name: str) -> int:
        """get_int - a decimal integer parameter."""
        value = self.get(name).strip()
        if not re.fullmatch(r"[-+]?\d+", value):
            raise self._bad(name, f'bad numerical configuration: "{value}"')
        number = int(value)
        self._check_range(name, number)
        return number

    def get_size(self, name: str) -> int:
        """get_size - a size in bytes (a plain decimal integer, as in Postfix)."""
        value = self.get(name).strip()
        if not value.isdigit():
            raise self._bad(name, f'bad size configuration: "{value}" (expected a number of bytes)')
        number = int(value)
        self._check_range(name, number)
        return number

    def get_bool(self, name: str) -> bool:
        """get_bool - yes/no (true/false accepted), any case."""
        value = self.get(name).strip().lower()
        if value in ("yes", "true"):
            return True
        if value in ("no", "false"):
            return False
        raise self._bad(name, f'bad boolean configuration: "{self.get(name)}" (expected yes or no)')

    def get_time(self, name: str) -> float:
        """get_time - a time in seconds; s m h d w units, default unit per parameter."""
        value = self.get(name).strip()
        m = _TIME_RE.match(value)
        if not m:
            raise self._bad(name, f'bad time value or unit: "{value}" (expected e.g. 30s, 5m, 1h, 2d, 1w)')
        p = self._param(name)
        unit = (m.group(2) or (p.unit if p is not None else "s")).lower()
        number = int(m.group(1))
        self._check_range(name, number)
        return float(number * _UNITS[unit])

    def get_list(self, name: str) -> list[str]:
        """get_list - the value split on whitespace and commas ({ } groups)."""
        return split_list(self.get(name))

    def derive(self, overrides: dict[str, str],
               where: tuple[str, int] | None = None) -> Config:
        """derive - a copy with master.cf -o overrides applied."""
        explicit = dict(self.explicit)
        explicit.update(overrides)
        locations = dict(self._where)
        for name in overrides:
            if where is not None:
                locations[name] = where
            else:
                locations.pop(name, None)
        copy = Config(self.config_directory, explicit, locations)
        copy._master = self._master
        copy.warnings = self.warnings
        return copy

    def master_entries(self) -> list[MasterEntry]:
        """master_entries - the entries of master.cf (parsed once)."""
        if self._master is None:
            from postel.config.master import parse_master_cf
            try:
                with open(self.master_cf, encoding="utf-8", errors="surrogateescape") as f:
                    text = f.read()
            except OSError as exc:
                raise ConfigError(f"open {self.master_cf}: {exc.strerror}") from None
            self._master = parse_master_cf(text, self.master_cf, self.get_int("default_process_limit"),
                                           self.warnings)
        return self._master

    def service_config(self, entry: MasterEntry) -> Config:
        """service_config - this configuration with entry's -o overrides applied."""
        if not entry.overrides:
            return self
        return self.derive(entry.overrides, (entry.file, entry.line))

    def names(self) -> list[str]:
        """names - every declared or explicitly set parameter, sorted."""
        return sorted(set(_params.PARAMS) | set(self.explicit))

    def validate(self) -> list[ConfigError]:
        """validate - check every explicitly set parameter against its declared kind.

        Postfix daemons find a bad value only when they read it; postel start
        and postel check call this so that a typo is reported once, with file,
        line and parameter, before any daemon starts.
        """
        readers = {INT: self.get_int, BOOL: self.get_bool, TIME: self.get_time, SIZE: self.get_size}
        problems: list[ConfigError] = []
        for name in sorted(self.explicit):
            p = lookup_param(name)
            reader = readers.get(p.kind) if p is not None else None
            try:
                if reader is not None:
                    reader(name)
                else:
                    self.get(name)
            except ConfigError as exc:
                problems.append(exc)
            except (ExpandError, KeyError, ValueError) as exc:
                problems.append(self._bad(name, str(exc)))
        return problems


# Kinds re-exported for callers that inspect Param.kind.
KIND_INT, KIND_BOOL, KIND_TIME, KIND_SIZE = INT, BOOL, TIME, SIZE
