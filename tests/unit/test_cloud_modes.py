"""Which clouds a config gets, and whether each is real or simulated (issue 11).

The rule: a cloud is simulated only when the queue is simulated or the config says
``simulated: true`` itself; a live config gets exactly the clouds it names, real unless marked
simulated. The embedded default (the demo) keeps both clouds simulated."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from burst.cli import app
from burst.config import CloudMode, default_config, parse_config
from burst.errors import ConfigError
from burst.sim.cloud import SimProvider
from burst.store.memory import MemoryStore
from burst.wiring import build_runtime

runner = CliRunner()


def live(tmp_path: Path, **over: Any) -> dict[str, Any]:
    queue = tmp_path / "queue.json"
    queue.write_text(json.dumps({"pending": [], "running": [], "nodes": []}))
    raw: dict[str, Any] = {"cluster": "modes", "queue": {"kind": "jsonfile", "jsonfile": str(queue)}}
    raw.update(over)
    return raw


def test_a_live_config_without_azure_has_no_azure(tmp_path: Path) -> None:
    cfg = parse_config(live(tmp_path, clouds={"aws": {"simulated": True}}))
    assert cfg.cloud_mode("azure") is None and cfg.enabled_clouds() == ("aws",)
    rt = build_runtime(cfg, store=MemoryStore())
    assert sorted(rt.providers) == ["aws"]
    assert rt.controller.offers and {o.cloud for o in rt.controller.offers} == {"aws"}


def test_a_live_config_naming_no_cloud_gets_no_cloud_at_all(tmp_path: Path) -> None:
    cfg = parse_config(live(tmp_path))
    assert cfg.enabled_clouds() == ()
    rt = build_runtime(cfg, store=MemoryStore())
    assert rt.providers == {} and not rt.controller.offers


def test_a_simulated_cloud_beside_a_live_queue_only_when_asked_for_by_name(tmp_path: Path) -> None:
    cfg = parse_config(live(tmp_path, clouds={"aws": {"simulated": True}, "azure": {"simulated": True}}))
    assert (cfg.cloud_mode("aws"), cfg.cloud_mode("azure")) == (CloudMode.SIMULATED, CloudMode.SIMULATED)
    rt = build_runtime(cfg, store=MemoryStore())
    assert sorted(rt.providers) == ["aws", "azure"]
    assert all(isinstance(p, SimProvider) for p in rt.providers.values())


def test_a_live_cloud_that_does_not_say_simulated_is_the_real_provider(tmp_path: Path) -> None:
    # named without settings: the real provider cannot be built, and the config says why
    with pytest.raises(ConfigError) as e:
        parse_config(live(tmp_path, clouds={"aws": {}}), "burst.yaml")
    assert "clouds.aws" in str(e.value) and "simulated: true" in str(e.value)
    # with settings, they are the real provider's (checked by its own model)
    with pytest.raises(ConfigError) as e:
        parse_config(live(tmp_path, clouds={"aws": {"settings": {"regions": {"us-east-1": {"ami": "nope"}}}}}), "burst.yaml")
    assert "clouds.aws.settings.regions.us-east-1" in str(e.value)


def test_the_embedded_default_and_the_simulated_queue_keep_both_clouds_simulated() -> None:
    cfg = default_config()
    assert cfg.simulated_clouds() == ("aws", "azure") and cfg.real_clouds() == ()
    named = parse_config({"clouds": {"azure": {"enabled": True}}})  # sim queue: named, not marked
    assert named.cloud_mode("azure") is CloudMode.SIMULATED and named.cloud_mode("aws") is CloudMode.SIMULATED


def test_an_empty_cloud_entry_is_an_error_not_a_silently_missing_cloud(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config(live(tmp_path, clouds={"azure": None, "aws": {"simulated": True}}), "burst.yaml")
    assert "clouds.azure" in str(e.value)


def test_disabling_every_named_cloud_while_bursting_is_still_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no cloud is enabled"):
        parse_config(live(tmp_path, clouds={"aws": {"enabled": False}, "azure": {"enabled": False}}))
    with pytest.raises(ConfigError, match="no cloud is enabled"):
        parse_config({"clouds": {"aws": {"enabled": False}, "azure": {"enabled": False}}})


def test_config_check_says_which_clouds_are_real_and_which_simulated(tmp_path: Path) -> None:
    import yaml

    path = tmp_path / "burst.yaml"
    path.write_text(yaml.safe_dump(live(tmp_path, clouds={"aws": {"simulated": True}})))
    res = runner.invoke(app, ["config", "check", str(path)])
    assert res.exit_code == 0, res.stderr
    lines = res.stdout.splitlines()
    assert "aws: simulated" in lines and "azure: not configured" in lines
    path.write_text(yaml.safe_dump(live(tmp_path, clouds={"aws": {"simulated": True}, "azure": {"enabled": False}})))
    lines = runner.invoke(app, ["config", "check", str(path)]).stdout.splitlines()
    assert "azure: disabled" in lines


def test_config_check_on_the_shipped_production_config_names_aws_real() -> None:
    path = Path(__file__).resolve().parents[2] / "docs" / "burst.production.yaml"
    res = runner.invoke(app, ["config", "check", str(path)])
    assert res.exit_code == 0, res.stderr
    assert "aws: real" in res.stdout.splitlines()


@pytest.mark.parametrize(
    "queue",
    [
        {"kind": "slurm", "slurm": {"slurm_conf": "/etc/slurm/slurm.conf"}},
        {"kind": "kubernetes", "kubernetes": {"host": "http://127.0.0.1:9"}},
    ],
    ids=["slurm", "kubernetes"],
)
def test_every_live_queue_gets_exactly_the_clouds_it_names(queue: dict[str, Any]) -> None:
    cfg = parse_config({"queue": queue, "clouds": {"aws": {"simulated": True}}})
    assert cfg.enabled_clouds() == ("aws",) and cfg.cloud_mode("azure") is None
    both = parse_config({"queue": queue, "clouds": {"aws": {"simulated": True}, "azure": {"simulated": True}}})
    assert both.simulated_clouds() == ("aws", "azure")
