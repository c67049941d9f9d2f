"""Postel - a mail transfer agent in Python with the architecture of Postfix.

SYNOPSIS
    from postel import lazy_import

    asyncio = lazy_import("asyncio", globals())

DESCRIPTION
    lazy_import() lets a module that a short-lived command imports (the
    IPC codec, the service client) name a heavy module at top level without
    paying for it at start-up: when the module is already imported (every
    daemon has asyncio loaded), it is returned as is; otherwise a stand-in
    imports it on first attribute access and puts the real module in the
    caller's globals in its place, so later uses cost nothing extra.
"""

import sys

__version__ = "0.1.0"


class _LazyModule:
    """Stand-in for a module not yet imported (see lazy_import)."""

    __slots__ = ("_name", "_globals", "_as")

    def __init__(self, name: str, globals_: dict, as_: str) -> None:
        self._name = name
        self._globals = globals_
        self._as = as_

    def __getattr__(self, attr: str):
        __import__(self._name)
        module = sys.modules[self._name]
        if self._globals.get(self._as) is self:
            self._globals[self._as] = module
        return getattr(module, attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}>"


def lazy_import(name: str, globals_: dict, as_: str | None = None):
    """lazy_import - the module name, or a stand-in that imports it on first use."""
    module = sys.modules.get(name)
    if module is not None:
        return module
    return _LazyModule(name, globals_, as_ or name)
