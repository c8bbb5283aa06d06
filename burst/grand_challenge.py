"""The grand-challenge runner: carries out what ``policies.grand_challenge`` decides.

One entry point, :meth:`ChallengeRunner.run`, called once per controller tick with the tick's
queue snapshot (after issue 9's merge, from ``Controller.tick``; until then tests and the
simulator call it directly). It reads the active challenges from the store, asks the pure
decision what is due, and carries each challenge's actions out in order through the queue
capability (:class:`burst.ports.ChallengeQueue`) and the :class:`~burst.ports.Notifier`. No thread, no loop,
no sleep: every wait (notice offsets, drain window, checkpoint grace, the challenge's duration)
is a time the decision compares with ``now``.

Crash safety: every step is recorded in the store so that a new runner on the same store (after
a crash or a fail-over) continues where the old one stopped, and

* the preempted set is committed (with PREEMPTING) before the first checkpoint signal, and the
  signals go out only on that tick: a job is never signalled twice (a crash between the two
  costs the jobs their signal, not a double one; the hold still follows the grace);
* a job is held only while the queue shows it running on a challenge node, so a hold that took
  effect is never repeated;
* a job's ``released_at`` is written just before its release call: a restart never releases a
  job twice, and a job whose call never happened is seen still held and released then;
* the challenge job is submitted under a deterministic name, and the queue's submit is
  idempotent on that name, so a crash after the submit never runs it twice.

Crash points (``burst/faults.py``) sit in each of those windows.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from burst.domain import (
    CHALLENGE_ACTIVE,
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
    InvalidTransition,
    Notify,
    QueueSnapshot,
    RecordNotices,
    RecordPreempted,
    ReleaseJobs,
    Reserve,
    SubmitChallenge,
    Timestamp,
    Unreserve,
)
from burst.errors import BurstError, DuplicateRecord, InputError, QueueError, QueueUnavailable, RecordNotFound
from burst.faults import crash_point
from burst.ports import ChallengeQueue, Notifier, Store
from policies.grand_challenge import (
    ChallengeInput,
    ChallengeSettings,
    decide_challenges,
    reservation_name,
    validate_challenge,
)

log = logging.getLogger(__name__)

C = ChallengeState
ACTOR = "grand-challenge"


@dataclass
class ChallengeRunResult:
    """What one run did; the controller folds it into its TickResult and metrics."""

    executed: int = 0
    transitions: list[tuple[str, str, str]] = field(default_factory=list)  # (id, from, to)
    errors: list[str] = field(default_factory=list)
    notified: int = 0
    preempted: int = 0  # jobs recorded as preempted in this run
    released: int = 0  # release calls made in this run
    restored: int = 0  # jobs confirmed back in the queue in this run
    phases: dict[str, str] = field(default_factory=dict)  # challenge id -> phase after the run
    # The challenges still active after the run, as the store has them (what overflow must
    # respect: held jobs, reserved nodes).
    active: tuple[GrandChallenge, ...] = ()
    wake_at: Timestamp | None = None


class ChallengeStop(Exception):
    """Internal: stop this challenge's plan for this tick (the next tick decides again)."""


class ChallengeRunner:
    """Carries out grand-challenge decisions. Holds no state of its own between runs: a new
    instance on the same store and queue continues exactly where another stopped."""

    def __init__(
        self,
        store: Store,
        queue: ChallengeQueue,
        notifier: Notifier | None = None,
        settings: ChallengeSettings | None = None,
        *,
        actor: str = ACTOR,
    ) -> None:
        self.store = store
        self.queue = queue
        self.notifier = notifier
        self.settings = settings or ChallengeSettings()
        self.actor = actor

    def run(self, now: Timestamp, snapshot: QueueSnapshot) -> ChallengeRunResult:
        """Decide and act for every active challenge. Never raises for a queue or store problem
        of one challenge: it is reported in ``errors`` and retried on the next run."""
        res = ChallengeRunResult()
        active = self.store.challenges(states=sorted(CHALLENGE_ACTIVE))
        if not active:
            return res
        todo = active
        for _ in range(4):
            decision = decide_challenges(
                ChallengeInput(now, tuple(todo), snapshot.pending, snapshot.running, snapshot.nodes), self.settings
            )
            res.wake_at = decision.wake_at if res.wake_at is None or decision.wake_at is None else min(
                res.wake_at, decision.wake_at)
            again = {plan.challenge_id for plan in decision.plans if self._carry_out(plan.challenge_id, plan.actions,
                                                                                       now, res)}
            # A plan that only changed the phase (and told people) touched nothing on the cluster,
            # so the snapshot still holds: decide that challenge's next step now instead of a
            # tick later (notified -> draining, challenge ended -> release at once).
            todo = [gc for gc in self.store.challenges(states=sorted(CHALLENGE_ACTIVE)) if gc.id in again]
            if not todo:
                break
        res.active = tuple(self.store.challenges(states=sorted(CHALLENGE_ACTIVE)))
        for gc in res.active:
            res.phases[gc.id] = str(gc.state)
        for gc in active:
            res.phases.setdefault(gc.id, str(self._get(gc.id).state))
        return res

    def _carry_out(self, cid: str, actions: Sequence[ChallengeAction], now: Timestamp, res: ChallengeRunResult) -> bool:
        """Carry out one challenge's plan in order, stopping at the first failure. True when the
        whole plan ran and was only a phase change (plus notices and records)."""
        for action in actions:
            try:
                self._do(action, now, res)
                res.executed += 1
            except ChallengeStop:
                return False
            except (BurstError, InvalidTransition, ValueError) as e:
                msg = f"{cid}: {type(action).__name__}: {e}"
                res.errors.append(msg)
                log.warning("grand challenge %s", msg)
                return False
        return any(isinstance(a, AdvanceChallenge) for a in actions) and all(
            isinstance(a, AdvanceChallenge | Notify | RecordNotices) for a in actions)

    # ---- helpers -----------------------------------------------------------------------------
    def _get(self, cid: str) -> GrandChallenge:
        gc = self.store.get_challenge(cid)
        if gc is None:
            raise RecordNotFound(f"challenge {cid!r}")
        return gc

    def _move(self, cid: str, to: ChallengeState, now: Timestamp, reason: str, res: ChallengeRunResult,
              **fields: object) -> GrandChallenge:
        cur = self._get(cid)
        gc = self.store.transition_challenge(cid, to, now=now, actor=self.actor, reason=reason, **fields)
        res.transitions.append((cid, str(cur.state), str(to)))
        return gc

    def _audit(self, cid: str, now: Timestamp, action: str, reason: str, jobs: Sequence[str] = ()) -> None:
        self.store.audit(at=now, actor=self.actor, kind="challenge", subject=cid, action=action, reason=reason,
                         data={"jobs": list(jobs)} if jobs else None)

    def _held_recorded(self, cid: str) -> set[str]:
        rows = self.store.audit_rows(subject=cid, kind="challenge", limit=100_000)
        return {j for r in rows if r.action == "hold" for j in (r.data or {}).get("jobs", [])}

    def _notify(self, audience: str, text: str) -> bool:
        if self.notifier is None:
            return False
        try:
            self.notifier.notify(audience, text)
            return True
        except Exception as e:  # best effort, by the Notifier contract
            log.warning("notify %s failed: %s", audience, e)
            return False

    # ---- one action --------------------------------------------------------------------------
    def _do(self, a: ChallengeAction, now: Timestamp, res: ChallengeRunResult) -> None:
        if isinstance(a, Notify):
            res.notified += self._notify(a.audience, a.text)
        elif isinstance(a, RecordNotices):
            gc = self._get(a.challenge_id)
            self.store.update_challenge(a.challenge_id, notices=tuple(sorted({*gc.notices, *a.notices})))
            self._audit(a.challenge_id, now, "notice", a.reason)
        elif isinstance(a, AdvanceChallenge):
            fields: dict[str, object] = {} if a.ending is None else {"ending": a.ending}
            self._move(a.challenge_id, a.to, now, a.reason, res, **fields)
        elif isinstance(a, Reserve):
            self._reserve(a, now, res)
        elif isinstance(a, Unreserve):
            self.queue.delete_reservation(a.name)
            self.store.update_challenge(a.challenge_id, reserved=False, reservation="")
            self._audit(a.challenge_id, now, "unreserve", f"{a.reason} ({a.name})", a.nodes)
        elif isinstance(a, RecordPreempted):
            self._move(a.challenge_id, C.PREEMPTING, now, a.reason, res, preempted_jobs=a.jobs)
            res.preempted += len(a.jobs)
            crash_point("after-preempted-recorded")
        elif isinstance(a, Checkpoint):
            self.queue.checkpoint(a.job_ids)
            self._audit(a.challenge_id, now, "checkpoint", a.reason, a.job_ids)
            crash_point("between-signal-and-hold")
        elif isinstance(a, Hold):
            # The record first, once per job: a process killed between the call and a record
            # written after it left held jobs with none (the next tick sees them held and never
            # holds them again). A job recorded whose call never took effect is held again on a
            # later tick (it still runs), recorded as "hold-again".
            recorded = self._held_recorded(a.challenge_id)
            first = [j for j in a.job_ids if j not in recorded]
            if first:
                self._audit(a.challenge_id, now, "hold", a.reason, first)
            if len(first) < len(a.job_ids):
                self._audit(a.challenge_id, now, "hold-again", a.reason, [j for j in a.job_ids if j in recorded])
            self.queue.hold(a.job_ids)
            crash_point("after-hold")
        elif isinstance(a, ReleaseJobs):
            for jid, prio in zip(a.job_ids, a.priorities, strict=True):
                # released_at first: a restart never releases it again, and sees it still held
                # (then releases it) if this call never happened.
                self.store.mark_preempted_released(a.challenge_id, [jid], now=now, actor=self.actor,
                                                   reason=f"{a.reason} (priority {prio})")
                crash_point("mid-release")
                self.queue.release([jid])
                self.queue.set_priority(jid, prio)
                res.released += 1
        elif isinstance(a, ConfirmRestored):
            self.store.mark_preempted_restored(a.challenge_id, a.job_ids, now=now, actor=self.actor, reason=a.reason)
            res.restored += len(a.job_ids)
        elif isinstance(a, SubmitChallenge):
            self._submit(a, now, res)
        elif isinstance(a, CancelChallengeJob):
            self.queue.cancel([a.job_id])
            self._audit(a.challenge_id, now, "cancel-job", a.reason, [a.job_id])
        else:  # pragma: no cover - exhaustive over ChallengeAction
            raise TypeError(f"unknown challenge action {a!r}")

    def _reserve(self, a: Reserve, now: Timestamp, res: ChallengeRunResult) -> None:
        gc = self._get(a.challenge_id)
        if gc.state is C.NOTIFIED:
            # The node list and the name are the intent: written before the queue call, so a
            # restart reserves the same nodes under the same name.
            gc = self._move(a.challenge_id, C.DRAINING, now, a.reason, res, node_names=a.nodes, reservation=a.name)
        if not a.nodes:
            raise ChallengeStop()
        self.queue.create_reservation(a.name, a.start, a.duration_s, nodes=a.nodes)
        self.store.update_challenge(a.challenge_id, reserved=True)
        self._audit(a.challenge_id, now, "reserve", f"{a.name} on {len(a.nodes)} node(s)", a.nodes)

    def _submit(self, a: SubmitChallenge, now: Timestamp, res: ChallengeRunResult) -> None:
        gc = self._get(a.challenge_id)
        name = gc.reservation or reservation_name(gc.id)
        try:
            jid = self.queue.submit_challenge(gc, name=reservation_name(gc.id), reservation=name, nodes=a.nodes)
        except QueueUnavailable:
            raise  # the scheduler did not answer: try again next tick
        except QueueError as e:
            self._move(gc.id, C.RESTORING, now, f"the challenge job could not be submitted: {e}", res,
                       ending=ChallengeEnding.FAILED, last_error=str(e)[:500])
            self._notify("admins", f"Grand challenge `{gc.id}` ({gc.name}) failed to start: {e}. "
                                   "Its preempted jobs are being released.")
            raise ChallengeStop() from None
        crash_point("after-submit")
        self._move(gc.id, C.RUNNING, now, f"{a.reason}: job {jid}", res, challenge_job_id=jid)


def request_cancel(store: Store, challenge_id: str, *, now: Timestamp, actor: str,
                   reason: str = "cancelled by an admin") -> GrandChallenge:
    """Cancel a challenge in any phase (Slack, CLI). Before draining it is cancelled at once and
    nothing on the cluster is touched; after, the cancel is recorded (``ending``) and the runner's
    next tick restores every preempted job, lifts the reservation and then ends it ``cancelled``.
    Raises InputError for a challenge that is unknown, finished, or already restoring."""
    for _ in range(3):
        gc = store.get_challenge(challenge_id)
        if gc is None:
            raise InputError(challenge_id, "no such grand challenge")
        if gc.state in (C.SCHEDULED, C.NOTIFIED):
            try:
                return store.transition_challenge(challenge_id, C.CANCELLED, now=now, actor=actor, reason=reason)
            except InvalidTransition:
                continue  # the runner moved it meanwhile: look again
        if gc.state in (C.DRAINING, C.PREEMPTING, C.RUNNING):
            if gc.ending is ChallengeEnding.CANCELLED:
                return gc
            new = store.update_challenge(challenge_id, ending=ChallengeEnding.CANCELLED)
            store.audit(at=now, actor=actor, kind="challenge", subject=challenge_id, action="cancel-requested",
                        reason=f"{reason}; restoring every preempted job")
            return new
        if gc.state is C.RESTORING:
            raise InputError(challenge_id, "already restoring: its preempted jobs are being given back")
        raise InputError(challenge_id, f"already {gc.state}")
    raise InputError(challenge_id, "it changed phase while cancelling; try again")  # pragma: no cover


MAX_JOB_SPEC_BYTES = 1_000_000


def read_job_spec(path: str) -> tuple[str, str]:
    """``(text, error)`` for a challenge job script or manifest at ``path``; ``error`` is one line
    naming the problem ("" when the file was read)."""
    p = Path(path).expanduser()
    try:
        if p.stat().st_size > MAX_JOB_SPEC_BYTES:
            return "", f"the challenge job {path} is over {MAX_JOB_SPEC_BYTES // 1000} kB"
        return p.read_text(encoding="utf-8"), ""
    except UnicodeDecodeError:
        return "", f"the challenge job {path} is not UTF-8 text"
    except OSError as e:
        return "", f"cannot read the challenge job {path}: {e.strerror or e}"


def schedule_challenge(
    store: Store,
    *,
    now: Timestamp,
    actor: str,
    name: str,
    start_at: Timestamp,
    duration_s: float,
    onprem_nodes: int,
    nodes: int = 0,
    job_kind: ChallengeJobKind = ChallengeJobKind.SLURM,
    job_path: str = "",
    job_text: str = "",
    burst_preempted: bool = False,
    note: str = "",
    settings: ChallengeSettings | None = None,
) -> GrandChallenge:
    """Validate and store a challenge (the one path for the CLI and Slack). The job is given by
    ``job_path`` (read here, and kept as text so a later edit of the file cannot change what
    runs) or inline ``job_text``. Bad input raises InputError with one line naming every problem,
    and nothing is stored. The store audits the new row with ``actor``.

    The overlap check and the insert are two store calls: two admins scheduling overlapping
    challenges in the same instant could both pass (the runner would then run them one after the
    other's restore); acceptable for an admin-only, human-speed operation."""
    job_error = ""
    if job_path:
        job_text, job_error = read_job_spec(job_path)
    errors = validate_challenge(
        now=now, start_at=start_at, duration_s=duration_s, nodes=nodes, onprem_nodes=onprem_nodes,
        job_kind=job_kind, job_text=job_text, job_error=job_error, existing=store.challenges(
            states=sorted(CHALLENGE_ACTIVE)), settings=settings or ChallengeSettings(),
    )
    if errors:
        raise InputError("grand challenge", "; ".join(errors))
    for _ in range(8):
        gc = GrandChallenge(
            id=f"gc-{secrets.token_hex(3)}", name=name or (Path(job_path).name if job_path else "challenge"),
            start_at=start_at, duration_s=duration_s, command=job_path or "(inline)", created_by=actor, owner=actor,
            nodes=nodes, job_kind=job_kind, job_path=job_path, job_text=job_text, burst_preempted=burst_preempted,
            note=note,
        )
        try:
            return store.add_challenge(gc, now=now, actor=actor)
        except DuplicateRecord:
            continue
    raise InputError("grand challenge", "could not allocate a challenge id; try again")  # pragma: no cover
