"""The three lifecycle tables of burst/domain.py, edge by edge, plus deterministic ids."""

from __future__ import annotations

import dataclasses
import itertools
import subprocess
import sys
from collections import deque

import pytest

from burst.domain import (
    CHALLENGE_TERMINAL,
    CHALLENGE_TRANSITIONS,
    INSTANCE_LIVE,
    INSTANCE_TERMINAL,
    INSTANCE_TRANSITIONS,
    REQUEST_TERMINAL,
    REQUEST_TRANSITIONS,
    ChallengeState,
    Instance,
    InstanceState,
    InvalidTransition,
    Market,
    Purpose,
    RequestState,
    check_challenge_transition,
    check_instance_transition,
    check_request_transition,
    deterministic_id,
)

TABLES = {
    "instance": (InstanceState, INSTANCE_TRANSITIONS, check_instance_transition, INSTANCE_TERMINAL, InstanceState.PLANNED),
    "request": (RequestState, REQUEST_TRANSITIONS, check_request_transition, REQUEST_TERMINAL, RequestState.REQUESTED),
    "challenge": (ChallengeState, CHALLENGE_TRANSITIONS, check_challenge_transition, CHALLENGE_TERMINAL, ChallengeState.SCHEDULED),
}


def _edges(kind: str) -> list[tuple[str, object, object]]:
    _, table, _, _, _ = TABLES[kind]
    return [(kind, s, d) for (s, d) in table]


def _non_edges(kind: str) -> list[tuple[str, object, object]]:
    enum, table, _, _, _ = TABLES[kind]
    return [(kind, s, d) for s, d in itertools.product(enum, enum) if (s, d) not in table]


ALL_EDGES = [e for k in TABLES for e in _edges(k)]
ALL_NON_EDGES = [e for k in TABLES for e in _non_edges(k)]


@pytest.mark.parametrize(("kind", "src", "dst"), ALL_EDGES, ids=lambda v: str(v))
def test_every_edge_is_allowed_and_explained(kind: str, src: object, dst: object) -> None:
    _, table, check, _, _ = TABLES[kind]
    reason = check(src, dst)
    assert reason == table[(src, dst)]
    assert isinstance(reason, str) and reason.strip(), f"{kind} edge {src}->{dst} has no comment"


@pytest.mark.parametrize(("kind", "src", "dst"), ALL_NON_EDGES, ids=lambda v: str(v))
def test_every_other_pair_is_refused(kind: str, src: object, dst: object) -> None:
    _, _, check, _, _ = TABLES[kind]
    with pytest.raises(InvalidTransition) as ei:
        check(src, dst)
    assert ei.value.kind == kind
    assert (ei.value.src, ei.value.dst) == (src, dst)
    assert str(src) in str(ei.value) and str(dst) in str(ei.value)


def test_non_edge_lists_are_not_vacuous() -> None:
    # every (src, dst) is in exactly one of the two lists
    for kind, (enum, table, _, _, _) in TABLES.items():
        n = len(list(enum))
        assert len(_edges(kind)) + len(_non_edges(kind)) == n * n
        assert len(_edges(kind)) == len(table) > 0


def test_self_loops_are_never_allowed() -> None:
    for kind, (enum, table, _, _, _) in TABLES.items():
        for s in enum:
            assert (s, s) not in table, f"{kind}: self-loop on {s}"


@pytest.mark.parametrize("kind", list(TABLES))
def test_terminal_states_have_no_outgoing_edges(kind: str) -> None:
    _, table, _, terminal, _ = TABLES[kind]
    assert terminal
    for s, d in table:
        assert s not in terminal, f"{kind}: terminal {s} has an edge to {d}"


def test_instance_failure_states_only_close_the_books() -> None:
    for failure in (InstanceState.LOST, InstanceState.LAUNCH_FAILED):
        outgoing = {d for (s, d) in INSTANCE_TRANSITIONS if s is failure}
        assert outgoing == {InstanceState.TERMINATED}


@pytest.mark.parametrize("kind", list(TABLES))
def test_every_state_is_reachable_and_can_finish(kind: str) -> None:
    enum, table, _, terminal, initial = TABLES[kind]
    succ: dict[object, set[object]] = {s: set() for s in enum}
    for s, d in table:
        succ[s].add(d)
    seen = {initial}
    todo = deque([initial])
    while todo:
        for d in succ[todo.popleft()]:
            if d not in seen:
                seen.add(d)
                todo.append(d)
    assert seen == set(enum), f"{kind}: unreachable {set(enum) - seen}"
    for s in enum:
        if s in terminal:
            continue
        # some terminal state is reachable from every non-terminal one (no dead ends)
        reach, todo = {s}, deque([s])
        while todo:
            for d in succ[todo.popleft()]:
                if d not in reach:
                    reach.add(d)
                    todo.append(d)
        assert reach & set(terminal), f"{kind}: {s} can never finish"


def test_instance_live_is_every_state_that_may_cost_money() -> None:
    assert INSTANCE_LIVE.isdisjoint(INSTANCE_TERMINAL)
    assert InstanceState.LOST not in INSTANCE_LIVE and InstanceState.LAUNCH_FAILED not in INSTANCE_LIVE
    assert INSTANCE_LIVE | INSTANCE_TERMINAL | {InstanceState.LOST, InstanceState.LAUNCH_FAILED} == set(InstanceState)


def test_documented_happy_paths_are_walkable() -> None:
    path = ["planned", "launching", "running", "joined", "draining", "terminating", "terminated"]
    for a, b in itertools.pairwise(path):
        check_instance_transition(InstanceState(a), InstanceState(b))
    req = ["requested", "approved", "provisioning", "ready", "expiring", "released"]
    for a, b in itertools.pairwise(req):
        check_request_transition(RequestState(a), RequestState(b))
    gc = ["scheduled", "notified", "draining", "preempting", "running", "restoring", "done"]
    for a, b in itertools.pairwise(gc):
        check_challenge_transition(ChallengeState(a), ChallengeState(b))


# ---- deterministic ids ---------------------------------------------------------------------------


def test_deterministic_id_is_stable_and_shaped() -> None:
    a = deterministic_id("sim", "overflow", "1614816000.0", "aws/us-east-1/use1-az1/p4d.24xlarge/on-demand", "0", "job-1")
    assert a == deterministic_id("sim", "overflow", "1614816000.0", "aws/us-east-1/use1-az1/p4d.24xlarge/on-demand", "0", "job-1")
    assert a.startswith("b-") and len(a) == 2 + 16
    int(a[2:], 16)
    assert deterministic_id("x", prefix="g").startswith("g-")


def test_deterministic_id_known_value() -> None:
    # sha256("a\x1fb")[:16]: pins the derivation so ids survive a refactor (they name cloud
    # resources: a different derivation after an upgrade would orphan every in-flight intent).
    import hashlib

    assert deterministic_id("a", "b") == "b-" + hashlib.sha256(b"a\x1fb").hexdigest()[:16]


def test_deterministic_id_separates_parts() -> None:
    assert deterministic_id("ab", "c") != deterministic_id("a", "bc")
    assert deterministic_id("a", "b") != deterministic_id("b", "a")
    assert deterministic_id("a") != deterministic_id("a", "")


def test_deterministic_id_same_in_another_process() -> None:
    code = "from burst.domain import deterministic_id; print(deterministic_id('c', 'x', '1.5'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env={"PYTHONHASHSEED": "123"})
    assert out.stdout.strip() == deterministic_id("c", "x", "1.5")


def test_instance_cost_bills_from_launch_with_minimum() -> None:
    inst = Instance(
        id="i", cloud="aws", region="r", zone="", instance_type="t", market=Market.ON_DEMAND,
        purpose=Purpose.OVERFLOW, gpus=8, gpu_model="A100", price_per_hour=36.0,
    )
    assert inst.cost(1000.0) == 0.0  # never launched: nothing billed
    inst = dataclasses.replace(inst, launched_at=100.0)
    assert inst.billable_seconds(130.0) == 60.0  # minimum
    assert inst.cost(100.0 + 3600.0) == pytest.approx(36.0)
