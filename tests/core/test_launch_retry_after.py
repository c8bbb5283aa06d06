"""A cloud's ``Retry-After`` hint reaches the controller's backoff (issue 11; burst/ports.py: "no
hidden sleeping"). The SDK does not sleep on it (azure-core ``retry_total=0``); the offer cools
down for at least the hint instead, so the next launch attempt on that offer waits it out, and is
made once it has passed.

Everything real but the clock: a live config with the JSON queue and real Azure
(azure-mgmt-compute against the ARM stand-in, which answers the first VM PUT with 429 and a
``Retry-After`` header), composed by ``burst.wiring.build_runtime`` and driven by
``Controller.tick`` on a manual clock: the policy, the executor, the backoff table and the intents
are the production ones.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from burst.config import parse_config
from burst.domain import TAG_ID
from burst.queues.jsonfile import write_doc
from burst.sim.clock import VirtualClock
from burst.store.memory import MemoryStore
from burst.wiring import AzureAccess, Runtime, build_runtime
from providers.azure import AzureProvider
from tests.azure.helpers import azure_settings
from tests.support.arm_standin import ArmStandin, StandinCredential, client_kwargs, serve_standin

CLUSTER = "retry-after"
T0 = 1_780_000_000.0
TICK_S = 30.0
HINT_S = 200  # far above the transient cool-down (30 s) and the capacity one (60 s)
VM_PUT = r"/virtualMachines/[^/]+$"
CSV_HEADER = "cloud,instance_type,accelerator_name,accelerator_count,vcpus,memory_gib,region,availability_zone,price_per_hour,spot_price_per_hour\n"


@pytest.fixture
def standin() -> Iterator[ArmStandin]:
    yield from serve_standin()


def build(tmp_path: Path, standin: ArmStandin, **backoff: float) -> Runtime:
    catalog = tmp_path / "prices.csv"
    catalog.write_text(CSV_HEADER + "azure,Standard_ND96asr_v4,A100,8,96,900,eastus,,27.197,9.0657\n")
    queue = tmp_path / "queue.json"
    write_doc(queue, {
        "nodes": [{"name": "onprem-0", "gpus": 8, "gpus_used": 8, "running_jobs": 1}],
        "running": [{"id": "hog", "gpus": 8, "submit_time": T0 - 7200, "start_time": T0 - 7000,
                     "node_names": ["onprem-0"], "may_burst": False}],
        "pending": [{"id": "train-1", "gpus": 8, "submit_time": T0, "may_burst": True, "team": "x"}],
    })
    raw = {
        "cluster": CLUSTER,
        "tick_interval_s": TICK_S,
        "queue": {"kind": "jsonfile", "jsonfile": str(queue)},
        "clouds": {"azure": {"settings": json.loads(azure_settings(standin).model_dump_json())}},
        "offers": {"catalog": str(catalog), "regions": ["eastus"], "accelerators": ["A100"]},
        "policy": {"wait_target_min": 10.0, "wait_threshold_min": 1.0, "default_boot_min": 1.0},
        "backoff": backoff,
    }
    cfg = parse_config(raw)
    access = AzureAccess(credential=StandinCredential(standin.token), client_kwargs=client_kwargs())
    rt = build_runtime(cfg, store=MemoryStore(), clock=VirtualClock(T0), azure_access=access)
    assert isinstance(rt.providers["azure"], AzureProvider)
    return rt


def put_times(rt: Runtime, standin: ArmStandin, until: float) -> list[float]:
    """Tick every TICK_S from T0 to ``until``; the virtual times at which a tick sent a VM PUT."""
    times: list[float] = []
    t = T0
    while t < until:
        t += TICK_S
        before = standin.count("PUT", VM_PUT)
        started = time.monotonic()
        rt.controller.tick(t)
        # no hidden sleeping: a tick that met a 429 with a 200 s hint returns at once
        assert time.monotonic() - started < 10.0
        times += [t] * (standin.count("PUT", VM_PUT) - before)
    return times


def test_the_next_launch_on_a_throttled_offer_waits_for_retry_after_and_no_longer(
    tmp_path: Path, standin: ArmStandin
) -> None:
    rt = build(tmp_path, standin)
    standin.throttle("put_vm", retry_after=HINT_S, times=1)

    times = put_times(rt, standin, T0 + 20 * TICK_S)

    first, *later = times
    assert first <= T0 + 3 * TICK_S  # the overflow launched once the job had waited, and met the 429
    assert later, "the launch was never tried again"
    # not before the hint expired: the transient cool-down alone (30 s) would have retried on the
    # very next tick ...
    assert later[0] >= first + HINT_S
    # ... and at the first tick after it
    assert later[0] < first + HINT_S + TICK_S
    assert len(later) == 1  # the retry went through: one VM for the job
    (vm,) = standin.vms()
    inst = rt.store.get_instance(vm["tags"][TAG_ID])
    assert inst is not None and inst.cloud == "azure"
    assert inst.created_at >= first + HINT_S


def test_a_hint_beyond_the_configured_cap_is_capped(tmp_path: Path, standin: ArmStandin) -> None:
    rt = build(tmp_path, standin, base_s=60.0, cap_s=120.0)
    standin.throttle("put_vm", retry_after=100_000, times=1)  # a bogus hint may not park the offer for a day

    first, *later = put_times(rt, standin, T0 + 10 * TICK_S)

    assert later and first + 120.0 <= later[0] < first + 120.0 + TICK_S

