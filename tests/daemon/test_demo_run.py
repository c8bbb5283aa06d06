"""The embedded demo (`burst run` on the simulated queue and clouds) as real processes: the
health endpoints on the metrics port, the lease in wall time across a killed run, SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon.harness import wait_for

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return 0, ""


class Run:
    def __init__(self, tmp: Path, name: str, config: Path) -> None:
        self.port = free_port()
        self.log = tmp / f"{name}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "BURST_"))}
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", "from burst.cli import main; main()", "run", "--config", str(config),
                 "--metrics-port", str(self.port)],
                cwd=tmp, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
            )

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


@pytest.fixture
def runs() -> Iterator[list[Run]]:
    started: list[Run] = []
    yield started
    for r in started:
        if r.proc.poll() is None:
            r.proc.kill()
            r.proc.wait(timeout=10)


def test_demo_health_wall_time_lease_after_a_kill_and_sigterm(tmp_path: Path, runs: list[Run]) -> None:
    config = tmp_path / "burst.yaml"
    # 30 simulated seconds per tick at 30x: one tick per wall second; a 5 s (wall) lease.
    config.write_text(
        f"database_url: sqlite:///{tmp_path / 'burst.db'}\ntick_interval_s: 30\nlease_ttl_s: 5\n"
        "queue:\n  kind: sim\n  sim:\n    speed: 30\n",
        encoding="utf-8",
    )
    first = Run(tmp_path, "first", config)
    runs.append(first)
    wait_for("/healthz", lambda: http(first.port, "/healthz") == (200, "ok\n"), 60.0, 0.1)
    wait_for("/readyz", lambda: http(first.port, "/readyz") == (200, "ready: leader\n"), 60.0, 0.1)
    wait_for("/metrics", lambda: "\nburst_leader 1.0\n" in http(first.port, "/metrics")[1], 10.0, 0.1)
    assert http(first.port, "/nothing-here")[0] == 404
    # It runs on for a while (its simulated clock far ahead of where a new run starts)...
    time.sleep(12.0)
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(timeout=10)
    killed = time.monotonic()
    # ...and a new run (another holder: hostname:pid) leads once the 5 s lease has expired,
    # not after the 12 s the killed run had run in simulated time.
    second = Run(tmp_path, "second", config)
    runs.append(second)
    wait_for("the second run to stand by or lead", lambda: "standby: lease held by " in second.text()
             or " is now the leader" in second.text(), 60.0, 0.05)
    led = wait_for("the second run to lead", lambda: " is now the leader" in second.text(), 30.0, 0.05)
    assert led - killed < 12.0, (led - killed, second.text()[-2000:])
    wait_for("/readyz", lambda: http(second.port, "/readyz") == (200, "ready: leader\n"), 30.0, 0.1)
    second.proc.send_signal(signal.SIGTERM)
    assert second.proc.wait(timeout=30) == 0
    log = second.text()
    assert "SIGTERM: stopping after the current tick" in log and "released the lease" in log
    assert "Traceback" not in log
