"""Shared helpers for the table tests: run Postfix's postmap and Postel's tables."""

from __future__ import annotations

import os
import subprocess
import tempfile

from postel.tables import LookupFlags, close_all, open_table

_PFCONF = None


def pf_config() -> str:
    """pf_config - a private, empty Postfix config dir for postmap -c."""
    global _PFCONF
    if _PFCONF is None:
        _PFCONF = tempfile.mkdtemp(prefix="pfconf-")
        with open(os.path.join(_PFCONF, "main.cf"), "w") as fp:
            fp.write("smtputf8_enable = no\n")
        # Postfix waits while main.cf is less than a second old; age it.
        os.utime(os.path.join(_PFCONF, "main.cf"), (1_000_000_000, 1_000_000_000))
    return _PFCONF


def postfix_query(postmap: str, spec: str, keys: list[str], *extra: str) -> dict[str, str]:
    """postfix_query - {key: value} from "postmap -q - spec" for keys."""
    proc = subprocess.run([postmap, "-c", pf_config(), *extra, "-q", "-", spec],
                          input="".join(k + "\n" for k in keys).encode(),
                          capture_output=True, timeout=60)
    out: dict[str, str] = {}
    for line in proc.stdout.decode("utf-8", "surrogateescape").splitlines():
        key, _, value = line.partition("\t")
        out.setdefault(key, value)
    return out


def postel_query(spec: str, keys: list[str], flags=LookupFlags.FOLD_FIX) -> dict[str, str]:
    """postel_query - {key: value} from Postel's table for keys."""
    close_all()
    table = open_table(spec, flags)
    out: dict[str, str] = {}
    for key in keys:
        value = table.lookup(key)
        if value is not None:
            out.setdefault(key, value)
    return out
