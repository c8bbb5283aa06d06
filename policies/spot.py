"""Spot done properly: interruption notices and the price of reclaims. Pure.

**Notices.** A burst node's own agent (:mod:`burst.agent`) reads the cloud's interruption notice
(AWS instance metadata ``spot/instance-action``: two minutes; Azure Scheduled Events ``Preempt``:
about 30 s) and drains its scheduler node with the reason :func:`notice_reason`
(``burst:spot-reclaim at <reclaim time, UTC ISO 8601>``). The controller sees that reason in its
ordinary observation of the queue (node label ``reason``, which the Slurm adapter and the
simulated cluster report) and :func:`plan_notices` says what to do:

1. on first sight (instance still JOINED): send the checkpoint signal to every job running on the
   node, and mark the instance DRAINING (audited);
2. once ``now >= reclaim_at - requeue_margin_s`` (so the jobs had the lead time, less the
   margin, to write their checkpoint): requeue them: hold them (they stop, and keep their last
   checkpoint); then release them, and give each its original priority back, so it is not sent
   to the back of its team's line (the simulated cluster orders by priority then original
   submission; Slurm keeps the explicit priority): at once, or when their replacement joins
   (below).

``requeue_margin_s`` is at least one controller tick, so some tick always falls between it and
the reclaim. Stateless on purpose: what was done follows from the instance's state and from the
queue (a requeued job no longer runs on the node), so a restarted controller neither repeats
nor skips a step.

**Capacity that is leaving.** :func:`leaving_view` removes noticed instances and their nodes
from what overflow and scale-in see: overflow must not count the node as capacity (nor take it
back from draining with an Undrain), so the requeued work launches a replacement at once when
its wait target needs it (it keeps its original submit time, so it is usually past the
threshold); scale-in leaves it to the reclaim, after which the reconcile closes it as LOST.

**Held until the replacement joins.** A job requeued at the head of the line would be pending
from the requeue until its replacement joins (a boot). A burst node launched for a *later* job
that joins in that window would go to the requeued job (the scheduler serves the oldest first),
and the later job would wait for the requeued job's replacement; when the later job is a gang in
another region, that replacement is of no use to it and it needs a top-up, a whole boot more
(the 32.9 min maximum of the B1 spot run before this rule: job ba26519b, 2 x 8 GPUs). So the
requeue holds the jobs and does not release them at once (``hold_for_replacement_s`` > 0):
the queue shows them held, overflow still counts them as pending demand (it does not look at a
job's held state), so their replacement is launched and not cancelled, and no other job's node
is taken; :func:`held_view` shows them to overflow as due but behind the jobs already due, so
they do not take the in-flight capacity launched for those either. :func:`plan_releases` releases them (and gives each its original priority back) when
a replacement launched for them since the hold has joined; at the first tick after the hold
when no replacement was launched for them (overflow leaves them to on-prem capacity, or reused
capacity already there); or ``hold_for_replacement_s`` after the hold at the latest. The
controller keeps the holds in memory and rebuilds them at start from its ``spot`` audit rows
(``requeue`` rows with ``hold``, and ``release`` rows), so a restart neither forgets a held job
nor releases one twice; a job the queue no longer shows held is forgotten.

**The price of reclaims.** :func:`reclaim_factor` turns an offer's observed reclaims per
instance-hour (with a prior, so one early reclaim does not condemn an offer) into a multiplier
on its price: each reclaim costs the work lost since the last checkpoint plus a reboot and
requeue, and the useful share of the paid time shrinks accordingly. Offer selection ranks spot offers by ``price x factor``; an offer whose observed
reclaims make that dearer than on-demand is therefore not preferred.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from burst.domain import Instance, InstanceState, Job, Market, Node, Offer, Timestamp

NOTICE_PREFIX = "burst:spot-reclaim"
_NOTICE_RE = re.compile(r"^burst:spot-reclaim at (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)Z")

# How long each cloud warns before it takes a spot instance back.
NOTICE_LEAD_S: Mapping[str, float] = {"aws": 120.0, "azure": 30.0}


def utc_iso(t: Timestamp) -> str:
    """POSIX seconds -> ``YYYY-MM-DDTHH:MM:SS`` (UTC, whole seconds). Integer calendar arithmetic
    (H. Hinnant's civil_from_days): policies read no clock and import no datetime."""
    secs = int(t // 1)
    days, rem = divmod(secs, 86400)
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (1 if month <= 2 else 0)
    return f"{year:04d}-{month:02d}-{day:02d}T{rem // 3600:02d}:{rem % 3600 // 60:02d}:{rem % 60:02d}"


def parse_utc_iso(text: str) -> Timestamp:
    """``YYYY-MM-DDTHH:MM:SS[.fff]`` (UTC) -> POSIX seconds (days_from_civil). Raises ValueError."""
    date, _, clock = text.partition("T")
    y, m, d = (int(x) for x in date.split("-"))
    hh, mm, ss = clock.split(":")
    if not (1 <= m <= 12 and 1 <= d <= 31):
        raise ValueError(f"not a date: {text!r}")
    y -= 1 if m <= 2 else 0
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    days = era * 146097 + doe - 719468
    return days * 86400 + int(hh) * 3600 + int(mm) * 60 + float(ss)


def notice_reason(reclaim_at: Timestamp) -> str:
    """The scheduler drain reason the node agent writes: ``burst:spot-reclaim at <UTC ISO>Z``."""
    return f"{NOTICE_PREFIX} at {utc_iso(reclaim_at)}Z"


def parse_notice(reason: str) -> Timestamp | None:
    """The reclaim time in a drain reason written by :func:`notice_reason`; None for any other
    reason (an admin's drain, burst's own idle drain)."""
    m = _NOTICE_RE.match(reason.strip())
    if m is None:
        return None
    try:
        return parse_utc_iso(m.group(1))
    except ValueError:
        return None


# Kubernetes: the node agent cordons its own Node, writes the reason above in the annotation
# ``burst.dev/drain-reason`` (which the queue adapter shows as the node's reason, as Slurm shows a
# drained node's) and taints it ``burst.dev/spot-reclaim=<T>:NoSchedule`` for people and for
# kube-scheduler. A taint value is a label value, so its time is written ``YYYY-MM-DDTHH-MM-SS``.
SPOT_TAINT_KEY = "burst.dev/spot-reclaim"


def taint_value(reclaim_at: Timestamp) -> str:
    """The spot taint's value for a reclaim time: ``2026-12-03T14-05-00`` (UTC)."""
    return utc_iso(reclaim_at).replace(":", "-")


def noticed(nodes: Iterable[Node]) -> dict[str, Timestamp]:
    """instance id -> reclaim time, for burst nodes whose drain reason is a spot notice."""
    out: dict[str, Timestamp] = {}
    for n in nodes:
        if n.instance_id and not n.schedulable:
            at = parse_notice(n.labels.get("reason", ""))
            if at is not None:
                out[n.instance_id] = at
    return out


@dataclass(frozen=True, slots=True)
class NoticeSettings:
    enabled: bool = True
    requeue_margin_s: float = 45.0  # requeue this long before the reclaim (>= one tick)
    # Keep requeued jobs held until their replacement joins, at most this long (see the module
    # docstring); 0 releases them at the requeue, as a plain requeue would.
    hold_for_replacement_s: float = 900.0


@dataclass(frozen=True, slots=True)
class CheckpointStep:
    """First sight of a notice: signal the jobs, mark the instance DRAINING."""

    instance_id: str
    node: str
    reclaim_at: Timestamp
    job_ids: tuple[str, ...]
    reason: str


@dataclass(frozen=True, slots=True)
class RequeueStep:
    """Hold then release the jobs, and give each its original priority back (same order)."""

    instance_id: str
    node: str
    reclaim_at: Timestamp
    job_ids: tuple[str, ...]
    priorities: tuple[int, ...]
    reason: str


@dataclass(frozen=True, slots=True)
class SpotHold:
    """A job requeued off a noticed node and kept held until its replacement joins."""

    job_id: str
    instance_id: str  # the instance it was requeued off
    held_at: Timestamp
    priority: int  # its original priority, given back at the release


@dataclass(frozen=True, slots=True)
class ReleaseStep:
    """Release held jobs and give each its original priority back (same order)."""

    instance_id: str
    job_ids: tuple[str, ...]
    priorities: tuple[int, ...]
    reason: str


NoticeStep = CheckpointStep | RequeueStep


@dataclass(frozen=True, slots=True)
class NoticePlan:
    steps: tuple[NoticeStep, ...] = ()
    wake_at: Timestamp | None = None


def plan_notices(
    now: Timestamp,
    instances: Sequence[Instance],
    nodes: Sequence[Node],
    running: Sequence[Job],
    settings: NoticeSettings = NoticeSettings(),
) -> NoticePlan:
    """What to do about spot notices this tick (see the module docstring). Jobs are listed
    oldest first (submission, then id), so a requeue hands them back in their line's order."""
    if not settings.enabled:
        return NoticePlan()
    seen = noticed(nodes)
    if not seen:
        return NoticePlan()
    node_by_instance = {n.instance_id: n for n in nodes if n.instance_id}
    steps: list[NoticeStep] = []
    wakes: list[float] = []
    for inst in sorted(instances, key=lambda i: i.id):
        at = seen.get(inst.id)
        if at is None or inst.state not in (InstanceState.JOINED, InstanceState.DRAINING):
            continue
        node = node_by_instance[inst.id]
        jobs = sorted((j for j in running if node.name in j.node_names), key=lambda j: (j.submit_time, j.id))
        ids = tuple(j.id for j in jobs)
        requeue_at = at - settings.requeue_margin_s
        when = utc_iso(at)[11:] + "Z"
        if inst.state is InstanceState.JOINED:
            steps.append(CheckpointStep(
                inst.id, node.name, at, ids,
                f"spot reclaim notice for {node.name} (reclaim at {when}): checkpoint {len(ids)} job(s), drain",
            ))
        if ids and now >= requeue_at:
            steps.append(RequeueStep(
                inst.id, node.name, at, ids, tuple(j.priority for j in jobs),
                f"spot reclaim of {node.name} at {when}: requeue {len(ids)} job(s) at their original priority",
            ))
        elif ids:
            wakes.append(requeue_at)
    return NoticePlan(tuple(steps), min(wakes) if wakes else None)


@dataclass(frozen=True, slots=True)
class ReleasePlan:
    steps: tuple[ReleaseStep, ...] = ()
    forget: tuple[str, ...] = ()  # job ids the queue no longer shows held: nothing to release
    wake_at: Timestamp | None = None


def plan_releases(
    now: Timestamp,
    holds: Iterable[SpotHold],
    instances: Sequence[Instance],
    held_in_queue: Iterable[str],
    settings: NoticeSettings = NoticeSettings(),
) -> ReleasePlan:
    """Which spot-held jobs to release this tick (see the module docstring). ``instances`` are the
    live ones; ``held_in_queue`` the ids of the jobs the queue shows held. One step per job, in
    the order of ``holds`` (oldest hold first)."""
    shown = set(held_in_queue)
    steps: list[ReleaseStep] = []
    forget: list[str] = []
    wakes: list[float] = []
    for h in holds:
        if h.job_id not in shown:
            forget.append(h.job_id)
            continue
        repl = [
            i for i in instances
            if h.job_id in i.for_jobs and i.id != h.instance_id and i.created_at >= h.held_at
        ]
        deadline = h.held_at + settings.hold_for_replacement_s
        why = ""
        joined = sorted(i.id for i in repl if i.state is InstanceState.JOINED)
        if joined:
            # The first to join is enough: a gang keeps the members that were not reclaimed
            # (usually one top-up is all it lacks), and waiting for every member overflow
            # launched would keep a held gang waiting on launches that its own wait triggers.
            why = f"its replacement {', '.join(joined)} joined"
        elif not repl and now > h.held_at:
            why = "no replacement was launched for it"
        elif now >= deadline:
            why = f"held {settings.hold_for_replacement_s:.0f}s waiting for its replacement"
        if why:
            steps.append(ReleaseStep(h.instance_id, (h.job_id,), (h.priority,),
                                     f"release {h.job_id}, requeued off {h.instance_id}: {why}"))
        else:
            wakes.append(deadline)
    return ReleasePlan(tuple(steps), tuple(forget), min(wakes) if wakes else None)


def held_view(
    pending: tuple[Job, ...], held: Collection[str], now: Timestamp, threshold_s: Callable[[Job], float], tick_s: float,
) -> tuple[Job, ...]:
    """The queue as overflow must see spot-held jobs: due at once (their work was interrupted; a
    replacement is wanted now), but *after* every job that was already due, by a submit time of
    ``now - threshold - one tick`` (``threshold_s``: overflow's wait threshold for the job). Why: overflow hands out capacity in submission order, and a
    requeued job keeps its old submit time, so it would claim the in-flight instance launched
    for a younger job that has waited its threshold (that job then waits a whole boot more and
    misses the target; measured at 64 nodes: 31.8 min). Capacity already launched for a job is
    that job's; the requeued job gets its own replacement. The scheduler's own order (priority,
    original submission) is untouched. Returns ``pending`` itself when nothing is held."""
    if not held:
        return pending
    return tuple(
        dataclasses.replace(j, submit_time=now - threshold_s(j) - tick_s) if j.id in held else j
        for j in pending
    )


def spot_possible(allow_spot: bool, offers: Iterable[Offer]) -> bool:
    """Whether a launch may be a spot instance: spot allowed and some spot offer known. Overflow
    then bursts a boot earlier (:func:`policies.overflow.base_threshold`): capacity that can be
    reclaimed before it serves its job may cost the job a second boot within its wait target."""
    return allow_spot and any(o.market is Market.SPOT for o in offers)


def leaving_view(
    nodes: tuple[Node, ...], instances: tuple[Instance, ...]
) -> tuple[tuple[Node, ...], tuple[Instance, ...]]:
    """Nodes and instances without those under a spot notice: capacity that is leaving."""
    gone = noticed(nodes)
    if not gone:
        return nodes, instances
    return (
        tuple(n for n in nodes if n.instance_id not in gone),
        tuple(i for i in instances if i.id not in gone),
    )


# ---- the price of reclaims -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReclaimHistory:
    """What one offer's spot instances did: reclaims seen over instance-hours run."""

    reclaims: int = 0
    hours: float = 0.0


@dataclass(frozen=True, slots=True)
class ReclaimCostModel:
    """``prior_reclaims`` over ``prior_hours`` is the rate assumed before anything is observed
    (one reclaim per 72 h, the simulator's B1 spot model). ``lost_work_h`` is the work lost per
    reclaim beyond what is saved (half the simulated checkpoint interval of 30 min when the
    notice is missed; the notice's checkpoint makes it smaller); ``reboot_h`` the time a
    requeued job waits and a replacement boots, paid again."""

    prior_reclaims: float = 1.0
    prior_hours: float = 72.0
    lost_work_h: float = 0.25
    reboot_h: float = 0.1


def reclaim_rate(h: ReclaimHistory, model: ReclaimCostModel = ReclaimCostModel()) -> float:
    """Reclaims per instance-hour: observed counts smoothed by the prior."""
    return (h.reclaims + model.prior_reclaims) / max(1e-9, h.hours + model.prior_hours)


MAX_FACTOR = 1000.0


def reclaim_factor(h: ReclaimHistory, model: ReclaimCostModel = ReclaimCostModel()) -> float:
    """Paid hours per useful hour on this offer. Reclaims at rate ``r`` per hour, each costing
    ``c = lost work + reboot`` hours, leave ``1 - r c`` of the paid time useful, so the factor is
    ``1 / (1 - r c)``: about ``1 + r c`` when reclaims are rare, and without bound (capped at
    :data:`MAX_FACTOR`) as reclaims come faster than a job can get back to where it was."""
    useful = 1.0 - reclaim_rate(h, model) * (model.lost_work_h + model.reboot_h)
    return MAX_FACTOR if useful <= 1.0 / MAX_FACTOR else 1.0 / useful


def reclaim_factors(
    offers: Iterable[Offer], history: Mapping[str, ReclaimHistory], model: ReclaimCostModel = ReclaimCostModel()
) -> dict[str, float]:
    """offer key -> :func:`reclaim_factor`, for every spot offer."""
    return {o.key: reclaim_factor(history.get(o.key, ReclaimHistory()), model) for o in offers if o.market is Market.SPOT}


def expected_price_per_gpu_hour(offer: Offer, factor: float) -> float:
    """What a useful GPU-hour costs on the offer once reclaims are paid for."""
    return offer.price_per_gpu_hour * (factor if offer.market is Market.SPOT else 1.0)
