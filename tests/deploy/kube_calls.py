"""The Kubernetes API calls burst's queue source makes, read from its code (AST), as RBAC rules.

The adapter (``burst/queues/kubernetes/``) calls the official client's ``CoreV1Api`` and
``BatchV1Api`` through ``apis.core`` / ``apis.batch`` (or local names ``core`` / ``batch`` bound to
them). Every method referenced there is one API call; its name says the verb and the resource
(``patch_namespaced_job`` -> patch batch/jobs, ``create_namespaced_pod_eviction`` -> create
pods/eviction). A method handed to an ``Informer`` as its watch call is also a ``watch``.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "burst" / "queues" / "kubernetes"
API_GROUPS = {"core": "", "batch": "batch"}
VERBS = {"list": "list", "read": "get", "patch": "patch", "create": "create", "delete": "delete",
         "replace": "update"}
METHOD = re.compile(r"(?P<verb>list|read|patch|create|delete|replace)_(?:namespaced_)?(?P<res>[a-z_]+?)"
                    r"(?:_for_all_namespaces)?")

# (api group, resource, verb)
Permission = tuple[str, str, str]


def _api_of(node: ast.expr) -> str | None:
    """'core' / 'batch' when ``node`` is ``apis.core``, ``self._apis.batch``, or a local ``core``."""
    if isinstance(node, ast.Attribute) and node.attr in API_GROUPS:
        return node.attr
    if isinstance(node, ast.Name) and node.id in API_GROUPS:
        return node.id
    return None


def _method_refs(tree: ast.AST) -> Iterator[tuple[str, str, ast.Attribute]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            api = _api_of(node.value)
            if api is not None:
                yield api, node.attr, node


def permission(api: str, method: str) -> tuple[str, str, str]:
    m = METHOD.fullmatch(method)
    if m is None:
        raise ValueError(f"{api}.{method}: not a CRUD method of the client; teach tests/deploy/kube_calls.py its verb")
    kind, _, sub = m["res"].partition("_")
    resource = f"{kind}s" + (f"/{sub}" if sub else "")
    return API_GROUPS[api], resource, VERBS[m["verb"]]


def _watch_calls(tree: ast.AST) -> Iterator[ast.expr]:
    """The ``watch_call`` argument of every ``Informer(...)`` (6th positional or keyword)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Informer":
            if len(node.args) > 5:
                yield node.args[5]
            yield from (k.value for k in node.keywords if k.arg == "watch_call")


def permissions(package: Path = PACKAGE) -> set[Permission]:
    """Every (group, resource, verb) the package's code calls."""
    out: set[Permission] = set()
    for path in sorted(package.glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for api, method, _ in _method_refs(tree):
            out.add(permission(api, method))
        for arg in _watch_calls(tree):
            if isinstance(arg, ast.Attribute) and (wapi := _api_of(arg.value)) is not None:
                group, resource, _verb = permission(wapi, arg.attr)
                out.add((group, resource, "watch"))
            else:
                raise ValueError(f"{path.name}:{arg.lineno}: an Informer's watch call is not core.X or batch.X")
    return out


def granted(rules: list[dict[str, list[str]]]) -> set[Permission]:
    """The (group, resource, verb) triples a ClusterRole's or Role's rules grant."""
    out: set[Permission] = set()
    for r in rules:
        for g in r.get("apiGroups", []):
            for res in r.get("resources", []):
                for v in r.get("verbs", []):
                    out.add((g, res, v))
    return out
