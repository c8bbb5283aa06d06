"""The grand-challenge lifecycle as a pure decision: challenges and a queue snapshot in, actions out.

``decide_challenges`` looks at every active challenge and says what is due *now*; the runner
(``burst/grand_challenge.py``) carries the actions out, in order, and records each step in the
store. Nothing here reads the clock, the store or the queue, so the same code runs in the
daemon and the simulator, and a restarted controller reaches the same actions from the same
stored facts.

Timeline (issue 10), each step decided from the stored challenge and the snapshot:

* ``scheduled``/``notified``: at each notice offset (T-24h, T-1h) the owners of jobs that would
  be preempted get a direct message naming them, and the announce channel a summary. A job is at
  risk if it runs on the challenge's (candidate) on-prem nodes and is not expected to end before
  the start by its time limit. Notice keys are recorded before the messages go out, so a restart
  never repeats one. Several notices due at once (a challenge scheduled late, a controller that
  was down) send one.
* ``draining`` from T-drain window: ``Reserve`` the challenge's nodes (on-prem only, never burst
  nodes); it also moves the challenge to DRAINING, recording the node list and reservation name
  first. Jobs whose time limit ends before the start may still start there (the queue's rule).
* at the start: ``RecordPreempted`` writes the exact set of jobs running on those nodes, with
  their priority and queue order, and enters PREEMPTING; only then ``Checkpoint`` signals them.
  A job that is not running at the start is never in the set.
* after the checkpoint grace: ``Hold`` the recorded jobs still running on the nodes (a job the
  queue already shows held is never held again), release at once those that may burst when the
  challenge says ``burst_preempted``, then ``SubmitChallenge`` (moves to RUNNING).
* RUNNING until the challenge job ends (then RESTORING), or its time is up (cancel it, then
  RESTORING), or an admin cancels (same).
* RESTORING: ``ReleaseJobs`` every recorded job not yet released, in recorded order, each with an
  explicit priority above everything else waiting (so they run before work submitted during the
  challenge), ``Unreserve``, and ``ConfirmRestored`` once the queue shows each one pending or
  running again (or gone: finished or cancelled by its owner). ``done`` (or ``cancelled`` /
  ``failed``, per the challenge's ``ending``) only when all are confirmed and the reservation is
  gone.

Restart safety comes from deciding on recorded facts: signals are sent only on the tick that
records the set (at most once); a job is held only while the queue shows it running on a
challenge node; a job is released only if it has no ``released_at`` yet, or the queue still
shows it held ``release_retry_s`` after its release (the call never took effect).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from burst.domain import (
    CHALLENGE_TERMINAL,
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
    Timestamp,
    Unreserve,
)

C = ChallengeState

ANNOUNCE = "all"  # Notifier audience of the announce channel
DAY = 86400.0


@dataclass(frozen=True, slots=True)
class ChallengeSettings:
    """Offsets and limits; every one is configurable (defaults from issue 10)."""

    notice_offsets_s: tuple[float, ...] = (DAY, 3600.0)  # T-24h and T-1h
    drain_window_s: float = 3600.0  # reserve the nodes this long before the start
    checkpoint_grace_s: float = 300.0  # between the checkpoint signal and the hold
    max_duration_s: float = 14 * DAY
    # A job released but still seen held this long afterwards is released again (the first call
    # never reached the scheduler, e.g. a crash between recording and calling).
    release_retry_s: float = 60.0
    restore_poll_s: float = 30.0  # how soon to look again while restoring


@dataclass(frozen=True, slots=True)
class ChallengeInput:
    """What the decision sees. ``pending`` holds held jobs too (state HELD)."""

    now: Timestamp
    challenges: tuple[GrandChallenge, ...]
    pending: tuple[Job, ...]
    running: tuple[Job, ...]
    nodes: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class ChallengePlan:
    """One challenge's actions, to be carried out in this order; the runner stops the list at the
    first failure (the rest is decided again next tick)."""

    challenge_id: str
    actions: tuple[ChallengeAction, ...]


@dataclass(frozen=True, slots=True)
class ChallengeDecision:
    plans: tuple[ChallengePlan, ...] = ()
    wake_at: Timestamp | None = None  # earliest time a challenge's next step falls due

    @property
    def actions(self) -> tuple[ChallengeAction, ...]:
        return tuple(a for p in self.plans for a in p.actions)


def reservation_name(challenge_id: str) -> str:
    """The deterministic reservation (and challenge job) name: a restart finds the same one."""
    return f"burst-{challenge_id}"


def notice_key(offset_s: float) -> str:
    return f"T-{offset_s:.0f}"


def fmt_time(t: Timestamp) -> str:
    """``YYYY-MM-DD HH:MM UTC``, by arithmetic (policies import no clock module): Howard
    Hinnant's days-to-civil algorithm."""
    days, secs = divmod(int(t), 86400)
    z = days + 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    y = yoe + era * 400 + (m <= 2)
    return f"{y:04d}-{m:02d}-{d:02d} {secs // 3600:02d}:{secs % 3600 // 60:02d} UTC"


def fmt_dur(s: float) -> str:
    if s >= DAY and s % DAY == 0:
        return f"{s / DAY:g}d"
    if s >= 3600:
        return f"{s / 3600:g}h"
    return f"{s / 60:g}min"


# --------------------------------------------------------------------------------------------
# Which nodes, which jobs
# --------------------------------------------------------------------------------------------


def onprem_nodes(nodes: Iterable[Node]) -> list[Node]:
    """Nodes a challenge may take: on-prem only. Burst nodes keep serving overflow."""
    return sorted((n for n in nodes if not n.is_cloud), key=lambda n: n.name)


def _loss_at(job: Job, at: Timestamp) -> float:
    """GPU-seconds a job would lose if preempted at ``at`` with no checkpoint: the work since its
    last start. 0 when its time limit ends it before ``at``."""
    end = job.expected_end()
    if job.start_time is None or (end is not None and end <= at):
        return 0.0
    return job.gpus * max(0.0, at - job.start_time)


def choose_nodes(count: int, nodes: Sequence[Node], running: Sequence[Job], at: Timestamp) -> tuple[str, ...]:
    """The ``count`` on-prem nodes (0: all) that lose the least work if taken at ``at``; ties by
    name. Sorted by name."""
    names = [n.name for n in onprem_nodes(nodes)]
    if count <= 0 or count >= len(names):
        return tuple(names)
    loss = dict.fromkeys(names, 0.0)
    for j in running:
        for n in j.node_names:
            if n in loss:
                loss[n] += _loss_at(j, at) / max(1, len(j.node_names))
    return tuple(sorted(sorted(names, key=lambda n: (loss[n], n))[:count]))


def at_risk(running: Iterable[Job], node_names: Iterable[str], start: Timestamp) -> list[Job]:
    """Running jobs on any of ``node_names`` not expected to end before ``start`` (a job with no
    time limit may run forever, so it is at risk)."""
    names = set(node_names)
    out = []
    for j in running:
        if not names.intersection(j.node_names):
            continue
        end = j.expected_end()
        if end is not None and end <= start:
            continue
        out.append(j)
    return sorted(out, key=queue_key)


def queue_key(j: Job) -> tuple[int, float, str]:
    """Queue order: higher priority first, then earlier submission, then id."""
    return (-j.priority, j.submit_time, j.id)


def preempted_set(running: Iterable[Job], node_names: Iterable[str], exclude: Iterable[str] = ()) -> tuple[PreemptedJob, ...]:
    """The jobs a challenge preempts at its start: every job running on its nodes then, in queue
    order. Pending jobs are never in it."""
    names, skip = set(node_names), set(exclude)
    jobs = sorted((j for j in running if names.intersection(j.node_names) and j.id not in skip), key=queue_key)
    return tuple(
        PreemptedJob(job_id=j.id, user=j.owner, gpus=j.gpus, priority=j.priority, order=k, may_burst=j.may_burst)
        for k, j in enumerate(jobs)
    )


def restore_priorities(gc: GrandChallenge, others: Iterable[Job]) -> dict[str, int]:
    """An explicit priority per preempted job: above every other waiting job and every recorded
    priority, decreasing in recorded order, so they run first and in their original order."""
    rec = sorted(gc.preempted_jobs, key=lambda p: p.order)
    base = max([j.priority for j in others] + [p.priority for p in rec] + [0]) + 1
    return {p.job_id: base + len(rec) - 1 - k for k, p in enumerate(rec)}


# --------------------------------------------------------------------------------------------
# Texts
# --------------------------------------------------------------------------------------------


def _jobs_text(jobs: Sequence[Job]) -> str:
    ids = ", ".join(f"`{j.id}`" for j in jobs[:20])
    return ids + (f" and {len(jobs) - 20} more" if len(jobs) > 20 else "")


def _gpu_hours(jobs: Iterable[Job], at: Timestamp) -> float:
    return sum(_loss_at(j, at) for j in jobs) / 3600.0


def _notices(gc: GrandChallenge, jobs: Sequence[Job], reason: str) -> list[Notify]:
    out: list[Notify] = []
    by_user: dict[str, list[Job]] = {}
    for j in jobs:
        by_user.setdefault(j.owner or "admins", []).append(j)
    where = f"{gc.nodes} nodes" if gc.nodes else "the whole on-prem cluster"
    head = f"Grand challenge `{gc.id}` ({gc.name}) takes {where} at {fmt_time(gc.start_at)} for {fmt_dur(gc.duration_s)}."
    for user in sorted(by_user):
        mine = by_user[user]
        out.append(Notify(
            user,
            f"{head} Your running job(s) {_jobs_text(mine)} ({sum(j.gpus for j in mine)} GPU) will be told to "
            f"checkpoint at the start, then held, and released afterwards in their queue order.",
            reason,
        ))
    out.append(Notify(
        ANNOUNCE,
        f"{head} At risk now: {len(jobs)} job(s) of {len(by_user)} user(s), "
        f"{_gpu_hours(jobs, gc.start_at):.1f} GPU-hours since their last start.",
        reason,
    ))
    return out


# --------------------------------------------------------------------------------------------
# The decision
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _View:
    """Indexes over the snapshot for one decision."""

    by_id: dict[str, Job]
    running: tuple[Job, ...]
    pending: tuple[Job, ...]
    nodes: tuple[Node, ...]

    @classmethod
    def of(cls, inp: ChallengeInput) -> _View:
        by_id = {j.id: j for j in inp.pending}
        by_id.update({j.id: j for j in inp.running})
        return cls(by_id, inp.running, inp.pending, inp.nodes)


def decide_challenges(inp: ChallengeInput, settings: ChallengeSettings = ChallengeSettings()) -> ChallengeDecision:
    """Actions due now for every active challenge, in the order the runner must carry them out
    (per challenge; challenges are independent). Same input, same output."""
    view = _View.of(inp)
    plans: list[ChallengePlan] = []
    wakes: list[Timestamp] = []
    for gc in sorted(inp.challenges, key=lambda c: (c.start_at, c.id)):
        if gc.state in CHALLENGE_TERMINAL:
            continue
        acts, wake = _decide_one(gc, inp.now, view, settings)
        if acts:
            plans.append(ChallengePlan(gc.id, tuple(acts)))
        if wake is not None:
            wakes.append(wake)
    return ChallengeDecision(tuple(plans), min(wakes) if wakes else None)


def _decide_one(
    gc: GrandChallenge, now: Timestamp, v: _View, s: ChallengeSettings
) -> tuple[list[ChallengeAction], Timestamp | None]:
    if gc.state in (C.SCHEDULED, C.NOTIFIED):
        return _before_drain(gc, now, v, s)
    if gc.state is C.DRAINING:
        return _draining(gc, now, v, s)
    if gc.state is C.PREEMPTING:
        return _preempting(gc, now, v, s)
    if gc.state is C.RUNNING:
        return _running(gc, now, v, s)
    return _restoring(gc, now, v, s)


def _before_drain(
    gc: GrandChallenge, now: Timestamp, v: _View, s: ChallengeSettings
) -> tuple[list[ChallengeAction], Timestamp | None]:
    cid = gc.id
    if gc.ending is ChallengeEnding.CANCELLED:
        # Nothing on the cluster yet: the cancel touches nothing there.
        acts: list[ChallengeAction] = [AdvanceChallenge(cid, C.CANCELLED, "cancelled before draining; nothing to undo")]
        if gc.state is C.NOTIFIED:
            acts.append(Notify(ANNOUNCE, f"Grand challenge `{cid}` ({gc.name}) is cancelled; your jobs are not affected.",
                               "a cancelled challenge had been announced"))
        return acts, None
    if now >= gc.end_at:
        # The whole window passed before draining (the controller was down): nothing was touched,
        # and starting now would run past the slot admins agreed to.
        return [
            AdvanceChallenge(cid, C.CANCELLED, f"its window ended at {fmt_time(gc.end_at)} before it could start"),
            Notify("admins", f"Grand challenge `{cid}` ({gc.name}) never started: its window ended at "
                             f"{fmt_time(gc.end_at)} before the controller could drain the nodes.", "missed window"),
        ], None
    drain_at = gc.start_at - s.drain_window_s
    due = [o for o in s.notice_offsets_s if now >= gc.start_at - o and notice_key(o) not in gc.notices]
    if gc.state is C.SCHEDULED and not due and now >= drain_at:
        due = [0.0]  # no notice configured or left: announce once before anything is touched
    acts = []
    if due:
        keys = tuple(sorted({notice_key(o) for o in due}))
        nearest = min(due)
        reason = f"notice {notice_key(nearest)} for the challenge at {fmt_time(gc.start_at)}"
        names = choose_nodes(gc.nodes, v.nodes, v.running, gc.start_at)
        acts.append(RecordNotices(cid, keys, reason))
        acts.extend(_notices(gc, at_risk(v.running, names, gc.start_at), reason))
        if gc.state is C.SCHEDULED:
            acts.append(AdvanceChallenge(cid, C.NOTIFIED, reason))
        sent = set(gc.notices) | set(keys)
        later = [gc.start_at - o for o in s.notice_offsets_s if notice_key(o) not in sent]
        return acts, max(now, min([*later, drain_at]))  # draining may be due at once
    if gc.state is C.NOTIFIED and now >= drain_at:
        names = choose_nodes(gc.nodes, v.nodes, v.running, gc.start_at)
        begin = max(now, gc.start_at)  # a late controller reserves from now, never in the past
        return [Reserve(
            cid, reservation_name(cid), names, begin, gc.end_at - begin,
            f"drain window ({fmt_dur(s.drain_window_s)}) opened: reserve {len(names)} on-prem node(s) from "
            f"{fmt_time(gc.start_at)} so no job starts there that would have to be preempted",
        )], gc.start_at
    later = [gc.start_at - o for o in s.notice_offsets_s if notice_key(o) not in gc.notices and gc.start_at - o > now]
    return [], min([*later, drain_at])


def _draining(
    gc: GrandChallenge, now: Timestamp, v: _View, s: ChallengeSettings
) -> tuple[list[ChallengeAction], Timestamp | None]:
    cid = gc.id
    acts: list[ChallengeAction] = []
    if gc.ending is not ChallengeEnding.DONE:
        return _and_restore(gc, now, v, s, f"{gc.ending} while draining; lift the reservation")
    if now >= gc.end_at:
        return _and_restore(gc, now, v, s, f"its window ended at {fmt_time(gc.end_at)} before it started",
                            ending=ChallengeEnding.FAILED)
    if not gc.reserved:
        begin = max(now, gc.start_at)
        acts.append(Reserve(cid, gc.reservation or reservation_name(cid), gc.node_names, begin, gc.end_at - begin,
                            "the reservation is not confirmed yet; make it (idempotent on its name)"))
    if now < gc.start_at:
        return acts, gc.start_at
    jobs = preempted_set(v.running, gc.node_names)
    acts.append(RecordPreempted(
        cid, jobs, f"start reached: {len(jobs)} job(s) run on the challenge's nodes; recorded before any signal",
    ))
    if jobs:
        ids = tuple(p.job_id for p in jobs)
        acts.append(Checkpoint(cid, ids, "checkpoint signal at the start; the hold follows after the grace period"))
        acts.extend(_user_notes(gc, jobs, "was told to checkpoint and will be held for grand challenge", "preempted"))
    return acts, now


def _user_notes(gc: GrandChallenge, jobs: Sequence[PreemptedJob], verb: str, reason: str) -> list[Notify]:
    by_user: dict[str, list[str]] = {}
    for p in jobs:
        by_user.setdefault(p.user or "admins", []).append(p.job_id)
    return [
        Notify(u, f"Your job(s) {', '.join(f'`{j}`' for j in ids)} {verb} `{gc.id}` ({gc.name}).", reason)
        for u, ids in sorted(by_user.items())
    ]


def _on_nodes(gc: GrandChallenge, v: _View, started_since: Timestamp | None = None) -> list[str]:
    """Recorded, unreleased jobs the queue shows running on a challenge node: to be held. With
    ``started_since``, only those that (re)started at or after it: a job the hold already
    stopped may still show running for a moment (Slurm's COMPLETING) and is not held twice."""
    names = set(gc.node_names)
    out = []
    for p in gc.preempted_jobs:
        j = v.by_id.get(p.job_id)
        if p.released_at is None and j is not None and j.state is JobState.RUNNING and names.intersection(j.node_names):
            if started_since is None or (j.start_time is not None and j.start_time >= started_since):
                out.append(p.job_id)
    return out


def _burst_release(gc: GrandChallenge, v: _View, holding: Sequence[str]) -> list[ChallengeAction]:
    """With burst_preempted: release at once the held jobs that may burst; the reservation keeps
    them off the challenge's nodes, so overflow runs them on burst capacity within budget."""
    if not gc.burst_preempted:
        return []
    going = set(holding)
    ids = []
    for p in sorted(gc.preempted_jobs, key=lambda p: p.order):
        j = v.by_id.get(p.job_id)
        if p.may_burst and p.released_at is None and (p.job_id in going or (j is not None and j.state is JobState.HELD)):
            ids.append(p.job_id)
    if not ids:
        return []
    prio = restore_priorities(gc, (j for j in v.pending if gc.preempted(j.id) is None))
    return [ReleaseJobs(gc.id, tuple(ids), tuple(prio[i] for i in ids),
                        "--burst-preempted: released at once so overflow can run them on burst capacity")]


def _preempting(
    gc: GrandChallenge, now: Timestamp, v: _View, s: ChallengeSettings
) -> tuple[list[ChallengeAction], Timestamp | None]:
    cid = gc.id
    if gc.ending is not ChallengeEnding.DONE:
        return _and_restore(gc, now, v, s, f"{gc.ending} during preemption; give every job back")
    signalled = gc.entered_at(C.PREEMPTING)
    grace_end = (signalled if signalled is not None else gc.start_at) + s.checkpoint_grace_s
    still = _on_nodes(gc, v)
    if still and now < grace_end:
        return [], grace_end
    acts: list[ChallengeAction] = []
    if not gc.reserved:
        begin = max(now, gc.start_at)
        acts.append(Reserve(cid, gc.reservation or reservation_name(cid), gc.node_names, begin,
                            max(0.0, gc.end_at - begin), "the reservation is not confirmed; the challenge job needs it"))
    if still:
        acts.append(Hold(cid, tuple(still), f"checkpoint grace of {fmt_dur(s.checkpoint_grace_s)} is over"))
    acts += _burst_release(gc, v, still)
    acts.append(SubmitChallenge(cid, gc.node_names, "the challenge's nodes are cleared; submit into the reservation"))
    return acts, now


def _alive(job_id: str, v: _View) -> Job | None:
    return v.by_id.get(job_id) if job_id else None


def _running(
    gc: GrandChallenge, now: Timestamp, v: _View, s: ChallengeSettings
) -> tuple[list[ChallengeAction], Timestamp | None]:
    cid = gc.id
    acts: list[ChallengeAction] = []
    job = _alive(gc.challenge_job_id, v)
    stop = ""
    if gc.ending is not ChallengeEnding.DONE:
        stop = f"{gc.ending} while running"
    elif now >= gc.end_at:
        stop = f"time is up ({fmt_dur(gc.duration_s)} from {fmt_time(gc.start_at)})"
    if stop:
        if job is not None:
            acts.append(CancelChallengeJob(cid, gc.challenge_job_id, f"{stop}: cancel the challenge job"))
        more, wake = _and_restore(gc, now, v, s, f"{stop}; give every preempted job back")
        return acts + more, wake
    if job is None:
        return _and_restore(gc, now, v, s, f"challenge job `{gc.challenge_job_id}` ended")
    still = _on_nodes(gc, v, gc.entered_at(C.RUNNING) or gc.start_at)
    if still:  # a hold that did not take: the job runs again on a challenge node
        acts.append(Hold(cid, tuple(still), "a preempted job runs on a challenge node again; hold it"))
    acts += _burst_release(gc, v, still)
    return acts, gc.end_at


def _and_restore(
    gc: GrandChallenge, now: Timestamp, v: _View, s: ChallengeSettings, why: str, *, job_stopped: bool = True,
    ending: ChallengeEnding | None = None,
) -> tuple[list[ChallengeAction], Timestamp | None]:
    """AdvanceChallenge to RESTORING (recording ``ending`` when given), followed in the same plan
    by the restore's first steps (the runner carries them out after the phase change), so jobs
    come back on this tick."""
    after = dataclasses.replace(gc, state=C.RESTORING, ending=ending or gc.ending)
    acts, wake = _restoring(after, now, v, s, job_stopped=job_stopped)
    return [AdvanceChallenge(gc.id, C.RESTORING, why, ending), *acts], wake


def _restoring(
    gc: GrandChallenge, now: Timestamp, v: _View, s: ChallengeSettings, *, job_stopped: bool = False
) -> tuple[list[ChallengeAction], Timestamp | None]:
    """``job_stopped``: the challenge job was cancelled (or seen ended) earlier in this plan, so
    the snapshot's view of it is stale."""
    cid = gc.id
    acts: list[ChallengeAction] = []
    job = None if job_stopped else _alive(gc.challenge_job_id, v)
    if job is not None:
        acts.append(CancelChallengeJob(cid, gc.challenge_job_id, "restoring: the challenge job must not hold the nodes"))
    prio = restore_priorities(gc, (j for j in v.pending if gc.preempted(j.id) is None))
    fresh, retry, confirm = [], [], []
    for p in sorted(gc.preempted_jobs, key=lambda p: p.order):
        j = v.by_id.get(p.job_id)
        if p.released_at is None:
            fresh.append(p)
        elif p.restored:
            continue
        elif j is None or j.state is not JobState.HELD:
            confirm.append(p.job_id)  # pending or running again, or gone (finished, cancelled)
        elif now >= p.released_at + s.release_retry_s:
            retry.append(p.job_id)
    if fresh:
        ids = tuple(p.job_id for p in fresh)
        acts.append(ReleaseJobs(cid, ids, tuple(prio[i] for i in ids),
                                f"restore {len(ids)} preempted job(s) in their recorded queue order, ahead of newer work"))
        acts.extend(_user_notes(gc, fresh, "is released after grand challenge", "restored"))
    if retry:
        acts.append(ReleaseJobs(cid, tuple(retry), tuple(prio[i] for i in retry),
                                f"still held {fmt_dur(s.release_retry_s)} after its release: the release did not take"))
    if confirm:
        acts.append(ConfirmRestored(cid, tuple(confirm), "the queue shows them pending or running again, or gone"))
    if gc.reservation:
        acts.append(Unreserve(cid, gc.reservation, gc.node_names, "restoring: lift the reservation"))
    unconfirmed = {p.job_id for p in gc.preempted_jobs if not p.restored} - set(confirm)
    if not unconfirmed and job is None and not fresh and not retry:
        # Unreserve (if any) comes first in this list; the runner stops at the first failure,
        # so the challenge ends only after the reservation is really gone.
        end = {ChallengeEnding.DONE: C.DONE, ChallengeEnding.CANCELLED: C.CANCELLED, ChallengeEnding.FAILED: C.FAILED}
        acts.append(AdvanceChallenge(cid, end[gc.ending], f"all {len(gc.preempted_jobs)} preempted job(s) are back"))
        return acts, None
    return acts, now + s.restore_poll_s


# --------------------------------------------------------------------------------------------
# Validation and planning (for `burst gc schedule` / `gc plan` and Slack)
# --------------------------------------------------------------------------------------------


def validate_challenge(
    *,
    now: Timestamp,
    start_at: Timestamp,
    duration_s: float,
    nodes: int,
    onprem_nodes: int,
    job_kind: ChallengeJobKind,
    job_text: str,
    job_error: str = "",
    existing: Iterable[GrandChallenge] = (),
    settings: ChallengeSettings = ChallengeSettings(),
) -> list[str]:
    """Every problem with a challenge to schedule, one clear line each; [] when it may be stored.

    ``job_text`` is the script or manifest (the caller reads a path; ``job_error`` says why it
    could not). ``existing``: stored challenges; terminal ones are ignored.
    """
    errors: list[str] = []
    if start_at <= now:
        errors.append(f"the start time {fmt_time(start_at)} is in the past")
    if duration_s <= 0:
        errors.append("the duration must be more than 0")
    elif duration_s > settings.max_duration_s:
        errors.append(f"the duration {fmt_dur(duration_s)} is over the maximum of {fmt_dur(settings.max_duration_s)}")
    if nodes < 0:
        errors.append("the node count must be 0 (the whole on-prem cluster) or more")
    elif nodes > onprem_nodes:
        errors.append(f"it asks for {nodes} nodes; the on-prem cluster has {onprem_nodes}")
    if job_error:
        errors.append(job_error)
    elif not job_text.strip():
        errors.append("no challenge job: give a Slurm batch script or a Kubernetes Job manifest")
    elif job_kind is ChallengeJobKind.KUBERNETES and "kind: job" not in job_text.lower().replace("\"", ""):
        errors.append("the Kubernetes manifest is not a batch/v1 Job (no 'kind: Job')")
    if duration_s > 0:
        for gc in existing:
            if gc.state in CHALLENGE_TERMINAL:
                continue
            if start_at < gc.end_at and gc.start_at < start_at + duration_s:
                errors.append(
                    f"it overlaps grand challenge {gc.id} ({fmt_time(gc.start_at)} to {fmt_time(gc.end_at)})"
                )
    return errors


@dataclass(frozen=True, slots=True)
class Slot:
    """One candidate start time and what it would preempt, from the live queue and time limits."""

    start: Timestamp
    gpu_hours: float  # running GPU-hours since their last start, at risk without a checkpoint
    jobs: tuple[str, ...]
    users: tuple[str, ...]
    nodes: tuple[str, ...]


def plan_slots(
    *,
    now: Timestamp,
    running: Sequence[Job],
    nodes: Sequence[Node],
    duration_s: float,
    node_count: int = 0,
    within_s: float = 7 * DAY,
    step_s: float = 3600.0,
    existing: Iterable[GrandChallenge] = (),
    limit: int = 10,
) -> list[Slot]:
    """Candidate starts every ``step_s`` from the next step to ``now + within_s``, least
    disruptive first: fewest GPU-hours at risk, then fewest users, then earliest. A job with no
    time limit is assumed to run on; slots overlapping an active challenge are left out."""
    active = [g for g in existing if g.state not in CHALLENGE_TERMINAL]
    out: list[Slot] = []
    k = 1
    while k * step_s <= within_s:
        t = now + k * step_s
        k += 1
        if any(t < g.end_at and g.start_at < t + duration_s for g in active):
            continue
        names = choose_nodes(node_count, nodes, running, t)
        jobs = at_risk(running, names, t)
        out.append(Slot(
            start=t,
            gpu_hours=_gpu_hours(jobs, t),
            jobs=tuple(j.id for j in jobs),
            users=tuple(sorted({j.owner for j in jobs})),
            nodes=names,
        ))
    out.sort(key=lambda sl: (round(sl.gpu_hours, 6), len(sl.users), sl.start))
    return out[:limit]


@dataclass(frozen=True, slots=True)
class Impact:
    """What scheduling a challenge would do, for the confirmation (Slack dialog, CLI)."""

    jobs: tuple[str, ...]  # running jobs at risk at the start, in queue order
    users: tuple[str, ...]
    gpu_hours: float  # their work since their last start, at risk without a checkpoint
    nodes: tuple[str, ...]
    burst_jobs: tuple[str, ...]  # those that may burst (--burst-preempted would run them in the cloud)
    burst_cost_usd: float  # upper bound: their GPUs for the challenge's duration (or to their limit)


def challenge_impact(
    *,
    running: Sequence[Job],
    nodes: Sequence[Node],
    start_at: Timestamp,
    duration_s: float,
    node_count: int = 0,
    price_per_gpu_hour: float = 0.0,
) -> Impact:
    """The impact of a challenge from the live queue and time limits. The burst cost is what the
    jobs that may burst would cost on burst capacity at ``price_per_gpu_hour`` (the cheapest
    eligible offer, from the caller) for the challenge's duration, or until their time limit
    if that comes first: an upper bound, since the queue does not say how long they will run."""
    names = choose_nodes(node_count, nodes, running, start_at)
    jobs = at_risk(running, names, start_at)
    burst = [j for j in jobs if j.may_burst]
    cost = 0.0
    for j in burst:
        end = j.expected_end()
        hours = min(duration_s, max(0.0, end - start_at) if end is not None else duration_s) / 3600.0
        cost += j.gpus * hours * price_per_gpu_hour
    return Impact(
        jobs=tuple(j.id for j in jobs),
        users=tuple(sorted({j.owner for j in jobs})),
        gpu_hours=_gpu_hours(jobs, start_at),
        nodes=names,
        burst_jobs=tuple(j.id for j in burst),
        burst_cost_usd=cost,
    )


# ---- what a challenge means for overflow ------------------------------------------------------


def overflow_view(
    challenges: Iterable[GrandChallenge], pending: Sequence[Job], nodes: Sequence[Node]
) -> tuple[tuple[Job, ...], tuple[Node, ...]]:
    """The queue as the overflow policy must see it while challenges are active (pure).

    * A preempted job that is still held is not demand: it waits for the challenge to end, and
      bursting it would pay the cloud for work the admin chose to pause. (With
      ``--burst-preempted`` the runner releases the jobs that may burst at once; released jobs
      are demand again.)
    * The challenge job itself runs in its reservation, never in the cloud.
    * Nodes held by a challenge's reservation (or cordon) take no other work, so they are not
      free capacity: overflow must not wait for them.
    Returns the inputs unchanged (same objects) when no challenge holds anything."""
    held: set[str] = set()
    reserved: set[str] = set()
    for gc in challenges:
        held.update(p.job_id for p in gc.preempted_jobs if p.released_at is None)
        if gc.challenge_job_id:
            held.add(gc.challenge_job_id)
        if gc.reserved:
            reserved.update(gc.node_names)
    if not held and not reserved:
        return tuple(pending), tuple(nodes)
    kept = tuple(j for j in pending if j.id not in held)
    shown = tuple(dataclasses.replace(n, schedulable=False) if n.name in reserved and n.schedulable else n for n in nodes)
    return kept, shown
