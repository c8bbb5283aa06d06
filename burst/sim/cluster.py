"""A simulated on-prem cluster: a :class:`burst.ports.QueueSource` with BENCHMARKS.md B1's model.

Scheduling model (B1): pending jobs are visited in submission order and every job that fits is
started; a job that does not fit is skipped and nothing is reserved for it. A job of up to one
node's GPUs goes on one node (best fit: the fullest node that still has room); a gang needs
``nodes`` nodes with ``per_node`` free GPUs each, all on-prem or all burst nodes of one cloud
region. Burst nodes carry the cloud taint: only jobs that may burst land there, and on-prem
nodes are tried first.

Hand-written because it *is* the fake queue; its hot paths are bucketed by free-GPU count so a
59-day replay takes seconds. It knows job durations (to end them), and never shows them: the
snapshot carries only submit and start times, as a real queue does.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field

from burst.domain import Job, JobState, Node, QueueSnapshot
from burst.errors import QueueError
from burst.sim.trace import TraceJob

ONPREM = "onprem"


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
    ) -> None:
        self.gpus_per_node = gpus_per_node
        self.nodes: list[SimNode] = []
        self.by_name: dict[str, int] = {}
        # free-count buckets: [k] -> ordered set of node indices with exactly k free GPUs
        self._onprem: list[dict[int, None]] = []
        self._cloud: list[dict[int, None]] = []
        self._max = 0
        self._pending: dict[str, SimJob] = {}
        self._pending_sorted = True
        self._new_since_pass: list[str] = []
        self._capacity_grew = True
        self._running: dict[str, SimJob] = {}
        self._ends: list[tuple[float, int, str]] = []
        self._seq = 0
        self._node_view: dict[int, Node] = {}
        self._snap: QueueSnapshot | None = None
        self.version = 0
        self.on_start = on_start
        self.on_finish = on_finish
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
        if node.schedulable and node.alive:
            b[node.free].pop(node.idx, None)
        node.free = free
        if node.schedulable and node.alive:
            b[free][node.idx] = None
        self._node_view.pop(node.idx, None)
        self._snap = None

    def _add_node(self, name: str, gpus: int, model: str, location: str, instance_id: str) -> SimNode:
        self._ensure(gpus)
        node = SimNode(len(self.nodes), name, gpus, model, location, instance_id, free=gpus)
        self.nodes.append(node)
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
        if node is None or not node.schedulable:
            return
        self._buckets(node)[node.free].pop(node.idx, None)
        node.schedulable = False
        self._node_view.pop(node.idx, None)
        self._snap = None
        self.version += 1

    def undrain_node(self, node_name: str, reason: str) -> None:
        node = self._node(node_name)
        if node is None or node.schedulable:
            return
        node.schedulable = True
        self._buckets(node)[node.free][node.idx] = None
        self._node_view.pop(node.idx, None)
        self._capacity_grew = True
        self._snap = None
        self.version += 1

    def remove_node(self, node_name: str) -> None:
        """Node gone (terminated or reclaimed). Jobs on it go back to the queue. Idempotent."""
        node = self._node(node_name)
        if node is None:
            return
        if node.schedulable:
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
        self._node_view.pop(node.idx, None)
        self._snap = None
        self.version += 1

    def _node(self, name: str) -> SimNode | None:
        idx = self.by_name.get(name)
        if idx is None:
            return None
        node = self.nodes[idx]
        return node if node.alive else None

    # ---- jobs --------------------------------------------------------------------------------
    def submit(self, tj: TraceJob, at: float) -> None:
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
        )
        self._pending[tj.id] = SimJob(tj, at, job)
        self._new_since_pass.append(tj.id)
        self._snap = None
        self.version += 1

    def _requeue(self, jid: str) -> None:
        sj = self._running.pop(jid)
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
        sj.requeues += 1
        self.requeues += 1
        self._pending[jid] = sj
        self._pending_sorted = False
        self._capacity_grew = True
        self._snap = None

    def next_completion(self) -> float | None:
        while self._ends:
            t, _, jid = self._ends[0]
            sj = self._running.get(jid)
            if sj is not None and sj.end == t:
                return t
            heapq.heappop(self._ends)  # stale entry of a requeued job
        return None

    def complete_until(self, now: float) -> int:
        done = 0
        while self._ends and self._ends[0][0] <= now:
            t, _, jid = heapq.heappop(self._ends)
            sj = self._running.get(jid)
            if sj is None or sj.end != t:
                continue
            del self._running[jid]
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
        sj.end = now + sj.trace.duration
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
        )
        self._running[sj.trace.id] = sj
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

    def schedule(self, now: float) -> int:
        """Start every pending job that fits, in submission order. Returns how many started."""
        if not self._pending:
            self._new_since_pass.clear()
            return 0
        if self._capacity_grew:
            if not self._pending_sorted:
                self._pending = dict(sorted(self._pending.items(), key=lambda kv: (kv[1].submit, kv[0])))
                self._pending_sorted = True
            candidates = list(self._pending.values())
        else:
            # Capacity has not grown since the last pass: only new arrivals can possibly fit.
            candidates = [self._pending[j] for j in self._new_since_pass if j in self._pending]
        self._capacity_grew = False
        self._new_since_pass.clear()
        started = 0
        for sj in candidates:
            if not any(self._onprem[k] for k in range(1, self._max + 1)) and not any(
                self._cloud[k] for k in range(1, self._max + 1)
            ):
                break
            tj = sj.trace
            chosen: list[SimNode] | None = None
            if tj.nodes == 1:
                n = self._fit_one(self._onprem, tj.per_node, tj.gpu_model)
                if n is None and tj.may_burst:
                    n = self._fit_one(self._cloud, tj.per_node, tj.gpu_model)
                chosen = [n] if n is not None else None
            else:
                chosen = self._fit_gang(self._onprem, tj.nodes, tj.per_node, tj.gpu_model, False)
                if chosen is None and tj.may_burst:
                    chosen = self._fit_gang(self._cloud, tj.nodes, tj.per_node, tj.gpu_model, True)
            if chosen is None:
                continue
            del self._pending[tj.id]
            self._start(sj, chosen, now)
            started += 1
        if started:
            self._snap = None
            self.version += 1
        return started

    # ---- QueueSource ---------------------------------------------------------------------------
    def snapshot(self) -> QueueSnapshot:
        if self.fail_next_snapshot:
            msg, self.fail_next_snapshot = self.fail_next_snapshot, ""
            raise QueueError(msg)
        if self._snap is None:
            if not self._pending_sorted:
                self._pending = dict(sorted(self._pending.items(), key=lambda kv: (kv[1].submit, kv[0])))
                self._pending_sorted = True
            views = self._node_view
            nodes: list[Node] = []
            for node in self.nodes:
                if not node.alive:
                    continue
                v = views.get(node.idx)
                if v is None:
                    v = views[node.idx] = Node(
                        name=node.name,
                        gpus=node.gpus,
                        gpus_used=node.gpus - node.free,
                        gpu_model=node.model,
                        schedulable=node.schedulable,
                        instance_id=node.instance_id,
                        running_jobs=len(node.jobs),
                    )
                nodes.append(v)
            self._snap = QueueSnapshot(
                pending=tuple(sj.job for sj in self._pending.values()),
                running=tuple(sj.running_view for sj in self._running.values() if sj.running_view is not None),
                nodes=tuple(nodes),
            )
        return self._snap

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
