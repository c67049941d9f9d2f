"""DESIGN.md section 5: a library never imports a daemon or a command; no daemon imports another.

The rule is checked on the source with ast (imports inside functions count too), so that it
stays enforced: a daemon reaches another daemon through a socket, and code that two daemons
share lives in a library package (deliver, ipc, mail, queue, tables, ...).
"""

from __future__ import annotations

import ast
import pathlib

import postel

SRC = pathlib.Path(postel.__file__).parent

# One package per service (Postfix's src/<program>), plus master, the supervisor.
DAEMONS = frozenset({
    "anvil", "bounce", "cleanup", "discard", "dnsblog", "error", "flush", "lmtp", "local",
    "master", "pickup", "pipe", "postlogd", "postscreen", "proxymap", "qmgr", "qmqpd",
    "scache", "showq", "smtp", "smtpd", "spawn", "tlsmgr", "tlsproxy", "trivial_rewrite",
    "verify", "virtual",
})
COMMANDS = "commands"

# `postel start-fg` runs the master in the foreground, as `postfix start-fg` execs master(8):
# the command *is* the master there.  The master itself loads each service's module by name
# with importlib (no import statement), which this walk does not see.
ALLOWED = {("commands/control.py", "master")}


def _package(path: pathlib.Path) -> str:
    """_package - the top-level postel package of a source file ("log" for log.py)."""
    return path.relative_to(SRC).parts[0].removesuffix(".py")


def _imported(tree: ast.AST) -> list[tuple[int, str]]:
    """_imported - (line, module) of every absolute postel import, "from" names included."""
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
            out.extend((node.lineno, f"{node.module}.{a.name}") for a in node.names)
    return [(line, mod) for line, mod in out if mod.startswith("postel.")]


def violations() -> list[str]:
    """violations - "file:line: imports module" for every import that breaks the layering."""
    bad = []
    for path in sorted(SRC.rglob("*.py")):
        pkg = _package(path)
        rel = path.relative_to(SRC).as_posix()
        for line, mod in _imported(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            target = mod.split(".")[1]
            if target == pkg or (rel, target) in ALLOWED:
                continue
            if target in DAEMONS or (target == COMMANDS and pkg != COMMANDS):
                bad.append(f"src/postel/{rel}:{line}: imports {mod}")
    return sorted(set(bad))


def test_no_cross_daemon_imports():
    assert violations() == []


def test_checker_sees_violations(tmp_path, monkeypatch):
    """The checker itself finds a daemon import in a library and between daemons."""
    for rel, text in (("mail/bad.py", "from postel.smtpd.service import x\n"),
                      ("smtp/bad.py", "def f():\n    import postel.local.service\n"),
                      ("queue/bad.py", "from postel.commands import main\n")):
        (tmp_path / rel).parent.mkdir(exist_ok=True)
        (tmp_path / rel).write_text(text)
    monkeypatch.setitem(globals(), "SRC", tmp_path)
    assert violations() == ["src/postel/mail/bad.py:1: imports postel.smtpd.service",
                            "src/postel/mail/bad.py:1: imports postel.smtpd.service.x",
                            "src/postel/queue/bad.py:1: imports postel.commands",
                            "src/postel/queue/bad.py:1: imports postel.commands.main",
                            "src/postel/smtp/bad.py:2: imports postel.local.service"]
