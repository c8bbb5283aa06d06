"""policies/packing.py: sharing instances between small jobs, and gangs, via decide()."""

from __future__ import annotations

import dataclasses

import pytest

from burst.domain import Launch
from policies import decide
from policies.model import SelectionConfig
from policies.packing import SlotPool, pack_small_jobs
from policies.selection import Context, Need, rank
from tests.policies.helpers import (
    A100_1,
    A100_8_AZ1,
    A100_8_AZ2,
    A100_8_WEST,
    A100_MARKET,
    CFG,
    MIN,
    NOW,
    full_cluster,
    job,
    offer,
    snap,
)


def _ranker(offers):  # type: ignore[no-untyped-def]
    c = Context(NOW, {}, frozenset())
    return lambda gpus, j: rank(offers, Need(gpus, j.gpu_model, j.min_gpu_memory_gib), c)


def _ones(n: int) -> list:  # type: ignore[type-arg]
    return [job(f"j{k}", 1, (30 + k) * MIN, gpu_model="A100") for k in range(n)]


def test_eight_one_gpu_jobs_share_one_8_gpu_instance() -> None:
    p = decide(snap(_ones(8), full_cluster(), offers=A100_MARKET), CFG)
    (lc,) = p.of(Launch)
    assert lc.offer == A100_8_AZ1
    assert sorted(lc.for_jobs) == sorted(f"j{k}" for k in range(8))


def test_three_one_gpu_jobs_get_their_own_small_instances() -> None:
    # 3 x $5 < one $32 instance
    p = decide(snap(_ones(3), full_cluster(), offers=A100_MARKET), CFG)
    launches = p.of(Launch)
    assert [lc.offer for lc in launches] == [A100_1] * 3
    assert sorted(j for lc in launches for j in lc.for_jobs) == ["j0", "j1", "j2"]


def test_packing_off_gives_one_instance_per_job() -> None:
    cfg = dataclasses.replace(CFG, selection=SelectionConfig(pack=False))
    p = decide(snap(_ones(8), full_cluster(), offers=A100_MARKET), cfg)
    assert [lc.offer for lc in p.of(Launch)] == [A100_1] * 8


def test_nine_jobs_fill_one_bin_and_one_single() -> None:
    bins, unplaceable = pack_small_jobs(_ones(9), _ranker(A100_MARKET), pack=True, min_saving=0.0)
    assert unplaceable == []
    assert sorted((b.offer.gpu_count, len(b.jobs)) for b in bins) == [(1, 1), (8, 8)]


def test_min_saving_can_forbid_a_marginal_pack() -> None:
    # 7 x $5 = $35 vs $32: 8.6% saving
    bins, _ = pack_small_jobs(_ones(7), _ranker(A100_MARKET), pack=True, min_saving=0.0)
    assert [b.offer for b in bins] == [A100_8_AZ1]
    bins, _ = pack_small_jobs(_ones(7), _ranker(A100_MARKET), pack=True, min_saving=0.1)
    assert [b.offer for b in bins] == [A100_1] * 7


def test_jobs_with_different_models_never_share() -> None:
    h = offer(itype="p5.1x", gpu="H100", count=1, price=10.0)
    h8 = offer(itype="p5.48xlarge", gpu="H100", count=8, price=70.0)
    jobs = [*_ones(4), *[job(f"h{k}", 1, 40 * MIN, gpu_model="H100") for k in range(4)]]
    bins, _ = pack_small_jobs(jobs, _ranker((*A100_MARKET, h, h8)), pack=True, min_saving=0.0)
    for b in bins:
        assert len({j.gpu_model for j in b.jobs}) == 1
        assert all(j.gpu_model == b.offer.gpu_model for j in b.jobs)
    assert sum(len(b.jobs) for b in bins) == 8


def test_packed_bins_never_exceed_capacity() -> None:
    jobs = [job(f"j{k}", g, (30 + k) * MIN, gpu_model="A100") for k, g in enumerate([5, 4, 3, 3, 2, 1, 1, 1])]
    bins, _ = pack_small_jobs(jobs, _ranker(A100_MARKET), pack=True, min_saving=0.0)
    assert sorted(j.id for b in bins for j in b.jobs) == sorted(j.id for j in jobs)
    for b in bins:
        assert sum(j.gpus for j in b.jobs) <= b.offer.gpu_count


# ---- gangs ----------------------------------------------------------------------------------


@pytest.mark.parametrize("nodes", [2, 3, 4])
def test_gang_gets_n_identical_instances_in_one_region(nodes: int) -> None:
    g = job("g", 8 * nodes, 30 * MIN, nodes=nodes)
    p = decide(snap([g], full_cluster(), offers=(*A100_MARKET,)), CFG)
    launches = p.of(Launch)
    assert len(launches) == nodes
    assert len({lc.offer for lc in launches}) == 1
    assert len({lc.gang_id for lc in launches}) == 1 and launches[0].gang_id
    assert len({lc.intent_id for lc in launches}) == nodes
    assert all(lc.offer.gpu_count == 8 and lc.for_jobs == ("g",) for lc in launches)


def test_gang_uses_8_gpu_instances_even_when_smaller_per_node() -> None:
    g = job("g", 2, 30 * MIN, nodes=2)  # 1 GPU per node on 2 nodes: still whole 8-GPU nodes
    launches = decide(snap([g], full_cluster(), offers=A100_MARKET), CFG).of(Launch)
    assert [lc.offer.gpu_count for lc in launches] == [8, 8]


def test_gang_fails_over_as_a_whole() -> None:
    g = job("g", 16, 30 * MIN, nodes=2)
    s = snap([g], full_cluster(), offers=A100_MARKET, backoff={A100_8_AZ1.key: NOW + 60})
    launches = decide(s, CFG).of(Launch)
    assert {lc.offer for lc in launches} == {A100_8_AZ2}


def test_gang_over_fleet_limit_waits_whole() -> None:
    from policies.model import OverflowConfig

    cfg = dataclasses.replace(CFG, overflow=OverflowConfig(wait_threshold_s=20 * MIN, max_launches_per_tick=3))
    p = decide(snap([job("g", 32, 30 * MIN, nodes=4)], full_cluster(), offers=A100_MARKET), cfg)
    assert p.of(Launch) == [] and any("limit" in n for n in p.notes)


# ---- SlotPool --------------------------------------------------------------------------------


def test_slot_pool_best_fit_and_gang() -> None:
    pool = SlotPool()
    pool.add(8, "onprem", "A100")
    pool.add(2, "onprem", "A100")
    assert pool.take(2) == ("onprem", "A100")
    assert pool.take(8) == ("onprem", "A100")  # the 2-free node went first (best fit)
    assert pool.take(1) is None
    pool.add(8, "aws/us-east-1", "A100")
    pool.add(8, "aws/us-west-2", "A100")
    assert pool.take_gang(2, 8) is None
    pool.add(8, "aws/us-west-2", "A100")
    assert pool.take_gang(2, 8) == ("aws/us-west-2", "A100")
    assert pool.take_gang(1, 8, "H100") is None
    assert pool.take(8) == ("aws/us-east-1", "A100") and pool.max_free == 0


def test_regions_differ_for_west_only_market() -> None:
    # sanity for the helper market: the gang's region is one of the offer's
    launches = decide(snap([job("g", 16, 30 * MIN, nodes=2)], full_cluster(), offers=(A100_8_WEST,)), CFG).of(Launch)
    assert {lc.offer.region for lc in launches} == {"us-west-2"}
