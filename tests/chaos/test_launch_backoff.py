"""Regression: a failed offer is not called again within its cool-down, within a tick or across.

Found by tests/chaos/test_aws_faults.py: with EC2 throttling RunInstances, every tick re-sent each
PLANNED intent to the offer that had just failed (recovery relaunched it regardless of the offer's
backoff), and the launches the policy had planned on one offer in the same tick all called it
after the first had failed: 15 RunInstances on one throttled offer in 4 s. Now an intent whose
offer is cooling down is closed without a call, and the policy fails over to the next offer.
"""

from __future__ import annotations

from collections import Counter

from burst.domain import InstanceState, LaunchSpec
from burst.errors import TransientProviderError
from tests.core.world import AWS_AZ1, AWS_AZ2, T0, TICK, World


def test_throttled_offer_is_called_once_then_the_next_offer_serves() -> None:
    w = World()
    w.submit("hog", 8, 100_000)
    for k in range(3):
        w.submit(f"b{k}", 8, 600, at=T0 - 3600)  # overdue: each needs its own 8-GPU instance now
    aws = w.providers["aws"]
    real = aws.launch
    calls: Counter[str] = Counter()

    def throttled_on_az1(spec: LaunchSpec):  # type: ignore[no-untyped-def]
        calls[spec.offer.key] += 1
        if spec.offer.key == AWS_AZ1.key:
            raise TransientProviderError("Request limit exceeded.", provider="aws", code="RequestLimitExceeded")
        return real(spec)

    aws.launch = throttled_on_az1  # type: ignore[method-assign]
    t = T0 + TICK
    for dt in range(0, 25, 5):  # five ticks, 5 s apart: all within the offer's 30 s cool-down
        w.tick(t + dt)
    assert calls[AWS_AZ1.key] == 1, calls  # the first planned launch only; never again in its cool-down
    assert calls[AWS_AZ2.key] == 3, calls  # the policy failed over, one instance per job
    live = [i for i in w.store.live_instances() if i.state is not InstanceState.TERMINATED]
    assert sorted(i.offer_key for i in live) == [AWS_AZ2.key] * 3
    closed = [i for i in w.store.instances() if i.offer_key == AWS_AZ1.key]
    assert closed and all(i.state is InstanceState.TERMINATED for i in closed)
