"""The wiring composes adapters with one ordinary Controller: the live path loads neither the
simulator nor the bot, the simulated queue is the simulator's adapter set (no Simulation), and the
Slack notifier comes from the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bot.notifier import SlackNotifier, slack_notifier
from burst.config import parse_config
from burst.ports import Notifier
from burst.store.memory import MemoryStore
from burst.wiring import build_runtime

ROOT = Path(__file__).resolve().parents[2]


def _modules_after(code: str) -> list[str]:
    """Run ``code`` in a fresh interpreter; the burst.sim and bot modules it loaded."""
    probe = code + (
        "\nimport sys, json\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'bot' or m.startswith('burst.sim'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    loaded: list[str] = json.loads(out.stdout.strip().splitlines()[-1])
    return loaded


def test_live_wiring_on_a_real_queue_loads_no_simulator_and_no_bot(tmp_path: Path) -> None:
    queue = tmp_path / "queue.json"
    queue.write_text('{"jobs": [], "nodes": []}', "utf-8")
    cfg = {
        "queue": {"kind": "jsonfile", "jsonfile": str(queue)},
        "clouds": {"aws": {"enabled": False}, "azure": {"enabled": False}},
        "policy": {"burst_enabled": False},
    }
    loaded = _modules_after(
        "from burst.config import parse_config\nfrom burst.store.memory import MemoryStore\n"
        "from burst.wiring import build_runtime\n"
        f"rt = build_runtime(parse_config({cfg!r}), store=MemoryStore())\n"
        "assert type(rt.clock).__module__ == 'burst.clock', rt.clock\n"
    )
    assert loaded == []


def test_simulated_queue_is_the_simulators_adapter_set_with_an_ordinary_controller(tmp_path: Path) -> None:
    trace = tmp_path / "trace.csv"
    trace.write_text("job_id,submission_time,duration,num_gpu\nj0,0,3600,8\n", "utf-8")
    cfg = {"queue": {"kind": "sim", "sim": {"nodes": 2, "start_day": 0, "trace": str(trace)}}}
    loaded = _modules_after(
        "from burst.config import parse_config\nfrom burst.store.memory import MemoryStore\n"
        "from burst.wiring import build_runtime\nfrom burst.sim.cluster import SimCluster\n"
        f"rt = build_runtime(parse_config({cfg!r}), store=MemoryStore())\n"
        "assert isinstance(rt.queue, SimCluster) and rt.before_tick is not None and rt.after_tick is not None\n"
        "assert sorted(rt.providers) == ['aws', 'azure'], rt.providers\n"
        "assert rt.controller.tick(rt.clock.now()) is not None\n"
    )
    assert "burst.sim.world" in loaded
    assert "burst.sim.runner" not in loaded  # no Simulation is built for the live daemon
    assert not [m for m in loaded if m.split(".")[0] == "bot"]


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def notify(self, audience: str, text: str) -> None:
        self.sent.append((audience, text))


def test_the_notifier_is_handed_in_not_built_by_the_wiring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLACK_BOT_TOKEN", raising=False)
    monkeypatch.delenv("SLACK_BOT_TOKEN_FILE", raising=False)
    trace = tmp_path / "trace.csv"
    trace.write_text("job_id,submission_time,duration,num_gpu\nj0,0,3600,8\n", "utf-8")
    cfg = parse_config({"queue": {"kind": "sim", "sim": {"nodes": 2, "start_day": 0, "trace": str(trace)}}})
    rec: Notifier = Recorder()
    rt = build_runtime(cfg, store=MemoryStore(), notifier=rec)
    assert rt.controller.executor.notifier is rec
    assert build_runtime(cfg, store=MemoryStore()).controller.executor.notifier is None


def test_slack_notifier_needs_a_bot_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLACK_BOT_TOKEN", raising=False)
    monkeypatch.delenv("SLACK_BOT_TOKEN_FILE", raising=False)
    assert slack_notifier({"admin_channel": "C1"}) is None
    token = tmp_path / "token"
    token.write_text("xoxb-from-file\n", "utf-8")
    monkeypatch.setenv("SLACK_BOT_TOKEN_FILE", str(token))
    got = slack_notifier({"admin_channel": "C1"})
    assert isinstance(got, SlackNotifier)
    assert got.client.token == "xoxb-from-file" and got.settings.admin_channel == "C1"
