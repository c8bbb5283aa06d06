"""Races between separate SqlStore objects (separate engines and connection pools, as separate
processes would have) on one database: the budget cap and the lease must hold under contention.

PostgreSQL is the real target (row locks, READ COMMITTED); SQLite runs the same races through
``BEGIN IMMEDIATE``."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from burst.domain import Instance, InstanceState, Market, Purpose
from burst.errors import BudgetExceeded
from burst.ports import BudgetCheck
from burst.store import migrate
from burst.store.sql import SqlStore

N = 8
T = TypeVar("T")


@pytest.fixture(params=[pytest.param("postgres", marks=pytest.mark.postgres), "sqlite"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    u = (
        str(request.getfixturevalue("postgres_url"))
        if request.param == "postgres"
        else f"sqlite:///{tmp_path}/b.db"
    )
    migrate.upgrade(u)
    return u


def race(url: str, fn: Callable[[SqlStore, int], T], n: int = N) -> list[T | BaseException]:
    """Run ``fn(store_i, i)`` in ``n`` threads, each with its own SqlStore, released together."""
    stores = [SqlStore.from_url(url, upgrade=False) for _ in range(n)]
    for s in stores:  # open a connection in each pool before the start line
        s.get_instance("warm-up")
    barrier = threading.Barrier(n)
    results: list[T | BaseException] = [RuntimeError("did not finish")] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = fn(stores[i], i)
        except BaseException as e:
            results[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    finally:
        for s in stores:
            s.close()
    return results


def intent(i: int, team: str = "vision") -> Instance:
    return Instance(
        id=f"b-{i}",
        cloud="aws",
        region="us-east-1",
        zone="use1-az1",
        instance_type="p4d.24xlarge",
        market=Market.ON_DEMAND,
        purpose=Purpose.OVERFLOW,
        gpus=8,
        gpu_model="a100",
        price_per_hour=32.0,
        team=team,
    )


@pytest.mark.parametrize("k", [1, 3])
def test_budget_race_admits_exactly_k(url: str, k: int) -> None:
    # Planned intents accrue nothing; the reserve makes each live intent count $1, so a cap of
    # $k admits exactly k intents of $1 each, whatever the interleaving.
    budget = BudgetCheck(
        "global", cap_usd=float(k), period_start=0.0, asked_usd=1.0, reserve_per_live_usd=1.0
    )
    results = race(
        url, lambda s, i: s.create_intent(intent(i), now=100.0, actor=f"ctl{i}", reason="race", budget=budget)
    )
    admitted = [r for r in results if isinstance(r, Instance)]
    refused = [r for r in results if isinstance(r, BudgetExceeded)]
    assert len(admitted) == k and len(refused) == N - k, results

    store = SqlStore.from_url(url, upgrade=False)
    try:
        assert len(store.instances()) == k
        assert {i.id for i in store.live_instances()} == {i.id for i in admitted}
        assert len(store.audit_rows(kind="instance")) == k
    finally:
        store.close()


def test_team_budgets_do_not_block_each_other(url: str) -> None:
    def create(s: SqlStore, i: int) -> Instance:
        team = "a" if i % 2 else "b"
        b = BudgetCheck(f"team:{team}", 2.0, 0.0, asked_usd=1.0, team=team, reserve_per_live_usd=1.0)
        return s.create_intent(intent(i, team=team), now=100.0, actor="ctl", reason="race", budget=b)

    results = race(url, create)
    admitted = [r for r in results if isinstance(r, Instance)]
    assert sorted(r.team for r in admitted) == ["a", "a", "b", "b"], results
    assert all(isinstance(r, (Instance, BudgetExceeded)) for r in results), results


def test_same_intent_from_many_writers_is_written_once(url: str) -> None:
    results = race(url, lambda s, i: s.create_intent(intent(0), now=100.0 + i, actor=f"ctl{i}", reason="dup"))
    assert all(isinstance(r, Instance) for r in results), results
    assert len({(r.id, r.created_at) for r in results if isinstance(r, Instance)}) == 1
    store = SqlStore.from_url(url, upgrade=False)
    try:
        assert len(store.instances()) == 1
        assert len(store.audit_rows(subject="b-0")) == 1
    finally:
        store.close()


def test_lease_race_has_exactly_one_winner(url: str) -> None:
    results = race(url, lambda s, i: s.try_acquire_lease("leader", f"ctl{i}", now=100.0, ttl_s=30.0))
    assert results.count(True) == 1 and results.count(False) == N - 1, results

    # Again over an expired lease (the UPDATE path rather than the first INSERT).
    results = race(url, lambda s, i: s.try_acquire_lease("leader", f"new{i}", now=200.0, ttl_s=30.0))
    assert results.count(True) == 1 and results.count(False) == N - 1, results


def test_transition_race_has_one_winner(url: str) -> None:
    store = SqlStore.from_url(url, upgrade=False)
    try:
        store.create_intent(intent(0), now=1.0, actor="ctl", reason="r")
    finally:
        store.close()
    results = race(
        url,
        lambda s, i: s.transition_instance(
            "b-0", InstanceState.LAUNCHING, now=2.0, actor=f"c{i}", reason="r"
        ),
    )
    assert sum(isinstance(r, Instance) for r in results) == 1, results
    assert sum(isinstance(r, ValueError) for r in results) == N - 1, results  # InvalidTransition


def test_backoff_failures_are_counted_under_contention(url: str) -> None:
    results = race(
        url, lambda s, i: s.record_offer_failure("offer", now=100.0, base_s=1.0, cap_s=1e9, error=f"e{i}")
    )
    failures = sorted(r.failures for r in results if not isinstance(r, BaseException))
    assert failures == list(range(1, N + 1)), results


def test_one_store_shared_by_threads(url: str) -> None:
    store = SqlStore.from_url(url, upgrade=False)
    errors: list[BaseException] = []
    barrier = threading.Barrier(N)

    def run(i: int) -> None:
        try:
            barrier.wait()
            for k in range(5):
                store.create_intent(intent(i * 10 + k), now=float(k), actor=f"t{i}", reason="shared")
                store.audit(
                    at=float(k), actor=f"t{i}", kind="decision", subject=f"t{i}", action="x", reason="y"
                )
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(N)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert errors == []
        assert len(store.instances()) == 5 * N
        assert len(store.audit_rows(kind="decision", limit=1000)) == 5 * N
    finally:
        store.close()
