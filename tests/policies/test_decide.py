"""decide() as a whole: determinism, purity (no clock), and the plan's shape."""

from __future__ import annotations

import ast
import datetime as dt
import random
import time
from pathlib import Path

from burst.domain import Drain, InstanceState, Launch
from policies import decide
from tests.policies.helpers import (
    A100_MARKET,
    CFG,
    MARKET,
    MIN,
    NOW,
    cloud_node,
    full_cluster,
    instance,
    job,
    snap,
)

POLICIES_DIR = Path(__file__).resolve().parents[2] / "policies"


def _busy_snapshot():  # type: ignore[no-untyped-def]
    idle = instance("idle", InstanceState.JOINED, idle_since=NOW - 10 * MIN)
    launching = instance("boot", InstanceState.LAUNCHING, launched_at=NOW - 60)
    pending = [
        *[job(f"s{k}", 1, (25 + k) * MIN) for k in range(10)],
        job("g", 24, 40 * MIN, nodes=3),
        job("big", 8, 22 * MIN, gpu_model="A100"),
        job("young", 4, 2 * MIN),
        job("local", 2, 90 * MIN, may_burst=False),
    ]
    return snap(pending, (*full_cluster(6), cloud_node(idle)), (idle, launching), MARKET)


def test_same_snapshot_same_plan() -> None:
    s = _busy_snapshot()
    a, b = decide(s, CFG), decide(s, CFG)
    assert a == b
    assert a.of(Launch), "the scenario must plan launches or the test proves little"
    assert a.wake_at is not None


def test_equal_snapshots_built_separately_give_equal_plans() -> None:
    assert decide(_busy_snapshot(), CFG) == decide(_busy_snapshot(), CFG)


def test_plan_does_not_depend_on_pending_order_or_hash_seed() -> None:
    s = _busy_snapshot()
    base = decide(s, CFG)
    rng = random.Random(7)
    for _ in range(10):
        pending = list(s.pending)
        rng.shuffle(pending)
        offers = list(s.offers)
        rng.shuffle(offers)
        shuffled = snap(pending, s.nodes, s.instances, offers)
        assert decide(shuffled, CFG) == base


def test_equal_submit_times_are_broken_by_id() -> None:
    # two jobs submitted at the same second; one free 4-GPU slot covers one of them. Whichever
    # order the queue lists them in, the same job must burst (ids decide, not list order).
    nodes = (*full_cluster(2), cloud_node(instance("x", InstanceState.JOINED)))
    a, b = job("a", 8, 30 * MIN), job("b", 8, 30 * MIN)
    p1 = decide(snap([a, b], nodes, [instance("x", InstanceState.JOINED)], A100_MARKET), CFG)
    p2 = decide(snap([b, a], nodes, [instance("x", InstanceState.JOINED)], A100_MARKET), CFG)
    assert [lc.for_jobs for lc in p1.of(Launch)] == [lc.for_jobs for lc in p2.of(Launch)] == [("b",)]


def test_intent_ids_change_with_time_and_jobs() -> None:
    s1 = snap([job("a", 8, 30 * MIN)], full_cluster(), offers=A100_MARKET)
    s2 = snap([job("a", 8, 30 * MIN + 30, now=NOW + 30)], full_cluster(), offers=A100_MARKET, now=NOW + 30)
    s3 = snap([job("b", 8, 30 * MIN)], full_cluster(), offers=A100_MARKET)
    ids = {decide(s, CFG).of(Launch)[0].intent_id for s in (s1, s2, s3)}
    assert len(ids) == 3


def test_decide_never_reads_the_clock(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    s = _busy_snapshot()
    expected = decide(s, CFG)

    def boom(*_a, **_k):  # type: ignore[no-untyped-def]
        raise AssertionError("decide() read the clock")

    class NoNow(dt.datetime):
        @classmethod
        def now(cls, tz=None):  # type: ignore[no-untyped-def,override]
            boom()

        @classmethod
        def utcnow(cls):  # type: ignore[no-untyped-def,override]
            boom()

        @classmethod
        def today(cls):  # type: ignore[no-untyped-def,override]
            boom()

    with monkeypatch.context() as m:
        for name in ("time", "time_ns", "monotonic", "monotonic_ns", "perf_counter", "localtime", "gmtime"):
            m.setattr(time, name, boom)
        m.setattr(dt, "datetime", NoNow)
        got = decide(s, CFG)
    assert got == expected


def test_policies_import_no_clock_io_or_randomness() -> None:
    banned = {"time", "datetime", "random", "os", "socket", "sqlalchemy", "boto3", "requests", "httpx", "subprocess"}
    for path in sorted(POLICIES_DIR.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module.split(".")[0]]
            bad = banned.intersection(names)
            assert not bad, f"{path.name} imports {bad}"
            assert not (names and names[0] == "burst" and isinstance(node, ast.ImportFrom) and node.module not in ("burst.domain",)), (
                f"{path.name} imports {getattr(node, 'module', '')}: policies may use burst.domain only"
            )


def test_plan_actions_carry_reasons() -> None:
    p = decide(_busy_snapshot(), CFG)
    assert p.actions
    for a in p.actions:
        reason = getattr(a, "reason", "")
        assert isinstance(reason, str) and reason.strip(), a
    assert p.of(Drain) == []  # pending work is counted on the idle burst node
