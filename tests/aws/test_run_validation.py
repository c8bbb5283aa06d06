"""`burst run` checks the AWS configuration against EC2 before any launch."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import yaml

from providers.aws import AwsSettings
from tests.support.moto_server import MotoServer


def _config(tmp_path: Path, aws: AwsSettings) -> Path:
    queue = tmp_path / "queue.json"
    queue.write_text(json.dumps({"pending": [], "running": [], "nodes": []}))
    cfg = {
        "cluster": "val",
        "database_url": f"sqlite:///{tmp_path / 'b.db'}",
        "queue": {"kind": "jsonfile", "jsonfile": str(queue)},
        "clouds": {"aws": {"simulated": False, "settings": json.loads(aws.model_dump_json())}, "azure": {"enabled": False}},
        "offers": {"regions": ["us-east-1"]},
    }
    path = tmp_path / "burst.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _run(cfg: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "burst.cli", "run", "--config", str(cfg), "--once"],
                          capture_output=True, text=True, timeout=120)


def test_missing_ami_stops_the_daemon_before_any_launch(
    tmp_path: Path, moto: MotoServer, aws_settings: Callable[..., AwsSettings]
) -> None:
    good = aws_settings()
    region = good.regions["us-east-1"].model_copy(update={"ami": "ami-00000000deadbeef0"})
    bad = good.model_copy(update={"regions": {"us-east-1": region}})
    proc = _run(_config(tmp_path, bad))
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "ami" in errors[0].lower(), proc.stderr
    assert moto.count("RunInstances") == 0


def test_good_configuration_runs_a_tick(tmp_path: Path, moto: MotoServer, aws_settings: Callable[..., AwsSettings]) -> None:
    proc = _run(_config(tmp_path, aws_settings()))
    assert proc.returncode == 0, proc.stderr
