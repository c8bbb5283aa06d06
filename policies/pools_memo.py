"""The overflow pass's capacity pools (:func:`policies.overflow.build_pools`), kept from the last
tick and updated for the nodes that changed, instead of rebuilt from every node.

Why it is exact. ``build_pools`` walks the nodes once: each node adds (at most) one entry to a
count per kind (on-prem: free GPUs and model; joined burst node: cloud, region, size, model and
free GPUs), or touches the gang bookkeeping (a joined idle node of a pending gang, a held node of
a gang seen running), or nothing; then the instances in flight fill the third pool. The pools
are the kinds' counts added in the order each kind first occurs in the node tuple. So, given
the last call's inputs and what each node contributed:

* when the instances are the very same objects (``is``, element by element), and the gang
  arguments are equal, and the node tuple has the same length with the same instance id at
  every position, the instance pass and every lookup of a node's instance answer as last time;
* a node at a position holding the very same object as last time contributes the same;
* so only the positions whose node object changed are looked at again, and the pools are the
  kinds' counts added in order of each kind's first position now, the same adds in the same
  order as a rebuild: the same buckets, keys and key order (first fit walks them in that order).

A changed node that touches the gang bookkeeping (before or after), or anything else that
differs, is a full rebuild (``build_pools`` itself). Frozen dataclasses throughout, and the last
inputs are held here, so an identity never stands for another object.

The simulator hands back the same node views while a node is unchanged (burst/sim/cluster.py)
and the store the same instance rows (burst/store/memory.py); a live adapter builds new objects
every tick and simply rebuilds, as before. Pure: a memo on immutable inputs, no clock, no I/O.
Tested against ``build_pools`` in tests/policies/test_pools_memo.py.
"""

from __future__ import annotations

from itertools import compress, count
from operator import is_, is_not

from burst.domain import GANG_HOLD_LABEL, Instance, InstanceState, Node, Purpose
from policies.overflow import ONPREM, Pools, build_pools, in_flight_pool, joined_key
from policies.packing import SlotPool

# What one node adds: None (nothing), ("o", free, model), ("j", cloud, region, gpus, model, free),
# or _GANG (gang bookkeeping: its order matters, so a change there rebuilds).
_Part = tuple[object, ...] | None
_GANG: tuple[object, ...] = ("gang",)


def _part(n: Node, inst: Instance | None, pending_gangs: frozenset[str], running_ids: frozenset[str]) -> _Part:
    """What ``build_pools``'s node loop does with ``n`` (kept in step with it; the equivalence
    test fails on any difference)."""
    if n.instance_id:
        if inst is not None and (inst.state is InstanceState.DRAINING or inst.purpose is Purpose.ON_DEMAND):
            return None
        held = GANG_HOLD_LABEL in n.labels
        if (pending_gangs and inst is not None and inst.state is InstanceState.JOINED and n.schedulable and n.idle
                and inst.gang_id and inst.for_jobs and inst.for_jobs[0] in pending_gangs):
            return _GANG
        if held:
            if inst is not None and inst.for_jobs and inst.for_jobs[0] in running_ids:
                return _GANG
            return None
        free = n.gpus - n.gpus_used if n.schedulable else 0
        if free > 0:
            if inst is not None:
                return ("j", inst.cloud, inst.region, n.gpus, n.gpu_model, free)
            return ("j", "cloud", "?", n.gpus, n.gpu_model, free)
        return None
    if n.schedulable and n.gpus > n.gpus_used:
        return ("o", n.gpus - n.gpus_used, n.gpu_model)
    return None


class PoolsMemo:
    """One per controller: ``build`` answers as :func:`build_pools` does, for any inputs."""

    __slots__ = ("rebuilds", "_nodes", "_instances", "_args", "_by_instance", "_parts", "_where", "_flying", "_gang",
                 "_uses_args")

    def __init__(self) -> None:
        self.rebuilds = 0  # full rebuilds so far (what the memo could not spare)
        self._nodes: tuple[Node, ...] | None = None
        self._instances: tuple[Instance, ...] = ()
        self._args: tuple[frozenset[str], frozenset[str], frozenset[str]] | None = None
        # Whether the last inputs read the job sets at all: only a gang instance or a held node
        # does (see _part and the instance pass). Without either, the pools do not depend on
        # them, and a tick whose pending/running sets moved (most ticks of a busy queue) is not
        # a reason to rebuild.
        self._uses_args = True
        self._by_instance: dict[str, Instance] = {}
        self._parts: list[_Part] = []
        self._where: dict[tuple[object, ...], set[int]] = {}  # part -> positions that add it
        self._flying = SlotPool()  # the in-flight pool as built, never handed out (copied)
        self._gang: tuple[dict[str, list[tuple[str, int, str]]], frozenset[str],
                          dict[str, list[tuple[str, bool, int, str]]], tuple[str, ...]] = ({}, frozenset(), {}, ())

    def build(
        self,
        nodes: tuple[Node, ...],
        instances: tuple[Instance, ...],
        pending_gangs: frozenset[str] = frozenset(),
        pending_ids: frozenset[str] = frozenset(),
        running_ids: frozenset[str] = frozenset(),
    ) -> Pools:
        """Same as ``build_pools(nodes, instances, pending_gangs, pending_ids, running_ids)``.
        The pools are new each call (the overflow pass takes from them); the gang maps are
        shared with the last answer and must be read only (the overflow pass only reads them)."""
        args = (pending_gangs, pending_ids, running_ids)
        last = self._nodes
        if (
            last is None
            or len(nodes) != len(last)
            or (self._uses_args and args != self._args)
            or len(instances) != len(self._instances)
            or not all(map(is_, instances, self._instances))
        ):
            return self._rebuild(nodes, instances, args)
        if nodes is not last:
            parts, where, by_instance = self._parts, self._where, self._by_instance
            changed = list(compress(count(), map(is_not, nodes, last)))
            fresh: list[tuple[int, _Part]] = []
            for pos in changed:
                n, old = nodes[pos], last[pos]
                if n.instance_id != old.instance_id or (GANG_HOLD_LABEL in n.labels and not self._uses_args):
                    return self._rebuild(nodes, instances, args)
                p = _part(n, by_instance.get(n.instance_id) if n.instance_id else None, pending_gangs, running_ids)
                if p is _GANG or parts[pos] is _GANG:
                    return self._rebuild(nodes, instances, args)
                fresh.append((pos, p))
            for pos, p in fresh:
                was = parts[pos]
                if was == p:
                    continue
                if was is not None:
                    at = where[was]
                    at.discard(pos)
                    if not at:
                        del where[was]
                if p is not None:
                    where.setdefault(p, set()).add(pos)
                parts[pos] = p
            self._nodes = nodes
        self._args = args
        return self._assemble()

    def _rebuild(self, nodes: tuple[Node, ...], instances: tuple[Instance, ...],
                 args: tuple[frozenset[str], frozenset[str], frozenset[str]]) -> Pools:
        """From scratch, in one pass over the nodes: each node's part, then the instances in
        flight. A node in the gang bookkeeping (rare: a gang pending or seen running with
        nodes of its own) leaves it all to ``build_pools``."""
        self.rebuilds += 1
        by_instance = {i.id: i for i in instances}
        gangs, pending_ids, running_ids = args
        parts = [
            _part(n, by_instance.get(n.instance_id) if n.instance_id else None, gangs, running_ids) for n in nodes
        ]
        where: dict[tuple[object, ...], set[int]] = {}
        special = False
        for pos, p in enumerate(parts):
            if p is _GANG:
                special = True
            elif p is not None:
                where.setdefault(p, set()).add(pos)
        self._nodes, self._instances, self._args = nodes, instances, args
        self._uses_args = any(i.gang_id for i in instances) or any(GANG_HOLD_LABEL in n.labels for n in nodes
                                                                   if n.instance_id)
        self._by_instance, self._parts, self._where = by_instance, parts, where
        if special:
            pools = build_pools(nodes, instances, *args)
            self._flying = _copy(pools.flying)
            self._gang = (pools.gang_own, pools.reserved, pools.gang_joined, pools.stray_holds)
            return pools
        node_of = {n.instance_id for n in nodes if n.instance_id}
        gang_own: dict[str, list[tuple[str, int, str]]] = {}
        flying = in_flight_pool(instances, node_of, gangs, pending_ids, gang_own)
        self._flying = flying
        self._gang = (gang_own, frozenset(), {}, ())
        return self._assemble()

    def _assemble(self) -> Pools:
        onprem, joined = SlotPool(), SlotPool()
        where = self._where
        # Kinds in order of first position: the order build_pools's count dicts have.
        for p in sorted(where, key=lambda k: min(where[k])):
            c = len(where[p])
            if p[0] == "o":
                onprem.add(p[1], ONPREM, p[2], c)  # type: ignore[arg-type]
            else:
                _, cloud, region, gpus, model, free = p
                loc, m = joined_key(cloud, region, gpus, model)  # type: ignore[arg-type]
                joined.add(free, loc, m, c)  # type: ignore[arg-type]
        gang_own, reserved, gang_joined, stray = self._gang
        return Pools(onprem, joined, _copy(self._flying), gang_own, reserved, gang_joined, stray)


def _copy(pool: SlotPool) -> SlotPool:
    """A pool in the same state (same buckets, keys and key order), independent of ``pool``."""
    out = SlotPool()
    out.buckets = {k: dict(b) for k, b in pool.buckets.items()}
    out.total = dict(pool.total)
    out.max_free = pool.max_free
    return out
