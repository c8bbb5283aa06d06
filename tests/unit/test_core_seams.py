"""The core reaches the outside only through ports: no ``isinstance``, ``getattr`` or ``hasattr``
on an adapter in ``burst/controller.py``, ``burst/executor.py``, ``burst/daemon.py`` or
``burst/scheduling.py`` (DESIGN.md, "ports.py"). An optional capability is a Protocol that the
wiring hands over, or not; probing an adapter for one hides a dependency the ports do not show.

The check reads the source (ast). An adapter expression is a name or attribute whose last part
names an adapter (``queue``, ``self.mirror``, ``daemon.controller.queue``, ``self.providers[c]``),
or a local variable assigned from one (``worker = self.executor.mirror``). Probing domain data
(``isinstance(action, Launch)``, ``isinstance(e, QuotaError)``) is fine.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import TypeGuard

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = ("burst/controller.py", "burst/executor.py", "burst/daemon.py", "burst/scheduling.py")
PROBES = {"isinstance", "getattr", "hasattr"}
ADAPTERS = {
    "queue", "mirror", "async_mirror", "worker", "provider", "providers", "store", "notifier", "clock",
    "gang_hold", "reserving", "prewarmer", "closeables", "executor",
}


def _is_adapter(node: ast.expr, aliases: set[str]) -> bool:
    while isinstance(node, ast.Subscript | ast.Call):
        node = node.value if isinstance(node, ast.Subscript) else node.func
    if isinstance(node, ast.Name):
        return node.id in ADAPTERS or node.id in aliases
    if isinstance(node, ast.Attribute):
        return node.attr in ADAPTERS
    return False


def _probe_of_adapter(node: ast.AST, aliases: set[str]) -> TypeGuard[ast.Call]:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in PROBES
        and bool(node.args)
        and _is_adapter(node.args[0], aliases)
    )


def probes(source: str) -> list[str]:
    """``line: call`` of every probe of an adapter in ``source``."""
    found: list[str] = []
    for fn in ast.walk(ast.parse(source)):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef | ast.Module):
            continue
        aliases: set[str] = set()
        for node in ast.walk(fn):  # local names bound to an adapter (or to a probe of one)
            if isinstance(node, ast.Assign) and (
                _is_adapter(node.value, aliases) or _probe_of_adapter(node.value, aliases)
            ):
                aliases |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        for node in ast.walk(fn):
            if _probe_of_adapter(node, aliases):
                found.append(f"{node.lineno}: {ast.unparse(node)}")
    return sorted(set(found))


@pytest.mark.parametrize("path", CORE)
def test_the_core_never_probes_an_adapter(path: str) -> None:
    assert probes((ROOT / path).read_text(encoding="utf-8")) == []


# The detector is not vacuous: each probe the core used to make (issue 9) is found.
BEFORE = [
    'release = getattr(self.queue, "release_gang_hold", None)',
    "if isinstance(self.mirror, MirrorWorker): pass",
    "worker = self.executor.mirror\nif not isinstance(worker, MirrorWorker): pass",
    "if not isinstance(self.queue, ReservingQueue): pass",
    'close = getattr(self.controller.queue, "close", None)',
    'mirror = daemon.controller.executor.mirror\ninner = getattr(mirror, "mirror", mirror)\n'
    'if inner is None or not hasattr(inner, "prewarm"): pass',
    "ok = isinstance(self.providers['aws'], object)",
]


@pytest.mark.parametrize("snippet", BEFORE)
def test_the_check_finds_the_probes_the_core_used_to_make(snippet: str) -> None:
    src = "def f(self, daemon):\n" + "".join(f"    {line}\n" for line in snippet.splitlines())
    assert probes(src), snippet


def test_probing_domain_data_is_fine() -> None:
    src = (
        "def f(self, action, e, a):\n"
        "    if isinstance(action, Launch): pass\n"
        "    q = isinstance(e, QuotaError)\n"
        "    r = getattr(a, 'reason', '')\n"
    )
    assert probes(src) == []
