"""An unknown ``builtin:`` template name is a config error at `burst config check`, naming the
key and the shipped names, for AWS and Azure alike; not a "no such file" at the first launch."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from burst.cli import app
from burst.errors import ConfigError
from providers.bootstrap import BUILTIN_TEMPLATES, load_template

PRODUCTION = Path(__file__).resolve().parents[2] / "docs" / "burst.production.yaml"


def test_load_template_names_the_shipped_templates() -> None:
    with pytest.raises(ConfigError) as e:
        load_template("builtin:kubeadm", where="aws.user_data_template")
    assert "builtin:kubeadm" in str(e.value) and all(k in str(e.value) for k in BUILTIN_TEMPLATES)
    assert load_template("builtin:slurm")  # the shipped ones still load


@pytest.mark.parametrize("template,ok", [("builtin:kubeadm", False), ("builtin:slurm", True), ("builtin:k8s", True)])
def test_config_check_refuses_an_unknown_builtin_template(tmp_path: Path, template: str, ok: bool) -> None:
    cfg = tmp_path / "burst.yaml"
    text = PRODUCTION.read_text()
    assert "user_data_template: builtin:slurm" in text
    cfg.write_text(text.replace("user_data_template: builtin:slurm", f"user_data_template: {template}"))
    res = CliRunner().invoke(app, ["config", "check", str(cfg)])
    if ok:
        assert res.exit_code == 0, res.output
        return
    assert res.exit_code == 2
    assert "user_data_template" in res.output and "builtin:kubeadm" in res.output and "builtin:slurm" in res.output


def test_azure_settings_refuse_an_unknown_builtin_template() -> None:
    from pydantic import ValidationError

    from providers.azure_settings import AzureSettings

    with pytest.raises(ValidationError, match="unknown builtin template"):
        AzureSettings.model_validate({"user_data_template": "builtin:kubeadm"})


def test_the_production_example_names_the_harbor_variables_burst_reads() -> None:
    """The comment in docs/burst.production.yaml tells operators which variables hold the robot
    account; they must be the ones the mirror reads (the name defaults to the registry host)."""
    import re

    import yaml

    from providers.mirror_service import AuthSettings
    from providers.registry_auth import _env_key

    text = PRODUCTION.read_text()
    src = yaml.safe_load(text)["mirror"]["source"]
    auth = AuthSettings.model_validate(src["auth"])
    key = f"BURST_REGISTRY_{_env_key(auth.credentials or src['registry'])}_USERNAME"
    line = next(ln for ln in text.splitlines() if "robot account" in ln)
    assert re.search(r"BURST_REGISTRY_\w+_USERNAME", line).group(0) == key  # type: ignore[union-attr]
