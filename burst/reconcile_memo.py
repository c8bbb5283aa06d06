"""Skip :func:`policies.reconcile.reconcile_instance` for instances that needed nothing last
tick and whose inputs are the very same objects now.

Why it is exact: when the instance's cloud was listed (``observed``) and it is not PLANNED,
every rule of ``reconcile_instance`` that answers :data:`~policies.reconcile.NOTHING` reads only
the store row, the cloud listing and the scheduler node (their states, ``interrupted``,
``idle``, ``idle_since``), never ``now``, the settings or ``jobs_pending``: the rules that read
the clock (listing grace, PLANNED timeout, joined_at, idle_since) all answer something else. The
three inputs are frozen dataclasses, so the same objects (``is``, held here, so no id is reused)
carry the same values, and the answer is NOTHING again. Anything else (a changed row, listing or
node, a PLANNED intent, an unlisted cloud, any non-NOTHING answer) is decided afresh.

``decide_all`` also remembers its last tick position by position: when every cloud was listed
and the live instances are the very objects of its last call in the same order, it looks only
at the positions whose listing or node is another object or that were not quiet, with the
identity comparisons done at C speed (no step per instance in Python): the rest are the same
three objects that answered NOTHING.

The simulator hands back the same objects while nothing changed (burst/sim/cloud.py caches each
instance's listing, burst/sim/cluster.py its nodes, burst/store/memory.py its rows); a live
adapter builds new ones each tick and simply never hits.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from itertools import compress, count
from operator import attrgetter, is_, is_not, or_

from burst.domain import CloudInstance, Instance, InstanceState, Job, Node, Timestamp
from policies.reconcile import NOTHING, Decision, ReconcileSettings, reconcile_instance

_Key = tuple[Instance, CloudInstance | None, Node | None]
_ID = attrgetter("id")


class _PendingIds:
    """Whether a PLANNED intent still has a job pending (``reconcile_instance``'s
    ``jobs_pending``; True for any other instance). The id set is built on the first ask: most
    ticks have no PLANNED intent and never pay for it."""

    __slots__ = ("_jobs", "_ids")

    def __init__(self, jobs: Iterable[Job]) -> None:
        self._jobs = jobs
        self._ids: set[str] | None = None

    def any_for(self, inst: Instance) -> bool:
        if inst.state is not InstanceState.PLANNED or not inst.for_jobs:
            return True
        if self._ids is None:
            self._ids = {j.id for j in self._jobs}
        return any(j in self._ids for j in inst.for_jobs)


class ReconcileMemo:
    """Per controller. ``start()`` once per tick, then ``decide`` per live instance: instances
    not decided this tick are forgotten at the next ``start()``."""

    __slots__ = ("_quiet", "_next", "_live", "_ids", "_clouds", "_nodes", "_loud")

    def __init__(self) -> None:
        self._quiet: dict[str, _Key] = {}
        self._next: dict[str, _Key] = {}
        # decide_all's last tick, position by position (its fast path): the live instances, their
        # ids, listings and nodes, and the positions that were not remembered as quiet.
        self._live: list[Instance] | None = None
        self._ids: list[str] = []
        self._clouds: list[CloudInstance | None] = []
        self._nodes: list[Node | None] = []
        self._loud: list[int] = []

    def start(self) -> None:
        self._quiet, self._next = self._next, {}
        self._live = None  # decided one by one: decide_all's positions no longer hold

    def decide(
        self,
        inst: Instance,
        cloud: CloudInstance | None,
        node: Node | None,
        now: Timestamp,
        settings: ReconcileSettings,
        *,
        observed: bool,
        jobs_pending: bool,
    ) -> Decision:
        """Same answer as ``reconcile_instance(inst, cloud, node, now, settings, observed=...,
        jobs_pending=...)`` (see the module docstring for why)."""
        if observed:
            q = self._quiet.get(inst.id)
            if q is not None and q[0] is inst and q[1] is cloud and q[2] is node:
                self._next[inst.id] = q
                return NOTHING
        d = reconcile_instance(inst, cloud, node, now, settings, observed=observed, jobs_pending=jobs_pending)
        if d is NOTHING and observed and inst.state is not InstanceState.PLANNED:
            self._next[inst.id] = (inst, cloud, node)
        return d

    def decide_all(
        self,
        live: Iterable[Instance],
        cloud: Mapping[str, CloudInstance],
        nodes: Mapping[str, Node],
        unobserved: set[str],
        pending: Iterable[Job],
        now: Timestamp,
        settings: ReconcileSettings,
    ) -> list[tuple[Instance, Decision]]:
        """One tick (``start()`` included): each live instance's decision, in ``live``'s order,
        with the NOTHINGs left out. Same as calling :meth:`decide` per instance with its listing
        (``cloud[id]``), its node (``nodes[id]``), ``observed`` (its cloud not in
        ``unobserved``) and, for a PLANNED intent, whether one of its jobs is in ``pending``;
        the remembered case is checked here without a call per instance (the hot path)."""
        live = list(live)
        if not live:  # nothing live (overflow off, say): nothing to remember, no bookkeeping
            self._quiet, self._next, self._live = self._next, {}, None
            return []
        last = self._live
        if not unobserved and last is not None and len(live) == len(last) and all(map(is_, live, last)):
            return self._same_live(live, cloud, nodes, pending, now, settings)
        quiet = self._quiet = self._next
        nxt: dict[str, _Key] = {}
        self._next = nxt
        planned = InstanceState.PLANNED
        waiting = _PendingIds(pending)
        out: list[tuple[Instance, Decision]] = []
        loud: list[int] = []
        for pos, inst in enumerate(live):
            iid = inst.id
            c = cloud.get(iid)
            n = nodes.get(iid)
            observed = inst.cloud not in unobserved
            if observed:
                q = quiet.get(iid)
                if q is not None and q[0] is inst and q[1] is c and q[2] is n:
                    nxt[iid] = q
                    continue
            d = reconcile_instance(inst, c, n, now, settings, observed=observed, jobs_pending=waiting.any_for(inst))
            if d is NOTHING and observed and inst.state is not planned:
                nxt[iid] = (inst, c, n)
                continue
            loud.append(pos)
            if d is not NOTHING:
                out.append((inst, d))
        self._remember(live, cloud, nodes, loud, unobserved)
        return out

    def _remember(self, live: list[Instance], cloud: Mapping[str, CloudInstance], nodes: Mapping[str, Node],
                  loud: list[int], unobserved: set[str]) -> None:
        if unobserved:
            self._live = None
            return
        ids = list(map(_ID, live))
        if len(set(ids)) != len(ids):
            self._live = None  # one id twice: the remembered dict cannot stand for positions
            return
        self._live, self._ids = live, ids
        self._clouds = list(map(cloud.get, ids))
        self._nodes = list(map(nodes.get, ids))
        self._loud = loud

    def _same_live(
        self, live: list[Instance], cloud: Mapping[str, CloudInstance], nodes: Mapping[str, Node],
        pending: Iterable[Job], now: Timestamp, settings: ReconcileSettings,
    ) -> list[tuple[Instance, Decision]]:
        """decide_all when every cloud was listed and the live instances are the very objects of
        the last decide_all, in the same order: only the positions whose listing or node is
        another object, or that were not remembered as quiet, are looked at (the others are
        quiet again: the same three objects), without a step per instance in Python."""
        ids = self._ids
        clouds = list(map(cloud.get, ids))
        nds = list(map(nodes.get, ids))
        todo = set(self._loud)
        todo.update(compress(count(), map(or_, map(is_not, clouds, self._clouds), map(is_not, nds, self._nodes))))
        # The remembered dict is carried over: the quiet positions not in todo keep their entry.
        quiet = self._quiet = self._next
        planned = InstanceState.PLANNED
        waiting = _PendingIds(pending)
        out: list[tuple[Instance, Decision]] = []
        loud: list[int] = []
        for pos in sorted(todo):
            inst, c, n = live[pos], clouds[pos], nds[pos]
            iid = inst.id
            q = quiet.get(iid)
            if q is not None and q[0] is inst and q[1] is c and q[2] is n:
                continue
            d = reconcile_instance(inst, c, n, now, settings, observed=True, jobs_pending=waiting.any_for(inst))
            if d is NOTHING and inst.state is not planned:
                quiet[iid] = (inst, c, n)
                continue
            quiet.pop(iid, None)
            loud.append(pos)
            if d is not NOTHING:
                out.append((inst, d))
        self._clouds, self._nodes, self._loud = clouds, nds, loud
        return out
