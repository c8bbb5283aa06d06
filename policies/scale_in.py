"""When burst capacity goes back: drain idle nodes, terminate empty drained ones.

Rules, in order of precedence:

* A node with running work is never terminated. Draining only stops new work landing on it.
* An overflow instance whose node has been idle for ``idle_timeout_s`` is drained; once drained
  and still idle it is terminated (cordon, then delete, as Karpenter and Cluster Autoscaler do).
* An instance that has not joined within ``join_timeout_s`` of its launch is terminated: it is
  costing money and serving nobody (bad image, bootstrap failure, wrong network).
* On-demand and grand-challenge instances are not scaled in for idleness; their owners' time
  limits govern them (see policies/requests.py).
* An instance in LOST or LAUNCH_FAILED is closed in the books (the controller does that).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from burst.domain import Action, Drain, Instance, InstanceState, Node, Purpose, Terminate, Timestamp
from policies.model import ScaleInConfig


@dataclass(frozen=True, slots=True)
class ScaleInResult:
    actions: tuple[Action, ...]
    wake_at: Timestamp | None


def nodes_by_instance(nodes: Iterable[Node]) -> dict[str, Node]:
    """Burst nodes by the id of their instance (the last one wins if two claim the same id)."""
    return {n.instance_id: n for n in nodes if n.instance_id}


def _fmt_min(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def decide_scale_in(
    now: Timestamp,
    instances: tuple[Instance, ...],
    nodes_by_instance: dict[str, Node],
    cfg: ScaleInConfig,
    tick_s: float,
    wanted: frozenset[str] = frozenset(),
) -> ScaleInResult:
    """``wanted``: instances the overflow pass is counting on this tick; they are left alone."""
    actions: list[Action] = []
    wake: float | None = None

    def at(t: float) -> None:
        nonlocal wake
        if wake is None or t < wake:
            wake = t

    for inst in instances:
        node = nodes_by_instance.get(inst.id)
        st = inst.state
        if st in (InstanceState.PLANNED, InstanceState.LAUNCHING, InstanceState.RUNNING):
            if node is not None:
                continue  # the controller will mark it joined on this tick's record step
            started = inst.launched_at if inst.launched_at is not None else inst.created_at
            if st is InstanceState.PLANNED:
                continue  # the executor's recovery owns intents that never reached the cloud
            if inst.purpose is Purpose.ON_DEMAND and st is InstanceState.RUNNING:
                continue  # a user's own instance never joins the scheduler; its time limit governs it
            deadline = started + cfg.join_timeout_s
            if now >= deadline:
                actions.append(
                    Terminate(
                        inst.id, f"did not join the scheduler within {_fmt_min(cfg.join_timeout_s)}", cool_offer=True
                    )
                )
            else:
                at(deadline)
            continue
        if inst.purpose is not Purpose.OVERFLOW:
            continue
        if st is InstanceState.JOINED:
            if node is None or inst.id in wanted:
                continue
            if inst.idle_since is None or not node.idle:  # the field before the property (hot)
                continue
            due = inst.idle_since + cfg.idle_timeout_s
            if now >= due:
                actions.append(Drain(inst.id, f"idle for {_fmt_min(now - inst.idle_since)} (timeout {_fmt_min(cfg.idle_timeout_s)})"))
                at(now + tick_s)
            else:
                at(due)
        elif st is InstanceState.DRAINING:
            if node is None or node.idle:
                why = "drained and empty" if node is not None else "node already left the scheduler"
                actions.append(Terminate(inst.id, why))
            else:
                at(now + tick_s)
    return ScaleInResult(tuple(actions), wake)
