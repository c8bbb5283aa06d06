"""`clouds.azure` in a live config builds the real AzureProvider (issue 11): checked against ARM
before any launch, as AWS is against EC2; restricted sizes never reach the policy; offers the vCPU
quota left cannot hold are out of the policy's sight tick by tick, and back when the quota frees
up. Through ``burst.wiring.build_runtime``, the real SDK and the ARM stand-in."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from burst.cli import app
from burst.config import CloudMode, parse_config
from burst.errors import ConfigError
from burst.store.memory import MemoryStore
from burst.wiring import AzureAccess, Runtime, build_runtime
from providers.azure import AzureProvider
from tests.azure.helpers import azure_settings
from tests.support.arm_standin import ArmStandin, StandinCredential, client_kwargs

VM_PUT = r"/virtualMachines/"


def live_config(tmp_path: Path, standin: ArmStandin, **settings: Any) -> dict[str, Any]:
    queue = tmp_path / "queue.json"
    queue.write_text(json.dumps({"pending": [], "running": [], "nodes": []}))
    return {
        "cluster": "azwire",
        "queue": {"kind": "jsonfile", "jsonfile": str(queue)},
        "clouds": {"azure": {"settings": json.loads(azure_settings(standin, **settings).model_dump_json())}},
        "offers": {"regions": ["eastus", "westus2"], "accelerators": ["A100", "A100-80GB", "H100", "V100"]},
    }


def build(raw: dict[str, Any], standin: ArmStandin) -> Runtime:
    access = AzureAccess(credential=StandinCredential(standin.token), client_kwargs=client_kwargs())
    return build_runtime(parse_config(raw), store=MemoryStore(), azure_access=access)


def test_a_live_azure_section_is_the_real_provider(tmp_path: Path, standin: ArmStandin) -> None:
    raw = live_config(tmp_path, standin)
    assert parse_config(raw).cloud_mode("azure") is CloudMode.REAL
    rt = build(raw, standin)
    assert sorted(rt.providers) == ["azure"] and isinstance(rt.providers["azure"], AzureProvider)
    offers = rt.controller.offers
    assert offers and {o.cloud for o in offers} == {"azure"}
    assert standin.count("GET", r"/Microsoft.Compute/skus") >= 1  # SKUs were read at start
    assert standin.count("PUT", VM_PUT) == 0


def test_a_missing_subnet_stops_the_start_before_any_launch(tmp_path: Path, standin: ArmStandin) -> None:
    raw = live_config(tmp_path, standin)
    eastus = raw["clouds"]["azure"]["settings"]["regions"]["eastus"]
    eastus["subnet_id"] = eastus["subnet_id"].replace("/subnets/default", "/subnets/missing")
    with pytest.raises(ConfigError) as e:
        build(raw, standin)
    assert "azure.regions.eastus.subnet_id" in str(e.value) and "not found" in str(e.value)
    assert standin.count("PUT", VM_PUT) == 0


def test_restricted_sizes_never_reach_the_policy(tmp_path: Path, standin: ArmStandin) -> None:
    standin.restrict("Standard_ND96asr_v4", "eastus")
    keys = {o.key for o in build(live_config(tmp_path, standin), standin).controller.offers}
    assert "azure/eastus/-/Standard_ND96asr_v4/on-demand" not in keys
    assert "azure/westus2/-/Standard_ND96asr_v4/on-demand" in keys  # restricted in eastus only


def test_config_check_says_azure_is_real(tmp_path: Path, standin: ArmStandin) -> None:
    path = tmp_path / "burst.yaml"
    path.write_text(yaml.safe_dump(live_config(tmp_path, standin)))
    res = CliRunner().invoke(app, ["config", "check", str(path)])
    assert res.exit_code == 0, res.stderr
    assert "azure: real" in res.stdout.splitlines() and "aws: not configured" in res.stdout.splitlines()


def test_a_bad_azure_setting_is_one_line_under_its_key(tmp_path: Path, standin: ArmStandin) -> None:
    raw = live_config(tmp_path, standin)
    raw["clouds"]["azure"]["settings"]["subscription_id"] = "not-a-uuid"
    path = tmp_path / "burst.yaml"
    path.write_text(yaml.safe_dump(raw))
    res = CliRunner().invoke(app, ["config", "check", str(path)])
    assert res.exit_code == 2
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "clouds.azure.settings.subscription_id" in lines[0], lines


def test_offers_follow_the_quota_tick_by_tick(tmp_path: Path, standin: ArmStandin) -> None:
    """Out of quota: the policy does not see the offer (so it never picks it); quota back: the
    offer is back. The daemon calls ``before_tick`` before every tick."""
    key = "azure/westus2/-/Standard_NC24ads_A100_v4/on-demand"
    standin.set_quota("westus2", "standardNCADSA100v4Family", 0)
    rt = build(live_config(tmp_path, standin, sku_refresh_s=0), standin)  # re-read usages every time
    assert rt.before_tick is not None
    assert key not in {o.key for o in rt.controller.offers}  # already for the first tick
    standin.set_quota("westus2", "standardNCADSA100v4Family", 1000)
    rt.before_tick(rt.clock.now())
    assert key in {o.key for o in rt.controller.offers}
    standin.set_quota("westus2", "standardNCADSA100v4Family", 0)
    standin.fail("usages", "InternalServerError", times=1)  # ARM unreadable: the last list stays
    rt.before_tick(rt.clock.now())
    assert key in {o.key for o in rt.controller.offers}
    rt.before_tick(rt.clock.now())
    assert key not in {o.key for o in rt.controller.offers}
