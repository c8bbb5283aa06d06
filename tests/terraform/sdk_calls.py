"""Which cloud API operations a provider module calls, read from its source (AST), not from a list.

boto3: a method call on a client expression is an operation. A client expression is
``self._client("svc", ...)``, ``self._ec2(...)`` (ec2), ``ecr_client(...)`` (ecr), a name or
attribute assigned from one of those in the same function, or a parameter named ``ecr``/``client``
in a module whose clients are all of one service. ``get_paginator("op")`` is the operation ``op``.
Each method name is turned into the API name with botocore's own service model, so a typo or a
method that is not an API operation fails loudly.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
# botocore client helpers that are not API operations
_NOT_OPERATIONS = frozenset({"get_paginator", "get_waiter", "can_paginate", "close", "generate_presigned_url"})


@dataclass(frozen=True)
class SdkCall:
    service: str
    method: str
    line: int


def _const_str(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


class _BotoCalls(ast.NodeVisitor):
    def __init__(self, default_service: str | None) -> None:
        self.default_service = default_service
        self.calls: list[SdkCall] = []
        self._vars: dict[str, str] = {}

    def _service_of(self, node: ast.AST) -> str | None:
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            if name == "_client" and node.args:
                return _const_str(node.args[0])
            if name == "_ec2":
                return "ec2"
            if name == "ecr_client":
                return "ecr"
            return None
        if isinstance(node, ast.Name):
            return self._vars.get(node.id)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
            return self._vars.get(f"self.{node.attr}")
        return None

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        saved = dict(self._vars)
        for arg in node.args.args + node.args.kwonlyargs:
            if arg.arg in ("client", "ecr") and self.default_service:
                self._vars[arg.arg] = self.default_service
        self.generic_visit(node)
        self._vars = saved

    def visit_Assign(self, node: ast.Assign) -> None:
        value = node.value
        if isinstance(value, ast.IfExp):  # ecr = client if client is not None else ecr_client(...)
            service = self._service_of(value.body) or self._service_of(value.orelse)
        else:
            service = self._service_of(value)
        if service:
            for target in node.targets:
                if isinstance(target, ast.Name):
                    self._vars[target.id] = service
                elif isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name):
                    self._vars[f"{target.value.id}.{target.attr}"] = service
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        f = node.func
        if isinstance(f, ast.Attribute):
            service = self._service_of(f.value)
            if service:
                if f.attr == "get_paginator" and node.args and _const_str(node.args[0]):
                    self.calls.append(SdkCall(service, str(_const_str(node.args[0])), node.lineno))
                elif f.attr not in _NOT_OPERATIONS:
                    self.calls.append(SdkCall(service, f.attr, node.lineno))
        self.generic_visit(node)


def boto3_calls(path: Path, default_service: str | None = None) -> list[SdkCall]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    visitor = _BotoCalls(default_service)
    visitor.visit(tree)
    return visitor.calls


def string_constants(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}


@functools.cache
def _api_names(service: str) -> Mapping[str, str]:
    import botocore.session

    client: Any = botocore.session.get_session().create_client(
        service, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    return dict(client.meta.method_to_api_mapping)


def iam_action(call: SdkCall) -> str:
    """``ec2.describe_instances`` -> ``ec2:DescribeInstances`` (botocore's model names the API)."""
    names = _api_names(call.service)
    if call.method not in names:
        raise AssertionError(f"line {call.line}: {call.service}.{call.method} is not a {call.service} API operation")
    return f"{call.service}:{names[call.method]}"


# ---- azure-mgmt-compute --------------------------------------------------------------------------


@dataclass(frozen=True)
class ArmCall:
    """``self._compute.<group>.<method>(...)``, or a raw GET (group ``GET``, method: the path's source)."""

    group: str
    method: str
    line: int


RAW_GETS = frozenset({"_raw_get", "_raw_json"})


def azure_calls(path: Path, client_attr: str = "_compute", raw_gets: frozenset[str] = RAW_GETS) -> list[ArmCall]:
    """Operation-group calls on ``self.<client_attr>`` (or ``provider.<client_attr>`` in the
    modules that take the provider as an argument), and the call sites of the raw ARM GET helpers
    (``self._raw_get``/``_raw_json``, through the compute client's pipeline) with their path."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    calls: list[ArmCall] = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        f = node.func
        recv = f.value
        if (isinstance(recv, ast.Attribute) and isinstance(recv.value, ast.Attribute)
                and isinstance(recv.value.value, ast.Name) and recv.value.attr == client_attr):
            calls.append(ArmCall(recv.attr, f.attr, node.lineno))
        elif (isinstance(recv, ast.Attribute) and isinstance(recv.value, ast.Name)
                and recv.attr == client_attr and f.attr != "send_request"):
            calls.append(ArmCall("", f.attr, node.lineno))  # a client method that is no operation group
        elif isinstance(recv, ast.Name) and f.attr in raw_gets and node.args:
            calls.append(ArmCall("GET", ast.unparse(node.args[0]), node.lineno))
    return calls
