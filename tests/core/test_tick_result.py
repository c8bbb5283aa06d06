"""A tick's result reports what its reconcile step did as well as what its plan did.

Before the fix, ``Controller.tick`` replaced the reconcile step's ``ExecResult`` with the plan's,
so a throttled lookup of a PLANNED intent, a failed terminate retry or a recovered launch was in
neither ``TickResult.executed`` nor the metrics.
"""

from __future__ import annotations

import pytest

from burst.domain import CloudInstance, Instance, InstanceState, Market, Offer, Purpose
from burst.errors import TransientProviderError
from burst.metrics import REGISTRY, observe_tick
from burst.ports import Store
from tests.core.world import AWS_AZ1, T0, TICK, World


def _intent(iid: str, o: Offer = AWS_AZ1, for_jobs: tuple[str, ...] = ("b",)) -> Instance:
    return Instance(
        id=iid, cloud=o.cloud, region=o.region, zone=o.zone, instance_type=o.instance_type, market=Market.ON_DEMAND,
        purpose=Purpose.OVERFLOW, gpus=o.gpu_count, gpu_model=o.gpu_model, price_per_hour=o.price_per_hour,
        created_at=T0, for_jobs=for_jobs,
    )


def _world(store: Store | None = None) -> World:
    w = World(store=store) if store is not None else World()
    w.submit("hog", 8, 100_000)
    w.submit("b", 8, 600, at=T0 - 3600)  # overdue: the intent below is still wanted
    return w


def _throttled(provider: str) -> TransientProviderError:
    return TransientProviderError("Request limit exceeded.", provider=provider, code="RequestLimitExceeded")


def test_a_throttled_lookup_during_recovery_is_in_the_result_and_the_metrics(
    any_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = _world(any_store)
    aws = w.providers["aws"]
    w.store.create_intent(_intent("b-crash"), now=T0, actor="controller", reason="test: crashed before the call")

    def find(intent_id: str) -> CloudInstance | None:
        aws.calls["find"] += 1
        raise _throttled("aws")

    monkeypatch.setattr(aws, "find", find)
    before = REGISTRY.get_sample_value("burst_execution_errors_total") or 0.0
    res = w.tick(T0 + TICK)
    observe_tick(res, 0.01, leader=True)
    assert aws.calls["find"] == 1 and "b-crash" in res.recovered
    assert [e for e in res.executed.errors if e.startswith("b-crash: lookup failed:")], res.executed.errors
    assert (REGISTRY.get_sample_value("burst_execution_errors_total") or 0.0) >= before + 1
    assert w.store.get_instance("b-crash").state is InstanceState.PLANNED  # type: ignore[union-attr]
    # The lookup works again: the intent is launched under its own id, and that launch is reported.
    monkeypatch.undo()
    res = w.tick(T0 + 2 * TICK)
    assert res.executed.launched == ["b-crash"] and res.executed.errors == []
    assert w.store.get_instance("b-crash").state is InstanceState.LAUNCHING  # type: ignore[union-attr]


def test_a_failed_terminate_retry_is_in_the_result(monkeypatch: pytest.MonkeyPatch) -> None:
    w = _world()
    w.run(T0 + 600)  # launched and joined; job "b" runs on it
    (inst,) = w.store.live_instances()
    assert inst.state is InstanceState.JOINED
    w.store.transition_instance(inst.id, InstanceState.TERMINATING, now=w.now(), actor="test", reason="test: terminate",
                                terminated_at=w.now())
    aws = w.providers["aws"]

    def terminate(cloud_ids: object) -> None:
        aws.calls["terminate"] += 1
        raise _throttled("aws")

    monkeypatch.setattr(aws, "terminate", terminate)
    res = w.tick(w.now() + TICK)
    assert aws.calls["terminate"] >= 1
    assert "terminate on aws: Request limit exceeded." in res.executed.errors, res.executed.errors
    assert w.store.get_instance(inst.id).state is InstanceState.TERMINATING  # type: ignore[union-attr]
    monkeypatch.undo()
    res = w.tick(w.now() + TICK)
    assert res.executed.terminated == [inst.id] and res.executed.errors == []
