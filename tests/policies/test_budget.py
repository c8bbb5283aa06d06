"""policies/budget.py: the planning-time money gate, alone and through decide()."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from burst.domain import Launch, Notify, Purpose
from policies import decide
from policies.budget import admit
from policies.model import BudgetConfig, SpendView
from tests.policies.helpers import A100_1, A100_8_AZ1, A100_MARKET, CFG, MIN, full_cluster, job, snap


def _launch(i: int, price_offer=A100_8_AZ1, gang: str = "") -> Launch:  # type: ignore[no-untyped-def]
    return Launch(f"l{i}", price_offer, Purpose.OVERFLOW, "r", for_jobs=(f"j{i}",), gang_id=gang)


RESERVE = BudgetConfig(reserve_hours_per_launch=0.25)  # a $32/h instance reserves $8


@pytest.mark.parametrize(
    ("spend", "n", "admitted"),
    [
        (SpendView(), 5, 5),  # no cap
        (SpendView(month_usd=0, month_cap_usd=40), 5, 5),  # exactly 5 x $8
        (SpendView(month_usd=1, month_cap_usd=40), 5, 4),
        (SpendView(month_usd=40, month_cap_usd=40), 5, 0),
        (SpendView(month_usd=50, month_cap_usd=40), 5, 0),  # already over
        (SpendView(month_usd=0, month_cap_usd=1000, day_usd=90, day_cap_usd=100), 5, 1),  # the tighter cap wins
        (SpendView(month_usd=990, month_cap_usd=1000, day_usd=0, day_cap_usd=100), 5, 1),
    ],
)
def test_admit_respects_the_tightest_cap(spend: SpendView, n: int, admitted: int) -> None:
    r = admit([_launch(i) for i in range(n)], spend, RESERVE)
    assert [lc.intent_id for lc in r.admitted] == [f"l{i}" for i in range(admitted)]
    assert len(r.refused) == n - admitted


def test_admit_lets_a_cheaper_later_launch_through() -> None:
    # $8 reserve refused with $6 headroom, the $1.25 one after it still fits
    r = admit([_launch(0), _launch(1, A100_1)], SpendView(month_usd=34, month_cap_usd=40), RESERVE)
    assert [lc.intent_id for lc in r.admitted] == ["l1"]


@settings(max_examples=200, deadline=None)
@given(
    prices=st.lists(st.sampled_from([5.0, 24.48, 32.0, 80.0]), max_size=12),
    spent=st.floats(0, 500),
    cap=st.floats(1, 500),
)
def test_admitted_reserve_never_exceeds_headroom(prices: list[float], spent: float, cap: float) -> None:
    from dataclasses import replace

    launches = [Launch(f"l{i}", replace(A100_8_AZ1, price_per_hour=p), Purpose.OVERFLOW, "r") for i, p in enumerate(prices)]
    r = admit(launches, SpendView(month_usd=spent, month_cap_usd=cap), RESERVE)
    assert len(r.admitted) + len(r.refused) == len(launches)
    assert sum(lc.offer.price_per_hour * 0.25 for lc in r.admitted) <= max(0.0, cap - spent) + 1e-9


def test_budget_through_decide_notifies_admins() -> None:
    s = snap([job("a", 8, 30 * MIN, gpu_model="A100")], full_cluster(), offers=A100_MARKET, spend=SpendView(month_usd=99, month_cap_usd=100))
    p = decide(s, CFG)
    assert p.of(Launch) == []
    (n,) = p.of(Notify)
    assert n.audience == "admins" and "budget" in n.text


def test_no_notify_when_within_budget() -> None:
    s = snap([job("a", 8, 30 * MIN, gpu_model="A100")], full_cluster(), offers=A100_MARKET, spend=SpendView(month_usd=0, month_cap_usd=100))
    p = decide(s, CFG)
    assert len(p.of(Launch)) == 1 and p.of(Notify) == []


@pytest.mark.parametrize(("headroom_launches", "gang_nodes"), [(1, 2), (2, 3), (3, 4)])
def test_gang_is_admitted_whole_or_not_at_all(headroom_launches: int, gang_nodes: int) -> None:
    cap = 8.0 * headroom_launches  # room for fewer members than the gang has
    g = job("g", 8 * gang_nodes, 30 * MIN, nodes=gang_nodes, gpu_model="A100")
    p = decide(snap([g], full_cluster(), offers=A100_MARKET, spend=SpendView(month_cap_usd=cap)), CFG)
    assert p.of(Launch) == []
    assert len(p.of(Notify)) == 1
    # with room for all of it, all of it goes
    p = decide(snap([g], full_cluster(), offers=A100_MARKET, spend=SpendView(month_cap_usd=8.0 * gang_nodes)), CFG)
    assert len(p.of(Launch)) == gang_nodes


def test_oldest_work_is_admitted_first() -> None:
    jobs = [job("young", 8, 21 * MIN, gpu_model="A100"), job("old", 8, 50 * MIN, gpu_model="A100")]
    p = decide(snap(jobs, full_cluster(), offers=A100_MARKET, spend=SpendView(month_cap_usd=8.0)), CFG)
    assert [lc.for_jobs for lc in p.of(Launch)] == [("old",)]
