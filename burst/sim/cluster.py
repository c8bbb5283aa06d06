"""A simulated on-prem cluster: a :class:`burst.ports.QueueSource` with BENCHMARKS.md B1's model.

Scheduling model (B1): pending jobs are visited in submission order and every job that fits is
started; a job that does not fit is skipped and nothing is reserved for it. A job of up to one
node's GPUs goes on one node (best fit: the fullest node that still has room); a gang needs
``nodes`` nodes with ``per_node`` free GPUs each, all on-prem or all burst nodes of one cloud
region. Burst nodes carry the cloud taint: only jobs that may burst land there, and on-prem
nodes are tried first.

Preemption (issue 10, for grand challenges): a running job checkpoints every
``checkpoint_interval_s`` of its run and when signalled (``checkpoint``); ``hold`` stops it,
frees its GPUs and keeps it queued but not schedulable; ``release`` makes it schedulable again
with the work since its last checkpoint lost (``remaining = duration - checkpointed progress``).
``set_priority`` puts a job ahead: pending jobs are visited by priority, then submission.
Reservations (``create_reservation``) take their nodes out of ordinary scheduling; only jobs
whose time limit ends before the reservation's start, and challenge jobs submitted into it
(``submit_challenge``), start there. Time limits are not enforced (trace durations are true).

Hand-written because it *is* the fake queue; its hot paths are bucketed by free-GPU count so a
59-day replay takes seconds. It knows job durations (to end them), and never shows them: the
snapshot carries only submit and start times, as a real queue does.
"""

from __future__ import annotations

import bisect
import dataclasses
import heapq
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from operator import attrgetter

from burst.domain import GrandChallenge, Job, JobState, Node, QueueSnapshot
from burst.errors import QueueError
from burst.sim.trace import TraceJob

ONPREM = "onprem"
RESERVATION_LABEL = "burst.dev/reservation"  # node label in the snapshot: the reservation holding it
_JOB = attrgetter("job")


@dataclass(slots=True)
class SimJob:
    trace: TraceJob
    submit: float
    job: Job  # the pending view (cached; immutable)
    running_view: Job | None = None
    start: float | None = None
    first_start: float | None = None
    end: float | None = None
    nodes: list[int] = field(default_factory=list)
    cloud: bool = False
    requeues: int = 0
    # ---- preemption (grand challenges) ----
    done_work: float = 0.0  # progress kept across holds: the last checkpoint before a hold
    signal_ckpt: float | None = None  # progress saved by a checkpoint signal during this run
    priority: int = 0
    time_limit: float | None = None
    reservation: str = ""  # a challenge job: runs only on this reservation's nodes
    lost_work: float = 0.0  # seconds of work lost to holds (not covered by a checkpoint)
    signals: int = 0
    holds: int = 0
    hold_calls: int = 0  # every hold call naming it, effective or not
    releases: int = 0  # held -> pending changes
    release_calls: int = 0  # every release call naming it, effective or not
    seq: int = 0  # arrival order: breaks ties in submit time (a trace's own order)
    # (-priority, submit, seq): the queue order, kept because the scheduling pass compares it
    # per shape per start. Set by SimCluster.submit and set_priority (the only writers of these).
    order: tuple[int, float, int] = (0, 0.0, 0)


@dataclass(slots=True)
class SimNode:
    idx: int
    name: str
    gpus: int
    model: str
    location: str  # "onprem" or "cloud/region"
    instance_id: str = ""
    free: int = 0
    schedulable: bool = True
    jobs: dict[str, None] = field(default_factory=dict)
    alive: bool = True
    reserved: str = ""  # name of the reservation holding this node
    reason: str = ""  # why it was drained (shown as the "reason" label while drained, as sinfo does)

    @property
    def listed(self) -> bool:
        """In the free-GPU buckets: open to ordinary scheduling."""
        return self.schedulable and self.alive and not self.reserved


@dataclass(slots=True)
class SimReservation:
    name: str
    nodes: list[int]
    start: float
    end: float


StartHook = Callable[[SimJob, float], None]


class SimCluster:
    """The in-memory on-prem scheduler. Implements QueueSource (and drives itself via ``step``)."""

    name = "sim"

    def __init__(
        self,
        nodes: int,
        gpus_per_node: int = 8,
        gpu_model: str = "A100",
        *,
        on_start: StartHook | None = None,
        on_finish: StartHook | None = None,
        checkpoint_interval_s: float = 1800.0,
        on_stop: StartHook | None = None,
    ) -> None:
        self.gpus_per_node = gpus_per_node
        self.checkpoint_interval_s = checkpoint_interval_s
        self.now = 0.0  # the latest time schedule/complete_until saw; preemption calls use it
        self._held: dict[str, SimJob] = {}
        self.reservations: dict[str, SimReservation] = {}
        self.challenge_runtime_s: dict[str, float] = {}  # reservation/job name -> run time (default: its limit)
        self.finished: dict[str, SimJob] = {}
        self.lost_gpu_seconds = 0.0
        self.hold_log: list[tuple[str, float, float]] = []  # (job id, time, GPU-seconds lost) per hold
        self.nodes: list[SimNode] = []
        self.by_name: dict[str, int] = {}
        # free-count buckets: [k] -> ordered set of node indices with exactly k free GPUs
        self._onprem: list[dict[int, None]] = []
        self._cloud: list[dict[int, None]] = []
        self._max = 0
        self._pending: dict[str, SimJob] = {}
        # The same pending jobs indexed by shape, for scheduling: jobs of one shape (nodes, GPUs
        # per node, model, may burst) fit exactly when the first of them does, so a pass looks
        # at the first job of each shape instead of walking the queue. Heaps of (order, id),
        # entries dropped lazily when stale (started, held, reordered).
        self._shapes: dict[tuple[int, int, str, bool], list[tuple[tuple[int, float, int], str]]] = {}
        self._pending_sorted = True
        # The snapshot's pending jobs, in the dict's order, kept between snapshots (a list the
        # snapshot copies at C speed): a submit appends, a start removes its one entry (found by
        # bisect on the parallel order keys, checked by identity); anything else (requeue,
        # hold, release, priority, cancel, re-sort) drops it and the next snapshot rebuilds it
        # from the dict. Invariant when not None: ``_plist == [sj.job for sj in _pending.values()]``.
        self._plist: list[Job] | None = []
        self._pkeys: list[tuple[int, float, int]] = []
        # The snapshot's pending tuple (pending then held), kept until the pending or held jobs
        # change: a snapshot after completions only hands out the very same tuple, which lets
        # the controller keep what it derived from it (an identity check, not a compare).
        # Every writer of _pending/_held (or of a queued job's view) sets it to None.
        self._pend_t: tuple[Job, ...] | None = None
        self._arrivals = 0
        self._new_since_pass: list[str] = []
        self._capacity_grew = True
        self._running: dict[str, SimJob] = {}
        # The running jobs' snapshot views, kept beside ``_running`` with the same insertions and
        # removals (so in the same order): the snapshot copies its values at C speed instead of
        # mapping over every running job. Invariant: ``_rviews == {id: sj.running_view for
        # id, sj in _running.items()}`` (tests/sim/test_pending_list.py checks it).
        self._rviews: dict[str, Job] = {}
        self._ends: list[tuple[float, int, str]] = []
        self._seq = 0
        # Snapshot views of the nodes still in the scheduler, by index (in index order), kept
        # from one snapshot to the next: only nodes changed since (``_dirty``) are rebuilt.
        self._views: dict[int, Node] = {}
        self._dirty: set[int] = set()
        self._nodes_t: tuple[Node, ...] | None = None  # the snapshot's nodes, while unchanged
        self._snap: QueueSnapshot | None = None
        self.version = 0
        # Bumped whenever a burst node's snapshot view changes (or one joins or leaves): equal
        # counts mean every burst node of the snapshot is the very same view as before. The
        # simulator's runner uses it to tell a tick whose change was on-prem only.
        self.cloud_version = 0
        self.on_start = on_start
        self.on_finish = on_finish
        # Called when a running job is stopped before its end (its node left, a hold, a cancel),
        # before its run is forgotten: the world counts the GPU time that run used.
        self.on_stop = on_stop
        self.fail_next_snapshot: str = ""  # tests: make the next snapshot raise QueueError
        self.used_onprem = 0
        self.requeues = 0
        self.used_cloud = 0
        for i in range(nodes):
            self._add_node(f"onprem-{i + 1:04d}", gpus_per_node, gpu_model, ONPREM, "")

    # ---- nodes -------------------------------------------------------------------------------
    def _buckets(self, node: SimNode) -> list[dict[int, None]]:
        return self._onprem if node.location == ONPREM else self._cloud

    def _ensure(self, k: int) -> None:
        while len(self._onprem) <= k:
            self._onprem.append({})
            self._cloud.append({})
        self._max = max(self._max, k)

    def _set_free(self, node: SimNode, free: int) -> None:
        if node.location == ONPREM:
            self.used_onprem += node.free - free
        else:
            self.used_cloud += node.free - free
        b = self._buckets(node)
        if node.listed:
            b[node.free].pop(node.idx, None)
        node.free = free
        if node.listed:
            b[free][node.idx] = None
        self._drop_view(node.idx)
        self._snap = None

    def _drop_view(self, idx: int) -> None:
        """A node changed (or came or went): its snapshot view and the node tuple are stale."""
        self._dirty.add(idx)
        self._nodes_t = None
        if self.nodes[idx].location != ONPREM:
            self.cloud_version += 1

    def _add_node(self, name: str, gpus: int, model: str, location: str, instance_id: str) -> SimNode:
        self._ensure(gpus)
        node = SimNode(len(self.nodes), name, gpus, model, location, instance_id, free=gpus)
        self.nodes.append(node)
        self._drop_view(node.idx)
        self.by_name[name] = node.idx
        self._buckets(node)[gpus][node.idx] = None
        self._capacity_grew = True
        self._snap = None
        self.version += 1
        return node

    def add_cloud_node(self, name: str, gpus: int, model: str, location: str, instance_id: str) -> None:
        """The harness playing a booted burst instance joining the scheduler."""
        if name in self.by_name and self.nodes[self.by_name[name]].alive:
            return
        self._add_node(name, gpus, model, location, instance_id)

    def drain_node(self, node_name: str, reason: str) -> None:
        node = self._node(node_name)
        if node is None:
            return
        if not node.schedulable:
            if reason != node.reason:  # draining a drained node updates its reason, as scontrol does
                node.reason = reason
                self._drop_view(node.idx)
                self._snap = None
                self.version += 1
            return
        self._buckets(node)[node.free].pop(node.idx, None)  # absent when reserved: a no-op
        node.schedulable = False
        node.reason = reason
        self._drop_view(node.idx)
        self._snap = None
        self.version += 1

    def undrain_node(self, node_name: str, reason: str) -> None:
        node = self._node(node_name)
        if node is None or node.schedulable:
            return
        node.schedulable = True
        if node.listed:
            self._buckets(node)[node.free][node.idx] = None
        self._drop_view(node.idx)
        self._capacity_grew = True
        self._snap = None
        self.version += 1

    def remove_node(self, node_name: str) -> None:
        """Node gone (terminated or reclaimed). Jobs on it go back to the queue. Idempotent."""
        node = self._node(node_name)
        if node is None:
            return
        if node.listed:
            self._buckets(node)[node.free].pop(node.idx, None)
        if node.location == ONPREM:
            self.used_onprem -= node.gpus - node.free
        else:
            self.used_cloud -= node.gpus - node.free
        node.alive = False
        node.schedulable = False
        for jid in list(node.jobs):
            self._requeue(jid)
        del self.by_name[node_name]
        self._drop_view(node.idx)
        self._snap = None
        self.version += 1

    def _node(self, name: str) -> SimNode | None:
        idx = self.by_name.get(name)
        if idx is None:
            return None
        node = self.nodes[idx]
        return node if node.alive else None

    # ---- jobs --------------------------------------------------------------------------------
    def submit(self, tj: TraceJob, at: float, *, time_limit: float | None = None, priority: int = 0) -> None:
        job = Job(
            id=tj.id,
            gpus=tj.gpus,
            submit_time=at,
            owner=tj.owner,
            team=tj.team,
            gpus_per_node=tj.per_node,
            nodes=tj.nodes,
            image=tj.image,
            may_burst=tj.may_burst,
            gpu_model=tj.gpu_model,
            reason="Resources",
            priority=priority,
            time_limit_s=time_limit,
        )
        self._arrivals += 1
        order = (-priority, at, self._arrivals)
        self._pending[tj.id] = sj = SimJob(tj, at, job, priority=priority, time_limit=time_limit, seq=self._arrivals, order=order)
        self._pend_t = None
        if self._plist is not None:
            self._plist.append(job)
            self._pkeys.append(order)
        self._index(sj)
        if priority:
            self._pending_sorted = False
        self._new_since_pass.append(tj.id)
        self._snap = None
        self.version += 1

    def _stop(self, jid: str) -> SimJob:
        """Take a running job off its nodes (GPUs freed); the caller decides where it goes."""
        sj = self._running.pop(jid)
        if self.on_stop is not None and sj.start is not None:
            self.on_stop(sj, self.now)
        del self._rviews[jid]
        for idx in sj.nodes:
            node = self.nodes[idx]
            node.jobs.pop(jid, None)
            if node.alive:
                self._set_free(node, node.free + sj.trace.per_node)
        sj.nodes = []
        sj.start = None
        sj.end = None
        sj.running_view = None
        sj.cloud = False
        sj.signal_ckpt = None
        return sj

    def _requeue(self, jid: str) -> None:
        sj = self._stop(jid)
        sj.requeues += 1
        self.requeues += 1
        self._pending[jid] = sj
        self._pend_t = None
        self._plist = None
        self._index(sj)
        self._pending_sorted = False
        self._capacity_grew = True
        self._snap = None

    def _index(self, sj: SimJob) -> None:
        """File a pending job under its shape (see ``_shapes``)."""
        tj = sj.trace
        heapq.heappush(
            self._shapes.setdefault((tj.nodes, tj.per_node, tj.gpu_model, tj.may_burst), []),
            (sj.order, tj.id),
        )

    def next_completion(self) -> float | None:
        while self._ends:
            t, _, jid = self._ends[0]
            sj = self._running.get(jid)
            if sj is not None and sj.end == t:
                return t
            heapq.heappop(self._ends)  # stale entry of a requeued job
        return None

    def complete_until(self, now: float) -> int:
        self.now = max(self.now, now)
        done = 0
        while self._ends and self._ends[0][0] <= now:
            t, _, jid = heapq.heappop(self._ends)
            sj = self._running.get(jid)
            if sj is None or sj.end != t:
                continue
            del self._running[jid]
            del self._rviews[jid]
            self.finished[jid] = sj
            for idx in sj.nodes:
                node = self.nodes[idx]
                node.jobs.pop(jid, None)
                if node.alive:
                    self._set_free(node, node.free + sj.trace.per_node)
            if self.on_finish is not None:
                self.on_finish(sj, t)
            done += 1
        if done:
            self._capacity_grew = True
            self._snap = None
            self.version += 1
        return done

    def _start(self, sj: SimJob, nodes: list[SimNode], now: float) -> None:
        for node in nodes:
            self._set_free(node, node.free - sj.trace.per_node)
            node.jobs[sj.trace.id] = None
        sj.nodes = [n.idx for n in nodes]
        sj.cloud = nodes[0].location != ONPREM
        sj.start = now
        if sj.first_start is None:
            sj.first_start = now
        sj.end = now + max(0.0, self._work(sj) - sj.done_work)
        names = tuple(n.name for n in nodes)
        sj.running_view = Job(
            id=sj.job.id,
            gpus=sj.job.gpus,
            submit_time=sj.job.submit_time,
            state=JobState.RUNNING,
            owner=sj.job.owner,
            team=sj.job.team,
            gpus_per_node=sj.job.gpus_per_node,
            nodes=sj.job.nodes,
            image=sj.job.image,
            may_burst=sj.job.may_burst,
            gpu_model=sj.job.gpu_model,
            start_time=now,
            node_names=names,
            priority=sj.priority,
            time_limit_s=sj.time_limit,
        )
        self._running[sj.trace.id] = sj
        self._rviews[sj.trace.id] = sj.running_view
        self._seq += 1
        heapq.heappush(self._ends, (sj.end, self._seq, sj.trace.id))
        if self.on_start is not None:
            self.on_start(sj, now)

    def _fit_one(self, buckets: list[dict[int, None]], need: int, model: str) -> SimNode | None:
        for k in range(need, self._max + 1):
            b = buckets[k]
            if not b:
                continue
            if not model:
                return self.nodes[next(iter(b))]
            for idx in b:
                if self.nodes[idx].model == model:
                    return self.nodes[idx]
        return None

    def _fit_gang(self, buckets: list[dict[int, None]], count: int, per: int, model: str, by_location: bool) -> list[SimNode] | None:
        groups: dict[str, list[SimNode]] = {}
        for k in range(per, self._max + 1):
            for idx in buckets[k]:
                node = self.nodes[idx]
                if model and node.model != model:
                    continue
                key = node.location if by_location else ""
                g = groups.setdefault(key, [])
                g.append(node)
                if len(g) == count:
                    return g
        return None

    def _sort_pending(self) -> None:
        self._pending = dict(sorted(self._pending.items(), key=lambda kv: (-kv[1].priority, kv[1].submit, kv[1].seq)))
        self._pend_t = None
        self._plist = None

    def _unlist(self, sj: SimJob) -> None:
        """``sj`` has just left ``_pending``: take its view out of ``_plist`` (or drop the list)."""
        plist = self._plist
        if plist is None:
            self._pend_t = None
            return
        keys = self._pkeys
        i = bisect.bisect_left(keys, sj.order)
        self._pend_t = None
        if i < len(plist) and plist[i] is sj.job:
            del plist[i]
            del keys[i]
        else:  # the dict is not in key order here (or the view was replaced): rebuild later
            self._plist = None
        self._pending_sorted = True

    def schedule(self, now: float) -> int:
        """Start every pending job that fits, by priority then submission order (reserved nodes
        only for the jobs a reservation admits). Returns how many started."""
        self.now = max(self.now, now)
        started = self._schedule_reserved(now) if self.reservations else 0
        return started + self._schedule_open(now)

    def _schedule_open(self, now: float) -> int:
        """B1's rule: visit pending jobs in order (priority, then submission) and start each one
        that fits; a job that does not fit is skipped. Capacity only shrinks during a pass, so
        that is the same as starting, again and again, the first job in order that fits now;
        and jobs of one shape fit alike, so only the first job of each shape is looked at.
        A pass costs O(shapes x starts), not O(queue). Without capacity grown since the last
        pass only new arrivals could fit, and they were filed under their shapes already."""
        if not self._pending:
            self._new_since_pass.clear()
            return 0
        if not self._capacity_grew and not self._new_since_pass:
            return 0
        if self._capacity_grew:
            shapes = list(self._shapes.items())
        else:
            # Capacity has not grown since every shape was last tried: only the shapes of new
            # arrivals can have a job that fits.
            want = set()
            for jid in self._new_since_pass:
                sj0 = self._pending.get(jid)
                if sj0 is not None:
                    t0 = sj0.trace
                    want.add((t0.nodes, t0.per_node, t0.gpu_model, t0.may_burst))
            shapes = [(k, self._shapes[k]) for k in want]
        self._capacity_grew = False
        self._new_since_pass.clear()
        started = 0
        pending = self._pending
        while True:
            best: tuple[tuple[int, float, int], str, list[SimNode], list[tuple[tuple[int, float, int], str]]] | None = None
            # A shape whose first job did not fit cannot fit later in this pass (capacity only
            # shrinks): it is not tried again. Shapes skipped for order are kept.
            kept: list[tuple[tuple[int, int, str, bool], list[tuple[tuple[int, float, int], str]]]] = []
            for item in shapes:
                shape, heap = item
                while heap:
                    key, jid = heap[0]
                    sj = pending.get(jid)
                    if sj is not None and not sj.reservation and key == sj.order:
                        break
                    heapq.heappop(heap)  # stale: started, held, reordered or a challenge job
                if not heap:
                    continue
                if best is not None and heap[0][0] >= best[0]:
                    kept.append(item)
                    continue
                nodes, per, model, may_burst = shape
                chosen: list[SimNode] | None
                if nodes == 1:
                    n = self._fit_one(self._onprem, per, model)
                    if n is None and may_burst:
                        n = self._fit_one(self._cloud, per, model)
                    chosen = [n] if n is not None else None
                else:
                    chosen = self._fit_gang(self._onprem, nodes, per, model, False)
                    if chosen is None and may_burst:
                        chosen = self._fit_gang(self._cloud, nodes, per, model, True)
                if chosen is not None:
                    best = (heap[0][0], heap[0][1], chosen, heap)
                    kept.append(item)
            if best is None:
                break
            shapes = kept
            heapq.heappop(best[3])
            sj = pending.pop(best[1])
            self._unlist(sj)
            self._start(sj, best[2], now)
            started += 1
        if started:
            self._snap = None
            self.version += 1
        return started

    def _pending_list(self) -> list[Job]:
        if self._plist is None:
            vals = self._pending.values()
            self._plist = list(map(_JOB, vals))
            self._pkeys = [sj.order for sj in vals]
        return self._plist

    def _pending_tuple(self) -> tuple[Job, ...]:
        if self._pend_t is None:
            self._pend_t = tuple(self._pending_list()) + tuple(map(_JOB, self._held.values()))
        return self._pend_t

    # ---- QueueSource ---------------------------------------------------------------------------
    def snapshot(self) -> QueueSnapshot:
        if self.fail_next_snapshot:
            msg, self.fail_next_snapshot = self.fail_next_snapshot, ""
            raise QueueError(msg)
        if self._snap is None:
            if not self._pending_sorted:
                self._sort_pending()
            if self._nodes_t is None:
                # Only the nodes that changed since the last snapshot get a new view.
                views = self._views
                for idx in sorted(self._dirty):
                    node = self.nodes[idx]
                    if not node.alive:
                        views.pop(idx, None)
                        continue
                    views[idx] = Node(
                        name=node.name,
                        gpus=node.gpus,
                        gpus_used=node.gpus - node.free,
                        gpu_model=node.model,
                        schedulable=node.schedulable and not node.reserved,
                        instance_id=node.instance_id,
                        running_jobs=len(node.jobs),
                        labels=({RESERVATION_LABEL: node.reserved} if node.reserved else {})
                        | ({"reason": node.reason} if node.reason and not node.schedulable else {}),
                    )
                self._dirty.clear()
                self._nodes_t = tuple(views.values())
            # Built at C speed (no Python-level step per job): a tick over a long queue pays
            # a copy of pointers, not a loop.
            self._snap = QueueSnapshot(
                pending=self._pending_tuple(),
                running=tuple(self._rviews.values()),
                nodes=self._nodes_t,
            )
        return self._snap

    # ---- preemption: checkpoint, hold, release, priority (PreemptionControl) -----------------
    def _work(self, sj: SimJob) -> float:
        if sj.reservation:
            limit = sj.time_limit if sj.time_limit is not None else sj.trace.duration
            return min(self.challenge_runtime_s.get(sj.trace.id, limit), limit)
        return sj.trace.duration

    def progress(self, sj: SimJob, at: float) -> float:
        """Work done so far (seconds of the job's duration)."""
        if sj.start is None:
            return sj.done_work
        return sj.done_work + max(0.0, at - sj.start)

    def _saved(self, sj: SimJob, at: float) -> float:
        """Progress a restart would resume from: the later of the last periodic checkpoint and
        the last signalled one."""
        saved = sj.done_work
        if sj.start is not None and self.checkpoint_interval_s > 0:
            ran = max(0.0, at - sj.start)
            saved = sj.done_work + math.floor(ran / self.checkpoint_interval_s) * self.checkpoint_interval_s
        if sj.signal_ckpt is not None:
            saved = max(saved, sj.signal_ckpt)
        return saved

    def checkpoint(self, job_ids: Sequence[str]) -> None:
        """The signal: a running job saves its progress now. Others are skipped."""
        for jid in job_ids:
            sj = self._running.get(jid)
            if sj is None:
                continue
            sj.signals += 1
            sj.signal_ckpt = self.progress(sj, self.now)

    def hold(self, job_ids: Sequence[str]) -> None:
        """Running: stop it (GPUs freed), keep its last checkpoint, queue it held. Pending: hold
        it. Held, finished or unknown: success, nothing changes."""
        for jid in job_ids:
            known = self.job(jid)
            if known is not None:
                known.hold_calls += 1
            if jid in self._running:
                sj = self._running[jid]
                saved, done = self._saved(sj, self.now), self.progress(sj, self.now)
                sj.lost_work += done - saved
                self.lost_gpu_seconds += (done - saved) * sj.trace.gpus
                self.hold_log.append((jid, self.now, (done - saved) * sj.trace.gpus))
                sj.done_work = saved
                self._stop(jid)
            elif jid in self._pending:
                sj = self._pending.pop(jid)
                self._plist = None
            else:
                continue
            sj.holds += 1
            self._capacity_grew = True
            sj.job = dataclasses.replace(sj.job, state=JobState.HELD, reason="JobHeldAdmin", priority=sj.priority)
            self._held[jid] = sj
            self._pend_t = None
            self._snap = None
            self.version += 1

    def release(self, job_ids: Sequence[str]) -> None:
        """Held jobs become pending again, in this order; anything else is success."""
        for jid in job_ids:
            sj = self._held.pop(jid, None)
            if sj is None:
                for d in (self._pending, self._running, self.finished):
                    if jid in d:
                        d[jid].release_calls += 1
                continue
            sj.release_calls += 1
            sj.releases += 1
            sj.job = dataclasses.replace(sj.job, state=JobState.PENDING, reason="Priority", priority=sj.priority)
            self._pending[jid] = sj
            self._pend_t = None
            self._plist = None
            self._index(sj)
            self._pending_sorted = False
            self._capacity_grew = True
            self._snap = None
            self.version += 1

    def set_priority(self, job_id: str, priority: int) -> None:
        for d in (self._pending, self._held, self._running):
            sj = d.get(job_id)
            if sj is None:
                continue
            sj.priority = priority
            sj.order = (-priority, sj.submit, sj.seq)
            sj.job = dataclasses.replace(sj.job, priority=priority)
            self._plist = None
            self._pend_t = None
            if d is self._pending:
                self._index(sj)  # filed again under its new order; the old entry goes stale
            if sj.running_view is not None:
                sj.running_view = dataclasses.replace(sj.running_view, priority=priority)
                self._rviews[job_id] = sj.running_view  # same key: its place in the order stays
            self._pending_sorted = False
            self._capacity_grew = True
            self._snap = None
            return

    def job(self, job_id: str) -> SimJob | None:
        """Any job the cluster knows, in whatever state."""
        for d in (self._running, self._pending, self._held, self.finished):
            if job_id in d:
                return d[job_id]
        return None

    @property
    def held_count(self) -> int:
        return len(self._held)

    # ---- reservations and challenge jobs -------------------------------------------------------
    def create_reservation(self, name: str, start: float | None, duration_s: float, *, nodes: Sequence[str]) -> str:
        """Reserve ``nodes`` from ``start`` (None: now). Idempotent on the name (times updated).
        Burst nodes are refused: a reservation never takes cloud capacity."""
        begin = self.now if start is None else start
        idxs = []
        for n in nodes:
            node = self._node(n)
            if node is None:
                raise QueueError(f"reservation {name}: unknown node {n}")
            if node.location != ONPREM:
                raise QueueError(f"reservation {name}: {n} is a burst node")
            idxs.append(node.idx)
        old = self.reservations.get(name)
        if old is not None:
            old.start, old.end = begin, begin + duration_s
            return name
        for idx in idxs:
            node = self.nodes[idx]
            if node.reserved and node.reserved != name:
                raise QueueError(f"reservation {name}: {node.name} is in reservation {node.reserved}")
            if node.listed:
                self._buckets(node)[node.free].pop(node.idx, None)
            node.reserved = name
            self._drop_view(idx)
        self.reservations[name] = SimReservation(name, idxs, begin, begin + duration_s)
        self._snap = None
        self.version += 1
        return name

    def delete_reservation(self, name: str) -> None:
        res = self.reservations.pop(name, None)
        if res is None:
            return
        for idx in res.nodes:
            node = self.nodes[idx]
            if node.reserved != name:
                continue
            node.reserved = ""
            if node.listed:
                self._buckets(node)[node.free][node.idx] = None
            self._drop_view(idx)
        self._capacity_grew = True
        self._snap = None
        self.version += 1

    def submit_challenge(self, gc: GrandChallenge, *, name: str, reservation: str, nodes: Sequence[str]) -> str:
        """Submit ``gc``'s job into ``reservation`` (it runs on nothing else), one whole node per
        name in ``nodes``, with the challenge's duration as its time limit; it runs for
        ``challenge_runtime_s[name]`` (default: that limit). The job id is ``name``. Idempotent
        on ``name``: a job of that name, even finished, is never submitted twice.
        A challenge whose ``job_text`` contains ``SIM-REJECT`` is refused (tests: a job that
        fails to start)."""
        if self.job(name) is not None:
            return name
        if "SIM-REJECT" in gc.job_text:
            raise QueueError(f"challenge job {name}: the scheduler refused the script")
        if reservation not in self.reservations:
            raise QueueError(f"challenge job {name}: no reservation {reservation}")
        per = self.gpus_per_node
        tj = TraceJob(id=name, submit=self.now, duration=gc.duration_s, gpus=per * len(nodes), nodes=len(nodes),
                      per_node=per, may_burst=False, owner=gc.owner or gc.created_by)
        self.submit(tj, self.now, time_limit=gc.duration_s)
        self._pending[name].reservation = reservation
        return name

    def cancel(self, job_ids: Sequence[str]) -> None:
        """Remove jobs (running ones free their GPUs). Unknown or finished: success."""
        for jid in job_ids:
            if jid in self._running:
                sj = self._stop(jid)
            else:
                sj2 = self._pending.pop(jid, None) or self._held.pop(jid, None)
                self._plist = None
                self._pend_t = None
                if sj2 is None:
                    continue
                sj = sj2
            self.finished[jid] = sj
            self._capacity_grew = True
            self._snap = None
            self.version += 1

    def _schedule_reserved(self, now: float) -> int:
        """Start, on reserved nodes, the challenge jobs of each reservation and the jobs whose time
        limit ends before its start. Linear; runs only while a reservation exists."""
        started = 0
        if not self._pending_sorted:
            self._sort_pending()
        for res in list(self.reservations.values()):
            free = [self.nodes[i] for i in res.nodes if self.nodes[i].alive and self.nodes[i].schedulable]
            if not free:
                continue
            for sj in list(self._pending.values()):
                tj = sj.trace
                if sj.reservation == res.name:
                    if now < res.start:
                        continue
                elif sj.reservation or sj.time_limit is None or now + sj.time_limit > res.start:
                    continue
                fit = [n for n in free if n.free >= tj.per_node and (not tj.gpu_model or n.model == tj.gpu_model)]
                if len(fit) < tj.nodes:
                    continue
                chosen = sorted(fit, key=lambda n: (n.free, n.idx))[: tj.nodes] if tj.nodes == 1 else fit[: tj.nodes]
                del self._pending[tj.id]
                self._plist = None
                self._pend_t = None
                self._start(sj, chosen, now)
                started += 1
        if started:
            self._snap = None
            self.version += 1
        return started

    # ---- measurements --------------------------------------------------------------------------
    @property
    def pending_count(self) -> int:
        return len(self._pending)

    @property
    def running_count(self) -> int:
        return len(self._running)

    def gpus_in_use(self) -> tuple[int, int]:
        """(on-prem GPUs in use, burst-node GPUs in use)."""
        return self.used_onprem, self.used_cloud
