"""The stand-in as a separate process with a state file: what the Azure chaos test relies on (the
cloud keeps its state while controllers are killed, and even across a restart of the stand-in)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from burst.domain import CloudState
from providers.azure import AzureProvider
from tests.aws.helpers import make_spec
from tests.azure.helpers import azure_offer, azure_settings
from tests.support.arm_standin import ArmStandin, ControlClient, StandinCredential, client_kwargs

ROOT = Path(__file__).resolve().parents[2]


def _start(state: Path, ready: Path) -> tuple[subprocess.Popen[bytes], str]:
    ready.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.arm_standin", "--port", "0", "--state", str(state), "--ready-file", str(ready)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the stand-in process did not start")
        time.sleep(0.05)
    return proc, f"http://127.0.0.1:{ready.read_text()}"


@pytest.fixture
def paths(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    yield tmp_path / "arm.json", tmp_path / "arm.port"


def _provider(endpoint: str, standin_like: ArmStandin) -> AzureProvider:
    settings = azure_settings(standin_like, base_url=endpoint)
    return AzureProvider(settings, cluster="site-a", credential=StandinCredential(), client_kwargs=client_kwargs())


def test_state_survives_a_sigkill_of_the_stand_in(paths: tuple[Path, Path]) -> None:
    state, ready = paths
    proc, endpoint = _start(state, ready)
    try:
        shape = ArmStandin(state_file=state)  # reads the same state: subnets, subscription
        provider = _provider(endpoint, shape)
        inst = provider.launch(make_spec("b-proc-1", azure_offer()))
        control = ControlClient(endpoint)
        control.fail(op="put_vm", code="AllocationFailed")
        with pytest.raises(Exception, match="AllocationFailed"):
            provider.launch(make_spec("b-proc-2", azure_offer()))
        snap = control.snapshot()
        assert [v["name"] for v in snap["vms"]] == ["b-proc-1"] and snap["created"] == 2
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    proc, endpoint = _start(state, ready)
    try:
        found = _provider(endpoint, ArmStandin(state_file=state)).find("b-proc-1")
        assert found is not None and found.cloud_id == inst.cloud_id and found.state is CloudState.RUNNING
        assert ControlClient(endpoint).usage(location="eastus", name="cores") == [24, 10000]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
