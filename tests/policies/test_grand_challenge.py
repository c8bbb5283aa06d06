"""policies.grand_challenge: every phase edge, cancel in every phase, restart idempotency,
validation and slot planning. Table-driven over small hand-built snapshots."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import pytest

from burst.domain import (
    CHALLENGE_TRANSITIONS,
    AdvanceChallenge,
    CancelChallengeJob,
    ChallengeAction,
    ChallengeEnding,
    ChallengeJobKind,
    ChallengeState,
    Checkpoint,
    ConfirmRestored,
    GrandChallenge,
    Hold,
    Job,
    JobState,
    Node,
    Notify,
    PreemptedJob,
    RecordNotices,
    RecordPreempted,
    ReleaseJobs,
    Reserve,
    SubmitChallenge,
    Unreserve,
)
from policies.grand_challenge import (
    ANNOUNCE,
    ChallengeInput,
    ChallengeSettings,
    challenge_impact,
    choose_nodes,
    decide_challenges,
    fmt_time,
    plan_slots,
    preempted_set,
    restore_priorities,
    validate_challenge,
)

C = ChallengeState
H = 3600.0
START = 1_000_000.0
S = ChallengeSettings()  # notices T-24h, T-1h; drain 1h; grace 5 min; retry 60 s
NODES = (Node("n1", 8), Node("n2", 8), Node("n3", 8), Node("n4", 8), Node("burst-1", 8, instance_id="b-1"))
ALL_ONPREM = ("n1", "n2", "n3", "n4")


def run(id: str, node: str | tuple[str, ...], *, started: float, limit: float | None = None, prio: int = 0,
        owner: str = "alice", gpus: int = 8, may_burst: bool = False, submit: float | None = None) -> Job:
    names = (node,) if isinstance(node, str) else node
    return Job(id=id, gpus=gpus, submit_time=started - 100 if submit is None else submit, state=JobState.RUNNING,
               owner=owner, start_time=started, node_names=names, time_limit_s=limit, priority=prio,
               may_burst=may_burst, nodes=len(names), gpus_per_node=gpus // len(names))


def pend(id: str, *, prio: int = 0, held: bool = False, submit: float = 0.0, owner: str = "zed") -> Job:
    return Job(id=id, gpus=8, submit_time=submit, state=JobState.HELD if held else JobState.PENDING, owner=owner,
               priority=prio)


def challenge(state: ChallengeState = C.SCHEDULED, **kw: Any) -> GrandChallenge:
    base: dict[str, Any] = dict(id="gc-1", name="llm", start_at=START, duration_s=6 * H, command="job.sh",
                                created_by="ADMIN", state=state, job_text="#!/bin/sh\ntrain\n")
    if state not in (C.SCHEDULED, C.NOTIFIED):
        base.update(node_names=ALL_ONPREM, reservation="burst-gc-1", reserved=True, notices=("T-3600", "T-86400"))
    if state is C.NOTIFIED:
        base.update(notices=("T-3600", "T-86400"))
    if state in (C.PREEMPTING, C.RUNNING, C.RESTORING):
        base.update(phases=(("scheduled", 0.0), ("preempting", START)))
    if state in (C.RUNNING, C.RESTORING):
        base.update(challenge_job_id="burst-gc-1")
    base.update(kw)
    return GrandChallenge(**base)


def pj(job_id: str, order: int, **kw: Any) -> PreemptedJob:
    base: dict[str, Any] = dict(job_id=job_id, user=f"u-{job_id}", gpus=8, priority=10 - order, order=order)
    base.update(kw)
    return PreemptedJob(**base)


def decide(gc: GrandChallenge, now: float, *, running: tuple[Job, ...] = (), pending: tuple[Job, ...] = (),
           settings: ChallengeSettings = S) -> list[ChallengeAction]:
    return list(decide_challenges(ChallengeInput(now, (gc,), pending, running, NODES), settings).actions)


def kinds(actions: list[ChallengeAction]) -> list[str]:
    return [type(a).__name__ for a in actions]


def advance_to(actions: list[ChallengeAction]) -> list[ChallengeState]:
    return [a.to for a in actions if isinstance(a, AdvanceChallenge)]


# Jobs used across the table: a long job on n1 (no limit), one that ends before the start on n2,
# one on a burst node, a gang over n3+n4 with a limit past the start, a pending job.
LONG = run("long", "n1", started=START - 30 * H, prio=5, owner="alice")
ENDS_BEFORE = run("short", "n2", started=START - 2 * H, limit=H, owner="bob")
ON_BURST = run("cloud", "burst-1", started=START - 5 * H, owner="carol")
GANG = run("gang", ("n3", "n4"), started=START - 3 * H, limit=10 * H, prio=5, owner="dave", gpus=16,
           submit=START - 10 * H)
WAITING = pend("wait", prio=50)
QUEUE = (LONG, ENDS_BEFORE, ON_BURST, GANG)


# ---- every phase edge ------------------------------------------------------------------------

# (name, challenge, now, running, pending, expected action kinds, expected advance targets)
EDGES: list[tuple[str, GrandChallenge, float, tuple[Job, ...], tuple[Job, ...], list[str], list[ChallengeState]]] = [
    ("scheduled: nothing due yet", challenge(), START - 30 * H, QUEUE, (), [], []),
    ("scheduled -> notified at T-24h", challenge(), START - 24 * H, QUEUE, (),
     ["RecordNotices", "Notify", "Notify", "Notify", "AdvanceChallenge"], [C.NOTIFIED]),
    ("notified: T-1h notice before the drain", challenge(C.NOTIFIED, notices=("T-86400",)), START - H, QUEUE, (),
     ["RecordNotices", "Notify", "Notify", "Notify"], []),
    ("notified -> draining: reserve", challenge(C.NOTIFIED), START - H, QUEUE, (), ["Reserve"], []),
    ("draining: wait for the start", challenge(C.DRAINING), START - 60, QUEUE, (), [], []),
    ("draining -> preempting at the start", challenge(C.DRAINING), START, QUEUE, (WAITING,),
     ["RecordPreempted", "Checkpoint", "Notify", "Notify", "Notify"], []),
    ("preempting: grace running", challenge(C.PREEMPTING, preempted_jobs=(pj("long", 0),)), START + 60, QUEUE, (),
     [], []),
    ("preempting -> running after the grace", challenge(C.PREEMPTING, preempted_jobs=(pj("long", 0),)),
     START + 300, QUEUE, (), ["Hold", "SubmitChallenge"], []),
    ("running: challenge job alive", challenge(C.RUNNING), START + H, (), (pend("burst-gc-1"),), [], []),
    # nothing was preempted here: restore only lifts the reservation, in the same plan
    ("running -> restoring: challenge job ended", challenge(C.RUNNING), START + H, (), (),
     ["AdvanceChallenge", "Unreserve", "AdvanceChallenge"], [C.RESTORING, C.DONE]),
    ("running -> restoring: time up", challenge(C.RUNNING, preempted_jobs=(pj("long", 0),)), START + 6 * H,
     (run("burst-gc-1", ALL_ONPREM, started=START),), (pend("long", held=True),),
     ["CancelChallengeJob", "AdvanceChallenge", "ReleaseJobs", "Notify", "Unreserve"], [C.RESTORING]),
    ("restoring: release and unreserve", challenge(C.RESTORING, preempted_jobs=(pj("long", 0),)), START + 7 * H, (),
     (pend("long", held=True),), ["ReleaseJobs", "Notify", "Unreserve"], []),
    ("restoring -> done", challenge(C.RESTORING, reservation="", reserved=False,
                                    preempted_jobs=(pj("long", 0, released_at=START + 7 * H),)),
     START + 7 * H + 30, (LONG,), (), ["ConfirmRestored", "AdvanceChallenge"], [C.DONE]),
    ("restoring -> cancelled", challenge(C.RESTORING, reservation="", ending=ChallengeEnding.CANCELLED), START, (), (),
     ["AdvanceChallenge"], [C.CANCELLED]),
    ("restoring -> failed", challenge(C.RESTORING, reservation="", ending=ChallengeEnding.FAILED), START, (), (),
     ["AdvanceChallenge"], [C.FAILED]),
]


@pytest.mark.parametrize(("name", "gc", "now", "running", "pending", "want", "moves"), EDGES, ids=[e[0] for e in EDGES])
def test_phase_edges(name: str, gc: GrandChallenge, now: float, running: tuple[Job, ...], pending: tuple[Job, ...],
                     want: list[str], moves: list[ChallengeState]) -> None:
    got = decide(gc, now, running=running, pending=pending)
    assert kinds(got) == want
    assert advance_to(got) == moves
    for a in got:
        assert a.reason.strip(), a
    walk(gc.state, got)


RUNNER_EDGES = {Reserve: (C.NOTIFIED, C.DRAINING), RecordPreempted: (C.DRAINING, C.PREEMPTING),
                SubmitChallenge: (C.PREEMPTING, C.RUNNING)}


def walk(state: ChallengeState, actions: list[ChallengeAction]) -> set[tuple[ChallengeState, ChallengeState]]:
    """Follow a plan's phase changes (AdvanceChallenge, and the three the runner makes for its
    composite actions) from ``state``; every one must be an edge of the table."""
    edges = set()
    for a in actions:
        edge = RUNNER_EDGES.get(type(a))
        if isinstance(a, AdvanceChallenge):
            edge = (state, a.to)
        if edge is None or (isinstance(a, Reserve | SubmitChallenge) and edge[0] is not state):
            continue  # a Reserve retry in DRAINING, a second Submit: no phase change
        assert edge in CHALLENGE_TRANSITIONS and edge[0] is state, (state, a)
        edges.add(edge)
        state = edge[1]
    return edges


def test_every_table_edge_is_decided_somewhere() -> None:
    """Each edge of CHALLENGE_TRANSITIONS is produced by the decision (or, for the three the
    runner makes itself, by its composite actions) in some case of this file's tables."""
    seen: set[tuple[ChallengeState, ChallengeState]] = set()
    cases = [(e[1], e[2], e[3], e[4]) for e in EDGES] + [(c[0], c[1], c[2], ()) for c in CANCELS]
    for gc, now, running, pending in cases:
        seen |= walk(gc.state, decide(gc, now, running=running, pending=pending))
    # PREEMPTING -> RESTORING on a refused submit is the runner's too (tests/core); here by cancel.
    assert seen == set(CHALLENGE_TRANSITIONS)


# ---- the rules inside the phases -------------------------------------------------------------


def test_notices_name_only_jobs_at_risk_and_summarise() -> None:
    got = decide(challenge(), START - 24 * H, running=QUEUE)
    rec = got[0]
    assert isinstance(rec, RecordNotices) and rec.notices == ("T-86400",)
    notes = [a for a in got if isinstance(a, Notify)]
    assert [n.audience for n in notes] == ["alice", "dave", ANNOUNCE]
    assert "`long`" in notes[0].text and "`gang`" in notes[1].text
    text = " ".join(n.text for n in notes)
    assert "short" not in text and "cloud" not in text  # ends before the start; runs on a burst node
    # summary: 2 jobs, 2 users, 8*30h + 16*3h = 288 GPU-hours since their last start
    assert "2 job(s) of 2 user(s), 288.0 GPU-hours" in notes[-1].text
    assert fmt_time(START) in notes[-1].text


def test_late_schedule_sends_one_notice_for_every_offset_due() -> None:
    got = decide(challenge(), START - 30 * 60, running=QUEUE)
    assert isinstance(got[0], RecordNotices) and got[0].notices == ("T-3600", "T-86400")
    assert sum(isinstance(a, Notify) and a.audience == "alice" for a in got) == 1
    assert advance_to(got) == [C.NOTIFIED]


def test_no_notice_configured_still_announces_once_before_draining() -> None:
    quiet = ChallengeSettings(notice_offsets_s=())
    assert decide(challenge(), START - 2 * H, settings=quiet) == []
    got = decide(challenge(), START - H, settings=quiet)
    assert kinds(got)[0] == "RecordNotices" and advance_to(got) == [C.NOTIFIED]


def test_notice_keys_already_sent_are_never_sent_again() -> None:
    gc = challenge(C.NOTIFIED, notices=("T-86400",))
    for now in (START - 24 * H, START - 2 * H):
        assert decide(gc, now, running=QUEUE) == []


def test_reserve_names_only_onprem_nodes_and_the_least_disruptive_ones() -> None:
    got = decide(challenge(C.NOTIFIED), START - H, running=QUEUE)
    (r,) = got
    assert isinstance(r, Reserve) and r.nodes == ALL_ONPREM and r.name == "burst-gc-1"
    assert (r.start, r.duration_s) == (START, 6 * H)
    # two nodes: n2 (its job ends before the start) and one of n3/n4 (gang, 16 GPU x 3h split)
    # lose less than n1 (8 GPU x 30h)
    (r2,) = decide(challenge(C.NOTIFIED, nodes=2), START - H, running=QUEUE)
    assert isinstance(r2, Reserve) and r2.nodes == ("n2", "n3")
    assert "burst-1" not in choose_nodes(0, NODES, QUEUE, START)


def test_reserve_again_until_confirmed() -> None:
    got = decide(challenge(C.DRAINING, reserved=False), START - 30 * 60)
    assert kinds(got) == ["Reserve"]
    got = decide(challenge(C.PREEMPTING, reserved=False), START + 400)
    assert kinds(got) == ["Reserve", "SubmitChallenge"]


def test_preempted_set_is_running_jobs_on_the_nodes_in_queue_order_recorded_before_signals() -> None:
    late = run("late", "n2", started=START - 60, prio=9, owner="erin", may_burst=True)
    got = decide(challenge(C.DRAINING), START, running=(*QUEUE, late), pending=(WAITING, pend("held", held=True)))
    rec, ck = got[0], got[1]
    assert isinstance(rec, RecordPreempted) and isinstance(ck, Checkpoint)
    assert [(p.job_id, p.priority, p.order, p.user, p.may_burst) for p in rec.jobs] == [
        ("late", 9, 0, "erin", True), ("long", 5, 1, "alice", False), ("gang", 5, 2, "dave", False),
        ("short", 0, 3, "bob", False),  # still running at the start despite its limit: preempted
    ]
    assert ck.job_ids == ("late", "long", "gang", "short")  # priority, then submission
    assert "cloud" not in ck.job_ids and "wait" not in ck.job_ids  # burst node; never ran


def test_no_job_running_at_the_start_means_an_empty_set_and_no_signal() -> None:
    got = decide(challenge(C.DRAINING), START, running=(ON_BURST,), pending=(WAITING,))
    assert kinds(got) == ["RecordPreempted"]
    assert isinstance(got[0], RecordPreempted) and got[0].jobs == ()


def test_hold_only_recorded_jobs_still_running_on_challenge_nodes() -> None:
    gc = challenge(C.PREEMPTING, preempted_jobs=(pj("long", 0), pj("gang", 1), pj("gone", 2)))
    newcomer = run("new", "n2", started=START + 10)  # not recorded: never preempted by this decision
    got = decide(gc, START + 300, running=(LONG, newcomer), pending=(pend("gang", held=True),))
    assert kinds(got) == ["Hold", "SubmitChallenge"]
    assert isinstance(got[0], Hold) and got[0].job_ids == ("long",)
    assert isinstance(got[1], SubmitChallenge) and got[1].nodes == ALL_ONPREM


def test_grace_is_skipped_when_no_recorded_job_still_runs() -> None:
    gc = challenge(C.PREEMPTING, preempted_jobs=(pj("long", 0),))
    assert kinds(decide(gc, START + 1, pending=(pend("long", held=True),))) == ["SubmitChallenge"]


def test_burst_preempted_releases_jobs_that_may_burst_at_once() -> None:
    gc = challenge(C.PREEMPTING, burst_preempted=True,
                   preempted_jobs=(pj("a", 0, may_burst=True), pj("b", 1), pj("c", 2, may_burst=True)))
    running = (run("a", "n1", started=0), run("b", "n2", started=0))
    got = decide(gc, START + 300, running=running, pending=(pend("c", held=True), pend("x", prio=70)))
    assert kinds(got) == ["Hold", "ReleaseJobs", "SubmitChallenge"]
    rel = got[1]
    assert isinstance(rel, ReleaseJobs) and rel.job_ids == ("a", "c")
    assert min(rel.priorities) > 70 and rel.priorities[0] > rel.priorities[1]
    # without the flag nothing is released
    assert kinds(decide(dataclasses.replace(gc, burst_preempted=False), START + 300, running=running)) == [
        "Hold", "SubmitChallenge"]


def test_release_order_and_priorities_put_preempted_jobs_first() -> None:
    gc = challenge(C.RESTORING, preempted_jobs=(pj("b", 1, priority=3), pj("a", 0, priority=7), pj("c", 2, priority=3)))
    newer = pend("newer", prio=900)
    got = decide(gc, START + 7 * H, pending=(pend("a", held=True), pend("b", held=True), pend("c", held=True), newer))
    rel = got[0]
    assert isinstance(rel, ReleaseJobs) and rel.job_ids == ("a", "b", "c")
    assert list(rel.priorities) == sorted(rel.priorities, reverse=True) and min(rel.priorities) > 900
    assert restore_priorities(gc, (newer,)) == dict(zip(rel.job_ids, rel.priorities, strict=True))


def test_done_only_when_every_restored_job_is_seen_again_and_the_reservation_is_gone() -> None:
    t = START + 7 * H
    jobs = (pj("a", 0, released_at=t), pj("b", 1, released_at=t, restored=True))
    gc = challenge(C.RESTORING, preempted_jobs=jobs, reservation="", reserved=False)
    assert kinds(decide(gc, t + 10, pending=(pend("a", held=True),))) == []  # still held: wait
    got = decide(gc, t + 10, pending=(pend("a"),))
    assert kinds(got) == ["ConfirmRestored", "AdvanceChallenge"] and advance_to(got) == [C.DONE]
    # a job that left the queue (finished, cancelled by its owner) counts as given back
    assert advance_to(decide(gc, t + 10)) == [C.DONE]
    # the reservation still stands: lift it first, in the same plan, before the end
    got = decide(dataclasses.replace(gc, reservation="burst-gc-1", reserved=True), t + 10, pending=(pend("a"),))
    assert kinds(got) == ["ConfirmRestored", "Unreserve", "AdvanceChallenge"]
    # the challenge job still shows: cancel it and wait
    got = decide(gc, t + 10, pending=(pend("a"),), running=(run("burst-gc-1", ALL_ONPREM, started=START),))
    assert kinds(got) == ["CancelChallengeJob", "ConfirmRestored"]


def test_release_that_did_not_take_is_retried_after_the_retry_delay_only() -> None:
    t = START + 7 * H
    gc = challenge(C.RESTORING, reservation="", preempted_jobs=(pj("a", 0, released_at=t),))
    assert kinds(decide(gc, t + 59, pending=(pend("a", held=True),))) == []
    got = decide(gc, t + 60, pending=(pend("a", held=True),))
    assert kinds(got) == ["ReleaseJobs"] and isinstance(got[0], ReleaseJobs) and got[0].job_ids == ("a",)


# ---- cancel in every phase -------------------------------------------------------------------

CX = ChallengeEnding.CANCELLED
CANCELS: list[tuple[GrandChallenge, float, tuple[Job, ...], list[str], list[ChallengeState]]] = [
    (challenge(ending=CX), START - 48 * H, QUEUE, ["AdvanceChallenge"], [C.CANCELLED]),
    (challenge(C.NOTIFIED, ending=CX), START - 2 * H, QUEUE, ["AdvanceChallenge", "Notify"], [C.CANCELLED]),
    (challenge(C.NOTIFIED, ending=CX), START - H, QUEUE, ["AdvanceChallenge", "Notify"], [C.CANCELLED]),
    (challenge(C.DRAINING, ending=CX), START, QUEUE, ["AdvanceChallenge", "Unreserve", "AdvanceChallenge"],
     [C.RESTORING, C.CANCELLED]),
    (challenge(C.PREEMPTING, ending=CX, preempted_jobs=(pj("long", 0),)), START + 10, QUEUE,
     ["AdvanceChallenge", "ReleaseJobs", "Notify", "Unreserve"], [C.RESTORING]),
    (challenge(C.RUNNING, ending=CX), START + H, (run("burst-gc-1", ALL_ONPREM, started=START),),
     ["CancelChallengeJob", "AdvanceChallenge", "Unreserve", "AdvanceChallenge"], [C.RESTORING, C.CANCELLED]),
]


@pytest.mark.parametrize(("gc", "now", "running", "want", "moves"), CANCELS, ids=lambda v: str(getattr(v, "state", "")))
def test_cancel_in_every_phase(gc: GrandChallenge, now: float, running: tuple[Job, ...], want: list[str],
                               moves: list[ChallengeState]) -> None:
    got = decide(gc, now, running=running)
    assert kinds(got) == want and advance_to(got) == moves
    walk(gc.state, got)
    if gc.state in (C.SCHEDULED, C.NOTIFIED):  # before draining: nothing on the cluster is touched
        assert not any(isinstance(a, Reserve | Checkpoint | Hold | ReleaseJobs | CancelChallengeJob) for a in got)


def test_cancel_after_draining_restores_everything_then_ends_cancelled() -> None:
    t = START + H
    gc = challenge(C.RESTORING, ending=CX, preempted_jobs=(pj("long", 0), pj("gang", 1)))
    got = decide(gc, t, pending=(pend("long", held=True), pend("gang", held=True)))
    assert kinds(got) == ["ReleaseJobs", "Notify", "Notify", "Unreserve"]
    done = dataclasses.replace(gc, reservation="", reserved=False, preempted_jobs=tuple(
        dataclasses.replace(p, released_at=t) for p in gc.preempted_jobs))
    assert advance_to(decide(done, t + 30, running=(LONG,), pending=(pend("gang"),))) == [C.CANCELLED]


# ---- restart idempotency ---------------------------------------------------------------------


def _phases_and_snapshots() -> list[tuple[GrandChallenge, float, tuple[Job, ...], tuple[Job, ...]]]:
    t = START + 7 * H
    recorded = (pj("a", 0), pj("b", 1, released_at=t), pj("c", 2, released_at=t, restored=True), pj("d", 3))
    gcs = [challenge(st, preempted_jobs=recorded) for st in (C.PREEMPTING, C.RUNNING, C.RESTORING)]
    gcs += [dataclasses.replace(g, ending=CX) for g in gcs] + [dataclasses.replace(g, burst_preempted=True) for g in gcs]
    views = {
        "held": (pend("a", held=True), pend("b", held=True), pend("d", held=True)),
        "back": (pend("a"), pend("b"), pend("d", held=True)),
        "none": (),
    }
    snaps: list[tuple[GrandChallenge, float, tuple[Job, ...], tuple[Job, ...]]] = []
    for gc, now, (_, pending) in itertools.product(gcs, (START + 10, START + 400, t, t + 30, t + 120), views.items()):
        snaps.append((gc, now, (run("b", "n1", started=t),), pending))
    return snaps


def test_restart_never_resignals_reholds_or_rereleases() -> None:
    """Given a challenge whose preempted set is recorded and some jobs released, no decision in any
    later phase signals again, holds a job the queue does not show running on a challenge node,
    or releases a job already released unless the queue still shows it held past the retry."""
    for gc, now, running, pending in _phases_and_snapshots():
        held = {j.id for j in pending if j.state is JobState.HELD}
        for a in decide(gc, now, running=running, pending=pending):
            assert not isinstance(a, Checkpoint | RecordPreempted), (gc.state, a)
            if isinstance(a, Hold):
                assert set(a.job_ids) <= {j.id for j in running if "n1" in j.node_names}
                assert not {p.job_id for p in gc.preempted_jobs if p.released} & set(a.job_ids), a
            if isinstance(a, ReleaseJobs):
                for jid in a.job_ids:
                    p = gc.preempted(jid)
                    assert p is not None
                    if p.released_at is not None:
                        assert jid in held and now >= p.released_at + S.release_retry_s, (gc.state, a)


def test_same_input_same_output() -> None:
    for gc, now, running, pending in _phases_and_snapshots()[:40]:
        assert decide(gc, now, running=running, pending=pending) == decide(gc, now, running=running, pending=pending)


def test_preempted_set_excludes_named_jobs_and_sorts_by_priority_then_submit() -> None:
    jobs = (run("x", "n1", started=0, prio=1, submit=5), run("y", "n1", started=0, prio=1, submit=3),
            run("z", "n2", started=0, prio=2))
    assert [p.job_id for p in preempted_set(jobs, ("n1", "n2"))] == ["z", "y", "x"]
    assert [p.job_id for p in preempted_set(jobs, ("n1",), exclude=("y",))] == ["x"]


# ---- validation ------------------------------------------------------------------------------

NOW = START - 48 * H
OK: dict[str, Any] = dict(now=NOW, start_at=START, duration_s=6 * H, nodes=0, onprem_nodes=4,
                          job_kind=ChallengeJobKind.SLURM, job_text="#!/bin/sh\nsrun train\n")
OTHER = challenge(id="gc-2", start_at=START + 3 * H)

BAD: list[tuple[str, dict[str, Any], str]] = [
    ("past start", {"start_at": NOW - 1}, "is in the past"),
    ("start now", {"start_at": NOW}, "is in the past"),
    ("zero duration", {"duration_s": 0}, "the duration must be more than 0"),
    ("over max", {"duration_s": 15 * 86400}, "the duration 15d is over the maximum of 14d"),
    ("too many nodes", {"nodes": 5}, "it asks for 5 nodes; the on-prem cluster has 4"),
    ("negative nodes", {"nodes": -1}, "the node count must be 0"),
    ("unreadable", {"job_error": "cannot read /srv/gc.sh: No such file or directory"}, "cannot read /srv/gc.sh"),
    ("missing job", {"job_text": "  \n"}, "no challenge job"),
    ("not a Job", {"job_kind": ChallengeJobKind.KUBERNETES, "job_text": "kind: Pod\n"}, "not a batch/v1 Job"),
    ("overlap", {"existing": (OTHER,)}, "it overlaps grand challenge gc-2"),
]


@pytest.mark.parametrize(("name", "change", "error"), BAD, ids=[b[0] for b in BAD])
def test_validation_errors_are_one_clear_line(name: str, change: dict[str, Any], error: str) -> None:
    errors = validate_challenge(**{**OK, **change})
    assert len(errors) == 1 and error in errors[0] and "\n" not in errors[0], errors


def test_valid_challenges_pass() -> None:
    assert validate_challenge(**OK) == []
    assert validate_challenge(**{**OK, "job_kind": ChallengeJobKind.KUBERNETES,
                                 "job_text": "apiVersion: batch/v1\nkind: Job\n"}) == []
    # touching end to start is no overlap; a finished challenge holds no slot
    assert validate_challenge(**{**OK, "existing": (challenge(id="gc-3", start_at=START + 6 * H),)}) == []
    assert validate_challenge(**{**OK, "existing": (dataclasses.replace(OTHER, state=C.DONE),)}) == []


# ---- plan ------------------------------------------------------------------------------------


def test_plan_ranks_slots_by_gpu_hours_at_risk_then_users() -> None:
    now = START
    jobs = (
        run("a", "n1", started=now - 2 * H, limit=5 * H, owner="u1"),  # ends at now+3h
        run("b", "n2", started=now - H, limit=3 * H, owner="u2", gpus=4),  # ends at now+2h
    )
    slots = plan_slots(now=now, running=jobs, nodes=NODES, duration_s=6 * H, within_s=6 * H)
    assert [s.start for s in slots[:4]] == [now + 3 * H, now + 4 * H, now + 5 * H, now + 6 * H]
    assert all(s.gpu_hours == 0 and s.jobs == () for s in slots[:4])
    assert slots[4].start == now + 2 * H and slots[4].jobs == ("a",) and slots[4].users == ("u1",)
    assert slots[4].gpu_hours == pytest.approx(8 * 4)
    assert slots[-1].start == now + H and set(slots[-1].jobs) == {"a", "b"}
    assert slots[-1].gpu_hours == pytest.approx(8 * 3 + 4 * 2)
    # a job with no limit is at risk in every slot; an active challenge's slot is left out
    forever = (run("f", "n3", started=now - H),)
    busy = challenge(start_at=now + 2 * H, duration_s=H)
    slots = plan_slots(now=now, running=forever, nodes=NODES, duration_s=H, within_s=4 * H, existing=(busy,))
    assert [s.start for s in slots] == [now + H, now + 3 * H, now + 4 * H]
    assert [s.gpu_hours for s in slots] == [16.0, 32.0, 40.0]
    # with fewer nodes than the cluster, the plan picks nodes without that job
    slots = plan_slots(now=now, running=forever, nodes=NODES, duration_s=H, node_count=3, within_s=H)
    assert slots[0].gpu_hours == 0 and "n3" not in slots[0].nodes


def test_every_action_of_a_full_walk_has_a_reason() -> None:
    for e in EDGES:
        for a in decide(e[1], e[2], running=e[3], pending=e[4]):
            assert isinstance(getattr(a, "reason", None), str) and a.reason


def test_confirm_and_cancel_actions_name_the_challenge() -> None:
    gc = challenge(C.RESTORING, preempted_jobs=(pj("a", 0, released_at=START),))
    got = decide(gc, START + 10, pending=(pend("a"),), running=(run("burst-gc-1", ALL_ONPREM, started=START),))
    assert {a.challenge_id for a in got if isinstance(a, ConfirmRestored | CancelChallengeJob | Unreserve)} == {"gc-1"}


def test_impact_counts_jobs_users_gpu_hours_and_the_burst_cost() -> None:
    a = run("a", "n1", started=START - 2 * H, owner="u1", may_burst=True)  # no limit: whole duration
    b = run("b", "n2", started=START - H, limit=3 * H, owner="u2", gpus=8, may_burst=True)  # 2h left at start
    c = run("c", "n3", started=START - H, owner="u1")
    imp = challenge_impact(running=(a, b, c, ON_BURST), nodes=NODES, start_at=START, duration_s=6 * H,
                           price_per_gpu_hour=2.0)
    assert imp.jobs == ("a", "b", "c") and imp.users == ("u1", "u2") and "cloud" not in imp.jobs
    assert imp.gpu_hours == pytest.approx(8 * 2 + 8 * 1 + 8 * 1)
    assert imp.burst_jobs == ("a", "b")
    assert imp.burst_cost_usd == pytest.approx(8 * 6 * 2.0 + 8 * 2 * 2.0)
    assert challenge_impact(running=(), nodes=NODES, start_at=START, duration_s=H).jobs == ()


def test_running_holds_only_a_preempted_job_that_started_again() -> None:
    gc = challenge(C.RUNNING, preempted_jobs=(pj("long", 0),), phases=(("running", START + 300),))
    cj = pend("burst-gc-1")
    # still shown running from before the hold (Slurm's COMPLETING): not held twice
    assert decide(gc, START + 400, running=(LONG,), pending=(cj,)) == []
    again = run("long", "n2", started=START + 350)
    got = decide(gc, START + 400, running=(again,), pending=(cj,))
    assert kinds(got) == ["Hold"] and isinstance(got[0], Hold) and got[0].job_ids == ("long",)


def test_a_controller_back_after_the_window_never_starts_the_challenge() -> None:
    late = START + 7 * H  # the 6h window ended at START + 6h
    for st in (C.SCHEDULED, C.NOTIFIED):
        got = decide(challenge(st), late, running=QUEUE)
        assert kinds(got) == ["AdvanceChallenge", "Notify"] and advance_to(got) == [C.CANCELLED]
        assert isinstance(got[1], Notify) and got[1].audience == "admins"
    got = decide(challenge(C.DRAINING), late, running=QUEUE)
    assert advance_to(got) == [C.RESTORING, C.FAILED] and not any(isinstance(a, Checkpoint) for a in got)
    assert isinstance(got[0], AdvanceChallenge) and got[0].ending is ChallengeEnding.FAILED


def test_a_late_drain_reserves_from_now_until_the_end() -> None:
    (r,) = decide(challenge(C.NOTIFIED), START + H, running=QUEUE)
    assert isinstance(r, Reserve) and (r.start, r.duration_s) == (START + H, 5 * H)
