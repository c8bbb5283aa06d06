"""``burst config from-terraform``: stdin or files in, validated YAML out; bad input is one line."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from burst.cli import app
from burst.config import parse_config

runner = CliRunner()
EXAMPLE = Path(__file__).parent / "aws-output.json"


def _example() -> dict[str, Any]:
    return dict(json.loads(EXAMPLE.read_text()))


def _other_region(doc: dict[str, Any], region: str = "us-west-2") -> dict[str, Any]:
    """The example as the us-west-2 copy of terraform/aws would print it."""
    out = copy.deepcopy(doc)
    (entry,) = out["aws_regions"]["value"].values()
    entry["subnets"] = {"usw2-az1": "subnet-0d1e2f30415263748", "usw2-az2": "subnet-0e1f203142536475a"}
    entry["instance_profile"] = f"ml-prod-burst-node-{region}"
    out["aws_regions"]["value"] = {region: entry}
    out["aws_mirror_targets"]["value"] = {f"aws:{region}": out["aws_mirror_targets"]["value"]["aws:us-east-1"]}
    out["offer_regions"]["value"] = [region]
    return out


def _one_error_line(res: Any, *words: str) -> str:
    assert res.exit_code == 2, (res.exit_code, res.stdout, res.stderr)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    assert "Traceback" not in res.stderr + res.stdout
    assert res.stdout == ""  # nothing rendered
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


def test_stdin_renders_clouds_and_mirror_sections() -> None:
    res = runner.invoke(app, ["config", "from-terraform"], input=EXAMPLE.read_text())
    assert res.exit_code == 0, res.stderr
    data = yaml.safe_load(res.stdout)
    assert list(data) == ["cluster", "clouds", "offers", "mirror"]
    assert data["clouds"]["aws"]["simulated"] is False
    assert data["clouds"]["azure"] == {"enabled": False}
    assert "key_name" not in data["clouds"]["aws"]["settings"]["regions"]["us-east-1"]  # null outputs dropped
    parse_config(data, "rendered")


def test_two_regions_merge(tmp_path: Path) -> None:
    east, west = tmp_path / "east.json", tmp_path / "west.json"
    east.write_text(json.dumps(_example()))
    west.write_text(json.dumps(_other_region(_example())))
    res = runner.invoke(app, ["config", "from-terraform", str(east), str(west)])
    assert res.exit_code == 0, res.stderr
    cfg = parse_config(yaml.safe_load(res.stdout), "rendered")
    assert cfg.clouds.aws.settings is not None
    assert set(cfg.clouds.aws.settings["regions"]) == {"us-east-1", "us-west-2"}
    assert cfg.offers.regions == ["us-east-1", "us-west-2"]
    assert set(cfg.mirror or {}) >= {"source", "targets"}
    assert set((cfg.mirror or {})["targets"]) == {"aws:us-east-1", "aws:us-west-2"}


def test_dash_reads_stdin_beside_a_file(tmp_path: Path) -> None:
    west = tmp_path / "west.json"
    west.write_text(json.dumps(_other_region(_example())))
    res = runner.invoke(app, ["config", "from-terraform", "-", str(west)], input=EXAMPLE.read_text())
    assert res.exit_code == 0, res.stderr
    assert "us-west-2" in res.stdout and "us-east-1" in res.stdout


def _bad(doc: dict[str, Any], path: list[str], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    node = out
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return out


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", ["<stdin>", "empty input"]),
        ("{not json", ["<stdin>:1", "not JSON"]),
        ("[1, 2]", ["<stdin>", "got a JSON list"]),
        ("{}", ["<stdin>", "no outputs", "terraform apply"]),
        ('{"cluster": "ml-prod"}', ["<stdin>", "output 'cluster'", "'value'"]),
        ('{"vpc_id": {"value": "vpc-1"}}', ["<stdin>", "output 'vpc_id' is not a burst config key"]),
        (
            json.dumps(_bad(_example(), ["aws_regions", "value", "us-east-1", "subnets", "use1-az4"], "sg-123")),
            ["clouds.aws.settings.regions.us-east-1.subnets", "is not a subnet id"],
        ),
        (json.dumps(_bad(_example(), ["cluster", "value"], "ML_Prod")), ["cluster", "pattern '^[a-z0-9][a-z0-9-]*$'"]),
        (json.dumps(_bad(_example(), ["aws_regions", "value"], "us-east-1")), ["output 'aws_regions' must be a map", "got str"]),
        (json.dumps(_bad(_example(), ["offer_regions", "value"], "us-east-1")), ["output 'offer_regions' must be a list"]),
    ],
    ids=["empty", "not-json", "list", "no-outputs", "not-output-json", "unknown-output", "bad-subnet", "bad-cluster",
         "map-not-map", "list-not-list"],
)
def test_bad_input_is_one_line(text: str, words: list[str]) -> None:
    res = runner.invoke(app, ["config", "from-terraform"], input=text)
    _one_error_line(res, *words)


def test_documents_that_disagree_are_refused(tmp_path: Path) -> None:
    east, west = tmp_path / "east.json", tmp_path / "west.json"
    east.write_text(json.dumps(_example()))
    west.write_text(json.dumps(_bad(_other_region(_example()), ["cluster", "value"], "other")))
    res = runner.invoke(app, ["config", "from-terraform", str(east), str(west)])
    _one_error_line(res, str(west), "'cluster' differs", str(east))


def test_same_region_twice_with_other_subnets_is_refused(tmp_path: Path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(_example()))
    b.write_text(json.dumps(_bad(_example(), ["aws_regions", "value", "us-east-1", "subnets"], {"use1-az1": "subnet-0f"})))
    res = runner.invoke(app, ["config", "from-terraform", str(a), str(b)])
    _one_error_line(res, str(b), "aws_regions", "'us-east-1' differs")


def test_missing_file(tmp_path: Path) -> None:
    res = runner.invoke(app, ["config", "from-terraform", str(tmp_path / "nope.json")])
    _one_error_line(res, "nope.json", "cannot read")


def test_one_mirror_target_from_two_outputs_is_refused(tmp_path: Path) -> None:
    azure = json.loads((Path(__file__).parent / "azure-output.json").read_text())
    azure["azure_mirror_targets"]["value"] = {"aws:us-east-1": azure["azure_mirror_targets"]["value"]["azure:eastus"]}
    a, b = tmp_path / "aws.json", tmp_path / "azure.json"
    a.write_text(EXAMPLE.read_text())
    b.write_text(json.dumps(azure))
    res = runner.invoke(app, ["config", "from-terraform", str(a), str(b)])
    _one_error_line(res, "azure_mirror_targets", "'aws:us-east-1' is filled twice")
