"""Faults: EC2 says no, and the controller (a real ``burst run`` subprocess) still serves the jobs.

While the controller runs against moto, the fault middleware answers RunInstances with
``InsufficientInstanceCapacity`` (HTTP 500) for the cheapest offer all along, and with
``RequestLimitExceeded`` (HTTP 503, throttling) for every other offer for a few seconds from the
first call on. The controller must
fail over to the next offer and serve every job, and must not hammer EC2: an offer that failed is
not called again within its cool-down (capacity: ``backoff.base_s``; throttling: the executor's
transient base, 30 s), so every offer sees at most one failed RunInstances in this test.

RunInstances calls are stamped with the time the test first saw them (polled every 0.1 s) and
attributed to an offer by instance type and subnet (= AZ).
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

import pytest

from burst.config import load_config
from burst.wiring import offers_for
from policies.selection import Context, Need, rank
from tests.aws.helpers import default_subnets
from tests.chaos.harness import REGION, ControllerProcess, JobSpec, PlayedCluster, ec2_client, write_config
from tests.support.moto_server import MotoServer, capacity_fault, throttle_fault

pytestmark = pytest.mark.slow

THROTTLE_S = 3.0
BUDGET_S = 60.0


def test_capacity_and_throttling_fail_over_without_a_retry_loop(
    moto: MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, queue, _ = write_config(tmp_path, moto, accelerators=["A100", "H100"], backoff_base_s=60.0)
    offers = rank(offers_for(load_config(config)), Need(8), Context(0.0, {}, frozenset()))
    assert len(offers) >= 3
    cheapest = offers[0]
    subnets = default_subnets(moto.endpoint_url, REGION)
    zone_of_subnet = {v: k for k, v in subnets.items()}
    throttle = throttle_fault()
    # The first matching rule answers: the cheapest offer always gets ICE, the others are throttled.
    moto.inject(capacity_fault(instance_type=cheapest.instance_type, subnet_id=subnets[cheapest.zone]), throttle)
    moto.reset_counts()

    jobs = [JobSpec(f"big-{k}", 8, 0.0, 600.0) for k in range(3)]  # they run until the test ends
    cluster = PlayedCluster(queue, ec2_client(moto), jobs, boot_s=0.0)
    cluster.init()
    ctl = ControllerProcess(config, tmp_path)
    t0 = time.monotonic()
    ctl.start()
    seen: list[tuple[float, str, str]] = []  # (t, offer key, injected error code or "")
    throttle_off_at: float | None = None
    served_at: float | None = None
    try:
        def record(now: float) -> None:
            for r in moto.requests("RunInstances")[len(seen):]:
                key = f"aws/{REGION}/{zone_of_subnet.get(r.params.get('SubnetId', ''), '?')}/{r.params['InstanceType']}/on-demand"
                seen.append((now, key, r.injected))

        while served_at is None:
            now = time.monotonic() - t0
            record(now)
            if throttle_off_at is None and seen:
                throttle_off_at = seen[0][0] + THROTTLE_S
            if throttle_off_at is not None and now >= throttle_off_at and throttle in moto.middleware.faults:
                with moto.middleware.lock:
                    moto.middleware.faults.remove(throttle)
            cluster.step()
            if len(cluster.first_placed) == len(jobs):
                # A launch made between the record above and this step can have served the last
                # job (instances join at once here): it belongs before "served", not after.
                record(now)
                served_at = now
                break
            assert ctl.exit_code() is None, ctl.text()[-4000:]
            assert now < BUDGET_S, f"jobs not served in {BUDGET_S:.0f}s; RunInstances: {seen}\n{ctl.text()[-3000:]}"
            time.sleep(0.1)
        calls_to_capacity = moto.count()
        run_calls = moto.count("RunInstances")
        time.sleep(3.0)  # a few more ticks: nothing may go back to the failed offers yet
        cluster.step()
        tail_runs = moto.requests("RunInstances")[len(seen):]
    finally:
        ctl.stop()

    per_offer: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for t, key, code in seen:
        per_offer[key].append((t, code))
    timeline = {k: [f"{t:.1f}s:{c or 'ok'}" for t, c in v] for k, v in per_offer.items()}
    with capsys.disabled():
        print(
            f"\n[faults] capacity for {len(jobs)} jobs after {served_at:.1f}s and {calls_to_capacity} API calls "
            f"({run_calls} RunInstances, {sum(1 for _, _, c in seen if c == 'RequestLimitExceeded')} throttled, "
            f"{sum(1 for _, _, c in seen if c == 'InsufficientInstanceCapacity')} ICE); per offer: {timeline}"
        )

    assert not tail_runs, f"RunInstances after the jobs were served: {tail_runs}"
    assert any(c == "InsufficientInstanceCapacity" for _, _, c in seen), "the cheapest offer was never tried"
    assert any(c == "RequestLimitExceeded" for _, _, c in seen), "the throttle window saw no call"
    for key, calls in per_offer.items():
        failed = [t for t, c in calls if c]
        # A failed offer is cooling down for >= 30 s, longer than this test: one failure each at most,
        # and nothing after it.
        assert len(failed) <= 1 and (not failed or calls[-1][1]), f"{key} retried in its cool-down: {timeline}"
    assert all(not c for _, key, c in seen if key != cheapest.key and c == "InsufficientInstanceCapacity")
    ok = [key for _, key, c in seen if not c]
    assert cheapest.key not in ok and len(ok) >= 1
