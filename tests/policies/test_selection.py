"""policies/selection.py: the strategy chain and failover order, and the same through decide()."""

from __future__ import annotations

import dataclasses

import pytest

from burst.domain import Launch, Market
from policies import decide
from policies.model import SelectionConfig
from policies.selection import Context, Need, rank
from tests.policies.helpers import (
    A100_1,
    A100_8_AZ1,
    A100_8_AZ2,
    A100_8_AZURE,
    A100_8_SPOT,
    A100_8_WEST,
    A100_MARKET,
    CFG,
    H100_8,
    MARKET,
    MIN,
    NOW,
    V100_8,
    full_cluster,
    job,
    offer,
    snap,
)


def ctx(backoff: dict[str, float] | None = None, disabled: tuple[str, ...] = (), now: float = NOW) -> Context:
    return Context(now, backoff or {}, frozenset(disabled), 0.3)


LATER = NOW + 600

CASES = [
    # (id, offers, need, context, expected first offer)
    ("cheapest-per-gpu-hour-any-model", MARKET, Need(8), ctx(), V100_8),
    ("model-filter", MARKET, Need(8, "A100"), ctx(), A100_8_AZ1),
    ("memory-filter", MARKET, Need(8, "", 80.0), ctx(), H100_8),
    ("one-gpu-cheapest-per-gpu", A100_MARKET, Need(1), ctx(), A100_8_AZ1),
    ("exact-gpus-for-gangs", A100_MARKET, Need(1, exact_gpus=1), ctx(), A100_1),
    ("backoff-fails-over-to-next-zone", A100_MARKET, Need(8), ctx({A100_8_AZ1.key: LATER}), A100_8_AZ2),
    (
        "backoff-fails-over-to-next-region",
        A100_MARKET,
        Need(8),
        ctx({A100_8_AZ1.key: LATER, A100_8_AZ2.key: LATER}),
        A100_8_WEST,
    ),
    (
        "backoff-fails-over-to-next-cloud",
        A100_MARKET,
        Need(8),
        ctx({A100_8_AZ1.key: LATER, A100_8_AZ2.key: LATER, A100_8_WEST.key: LATER}),
        A100_8_AZURE,
    ),
    ("expired-backoff-is-ignored", A100_MARKET, Need(8), ctx({A100_8_AZ1.key: NOW}), A100_8_AZ1),
    ("disabled-provider-skipped", A100_MARKET, Need(8), ctx(disabled=("aws",)), A100_8_AZURE),
    ("spot-excluded-unless-allowed", MARKET, Need(8, "A100"), ctx(), A100_8_AZ1),
    ("spot-when-allowed-and-much-cheaper", MARKET, Need(8, "A100", allow_spot=True), ctx(), A100_8_SPOT),
]


@pytest.mark.parametrize(("offers", "need", "context", "best"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rank_best(offers, need, context, best) -> None:  # type: ignore[no-untyped-def]
    got = rank(offers, need, context)
    assert got and got[0] == best


def test_rank_full_order_is_by_price_per_gpu_then_key() -> None:
    got = rank(A100_MARKET, Need(1), ctx())
    assert got == [A100_8_AZ1, A100_8_AZ2, A100_8_WEST, A100_8_AZURE, A100_1]


def test_nothing_eligible() -> None:
    everything = {o.key: LATER for o in A100_MARKET}
    assert rank(A100_MARKET, Need(8), ctx(everything)) == []
    assert rank(A100_MARKET, Need(16), ctx()) == []
    assert rank(A100_MARKET, Need(8), ctx(disabled=("aws", "azure"))) == []


def test_spot_only_when_clearly_cheaper() -> None:
    slight = offer(zone="use1-az1", price=30.0, market=Market.SPOT)  # 6% cheaper: below the 30% bar
    got = rank((A100_8_AZ1, slight), Need(8, allow_spot=True), ctx())
    assert got[0] == A100_8_AZ1


def test_failover_through_decide_uses_snapshot_backoff_and_disabled() -> None:
    pending = [job("a", 8, 30 * MIN, gpu_model="A100")]
    p = decide(snap(pending, full_cluster(), offers=A100_MARKET), CFG)
    assert p.of(Launch)[0].offer == A100_8_AZ1
    p = decide(snap(pending, full_cluster(), offers=A100_MARKET, backoff={A100_8_AZ1.key: LATER}), CFG)
    assert p.of(Launch)[0].offer == A100_8_AZ2
    p = decide(snap(pending, full_cluster(), offers=A100_MARKET, disabled=("aws",)), CFG)
    assert p.of(Launch)[0].offer == A100_8_AZURE
    p = decide(snap(pending, full_cluster(), offers=A100_MARKET, disabled=("aws", "azure")), CFG)
    assert p.of(Launch) == [] and any("no eligible offer" in n for n in p.notes)


def test_spot_through_decide_only_when_config_allows() -> None:
    pending = [job("a", 8, 30 * MIN, gpu_model="A100")]
    p = decide(snap(pending, full_cluster()), CFG)
    assert p.of(Launch)[0].offer.market is Market.ON_DEMAND
    spot_cfg = dataclasses.replace(CFG, selection=SelectionConfig(allow_spot=True))
    p = decide(snap(pending, full_cluster()), spot_cfg)
    assert p.of(Launch)[0].offer == A100_8_SPOT


def test_gpu_model_and_memory_of_the_job_are_honoured() -> None:
    p = decide(snap([job("h", 8, 30 * MIN, gpu_model="H100")], full_cluster()), CFG)
    assert p.of(Launch)[0].offer == H100_8
    p = decide(snap([job("m", 8, 30 * MIN, mem=80.0)], full_cluster()), CFG)
    assert p.of(Launch)[0].offer.gpu_memory_gib >= 80.0
