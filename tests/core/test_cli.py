"""The ``burst`` command: bad input is one line, exit 2, nothing written; the happy paths work."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from burst.cli import app

runner = CliRunner()

ITP = "job_id,submission_time,duration,num_gpu\n"


def _burst(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, list(args))


def _one_error_line(res, *words: str) -> str:  # type: ignore[no-untyped-def]
    assert res.exit_code == 2, (res.exit_code, res.stdout, res.stderr)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    assert "Traceback" not in res.stderr + res.stdout
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


def _trace(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "trace.csv"
    p.write_text(ITP + body)
    return p


@pytest.mark.parametrize(
    ("body", "line", "word"),
    [
        ("a,0,100,1\nb,5,100\n", 3, "fewer fields"),
        ("a,0,100,1\nb,5,-100,1\n", 3, "duration"),
        ("a,0,100,x\n", 2, "num_gpu"),
    ],
    ids=["malformed-row", "negative-duration", "non-numeric"],
)
def test_simulate_bad_trace_row(tmp_path: Path, body: str, line: int, word: str) -> None:
    trace = _trace(tmp_path, body)
    report = tmp_path / "report"
    res = _burst("simulate", "--trace", str(trace), "--policy", "never", "--report", str(report))
    _one_error_line(res, f"{trace}:{line}", word)
    assert not report.exists()


def test_simulate_missing_column(tmp_path: Path) -> None:
    trace = tmp_path / "trace.csv"
    trace.write_text("job_id,submission_time,num_gpu\na,0,1\n")
    report = tmp_path / "report"
    res = _burst("simulate", "--trace", str(trace), "--report", str(report))
    _one_error_line(res, f"{trace}:1", "duration")
    assert not report.exists()


def test_simulate_unknown_policy(tmp_path: Path) -> None:
    report = tmp_path / "report"
    res = _burst("simulate", "--days", "1", "--policy", "never,yolo", "--report", str(report))
    _one_error_line(res, "--policy", "yolo")
    assert not report.exists()


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("policy:\n  wait_threshhold_min: 5\n", ["policy.wait_threshhold_min", "unknown key"]),
        ("colour: blue\n", ["colour", "unknown key"]),
        ("policy:\n  wait_threshold_min: -5\n", ["policy.wait_threshold_min", "-5"]),
        ("tick_interval_s: 300\npolicy:\n  idle_timeout_min: 1\n", ["idle_timeout_min", "tick"]),
        ("policy: [1, 2\n", ["not valid YAML"]),
        # sections validated by their own models report under their full key
        ("queue:\n  kind: slurm\n  slurm: {slurm_conf: /etc/slurm.conf, timout_s: 5}\n", ["queue.slurm.timout_s", "unknown key"]),
        ("slack:\n  admin: [U1]\n", ["slack.admin", "unknown key"]),
        ("mirror:\n  source: {registry: harbor.local}\n  paralel: 4\n", ["mirror.paralel", "unknown key"]),
        (
            "clouds:\n  aws:\n    simulated: false\n    settings:\n      regions:\n        us-east-1: {ami: nope, subnets: {use1-az1: subnet-1}}\n",
            ["clouds.aws.settings.regions.us-east-1.ami", "'nope'"],
        ),
    ],
    ids=[
        "typo-key", "unknown-top-key", "negative-threshold", "idle-shorter-than-tick", "bad-yaml",
        "slurm-section-key", "slack-section-key", "mirror-section-key", "aws-section-value",
    ],
)
def test_config_check_refuses_bad_config(tmp_path: Path, text: str, words: list[str]) -> None:
    cfg = tmp_path / "burst.yaml"
    cfg.write_text(text)
    res = _burst("config", "check", str(cfg))
    _one_error_line(res, str(cfg), *words)


def test_config_check_reports_every_problem_one_per_line(tmp_path: Path) -> None:
    cfg = tmp_path / "burst.yaml"
    cfg.write_text("colour: blue\npolicy:\n  wait_threshold_min: -5\n")
    res = _burst("config", "check", str(cfg))
    assert res.exit_code == 2
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 2 and all(str(cfg) in ln for ln in lines)


@pytest.mark.parametrize("name", ["burst.example.yaml", "burst.production.yaml"])
def test_shipped_example_configs_pass_config_check(name: str) -> None:
    path = Path(__file__).resolve().parents[2] / "docs" / name
    res = _burst("config", "check", str(path))
    assert res.exit_code == 0, res.stderr
    assert "ok" in res.stdout


def test_config_check_ok(tmp_path: Path) -> None:
    cfg = tmp_path / "burst.yaml"
    cfg.write_text("cluster: lab\npolicy:\n  wait_threshold_min: 15\n")
    res = _burst("config", "check", str(cfg))
    assert res.exit_code == 0, res.stderr
    assert "ok" in res.stdout and "lab" in res.stdout


def test_run_with_bad_config_writes_no_database(tmp_path: Path) -> None:
    db = tmp_path / "db" / "b.db"
    cfg = tmp_path / "burst.yaml"
    cfg.write_text(f"database_url: sqlite:///{db}\npolicy:\n  wait_threshold_min: 0\n")
    res = _burst("run", "--once", "--config", str(cfg))
    _one_error_line(res, str(cfg), "wait_threshold_min")
    assert not db.parent.exists()


def test_run_once_then_status(tmp_path: Path) -> None:
    trace = _trace(tmp_path, "".join(f"j{k},0,86400,8\n" for k in range(6)))  # all submitted at once
    db = tmp_path / "state" / "b.db"
    cfg = tmp_path / "burst.yaml"
    cfg.write_text(
        f"cluster: cli-test\ndatabase_url: sqlite:///{db}\n"
        f"queue:\n  kind: sim\n  sim:\n    nodes: 2\n    start_day: 0\n    trace: {trace}\n"
    )
    res = _burst("run", "--once", "--config", str(cfg))
    assert res.exit_code == 0, (res.stdout, res.stderr)
    assert db.exists()
    res = _burst("status", "--config", str(cfg), "--json")
    assert res.exit_code == 0, res.stderr
    data = json.loads(res.stdout.strip().splitlines()[-1])
    last = data["last_tick"]
    assert last is not None and last["skipped"] == ""
    assert last["onprem_gpus"] == 16 and last["pending"] + last["running"] == 6
    assert last["running"] == 2  # two 8-GPU nodes, first fit
    # human form too
    res = _burst("status", "--config", str(cfg))
    assert res.exit_code == 0 and "last tick" in res.stdout


def test_simulate_happy_path_writes_report(tmp_path: Path) -> None:
    report = tmp_path / "report"
    res = _burst("simulate", "--days", "2", "--nodes", "40", "--policy", "never,burst,clairvoyant", "--report", str(report), "--json")
    assert res.exit_code == 0, (res.stdout, res.stderr)
    summary = json.loads((report / "summary.json").read_text())
    assert summary  # the figures per policy
    text = json.dumps(summary)
    for name in ("never", "burst", "clairvoyant"):
        assert name in text
    pngs = sorted(p.name for p in report.glob("*.png"))
    assert pngs == ["gpus_over_time.png", "queue_length.png", "spend.png", "wait_cdf.png"]
    assert all((report / p).stat().st_size > 1000 for p in pngs)
    last = json.loads(res.stdout.strip().splitlines()[-1])
    assert set(last["policies"]) == {"never", "burst", "clairvoyant"}
    assert last["policies"]["never"]["cloud_usd"] == 0
    assert last["policies"]["burst"]["cloud_usd"] > 0


def test_real_entry_point_bad_input_exit_code(tmp_path: Path) -> None:
    """Through the installed console script's main(), not only the Typer app."""
    trace = _trace(tmp_path, "a,0,-1,1\n")
    out = subprocess.run(
        [sys.executable, "-c", "from burst.cli import main; main()", "simulate", "--trace", str(trace), "--policy", "never"],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 2
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and f"{trace}:2" in lines[0]
