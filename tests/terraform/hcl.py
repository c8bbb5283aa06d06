"""Reading the landing zones' ``.tf`` files with python-hcl2 (no terraform binary, no providers)."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hcl2
from hcl2 import SerializationOptions

ROOT = Path(__file__).resolve().parents[2]
TERRAFORM = ROOT / "terraform"
MODULES = ("aws", "azure")
_OPTS = SerializationOptions(strip_string_quotes=True)


def tf_files(module: str | None = None) -> list[Path]:
    base = TERRAFORM / module if module else TERRAFORM
    return sorted(base.rglob("*.tf"))


@functools.cache
def load(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as f:
        return dict(hcl2.load(f, serialization_options=_OPTS))


def blocks(module: str, kind: str) -> Iterator[tuple[str, Any]]:
    """(name, body) of every top-level ``kind`` block (output, variable) in the module."""
    for path in tf_files(module):
        for entry in load(path).get(kind, []):
            yield from entry.items()


def typed_blocks(module: str, kind: str, rtype: str) -> Iterator[tuple[str, Any]]:
    """(name, body) of every ``kind "rtype" "name"`` block (resource, data)."""
    for path in tf_files(module):
        for entry in load(path).get(kind, []):
            for t, named in entry.items():
                if t == rtype:
                    yield from named.items()


def local_values(module: str) -> dict[str, Any]:
    """Every ``locals`` entry of the module, merged."""
    merged: dict[str, Any] = {}
    for path in tf_files(module):
        for entry in load(path).get("locals", []):
            merged.update({k: v for k, v in entry.items() if not k.startswith("__")})
    return merged


def outputs(module: str) -> dict[str, Any]:
    return {name: body["value"] for name, body in blocks(module, "output")}


def strings_under(node: Any, key: str) -> list[str]:
    """Every string in a list or string under ``key`` anywhere in ``node`` (dynamic blocks too)."""
    found: list[str] = []
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key:
                found += [v] if isinstance(v, str) else [x for x in v if isinstance(x, str)]
            else:
                found += strings_under(v, key)
    elif isinstance(node, list):
        for v in node:
            found += strings_under(v, key)
    return found
