"""Failover across offers under injected capacity faults, with the shared backoff semantics.

The loop here stands in for the policy/executor: offers are tried in order; on CapacityError the
offer is backed off (1, 2, 4 ... 30 min) and the next one is tried. What this test pins down is the
provider's side: one RunInstances per failed offer (no botocore retry of EC2's capacity 500s, no
loop of our own), and the number of API calls and the wall time until capacity is found.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pytest

from burst.domain import CloudInstance, Market, Offer
from burst.errors import CapacityError
from providers.aws import AwsProvider, AwsSettings
from tests.aws.helpers import CLUSTER, default_subnets, make_offer, make_spec
from tests.support.moto_server import MotoServer, capacity_fault

OFFERS = (
    make_offer("p5.48xlarge", zone="use1-az1", gpu_model="H100", price=98.32),
    make_offer("p4d.24xlarge", zone="use1-az2", market=Market.SPOT, price=12.0),
    make_offer("p4d.24xlarge", region="us-west-2", zone="usw2-az1", price=32.77),
)


@dataclass
class Backoff:
    """The shared offer backoff: 1, 2, 4 ... 30 minutes per consecutive failure."""

    until: dict[str, float] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)

    def ready(self, offer: Offer, now: float) -> bool:
        return self.until.get(offer.key, 0.0) <= now

    def fail(self, offer: Offer, now: float) -> None:
        n = self.failures.get(offer.key, 0)
        self.failures[offer.key] = n + 1
        self.until[offer.key] = now + min(60.0 * 2**n, 1800.0)


def first_fit(
    provider: AwsProvider, offers: Sequence[Offer], intent_id: str, backoff: Backoff, now: float
) -> tuple[CloudInstance | None, list[str]]:
    tried: list[str] = []
    for offer in offers:
        if not backoff.ready(offer, now):
            continue
        tried.append(offer.key)
        try:
            return provider.launch(make_spec(intent_id, offer)), tried
        except CapacityError:
            backoff.fail(offer, now)
    return None, tried


def inject_on_first_two(moto: MotoServer) -> None:
    az2 = default_subnets(moto.endpoint_url, "us-east-1")["use1-az2"]
    moto.inject(
        capacity_fault(instance_type="p5.48xlarge", region="us-east-1"),
        capacity_fault(subnet_id=az2, message="We currently do not have sufficient p4d.24xlarge capacity in use1-az2."),
    )


def run_failover(provider: AwsProvider, moto: MotoServer) -> tuple[CloudInstance | None, list[str], float]:
    moto.reset_counts()
    start = time.perf_counter()
    inst, tried = first_fit(provider, OFFERS, "b-failover", Backoff(), now=0.0)
    return inst, tried, time.perf_counter() - start


def test_failover_reaches_the_third_offer_with_one_call_per_failed_offer(
    aws_settings: Callable[..., AwsSettings], moto: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    provider = AwsProvider(aws_settings(), cluster=CLUSTER)  # launch_max_attempts=1 (the default)
    inject_on_first_two(moto)
    inst, tried, wall = run_failover(provider, moto)

    assert inst is not None and inst.region == "us-west-2" and inst.zone == "usw2-az1"
    assert tried == [o.key for o in OFFERS]
    runs = moto.requests("RunInstances")
    assert [r.injected for r in runs] == ["InsufficientInstanceCapacity", "InsufficientInstanceCapacity", ""]
    assert moto.count("RunInstances") == 3  # one per offer: no retry of capacity 500s
    total = moto.count()
    assert total <= 12, moto.calls  # RunInstances plus one-off lookups (SSM, AMI root device)
    # The call counts above are the proof (no retry, no loop). The wall time is only a coarse guard
    # against a sleep of our own (a Retry-After or backoff wait is minutes): six moto calls take
    # 0.3-3 s here depending on the load, and CI machines are shared, so 5 s failed a CI run (16:48 UTC, 2026-12-03).
    assert wall < 30.0, wall
    with capsys.disabled():
        print(
            f"\n[failover] capacity on offer 3 of 3 after {total} API calls "
            f"({moto.count('RunInstances')} RunInstances) in {wall * 1000:.0f} ms; calls: {dict(moto.calls)}"
        )

    # The next tick, 30 s later: both failed offers are cooling down, so a new intent goes straight
    # to the third offer and the faulty ones see no calls at all.
    backoff = Backoff()
    for offer in OFFERS[:2]:
        backoff.fail(offer, now=0.0)
    moto.reset_counts()
    inst2, tried2 = first_fit(provider, OFFERS, "b-failover-2", backoff, now=30.0)
    assert inst2 is not None and tried2 == [OFFERS[2].key]
    assert moto.count("RunInstances") == 1


def test_botocore_retrying_capacity_500s_would_multiply_calls(
    aws_settings: Callable[..., AwsSettings], moto: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Why launch_max_attempts defaults to 1: with botocore's standard retries on RunInstances,
    each capacity 500 is retried with exponential backoff before the offer can be skipped."""
    provider = AwsProvider(aws_settings(launch_max_attempts=3), cluster=CLUSTER)
    inject_on_first_two(moto)
    inst, _, wall = run_failover(provider, moto)
    assert inst is not None and inst.region == "us-west-2"
    assert moto.count("RunInstances") == 7  # 3 + 3 + 1
    with capsys.disabled():
        print(
            f"\n[failover, launch_max_attempts=3] {moto.count()} API calls "
            f"({moto.count('RunInstances')} RunInstances) in {wall * 1000:.0f} ms"
        )


def test_every_offer_out_of_capacity_gives_none_without_looping(
    aws_settings: Callable[..., AwsSettings], moto: MotoServer
) -> None:
    provider = AwsProvider(aws_settings(), cluster=CLUSTER)
    moto.inject(capacity_fault())  # every RunInstances, every region
    backoff = Backoff()
    inst, tried = first_fit(provider, OFFERS, "b-none", backoff, now=0.0)
    assert inst is None and len(tried) == 3
    assert moto.count("RunInstances") == 3
    assert provider.list_instances() == []
    # 61 s later only the first-failure cool-downs (1 min) have passed: one more try each
    inst, tried = first_fit(provider, OFFERS, "b-none", backoff, now=61.0)
    assert inst is None and moto.count("RunInstances") == 6
    # and then 2 min cool-downs: nothing is tried at t=120
    inst, tried = first_fit(provider, OFFERS, "b-none", backoff, now=120.0)
    assert tried == [] and moto.count("RunInstances") == 6
