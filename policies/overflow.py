"""Which pending work should burst now.

A job qualifies when all of these hold:

1. it may burst (the queue says so: label, partition, QOS, team rule);
2. no capacity will take it: the policy replays the on-prem scheduler's own rule (submission
   order, first fit, gangs need whole nodes, nothing reserved) over the free GPUs of on-prem
   nodes, then over burst nodes that have joined and instances still booting. A job that fits
   there is *covered* and needs nothing new;
3. it has waited at least the threshold.

The estimate uses only what a queue shows (submit times, sizes, free GPUs). It never uses job
durations. Cost: O(pending x GPUs-per-node) while capacity is free, then no Python-level work per
job of the rest of the queue (C-speed counting passes and a bisect): see select_overflow.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from itertools import compress, count, islice
from operator import attrgetter
from typing import TYPE_CHECKING

from burst.domain import GANG_HOLD_LABEL, Instance, InstanceState, Job, Node, Purpose, Timestamp
from policies.forecast import predicted_starts
from policies.model import OverflowConfig
from policies.packing import SlotPool, model_ok
from policies.pending_index import PendingIndex
from policies.pending_index import is_sorted as _is_sorted
from policies.remaining import DurationModel

if TYPE_CHECKING:
    from policies.pools_memo import PoolsMemo

ONPREM = "onprem"
TAIL_MIN = 64  # jobs: a shorter exhausted tail is walked, not split (see select_overflow)
IN_FLIGHT = frozenset({InstanceState.PLANNED, InstanceState.LAUNCHING, InstanceState.RUNNING})


@dataclass(frozen=True, slots=True)
class OverflowResult:
    burst: tuple[Job, ...]  # need new capacity now, oldest first
    # Gangs partly covered by burst capacity in one region: (job, "cloud/region", missing nodes).
    # Topping them up in that region beats launching a whole new gang elsewhere.
    gang_topups: tuple[tuple[Job, str, int], ...]
    threshold_s: float  # the wait after which a single-node job bursts, this tick
    covered: int  # pending jobs that existing or incoming capacity will take
    covered_cloud: int  # of those, jobs counted on burst capacity (joined or in flight)
    waiting: int  # uncovered, burstable, below the threshold
    wake_at: Timestamp | None  # when the next waiting job crosses its threshold
    # Instances still booting that no pending work will use (their jobs started elsewhere),
    # per in_flight_key: cancelling them before they join is pure saving.
    surplus_in_flight: dict[tuple[str, str], int] = field(default_factory=dict)
    # Joined burst nodes still wholly free after all pending work was placed, per joined_key:
    # only that many idle nodes of a kind may be drained this tick (the rest are counted on).
    idle_joined_left: dict[tuple[str, str], int] = field(default_factory=dict)
    # Draining burst nodes to take back into service, per joined_key: work that would burst now
    # fits there, and cancelling a drain costs nothing while a new instance costs a boot.
    # Gang instances still booting whose gang is no longer pending (it started elsewhere).
    gang_surplus: tuple[str, ...] = ()
    # Joined, idle nodes launched for a gang that is still pending: not to be drained.
    reserved: frozenset[str] = frozenset()
    # Gang members whose hold can go: their gang has joined whole, or runs elsewhere.
    release: tuple[str, ...] = ()
    # Keyed by (joined_key location, model, free GPUs of the node).
    undrain: dict[tuple[str, str, int], int] = field(default_factory=dict)
    # Every job past its threshold, listed or not (``burst`` may hold only the first ``limit``).
    burst_total: int = 0


def in_flight_key(i: Instance) -> tuple[str, str]:
    """Pool key of a booting instance: location carries the size so untouched ones are countable."""
    return (f"{i.cloud}/{i.region}#{i.gpus}", i.gpu_model)


def joined_key(cloud: str, region: str, gpus: int, model: str) -> tuple[str, str]:
    """Pool key of a joined burst node: location carries the node's size, so that after the
    replay a node still wholly free (bucket == size) is known to be idle and uncounted-on."""
    return (f"{cloud}/{region}#{gpus}", model)


# pending gang job id -> its own nodes: ("cloud/region", GPUs, GPU model) each
GangOwn = dict[str, list[tuple[str, int, str]]]


@dataclass(frozen=True, slots=True)
class Pools:
    onprem: SlotPool
    joined: SlotPool
    flying: SlotPool
    gang_own: GangOwn  # instances launched for a pending gang: booting, or joined and still free
    reserved: frozenset[str]  # of those, the joined ones (idle, but not to be drained)
    # pending gang job id -> its joined idle members: (instance id, held, GPUs, model). Held: the
    # node registered with the gang hold (GANG_HOLD_LABEL) and nothing can run there yet.
    gang_joined: dict[str, list[tuple[str, bool, int, str]]]
    stray_holds: tuple[str, ...]  # held members of gangs seen running: release them


def build_pools(
    nodes: tuple[Node, ...],
    instances: tuple[Instance, ...],
    pending_gangs: frozenset[str] = frozenset(),
    pending_ids: frozenset[str] = frozenset(),
    running_ids: frozenset[str] = frozenset(),
) -> Pools:
    """On-prem, joined burst nodes and instances in flight. Work is placed in that order, so
    capacity that exists is used before capacity that is still booting.

    Instances launched for a gang that is still pending are that gang's alone, booting or
    joined and free: they boot together to join together, and counting them as anyone's
    capacity (or a gang on anyone else's) split gangs across nodes that join at different times.
    Once the gang has started, its nodes are ordinary capacity; so are booting instances of a
    gang whose job is still pending but no longer as a gang (a Job whose other pods already
    run: its last pod counts on them)."""
    onprem = SlotPool()
    joined = SlotPool()
    gang_own: GangOwn = {}
    reserved: set[str] = set()
    gang_joined: dict[str, list[tuple[str, bool, int, str]]] = {}
    stray_holds: list[str] = []

    def own(i: Instance) -> None:
        gang_own.setdefault(i.for_jobs[0], []).append((f"{i.cloud}/{i.region}", i.gpus, i.gpu_model))

    def for_pending_gang(i: Instance) -> bool:
        return bool(i.gang_id and i.for_jobs and i.for_jobs[0] in pending_gangs)

    by_instance: dict[str, Instance] = {i.id: i for i in instances}
    node_of: set[str] = set()
    free_onprem: dict[tuple[int, str], int] = {}
    # Joined nodes counted per kind, then added one kind at a time: the pool's buckets get the
    # same keys in the same order as adding node by node (first occurrence), for far fewer adds.
    free_joined: dict[tuple[str, str, int, str, int], int] = {}
    for n in nodes:
        if n.instance_id:
            inst = by_instance.get(n.instance_id)
            node_of.add(n.instance_id)
            # Only capacity burst still wants counts: a draining node is on its way out.
            if inst is not None and inst.state is InstanceState.DRAINING:
                continue
            if inst is not None and inst.purpose is Purpose.ON_DEMAND:
                continue
            held = GANG_HOLD_LABEL in n.labels
            # Cheapest tests first (all pure): a busy node or no gang pending costs no call.
            if pending_gangs and inst is not None and inst.state is InstanceState.JOINED and n.schedulable and n.idle and for_pending_gang(inst):
                own(inst)
                reserved.add(inst.id)
                gang_joined.setdefault(inst.for_jobs[0], []).append((inst.id, held, inst.gpus, inst.gpu_model))
                continue
            if held:
                # A held node serves nobody until released. Its gang is not pending any more:
                # release it once the gang is seen running (the node is then ordinary capacity).
                if inst is not None and inst.for_jobs and inst.for_jobs[0] in running_ids:
                    stray_holds.append(inst.id)
                continue
            free = n.gpus - n.gpus_used if n.schedulable else 0  # Node.gpus_free, inlined (hot)
            if free > 0:
                kind = (inst.cloud, inst.region, n.gpus, n.gpu_model, free) if inst is not None else ("cloud", "?", n.gpus, n.gpu_model, free)
                free_joined[kind] = free_joined.get(kind, 0) + 1
        elif n.schedulable and n.gpus > n.gpus_used:
            key = (n.gpus - n.gpus_used, n.gpu_model)
            free_onprem[key] = free_onprem.get(key, 0) + 1
    for (free, model), c in free_onprem.items():  # one add per kind of node, not per node
        onprem.add(free, ONPREM, model, c)
    for (cloud, region, gpus, model, free), c in free_joined.items():
        loc, m = joined_key(cloud, region, gpus, model)
        joined.add(free, loc, m, c)
    flying = in_flight_pool(instances, node_of, pending_gangs, pending_ids, gang_own)
    return Pools(onprem, joined, flying, gang_own, frozenset(reserved), gang_joined, tuple(sorted(stray_holds)))


def in_flight_pool(instances: tuple[Instance, ...], node_of: set[str], pending_gangs: frozenset[str],
                   pending_ids: frozenset[str], gang_own: GangOwn) -> SlotPool:
    """build_pools's instance pass (also policies/pools_memo.py's): the instances in flight
    with no node yet, as capacity; a pending gang's own go to ``gang_own`` instead (added to)."""
    flying = SlotPool()
    for i in instances:
        if i.purpose is Purpose.ON_DEMAND:
            continue  # a user's own instance: never capacity for queued work
        if i.state in IN_FLIGHT and i.id not in node_of:
            if i.gang_id and i.for_jobs:
                if i.for_jobs[0] in pending_gangs:
                    gang_own.setdefault(i.for_jobs[0], []).append((f"{i.cloud}/{i.region}", i.gpus, i.gpu_model))
                    continue
                if i.for_jobs[0] not in pending_ids:
                    continue  # its gang started: given back while booting (decide.py)
            loc, model = in_flight_key(i)
            flying.add(i.gpus, loc, model)
    return flying


def draining_pool(nodes: tuple[Node, ...], instances: tuple[Instance, ...]) -> SlotPool:
    """Free GPUs of burst nodes being drained (a drained node shows none free to the scheduler,
    so they are counted from its size and use). Overflow instances only: on-demand and
    grand-challenge capacity drains for its owner's reasons. Today an overflow instance drains
    only for idleness (policies/scale_in.py); a drain for any other reason (a grand challenge
    clearing burst nodes, say) must not be undone here and has to exclude its instances."""
    pool = SlotPool()
    draining = {
        i.id: i for i in instances if i.state is InstanceState.DRAINING and i.purpose is Purpose.OVERFLOW
    }
    if not draining:
        return pool  # nothing drains: no node to look at
    for n in nodes:
        inst = draining.get(n.instance_id) if n.instance_id else None
        if inst is not None and n.ready:
            loc, model = joined_key(inst.cloud, inst.region, n.gpus, n.gpu_model)
            pool.add(max(0, n.gpus - n.gpus_used), loc, model)
    return pool


def base_threshold(cfg: OverflowConfig, boot_estimate_s: float | None, tick_s: float, *, spot: bool = False) -> float:
    """How long a job waits before it bursts (see OverflowConfig).

    ``spot``: the launch may be a spot instance (spot allowed and offered). A spot instance can
    be taken back before it joins, and then without notice (its node agent is not running yet),
    or its job can be requeued off it and lose its place to other work; either way the job
    needs capacity launched again, one more boot. The promise is the wait target, so the wait
    left when the job bursts must cover two boots, not one: the threshold is one boot earlier.
    Not weighted by the reclaim rate: a rate makes the *expected* wait fit, the target is a bound
    on every job's wait."""
    if cfg.wait_threshold_s is not None:
        return cfg.wait_threshold_s
    boot = cfg.default_boot_s if boot_estimate_s is None else boot_estimate_s
    boots = 2 if spot else 1
    return max(0.0, cfg.wait_target_s - boots * boot - tick_s - cfg.safety_margin_s)


def threshold_for(job: Job, cfg: OverflowConfig, base: float) -> float:
    if job.is_gang and cfg.gang_wait_threshold_s is not None:
        return cfg.gang_wait_threshold_s
    return base


def select_overflow(
    now: Timestamp,
    pending: tuple[Job, ...],
    nodes: tuple[Node, ...],
    instances: tuple[Instance, ...],
    cfg: OverflowConfig,
    *,
    boot_estimate_s: float | None = None,
    tick_s: float = 30.0,
    running: tuple[Job, ...] = (),
    limit: int | None = None,
    fast: bool = True,
    tail_min: int = TAIL_MIN,
    durations: DurationModel | None = None,
    index: PendingIndex | None = None,
    spot: bool = False,
    pools_memo: PoolsMemo | None = None,
) -> OverflowResult:
    """Pure: which pending jobs need new cloud capacity at ``now``.

    The replay visits jobs in submission order while any capacity is free (on-prem, joined,
    in flight or draining). Once all of it is taken, no later job can be covered, so the rest
    of the queue is split without trying a pool per job: a job that may burst is due when it
    has waited its threshold, and since the queue is sorted by submit time that is one bisect
    (a gang has its own threshold and is looked at alone when it differs). Gangs that own
    instances (booting, or joined and held) are still visited one by one: they may be topped
    up, released or covered by their own nodes. With overflow off and no burst capacity to
    count on, the walk is skipped altogether (nothing can burst; ``covered`` is then not
    counted, 0). ``limit``: only the first ``limit`` jobs of ``burst`` are listed (the ones a
    tick can launch for); ``burst_total`` counts them all. ``fast=False`` walks every job
    (the reference the fast path is tested against; same result). A tail shorter than
    ``tail_min`` jobs is walked like the rest: splitting it costs more than walking it.

    ``durations`` (the learnt run times; with ``cfg.predict_starts``): a listed job the
    on-prem forecast (policies/forecast.py) starts within its wait target is held, counted
    as waiting, and looked at again next tick.

    ``index``: the queue's order and may-burst counts kept from an earlier tick
    (policies/pending_index.py); used only when it describes ``pending``, same result.

    ``spot``: launches may be spot instances; the threshold leaves room for a second boot
    (:func:`base_threshold`).

    ``pools_memo``: the pools of an earlier tick, updated for what changed
    (policies/pools_memo.py); same pools as :func:`build_pools`, same result."""
    base = base_threshold(cfg, boot_estimate_s, tick_s, spot=spot)
    if fast and not cfg.enabled and not instances and not any(map(_INSTANCE_ID, nodes)):
        # Overflow off and no burst capacity at all: nothing to walk, nothing to give back.
        return OverflowResult((), (), base, 0, 0, 0, None)
    # Only ids some instance names are ever looked up: no set of every pending (or running)
    # id is built.
    asked = {i.for_jobs[0] for i in instances if i.for_jobs}
    # Of those, only the ids gang instances name are needed as pending jobs: whether a job is
    # pending (and a gang) is asked only for gang instances (build_pools, gang surplus, the
    # tail's own gangs). Single-node launches, the common case, cost no pass over the queue.
    gang_asked = {i.for_jobs[0] for i in instances if i.for_jobs and i.gang_id}
    known = index if index is not None and index.describes(pending) else None
    hits: list[Job] = []
    if gang_asked:
        hits = known.with_ids(gang_asked) if known is not None else list(compress(pending, map(gang_asked.__contains__, map(_ID, pending))))
    pending_ids = frozenset(j.id for j in hits)
    running_ids = frozenset(asked.intersection(map(_ID, running))) if asked else frozenset()
    pending_gangs = frozenset(j.id for j in hits if j.is_gang)
    pools = (
        pools_memo.build(nodes, instances, pending_gangs, pending_ids, running_ids) if pools_memo is not None
        else build_pools(nodes, instances, pending_gangs, pending_ids, running_ids)
    )
    release: list[str] = list(pools.stray_holds)
    onprem, joined, flying, gang_own = pools.onprem, pools.joined, pools.flying, pools.gang_own
    draining = draining_pool(nodes, instances)
    undrain: dict[tuple[str, str, int], int] = {}
    burst: list[tuple[int, Job]] = []
    topups: list[tuple[Job, str, int]] = []
    covered = covered_cloud = waiting = 0
    wake: float | None = None
    enabled = cfg.enabled
    # Overflow off and no burst capacity to count on: nothing can burst, skip the walk (and
    # the queue is not even put in order).
    skip = fast and not enabled and not (
        joined.max_free or flying.max_free or draining.max_free or pools.gang_joined or gang_own
    )
    if skip:
        order = pending
    elif known is not None:
        order = known.order
    else:
        order = pending if _is_sorted(pending) else tuple(sorted(pending, key=_ORDER))
    n = len(order)
    tail = -1  # where the exhausted tail starts, once it does
    visited: frozenset[int] = frozenset()  # tail jobs visited one by one
    alone: list[int] | None = None  # of those, the ones still to visit (popped from the end)
    pos = 0
    while True:
        if alone is None:
            if fast and (skip or (n - pos >= tail_min and not (onprem.max_free or joined.max_free or flying.max_free or draining.max_free))):
                tail = pos
                visited = frozenset() if skip else _alone_in_tail(order, tail, hits, pools, cfg)
                alone = sorted(visited, reverse=True)
                continue
            if pos >= n:
                break
            idx = pos
            pos += 1
        else:
            if not alone:
                break
            idx = alone.pop()
        job = order[idx]
        per_node = job.per_node
        if job.is_gang:
            if onprem.take_gang(job.nodes, per_node, job.gpu_model) is not None:
                covered += 1
                continue
            if job.may_burst:
                members = [
                    (iid, held) for iid, held, gpus, model in pools.gang_joined.get(job.id, ())
                    if _gang_shape(job, gpus, model)
                ]
                if len(members) >= job.nodes:
                    # every member is there: lift the holds together so the gang, the oldest
                    # job waiting for these nodes, is placed on them in one go
                    release += [iid for iid, held in members if held]
                missing, where = _place_gang(job, joined, gang_own.get(job.id, []))
                if missing == 0:
                    covered += 1
                    covered_cloud += 1
                    continue
                if where and enabled:
                    due = job.submit_time + threshold_for(job, cfg, base)
                    if due <= now:
                        topups.append((job, where, missing))
                    else:
                        waiting += 1
                        wake = due if wake is None or due < wake else wake
                    continue
        else:
            if onprem.take(per_node, job.gpu_model) is not None:
                covered += 1
                continue
            if job.may_burst and (
                joined.take(per_node, job.gpu_model) is not None or flying.take(per_node, job.gpu_model) is not None
            ):
                covered += 1
                covered_cloud += 1
                continue
        if not job.may_burst or not enabled:
            continue
        due = job.submit_time + threshold_for(job, cfg, base)
        if due <= now:
            if not job.is_gang and draining.max_free:
                popped = draining.pop_node(per_node, job.gpu_model)
                if popped is not None:
                    # Work that would burst now fits on a node being drained: take the node
                    # back. What the job leaves free serves later work as a joined node's would.
                    (loc, model), free = popped
                    joined.add(free - per_node, loc, model)
                    undrain[(loc, model, free)] = undrain.get((loc, model, free), 0) + 1
                    covered += 1
                    covered_cloud += 1
                    continue
            burst.append((idx, job))
        else:
            waiting += 1
            if wake is None or due < wake:
                wake = due
    burst_total = len(burst)
    listed = [j for _, j in burst]
    if 0 <= tail < n and enabled:
        split = _split_tail(now, order, tail, visited, burst, base, limit, known)
        burst_total += split.due
        waiting += split.waiting
        if split.wake is not None and (wake is None or split.wake < wake):
            wake = split.wake
        listed = split.listed
    if limit is not None:
        listed = listed[:limit]
    if durations is not None and cfg.predict_starts and listed:
        # Only a job that can still afford to be held: if the forecast fails, it bursts next
        # tick and its instance must still join within the target.
        boot = cfg.default_boot_s if boot_estimate_s is None else boot_estimate_s
        last = cfg.wait_target_s - (2 if spot else 1) * boot - 2 * tick_s
        holdable = [j for j in listed if now - j.submit_time <= last]
        starts = predicted_starts(
            now, order, holdable, nodes, running, durations,
            wait_target_s=cfg.wait_target_s, tick_s=tick_s, q=cfg.start_confidence,
        ) if holdable else {}
        if starts:
            # Held, not burst: the GPUs they need are predicted to free up in time. Looked at
            # again next tick, when the prediction is fresh (and they burst if it failed).
            listed = [j for j in listed if j.id not in starts]
            burst_total -= len(starts)
            waiting += len(starts)
            again = now + tick_s
            wake = again if wake is None or again < wake else wake
    surplus: dict[tuple[str, str], int] = {}
    # A gang's booting members go back only once the gang is seen running elsewhere: a job
    # missing from one snapshot (pods being recreated) must not cancel a whole gang.
    # Only gang instances naming a job can be surplus: none (gang_asked empty), no pass.
    gang_surplus = tuple(
        sorted(
            i.id
            for i in instances
            if i.purpose is Purpose.OVERFLOW and i.state in IN_FLIGHT and i.gang_id and i.for_jobs
            and i.for_jobs[0] not in pending_ids and i.for_jobs[0] in running_ids
        )
    ) if gang_asked else ()
    for i in instances:
        if i.purpose is Purpose.OVERFLOW and i.state in IN_FLIGHT and not i.gang_id:
            key = in_flight_key(i)
            if key not in surplus:
                surplus[key] = flying.buckets.get(i.gpus, {}).get(key, 0)
    idle_left: dict[tuple[str, str], int] = {}
    for free, bucket in joined.buckets.items():
        for key, nodes_left in bucket.items():
            if key[0].endswith(f"#{free}"):
                idle_left[key] = nodes_left
    return OverflowResult(
        tuple(listed), tuple(topups), base, covered, covered_cloud, waiting, wake,
        {k: v for k, v in surplus.items() if v}, idle_left, gang_surplus, pools.reserved,
        tuple(sorted(set(release))), undrain, burst_total,
    )


_ID = attrgetter("id")
_INSTANCE_ID = attrgetter("instance_id")
_NODES = attrgetter("nodes")
_MAY_BURST = attrgetter("may_burst")
_ORDER = attrgetter("submit_time", "id")


def _alone_in_tail(order: tuple[Job, ...], tail: int, hits: list[Job], pools: Pools, cfg: OverflowConfig) -> frozenset[int]:
    """Indices (``tail`` on) of the jobs the exhausted tail still visits one by one: gangs that
    own instances (they may be topped up, released or covered by their own nodes), and every
    gang when gangs have a threshold of their own."""
    found: set[int] = set()
    if cfg.gang_wait_threshold_s is not None:
        found.update(compress(count(tail), map((1).__lt__, map(_NODES, islice(order, tail, None)))))
    owners = pools.gang_own.keys() | pools.gang_joined.keys()
    for j in hits:
        if j.id in owners and j.is_gang:
            at = bisect_left(order, (j.submit_time, j.id), key=_ORDER)
            while at < len(order) and order[at] is not j and _ORDER(order[at]) == (j.submit_time, j.id):
                at += 1
            if tail <= at < len(order) and order[at] is j:
                found.add(at)
    return frozenset(found)


@dataclass(frozen=True, slots=True)
class _Split:
    due: int  # tail jobs past their threshold, not visited one by one
    waiting: int  # tail jobs below it, not visited one by one
    wake: float | None
    listed: list[Job]  # every burst job in queue order, up to the limit


def _split_tail(
    now: Timestamp, order: tuple[Job, ...], tail: int, visited: frozenset[int], burst: list[tuple[int, Job]],
    base: float, limit: int | None, index: PendingIndex | None = None,
) -> _Split:
    """The exhausted tail: nothing there can be covered, so a job that may burst is due or
    waiting by its threshold alone (``base``: a job not visited one by one is a single-node job,
    or a gang sharing that threshold). ``burst`` holds (index, job) of every job the walk and
    the tail's visits sent to burst; the result lists them merged in queue order with the due
    bulk, stopping at ``limit``. ``index``: the index whose ``order`` is ``order`` (its
    may-burst counts replace a pass over the tail), or None."""
    n = len(order)
    # Due iff submit + threshold <= now, monotone in submit time over the sorted queue: one
    # bisect (the same float sum as the walk's, so the same answer to the last bit).
    cut = bisect_right(order, now, lo=tail, key=lambda j: j.submit_time + base)
    if index is not None:
        due, late = index.may_burst_between(tail, cut), index.may_burst_between(cut, n)
    else:
        due, late = sum(map(_MAY_BURST, islice(order, tail, cut))), sum(map(_MAY_BURST, islice(order, cut, n)))
    due -= sum(1 for i in visited if i < cut and order[i].may_burst)
    late -= sum(1 for i in visited if i >= cut and order[i].may_burst)
    wake = None
    for i in range(cut, n):
        if i not in visited and order[i].may_burst:
            wake = order[i].submit_time + base
            break
    head = [j for i, j in burst if i < tail]
    want = None if limit is None else max(0, limit - len(head))
    extra = sorted(((i, j) for i, j in burst if i >= tail), key=lambda ij: ij[0])
    merged: list[Job] = []
    k = 0
    i = tail
    while want is None or len(merged) < want:
        nxt = extra[k][0] if k < len(extra) else n
        if i < cut and i < nxt:
            if i not in visited and order[i].may_burst:
                merged.append(order[i])
            i += 1
        elif k < len(extra):
            merged.append(extra[k][1])
            k += 1
        else:
            break
    return _Split(due, late, wake, head + merged)


def _place_gang(job: Job, joined: SlotPool, own: list[tuple[str, int, str]]) -> tuple[int, str]:
    """Where a gang's nodes come from. Returns (nodes still missing, "cloud/region" to top up
    in; "" for a whole new gang).

    Joined nodes count only when they hold the whole gang in one region (it can start now).
    Free joined nodes too few for the gang are taken by the next job that fits the moment the
    scheduler looks (nothing holds them for a gang that cannot start yet): counting them, the
    policy topped a gang up one node per tick while each new node was taken in turn, and the
    gang waited 45 min on a jittered B1 trace. Otherwise the gang counts on its own instances
    in flight (``own``, launched together so they join together), topped up in their region.
    """
    per = job.per_node
    whole = [
        (key, c) for key, c in sorted(joined.gang_slots(per, job.gpu_model).items()) if c >= job.nodes
    ]
    if whole:
        key, _ = whole[0]
        joined.take_nodes(key, job.nodes, per)
        return 0, key[0].split("#", 1)[0]
    by_region: dict[str, int] = {}
    for region, gpus, model in own:
        if _gang_shape(job, gpus, model):
            by_region[region] = by_region.get(region, 0) + 1
    if not by_region:
        return job.nodes, ""
    region, count = max(sorted(by_region.items()), key=lambda kv: kv[1])
    return max(0, job.nodes - count), region


def _gang_shape(job: Job, gpus: int, model: str) -> bool:
    """An instance of the gang's own can serve as one of its nodes: enough GPUs, right model
    (a job recreated under the same name with another shape is not held to the old ones)."""
    return gpus >= job.per_node and model_ok(job.gpu_model, model)
