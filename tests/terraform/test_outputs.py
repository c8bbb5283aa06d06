"""Terraform outputs <-> burst config keys, one to one.

* every output of each root module is an entry of burst.terraform_config.OUTPUTS, and every entry
  is an output of a module;
* every entry's path is a key of burst's config models (BurstConfig, and the provider and mirror
  settings models the config validates its free-form sections with);
* each object-valued output has the model's fields as keys, and all of its required ones;
* every required key of a cloud's settings (and of the mirror) has an output;
* the example output documents have the outputs' names and shapes, and render to YAML that
  burst's own config validation accepts.
"""

from __future__ import annotations

import json
import types
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from burst.config import BurstConfig, parse_config
from burst.terraform_config import OUTPUTS, parse_output_document, render_yaml
from providers.aws import AwsSettings
from providers.mirror_service import MirrorSettings
from tests.terraform.hcl import outputs

HERE = Path(__file__).parent
MODULE_OF_PREFIX = {"aws_": "aws", "azure_": "azure"}
# The config's free-form sections and the models they are validated with (burst/config.py).
SECTION_MODELS: dict[tuple[str, ...], type[BaseModel]] = {
    ("clouds", "aws", "settings"): AwsSettings,
    ("mirror",): MirrorSettings,
}
try:  # issue 11 (branch wp-azure): the real Azure provider
    from providers.azure import AzureSettings  # type: ignore[import-not-found,unused-ignore]

    SECTION_MODELS[("clouds", "azure", "settings")] = AzureSettings
except ImportError:  # pragma: no cover - until wp-azure is merged
    pass

AWS_EXAMPLE = HERE / "aws-output.json"
AZURE_EXAMPLE = HERE / "azure-output.json"
EXAMPLES = {"aws": AWS_EXAMPLE, "azure": AZURE_EXAMPLE}


def _module_outputs() -> dict[str, dict[str, Any]]:
    mods = {}
    for module in ("aws", "azure"):
        found = outputs(module)
        if found:
            mods[module] = found
    return mods


def _strip_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _field_annotation(path: tuple[str, ...]) -> Any:
    """The type of the config key at ``path``; AssertionError naming the first unknown part."""
    model: type[BaseModel] = BurstConfig
    annotation: Any = BurstConfig
    for i, part in enumerate(path):
        assert part in model.model_fields, f"{'.'.join(path)}: {part!r} is not a key of {model.__name__}"
        annotation = _strip_optional(model.model_fields[part].annotation)
        prefix = path[: i + 1]
        if prefix in SECTION_MODELS:
            annotation = SECTION_MODELS[prefix]
        if i < len(path) - 1:
            assert isinstance(annotation, type) and issubclass(annotation, BaseModel), (
                f"{'.'.join(path)}: {'.'.join(prefix)} is not a section (is the model for it registered?)"
            )
            model = annotation
    return annotation


def _is_expression(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("${")


def _check_shape(value: Any, annotation: Any, where: str) -> None:
    """An HCL value (python-hcl2 form) fits the annotation as far as its literal structure goes."""
    annotation = _strip_optional(annotation)
    if _is_expression(value):
        return  # computed: its shape is the example document's job
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        assert isinstance(value, dict), f"{where}: expected an object for {annotation.__name__}"
        keys = {k for k in value if not k.startswith("__")}
        unknown = keys - set(annotation.model_fields)
        assert not unknown, f"{where}: {sorted(unknown)} are not keys of {annotation.__name__}"
        required = {n for n, f in annotation.model_fields.items() if f.is_required()}
        assert required <= keys, f"{where}: required keys {sorted(required - keys)} of {annotation.__name__} missing"
        for k in keys:
            _check_shape(value[k], annotation.model_fields[k].annotation, f"{where}.{k}")
    elif typing.get_origin(annotation) is dict:
        assert isinstance(value, dict), f"{where}: expected a map"
        inner = typing.get_args(annotation)[1]
        for k, v in value.items():
            if not k.startswith("__"):
                _check_shape(v, inner, f"{where}[{k}]")
    elif typing.get_origin(annotation) is list:
        assert isinstance(value, list), f"{where}: expected a list"


def test_every_output_is_a_config_key_and_every_key_an_output() -> None:
    mods = _module_outputs()
    assert "aws" in mods
    seen: set[str] = set()
    for module, outs in mods.items():
        for name in outs:
            assert name in OUTPUTS, f"terraform/{module}/outputs.tf: output {name!r} is not in burst.terraform_config.OUTPUTS"
            owner = next((m for p, m in MODULE_OF_PREFIX.items() if name.startswith(p)), module)
            assert owner == module, f"terraform/{module}: output {name!r} belongs to terraform/{owner}"
            seen.add(name)
    stale = {n for n in OUTPUTS if n not in seen and not (n.startswith("azure_") and "azure" not in mods)}
    assert not stale, f"OUTPUTS entries that no module outputs: {sorted(stale)}"


@pytest.mark.parametrize("name", sorted(OUTPUTS))
def test_output_path_is_a_config_key(name: str) -> None:
    key = OUTPUTS[name]
    if key.cloud and ("clouds", key.cloud, "settings") not in SECTION_MODELS:
        pytest.skip(f"the {key.cloud} settings model is not in this build (issue 11)")
    _field_annotation(key.path)


def test_output_values_have_the_config_models_shape() -> None:
    for module, outs in _module_outputs().items():
        for name, value in outs.items():
            key = OUTPUTS[name]
            if key.cloud and ("clouds", key.cloud, "settings") not in SECTION_MODELS:
                continue
            _check_shape(value, _field_annotation(key.path), f"terraform/{module} output {name}")


def test_every_required_cloud_and_mirror_key_has_an_output() -> None:
    covered = {key.path for key in OUTPUTS.values()}
    for prefix, model in SECTION_MODELS.items():
        for field, info in model.model_fields.items():
            if not info.is_required():
                continue
            path = (*prefix, field)
            assert any(p[: len(path)] == path for p in covered), f"required key {'.'.join(path)} has no Terraform output"


@pytest.mark.parametrize("module", sorted(EXAMPLES))
def test_example_document_matches_the_outputs(module: str) -> None:
    """The example `terraform output -json` has exactly the module's outputs, with their literal keys."""
    doc = json.loads(EXAMPLES[module].read_text())
    outs = outputs(module)
    assert set(doc) == set(outs)
    for name, hcl_value in outs.items():
        value = doc[name]["value"]
        if isinstance(hcl_value, dict) and not _is_expression(hcl_value):
            literal = {k for k in hcl_value if "${" not in k and not k.startswith("__")}
            dynamic = [k for k in hcl_value if "${" in k]
            if dynamic:  # { (var.region) = {...} }: one entry, whose keys are the inner literal keys
                assert len(value) == 1, name
                inner_hcl = hcl_value[dynamic[0]]
                (inner,) = value.values()
                assert set(inner) == {k for k in inner_hcl if not k.startswith("__")}, name
            else:
                assert set(value) == literal, name


def test_rendered_aws_yaml_is_a_valid_config() -> None:
    text = render_yaml([parse_output_document(AWS_EXAMPLE.read_text(), str(AWS_EXAMPLE))])
    cfg = parse_config(yaml.safe_load(text), "rendered")
    assert cfg.cluster == "ml-prod"
    assert not cfg.clouds.aws.simulated and cfg.clouds.aws.enabled
    assert not cfg.clouds.azure.enabled  # no Azure outputs: no Azure at all, not a simulated one
    aws = AwsSettings.model_validate(cfg.clouds.aws.settings)
    assert aws.regions["us-east-1"].subnets["use1-az4"] == "subnet-0a1b2c3d4e5f60718"
    assert aws.regions["us-east-1"].instance_profile == "ml-prod-burst-node-us-east-1"
    assert aws.regions["us-east-1"].key_name is None
    mirror = MirrorSettings.model_validate(cfg.mirror)
    assert mirror.targets["aws:us-east-1"].kind == "ecr"
    assert mirror.source.registry == "harbor.example.org"
    assert cfg.offers.regions == ["us-east-1"]


def test_rendered_aws_and_azure_yaml_is_a_valid_config() -> None:
    docs = [parse_output_document(p.read_text(), str(p)) for p in (AWS_EXAMPLE, AZURE_EXAMPLE)]
    cfg = parse_config(yaml.safe_load(render_yaml(docs)), "rendered")
    assert cfg.enabled_clouds() == ("aws", "azure")
    assert not cfg.clouds.azure.simulated
    azure = SECTION_MODELS[("clouds", "azure", "settings")].model_validate(cfg.clouds.azure.settings)
    assert azure.resource_group == "ml-prod-burst"  # type: ignore[attr-defined]
    assert azure.regions["eastus"].subnet_id.endswith("/subnets/nodes")  # type: ignore[attr-defined]
    mirror = MirrorSettings.model_validate(cfg.mirror)
    assert set(mirror.targets) == {"aws:us-east-1", "azure:eastus"}
    assert mirror.targets["azure:eastus"].kind == "acr"
    assert cfg.offers.regions == ["us-east-1", "eastus"]


def test_azure_settings_carry_the_node_identity() -> None:
    """terraform/azure's node identity (AcrPull, Key Vault secret read) reaches the settings the
    provider attaches to every VM (tests/azure/test_launch.py checks the VM carries it)."""
    model = SECTION_MODELS.get(("clouds", "azure", "settings"))
    assert model is not None
    assert "node_identity_id" in model.model_fields
    assert outputs("azure")["azure_node_identity_id"] == "${local.node_identity_id}"
    docs = [parse_output_document(AZURE_EXAMPLE.read_text(), str(AZURE_EXAMPLE))]
    cfg = parse_config(yaml.safe_load(render_yaml(docs)), "rendered")
    assert cfg.clouds.azure is not None
    azure = model.model_validate(cfg.clouds.azure.settings)
    assert azure.node_identity_id == json.loads(AZURE_EXAMPLE.read_text())["azure_node_identity_id"]["value"]  # type: ignore[attr-defined]
    assert azure.node_identity_id.endswith("/userAssignedIdentities/ml-prod-burst-node")  # type: ignore[attr-defined]
