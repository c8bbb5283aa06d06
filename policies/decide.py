"""``decide(snapshot, config) -> Plan``: the one entry point of the pure policies.

Order of the passes, and why:

1. **overflow**: which pending jobs need new capacity, and which draining nodes to take back
   for work due now instead of launching (policies/overflow.py);
2. **scale-in**: which burst capacity to drain or give back (policies/scale_in.py). Only as
   many idle nodes of a kind drain as the replay left untouched by pending work; a node taken
   back is not terminated;
3. **selection and packing**: instances for the work of pass 1 (selection.py, packing.py);
4. **limits**: per-tick launch cap, fleet size and GPU caps, oldest work first;
5. **budget**: the money gate (budget.py);
6. **mirror**: a Mirror action before the first Launch of an image into a region.

Same snapshot and config, same Plan: intent ids are derived from the snapshot (time, offer,
jobs), and every ordering has a total tie-break.
"""

from __future__ import annotations

from dataclasses import replace

from burst.domain import (
    Action,
    Drain,
    InstanceState,
    Job,
    Launch,
    Mirror,
    Notify,
    Offer,
    Plan,
    Purpose,
    Release,
    Terminate,
    Undrain,
    deterministic_id,
)
from policies.budget import admit
from policies.fairness import order_planned, rebalance
from policies.model import PolicyConfig, Snapshot
from policies.overflow import in_flight_key, joined_key, select_overflow
from policies.packing import Bin, pack_small_jobs
from policies.requests import decide_requests
from policies.scale_in import decide_scale_in
from policies.scale_in import nodes_by_instance as by_instance
from policies.selection import Context, Need, Ranker
from policies.spot import reclaim_factors, spot_possible


def _launch_reason(jobs: tuple[Job, ...], offer: Offer, now: float, threshold_s: float) -> str:
    oldest = min(jobs, key=lambda j: j.submit_time)
    who = oldest.id if len(jobs) == 1 else f"{oldest.id} and {len(jobs) - 1} more"
    gpus = sum(j.gpus for j in jobs)
    return (
        f"{who} ({gpus} GPU) waited {oldest.waited(now) / 60:.1f} min (threshold {threshold_s / 60:.0f} min) "
        f"with no on-prem or burst capacity free; {offer.instance_type} in {offer.cloud}/{offer.region}"
        f"{'/' + offer.zone if offer.zone else ''} {offer.market} at ${offer.price_per_gpu_hour:.3f}/GPU-h "
        f"is the cheapest eligible offer"
    )


def decide(snap: Snapshot, cfg: PolicyConfig) -> Plan:
    now = snap.now
    actions: list[Action] = []
    notes: list[str] = []
    wakes: list[float] = []

    # 1. overflow -------------------------------------------------------------------------
    # No tick launches more than max_launches_per_tick instances, so only the oldest work
    # that could fill them is planned in detail (pass 3); the rest waits for the next tick.
    # The overflow pass lists only that many of the jobs due (it counts them all), which keeps
    # a tick over a million pending jobs fast.
    room = min(
        cfg.overflow.max_launches_per_tick,
        max(0, cfg.overflow.max_instances - len(snap.instances)),
    )
    widest = _widest(snap.offers)
    memo = snap.memo
    ov = select_overflow(
        now, snap.pending, snap.nodes, snap.instances, cfg.overflow,
        boot_estimate_s=snap.boot_estimate_s, tick_s=cfg.tick_interval_s, running=snap.running,
        limit=room * widest, durations=snap.durations, index=snap.pending_index,
        spot=spot_possible(cfg.selection.allow_spot, snap.offers), pools_memo=memo.pools if memo is not None else None,
    )
    if ov.wake_at is not None:
        wakes.append(ov.wake_at)

    # 2. scale-in --------------------------------------------------------------------------
    # Looked up only by the id of one of snap.instances: with none, no pass over the nodes.
    if memo is not None:  # kept from the last tick where the inputs are the same objects
        nodes_by_instance = memo.nodes_by_instance(snap.nodes) if snap.instances else {}
        si = memo.scale_in.decide(now, snap.instances, nodes_by_instance, cfg.scale_in, cfg.tick_interval_s)
    else:
        nodes_by_instance = by_instance(snap.nodes) if snap.instances else {}
        si = decide_scale_in(now, snap.instances, nodes_by_instance, cfg.scale_in, cfg.tick_interval_s)
    scale_actions = list(si.actions)
    if any(isinstance(a, Drain) for a in scale_actions):
        # Pending work counted on an idle joined node (a gang being topped up counts on the
        # nodes it already has) must not lose it to a drain. The replay says, per kind of node,
        # how many idle ones no pending job took: drain at most that many, longest idle first.
        # Other idle nodes are drained as usual, so a steady trickle of work in one region
        # never pins the whole fleet.
        by_id = {i.id: i for i in snap.instances}
        left = dict(ov.idle_joined_left)
        drains = sorted(
            (a for a in scale_actions if isinstance(a, Drain)),
            key=lambda a: (by_id[a.instance_id].idle_since or 0.0, a.instance_id),
        )
        keep: set[str] = set()
        for a in drains:
            inst, drained = by_id[a.instance_id], nodes_by_instance[a.instance_id]
            if not drained.schedulable:
                continue  # cordoned by someone else or not ready: no work can count on it
            kind = joined_key(inst.cloud, inst.region, drained.gpus, drained.gpu_model)
            if left.get(kind, 0) > 0:
                left[kind] -= 1
            else:
                keep.add(a.instance_id)
        keep |= ov.reserved  # idle, but its pending gang counts on it
        scale_actions = [a for a in scale_actions if not (isinstance(a, Drain) and a.instance_id in keep)]
    if ov.undrain:
        # Take draining nodes back for work that would otherwise launch now: the node is
        # there, booted and paid for; a new instance costs a boot and risks a capacity error.
        want = dict(ov.undrain)
        back: set[str] = set()
        for inst in sorted(snap.instances, key=lambda i: i.id):
            node = nodes_by_instance.get(inst.id)
            if inst.state is not InstanceState.DRAINING or inst.purpose is not Purpose.OVERFLOW or node is None:
                continue
            loc, model = joined_key(inst.cloud, inst.region, node.gpus, node.gpu_model)
            slot = (loc, model, max(0, node.gpus - node.gpus_used))
            if want.get(slot, 0) > 0:
                want[slot] -= 1
                back.add(inst.id)
                actions.append(Undrain(inst.id, "pending work that would burst now fits on it; cancel the drain instead of launching"))
        scale_actions = [a for a in scale_actions if not (isinstance(a, Terminate) and a.instance_id in back)]
    actions.extend(Release(i, "every member of its gang has joined; lift the hold together") for i in ov.release)
    actions.extend(scale_actions)
    if si.wake_at is not None:
        wakes.append(si.wake_at)
    if (ov.surplus_in_flight or ov.gang_surplus) and cfg.scale_in.cancel_unneeded_launches:
        # Booting instances that no pending job will use: their work started on-prem or on
        # other burst capacity while they booted. Billing is per second, so give them back now
        # rather than after boot + idle timeout. Newest first: they are furthest from useful.
        already = {a.instance_id for a in scale_actions if isinstance(a, Terminate)}
        left = dict(ov.surplus_in_flight)
        gang_surplus = set(ov.gang_surplus)
        booting = sorted(
            (
                i
                for i in snap.instances
                if i.purpose is Purpose.OVERFLOW
                and i.state in (InstanceState.LAUNCHING, InstanceState.RUNNING)
                and i.id not in nodes_by_instance
                and i.id not in already
                and (not i.gang_id or i.id in gang_surplus)
            ),
            key=lambda i: (-i.created_at, i.id),
        )
        boot = snap.boot_estimate_s if snap.boot_estimate_s is not None else cfg.overflow.default_boot_s
        for i in booting:
            k = in_flight_key(i)
            started = i.launched_at if i.launched_at is not None else i.created_at
            if now >= started + boot - cfg.tick_interval_s:
                # About to join: terminating now could race the scheduler placing a job on it.
                # It will be idle after joining and the idle timeout gives it back instead.
                continue
            if i.id in gang_surplus:
                actions.append(Terminate(i.id, f"its gang {i.for_jobs[0]} started elsewhere while it booted"))
            elif left.get(k, 0) > 0:
                left[k] -= 1
                actions.append(Terminate(i.id, "no pending job needs it any more (its work started elsewhere while it booted)"))

    # 3. selection and packing ---------------------------------------------------------------
    launches: list[Launch] = []
    if ov.burst_total or ov.gang_topups:
        ctx = Context(now, snap.backoff_until, snap.disabled_providers, cfg.selection.prefer_spot_discount)
        if cfg.selection.allow_spot and cfg.selection.weigh_reclaims:
            ctx = replace(ctx, spot_factor=reclaim_factors(snap.offers, snap.reclaims, cfg.selection.reclaim_cost))
        ranker = Ranker(snap.offers, ctx)
        allow_spot = cfg.selection.allow_spot
        considered = ov.burst[: room * widest]
        if len(considered) < ov.burst_total:
            notes.append(f"{ov.burst_total - len(considered)} job(s) past the threshold wait for a later tick (launch limits)")
        small = [j for j in considered if not j.is_gang]
        gangs = [j for j in considered if j.is_gang]

        def rank_small(gpus: int, job: Job) -> list[Offer]:
            return ranker(Need(gpus, job.gpu_model, job.min_gpu_memory_gib, 0, allow_spot))

        bins, unplaceable = pack_small_jobs(
            small, rank_small, pack=cfg.selection.pack, min_saving=cfg.selection.pack_min_saving
        )
        # Groups are planned cheaply (an id, a size, a builder) and their Launches built only for
        # the groups the limits let through: a tick plans up to room x widest jobs but launches
        # at most room instances, and building a Launch (its id and reason) is most of the cost.
        groups: list[_Group] = []
        for b in bins:
            groups.append(_Group(snap, b, ov.threshold_s, min(j.submit_time for j in b.jobs), 1))
        for g, where, missing in ov.gang_topups[: room]:
            exact = max(cfg.selection.gang_gpus_per_node, g.per_node)
            here = [
                o
                for o in ranker(Need(g.per_node, g.gpu_model, g.min_gpu_memory_gib, exact, allow_spot))
                if o.location_key == where
            ]
            if not here:
                gangs.append(g)  # nothing left to buy in that region: a whole gang elsewhere
                continue
            gang_id = deterministic_id(snap.cluster, "gang", repr(now), g.id, here[0].key, "topup", prefix="g")
            groups.append(_Group(snap, Bin(here[0], (g,)), ov.threshold_s, g.submit_time, missing, gang_id))
        for g in gangs:
            exact = max(cfg.selection.gang_gpus_per_node, g.per_node)
            offers = ranker(Need(g.per_node, g.gpu_model, g.min_gpu_memory_gib, exact, allow_spot))
            if not offers:
                unplaceable.append(g)
                continue
            offer = offers[0]
            gang_id = deterministic_id(snap.cluster, "gang", repr(now), g.id, offer.key, prefix="g")
            groups.append(_Group(snap, Bin(offer, (g,)), ov.threshold_s, g.submit_time, g.nodes, gang_id))
        groups = _in_order(groups)
        if cfg.fairness.enabled:  # teams configured: fair share and team limits (policies/fairness.py)
            planned, fair_notes = order_planned([(gr.submit, gr.build()) for gr in groups], considered, snap, cfg.fairness)
            notes.extend(fair_notes)
            groups = [_Group.built(group) for _, group in planned]
        for j in unplaceable:
            notes.append(f"no eligible offer for {j.id} ({j.gpus} GPU {j.gpu_model or 'any'}); all backed off or filtered")

        # 4. limits: whole groups only, oldest work first ---------------------------------------
        live = len(snap.instances)
        cloud_gpus = sum(i.gpus for i in snap.instances)
        budget_slots = cfg.overflow.max_launches_per_tick
        for gr in groups:
            n = gr.size
            g_gpus = gr.gpus
            if n > budget_slots or live + n > cfg.overflow.max_instances or cloud_gpus + g_gpus > cfg.overflow.max_cloud_gpus:
                notes.append(f"limit reached: {gr.first_job} waits (fleet {live} instances, {cloud_gpus} GPUs)")
                continue
            budget_slots -= n
            live += n
            cloud_gpus += g_gpus
            launches.extend(gr.build())

        # 5. budget ------------------------------------------------------------------------------
        br = admit(launches, snap.spend, cfg.budget)
        if br.refused:
            jobs = sorted({j for lc in br.refused for j in lc.for_jobs})
            actions.append(
                Notify(
                    "admins",
                    f"burst budget reached: {len(br.refused)} launch(es) for {len(jobs)} job(s) held back",
                    "budget cap",
                )
            )
        # A gang is admitted whole or not at all.
        refused_gangs = {lc.gang_id for lc in br.refused if lc.gang_id}
        launches = [lc for lc in br.admitted if not lc.gang_id or lc.gang_id not in refused_gangs]
        if cfg.fairness.enabled:  # give nodes back from teams above their share (policies/fairness.py)
            actions, fair_notes = rebalance(actions, launches, considered, snap, cfg.fairness)
            notes.extend(fair_notes)

    # 6. mirror before launch -------------------------------------------------------------------
    seen: set[tuple[str, str, str]] = set()
    for lc in launches:
        if lc.image:
            key = (lc.image, lc.offer.cloud, lc.offer.region)
            cooling = snap.backoff_until.get(f"mirror:{lc.image}@{lc.offer.cloud}/{lc.offer.region}", 0.0) > now
            if key not in snap.mirrored and key not in seen and not cooling:
                seen.add(key)
                actions.append(Mirror(lc.image, lc.offer.cloud, lc.offer.region, f"{lc.intent_id} will pull it"))
    actions.extend(launches)
    if launches:
        wakes.append(now + cfg.tick_interval_s)

    # 7. on-demand requests: launches, time limits, reminders, releases (policies/requests.py)
    od_actions, od_wake = decide_requests(snap, cfg)
    actions.extend(od_actions)
    if od_wake is not None:
        wakes.append(od_wake)
    return Plan(tuple(actions), min(wakes) if wakes else None, tuple(notes))


_WIDEST: dict[int, tuple[tuple[Offer, ...], int]] = {}


def _widest(offers: tuple[Offer, ...]) -> int:
    """GPUs of the widest offer. Remembered per offers tuple (the controller hands the same
    one every tick), so a tick does not rescan the catalog; the tuple itself is kept with the
    answer, so a recycled id never answers for another tuple."""
    hit = _WIDEST.get(id(offers))
    if hit is not None and hit[0] is offers:
        return hit[1]
    w = max((o.gpu_count for o in offers), default=1)
    if len(_WIDEST) > 16:
        _WIDEST.clear()
    _WIDEST[id(offers)] = (offers, w)
    return w


class _Group:
    """Launches planned together (one bin, or every node of a gang), not built yet: what the
    ordering and the limits need (oldest submit time, the first launch's intent id, size, GPUs,
    first job) without the Launches, which :meth:`build` makes for the groups the limits keep.
    ``built`` wraps Launches already made (the fair-share reordering works on those)."""

    __slots__ = ("snap", "bin", "threshold", "submit", "size", "gang_id", "_first_id", "_launches")

    def __init__(self, snap: Snapshot, b: Bin, threshold: float, submit: float, size: int, gang_id: str = "") -> None:
        self.snap, self.bin, self.threshold, self.submit, self.size, self.gang_id = snap, b, threshold, submit, size, gang_id
        self._first_id: str | None = None
        self._launches: list[Launch] | None = None

    @classmethod
    def built(cls, launches: list[Launch]) -> _Group:
        first = launches[0]
        g = cls.__new__(cls)
        g.snap, g.bin, g.threshold, g.submit, g.size, g.gang_id = None, None, 0.0, 0.0, len(launches), first.gang_id  # type: ignore[assignment]
        g._first_id, g._launches = first.intent_id, launches
        return g

    @property
    def first_id(self) -> str:
        """Intent id of the group's first launch (the tie-break between equal submit times)."""
        if self._first_id is None:
            self._first_id = _intent_id(self.snap, self.bin, 0)
        return self._first_id

    @property
    def gpus(self) -> int:
        if self._launches is not None:
            return sum(lc.offer.gpu_count for lc in self._launches)
        return self.size * self.bin.offer.gpu_count

    @property
    def first_job(self) -> str:
        if self._launches is not None:
            return self._launches[0].for_jobs[0]
        return self.bin.jobs[0].id

    def build(self) -> list[Launch]:
        if self._launches is None:
            self._launches = [
                _launch(self.snap, self.bin, self.threshold, gang_id=self.gang_id, index=k) for k in range(self.size)
            ]
        return self._launches


def _in_order(groups: list[_Group]) -> list[_Group]:
    """Sorted by (oldest submit time, first intent id), the plan's order. The intent id is
    computed only where submit times tie: a stable sort by time, then each run of equal times
    sorted by id, is the same order as one sort by the pair."""
    groups = sorted(groups, key=lambda g: g.submit)
    out: list[_Group] = []
    i, n = 0, len(groups)
    while i < n:
        j = i + 1
        while j < n and groups[j].submit == groups[i].submit:
            j += 1
        out.extend(groups[i:j] if j - i == 1 else sorted(groups[i:j], key=lambda g: g.first_id))
        i = j
    return out


def _intent_id(snap: Snapshot, b: Bin, index: int) -> str:
    return deterministic_id(snap.cluster, "overflow", repr(snap.now), b.offer.key, str(index), *(j.id for j in b.jobs))


def _launch(snap: Snapshot, b: Bin, threshold: float, *, gang_id: str = "", index: int = 0) -> Launch:
    job_ids = tuple(j.id for j in b.jobs)
    first = b.jobs[0]
    iid = _intent_id(snap, b, index)
    return Launch(
        intent_id=iid,
        offer=b.offer,
        purpose=Purpose.OVERFLOW,
        reason=_launch_reason(b.jobs, b.offer, snap.now, threshold),
        for_jobs=job_ids,
        owner=first.owner,
        team=first.team,
        gang_id=gang_id,
        image=first.image,
    )
