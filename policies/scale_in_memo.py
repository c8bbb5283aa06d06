"""Skip :func:`policies.scale_in.decide_scale_in` on a tick where provably nothing falls due.

Why it is exact. Per instance, ``decide_scale_in`` either does nothing whatever the time (a
joined node that is busy, an instance booting whose node is there, one that is not overflow
capacity, ...), or waits for one moment that does not depend on ``now`` (a join deadline:
launch + ``join_timeout_s``; an idle timeout: ``idle_since + idle_timeout_s``), acting once
``now`` reaches it and asking to be woken then before; or it depends on ``now`` itself (a
draining instance: terminated, or looked at again a tick later). :func:`due_at` gives that
moment (``inf``: never; ``-inf``: depends on ``now``). So when every instance's moment lies
after ``now``, the answer is no action and a wake at the earliest moment (None when none is
finite), exactly what the full pass returns; otherwise the full pass decides.

The moment reads only the instance row, its node and the settings: it is kept per position and
recomputed only where the row or the node is another object than last tick (frozen dataclasses,
held here, so an identity never stands for another object). Pure: a memo on immutable inputs.
Tested against ``decide_scale_in`` in tests/policies/test_scale_in_memo.py.
"""

from __future__ import annotations

import math
from itertools import compress, count
from operator import attrgetter, is_not, or_

from burst.domain import Instance, InstanceState, Node, Purpose, Timestamp
from policies.model import ScaleInConfig
from policies.scale_in import ScaleInResult, decide_scale_in

_ID = attrgetter("id")
_IN_FLIGHT = (InstanceState.PLANNED, InstanceState.LAUNCHING, InstanceState.RUNNING)


def due_at(inst: Instance, node: Node | None, cfg: ScaleInConfig) -> float:
    """When ``decide_scale_in`` first acts on ``inst`` (kept in step with it; the equivalence
    test fails on any difference): ``inf`` never, ``-inf`` it depends on the time itself."""
    st = inst.state
    if st in _IN_FLIGHT:
        if node is not None or st is InstanceState.PLANNED:
            return math.inf
        if inst.purpose is Purpose.ON_DEMAND and st is InstanceState.RUNNING:
            return math.inf
        started = inst.launched_at if inst.launched_at is not None else inst.created_at
        return started + cfg.join_timeout_s
    if inst.purpose is not Purpose.OVERFLOW:
        return math.inf
    if st is InstanceState.JOINED:
        if node is None or inst.idle_since is None or not node.idle:
            return math.inf
        return inst.idle_since + cfg.idle_timeout_s
    if st is InstanceState.DRAINING:
        return -math.inf
    return math.inf


class ScaleInMemo:
    """One per controller: ``decide`` answers as ``decide_scale_in`` (without ``wanted``)."""

    __slots__ = ("skipped", "_cfg", "_instances", "_nodes", "_due")

    def __init__(self) -> None:
        self.skipped = 0  # ticks answered without the full pass
        self._cfg: ScaleInConfig | None = None
        self._instances: tuple[Instance, ...] = ()
        self._nodes: list[Node | None] = []
        self._due: list[float] = []

    def decide(
        self, now: Timestamp, instances: tuple[Instance, ...], nodes_by_instance: dict[str, Node],
        cfg: ScaleInConfig, tick_s: float,
    ) -> ScaleInResult:
        if not instances:  # nothing to scale in; the positions kept stay valid (compared by identity)
            return ScaleInResult((), None)
        nodes = list(map(nodes_by_instance.get, map(_ID, instances)))
        if (cfg is not self._cfg and cfg != self._cfg) or len(instances) != len(self._instances):
            self._due = [due_at(i, n, cfg) for i, n in zip(instances, nodes, strict=True)]
        else:
            due = self._due
            for pos in compress(count(), map(or_, map(is_not, instances, self._instances), map(is_not, nodes, self._nodes))):
                due[pos] = due_at(instances[pos], nodes[pos], cfg)
        self._cfg, self._instances, self._nodes = cfg, instances, nodes
        first = min(self._due, default=math.inf)
        if first > now:
            self.skipped += 1
            return ScaleInResult((), None if first == math.inf else first)
        return decide_scale_in(now, instances, nodes_by_instance, cfg, tick_s)
