"""``burst config from-terraform``: the landing zones' outputs rendered as burst config.

Every output of ``terraform/aws`` and ``terraform/azure`` is exactly one burst config key, and
:data:`OUTPUTS` is that table (tests/terraform keeps it equal to the ``outputs.tf`` files and to
the config models). The input is what ``terraform output -json`` prints, one document per root
module copy (one per AWS region, one per Azure landing zone)::

    {"cluster": {"sensitive": false, "type": "string", "value": "ml-prod"}, ...}

Several documents merge: map-valued keys (regions, mirror targets) by entry, list-valued keys
(offer regions) by concatenation, and every other key must have the same value in each document
that has it. A cloud with outputs is rendered real (``enabled: true, simulated: false``); a cloud
without any is rendered ``enabled: false``, so a live config never gets a simulated cloud by
omission. The result is validated with :func:`burst.config.parse_config` (the embedded defaults
for every key not rendered) before anything is printed.

Bad input (not JSON, not an output document, an output that is no config key, documents that
disagree, settings the config rejects) raises :class:`~burst.errors.InputError` with one line
naming the file and the output.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, TextIO

import yaml

from burst.errors import ConfigError, InputError


class Merge(StrEnum):
    """How copies of one output from several documents combine."""

    SAME = "same"  # every document that has it must agree
    MAP = "map"  # entries merged; one entry key in two documents must agree
    LIST = "list"  # concatenated, duplicates dropped


@dataclass(frozen=True)
class OutputKey:
    """One Terraform output: the config key path it fills, and how copies merge."""

    path: tuple[str, ...]
    merge: Merge = Merge.SAME

    @property
    def cloud(self) -> str:
        """The cloud whose settings this key lies in ('' for cluster, offers and mirror keys)."""
        if len(self.path) > 1 and self.path[0] == "clouds":
            return self.path[1]
        return ""

    @property
    def dotted(self) -> str:
        return ".".join(self.path)


_AWS = ("clouds", "aws", "settings")
_AZURE = ("clouds", "azure", "settings")

OUTPUTS: Mapping[str, OutputKey] = {
    # both landing zones
    "cluster": OutputKey(("cluster",)),
    "offer_regions": OutputKey(("offers", "regions"), Merge.LIST),
    "mirror_source_registry": OutputKey(("mirror", "source", "registry")),
    "mirror_source_auth": OutputKey(("mirror", "source", "auth")),
    # terraform/aws (one copy per region)
    "aws_regions": OutputKey((*_AWS, "regions"), Merge.MAP),
    "aws_user_data_template": OutputKey((*_AWS, "user_data_template")),
    "aws_harbor_host": OutputKey((*_AWS, "harbor_host")),
    "aws_template_vars": OutputKey((*_AWS, "template_vars")),
    "aws_mirror_targets": OutputKey(("mirror", "targets"), Merge.MAP),
    # terraform/azure (one copy per location; all share one resource group)
    "azure_subscription_id": OutputKey((*_AZURE, "subscription_id")),
    "azure_resource_group": OutputKey((*_AZURE, "resource_group")),
    "azure_regions": OutputKey((*_AZURE, "regions"), Merge.MAP),
    "azure_node_identity_id": OutputKey((*_AZURE, "node_identity_id")),  # one identity per resource group
    "azure_admin_ssh_public_key": OutputKey((*_AZURE, "admin_ssh_public_key")),
    "azure_user_data_template": OutputKey((*_AZURE, "user_data_template")),
    "azure_harbor_host": OutputKey((*_AZURE, "harbor_host")),
    "azure_template_vars": OutputKey((*_AZURE, "template_vars")),
    "azure_mirror_targets": OutputKey(("mirror", "targets"), Merge.MAP),
}
"""Terraform output name -> the burst config key it fills."""

CLOUDS = ("aws", "azure")


@dataclass(frozen=True)
class OutputDocument:
    """One ``terraform output -json`` document: output name -> value."""

    source: str
    values: Mapping[str, Any]


def parse_output_document(text: str, source: str) -> OutputDocument:
    """Parse one ``terraform output -json`` document; raise InputError naming ``source``."""
    if not text.strip():
        raise InputError(source, "empty input; pipe `terraform output -json` into this command")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{source}:{e.lineno}", f"not JSON: {e.msg}") from None
    if not isinstance(data, dict):
        raise InputError(source, f"expected the object `terraform output -json` prints, got a JSON {type(data).__name__}")
    if not data:
        raise InputError(source, "no outputs: run `terraform apply` in terraform/aws or terraform/azure first")
    values: dict[str, Any] = {}
    for name, entry in data.items():
        if not isinstance(entry, dict) or "value" not in entry:
            raise InputError(
                source, f"output {name!r}: expected an object with a 'value' (is this `terraform output -json`?)"
            )
        if name not in OUTPUTS:
            raise InputError(
                source, f"output {name!r} is not a burst config key (known outputs: {', '.join(sorted(OUTPUTS))})"
            )
        values[name] = entry["value"]
    return OutputDocument(source, values)


def _drop_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def _merge(name: str, key: OutputKey, docs: list[tuple[str, Any]]) -> Any:
    for source, value in docs:
        if key.merge is Merge.MAP and not isinstance(value, dict):
            raise InputError(source, f"output {name!r} must be a map ({key.dotted}), got {type(value).__name__}")
        if key.merge is Merge.LIST and not isinstance(value, list):
            raise InputError(source, f"output {name!r} must be a list ({key.dotted}), got {type(value).__name__}")
    first_source, merged = docs[0]
    for source, value in docs[1:]:
        if key.merge is Merge.SAME:
            if value != merged:
                raise InputError(source, f"output {name!r} differs from the one in {first_source} ({key.dotted} has one value)")
        elif key.merge is Merge.MAP:
            for entry, v in value.items():
                if entry in merged and merged[entry] != v:
                    raise InputError(source, f"output {name!r}: entry {entry!r} differs from the one in {first_source}")
            merged = {**merged, **value}
        else:
            merged = list(dict.fromkeys([*merged, *value]))
    return merged


def render_config(docs: Iterable[OutputDocument]) -> dict[str, Any]:
    """The config mapping the documents' outputs fill (not yet validated)."""
    by_name: dict[str, list[tuple[str, Any]]] = {}
    for doc in docs:
        for name, value in doc.values.items():
            by_name.setdefault(name, []).append((doc.source, _drop_nulls(value)))
    config: dict[str, Any] = {}
    clouds_seen: set[str] = set()
    for name in OUTPUTS:  # table order: a stable YAML layout
        if name not in by_name:
            continue
        key = OUTPUTS[name]
        value = _merge(name, key, by_name[name])
        if key.cloud:
            clouds_seen.add(key.cloud)
        node = config
        for part in key.path[:-1]:
            node = node.setdefault(part, {})
        leaf = key.path[-1]
        if leaf in node:  # two outputs fill one map (aws_ and azure_mirror_targets): disjoint entries
            clash = sorted(set(node[leaf]) & set(value))
            if clash:
                raise InputError(by_name[name][0][0], f"output {name!r}: {key.dotted} entry {clash[0]!r} is filled twice")
            value = {**node[leaf], **value}
        node[leaf] = value
    clouds = config.setdefault("clouds", {})
    for cloud in CLOUDS:
        if cloud in clouds_seen:
            clouds[cloud] = {"enabled": True, "simulated": False, "settings": clouds[cloud]["settings"]}
        else:
            clouds[cloud] = {"enabled": False}
    order = ("cluster", "clouds", "offers", "mirror")
    return {k: config[k] for k in sorted(config, key=lambda k: order.index(k) if k in order else len(order))}


def validate_rendered(config: Mapping[str, Any], source: str) -> None:
    """Check the rendered keys with burst's own config validation (defaults for the rest)."""
    from burst.config import parse_config

    try:
        parse_config(dict(config), source)
    except ConfigError as e:
        lines = getattr(e, "lines", None) or [str(e)]
        raise InputError(source, "the outputs do not make a valid config: " + "; ".join(
            line.split(": ", 1)[1] if ": " in line else line for line in lines
        )) from None


HEADER = (
    "# Rendered by `burst config from-terraform` from {sources}.\n"
    "# Merge these sections into your burst config (queue, database_url, policy ... stay yours);\n"
    "# they passed burst's config validation with the embedded defaults for every other key.\n"
)


def render_yaml(docs: list[OutputDocument]) -> str:
    """The validated YAML for ``docs``; raises InputError on bad input."""
    if not docs:
        raise InputError("", "no input: give `terraform output -json` files, or pipe one in")
    sources = ", ".join(d.source for d in docs)
    config = render_config(docs)
    validate_rendered(config, sources)
    body = yaml.safe_dump(config, sort_keys=False, default_flow_style=False)
    return HEADER.format(sources=sources) + body


def read_documents(paths: Iterable[Path], stdin: TextIO) -> list[OutputDocument]:
    """Read each path (``-``: ``stdin``) as one output document."""
    docs: list[OutputDocument] = []
    for path in paths:
        if str(path) == "-":
            docs.append(parse_output_document(stdin.read(), "<stdin>"))
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise InputError(str(path), f"cannot read: {e.strerror}") from None
        except UnicodeDecodeError:
            raise InputError(str(path), "not UTF-8 text") from None
        docs.append(parse_output_document(text, str(path)))
    return docs
