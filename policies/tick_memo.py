"""What the pure policies may keep from one tick to the next: memos on immutable inputs, each
keyed by the identity of the objects it was computed from, so it answers exactly as the
computation from scratch (each is tested against it) and simply recomputes when handed other
objects. The controller holds one :class:`TickMemo` and puts it in every
:class:`policies.model.Snapshot` (``memo``); a snapshot without one is decided from scratch.

* ``pools``: the overflow pass's capacity pools, updated for the nodes that changed
  (policies/pools_memo.py);
* ``scale_in``: scale-in skipped on a tick where nothing falls due (policies/scale_in_memo.py);
* :meth:`TickMemo.nodes_by_instance`: burst nodes by instance id, built once per node tuple
  (the controller's reconcile and the policy's scale-in both ask, for the same tuple).
"""

from __future__ import annotations

from burst.domain import Node
from policies.pools_memo import PoolsMemo
from policies.scale_in import nodes_by_instance
from policies.scale_in_memo import ScaleInMemo


class TickMemo:
    __slots__ = ("pools", "scale_in", "_nodes", "_by_instance")

    def __init__(self) -> None:
        self.pools = PoolsMemo()
        self.scale_in = ScaleInMemo()
        self._nodes: tuple[Node, ...] | None = None
        self._by_instance: dict[str, Node] = {}

    def nodes_by_instance(self, nodes: tuple[Node, ...]) -> dict[str, Node]:
        """:func:`policies.scale_in.nodes_by_instance` of ``nodes``, remembered for the last
        tuple asked (the same object). The dict is shared between the callers: read only."""
        if nodes is not self._nodes:
            self._by_instance = nodes_by_instance(nodes)
            self._nodes = nodes
        return self._by_instance
