"""The shipped systemd unit of the controller keeps what docs/deploy/burst-controller.service says."""

from __future__ import annotations

from pathlib import Path

import pytest

from burst.daemon import default_holder

UNIT = Path(__file__).resolve().parents[2] / "docs" / "deploy" / "burst-controller.service"


def service_settings() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    section = ""
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line
            continue
        if section == "[Service]":
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


def test_the_unit_sets_a_stable_holder_id() -> None:
    env = [v for v in service_settings()["Environment"] if v.startswith("BURST_HOLDER_ID=")]
    assert env == ["BURST_HOLDER_ID=burst-controller@%H"]  # the host name: the same after a restart
    assert not any(x in env[0] for x in ("%p", "MAINPID", "%i"))


def test_the_unit_stops_with_sigterm_and_waits_for_the_tick() -> None:
    s = service_settings()
    assert s["KillSignal"] == ["SIGTERM"]
    assert int(s["TimeoutStopSec"][0]) >= 60
    assert "--metrics-port" in s["ExecStart"][0]  # /healthz and /readyz are served there too


def test_default_holder_is_burst_holder_id_when_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BURST_HOLDER_ID", "burst-controller@host-a")
    assert default_holder() == "burst-controller@host-a"
    monkeypatch.delenv("BURST_HOLDER_ID")
    assert default_holder().endswith(":" + str(__import__("os").getpid()))
