"""Bin-packing: GPU slot pools for virtual scheduling, and packing new demand onto instances.

Two jobs live here:

* :class:`SlotPool` answers "would this job fit on capacity that exists or is already coming?"
  It is how the overflow policy avoids launching for a job that a free on-prem GPU, an idle burst
  node or an instance still booting will take anyway (the same idea as Karpenter's scheduling
  simulation over existing and in-flight nodes). Nodes are kept as anonymous buckets keyed by
  free-GPU count, location and GPU model, so a query costs O(max GPUs per node), not O(nodes):
  a tick over 100k pending jobs must stay well under a second.
* :func:`pack_small_jobs` turns single-node jobs that need new capacity into instance choices,
  sharing a larger instance when that is cheaper per GPU than one right-sized instance each.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from burst.domain import Job, Offer

Key = tuple[str, str]  # (location, gpu_model); location is "onprem" or "cloud/region"


def model_ok(want: str, have: str) -> bool:
    """GPU models match case-insensitively: Slurm's GRES type says ``a100``, the catalog ``A100``."""
    return not want or want.casefold() == have.casefold()


class SlotPool:
    """Free GPU slots of many nodes, bucketed by free count.

    ``buckets[k][(location, model)]`` is the number of nodes with exactly ``k`` free GPUs.
    """

    __slots__ = ("buckets", "total", "max_free")

    def __init__(self) -> None:
        self.buckets: dict[int, dict[Key, int]] = {}
        self.total: dict[int, int] = {}
        self.max_free = 0

    def add(self, free: int, location: str, model: str, count: int = 1) -> None:
        if free <= 0 or count <= 0:
            return
        b = self.buckets.setdefault(free, {})
        key = (location, model)
        b[key] = b.get(key, 0) + count
        self.total[free] = self.total.get(free, 0) + count
        if free > self.max_free:
            self.max_free = free

    def _remove(self, free: int, key: Key, count: int = 1) -> None:
        b = self.buckets[free]
        left = b[key] - count
        if left:
            b[key] = left
        else:
            del b[key]
        self.total[free] -= count
        if self.total[free] == 0 and free == self.max_free:
            while self.max_free > 0 and self.total.get(self.max_free, 0) == 0:
                self.max_free -= 1

    def _best_fit(self, gpus: int, model: str, location: str | None = None) -> tuple[int, Key] | None:
        """The node bucket with the fewest free GPUs >= ``gpus`` that matches: (free, key)."""
        if gpus > self.max_free:
            return None
        for k in range(gpus, self.max_free + 1):
            if not self.total.get(k):
                continue
            for key in self.buckets[k]:
                if (location is None or key[0] == location) and model_ok(model, key[1]):
                    return k, key
        return None

    def take(self, gpus: int, model: str = "", location: str | None = None) -> Key | None:
        """Reserve ``gpus`` on one node (best fit). Returns the node's (location, model) or None."""
        found = self._best_fit(gpus, model, location)
        if found is None:
            return None
        k, key = found
        self._remove(k, key)
        self.add(k - gpus, key[0], key[1])
        return key

    def pop_node(self, gpus: int, model: str = "") -> tuple[Key, int] | None:
        """Remove one node with at least ``gpus`` free (best fit) from the pool. Returns its
        (location, model) and how many GPUs it had free, or None."""
        found = self._best_fit(gpus, model)
        if found is None:
            return None
        k, key = found
        self._remove(k, key)
        return key, k

    def gang_slots(self, per_node: int, model: str = "") -> dict[Key, int]:
        """Per (location, model): how many nodes have at least ``per_node`` GPUs free."""
        per_loc: dict[Key, int] = {}
        if per_node > self.max_free:
            return per_loc
        for k in range(per_node, self.max_free + 1):
            for key, c in self.buckets.get(k, {}).items():
                if model_ok(model, key[1]):
                    per_loc[key] = per_loc.get(key, 0) + c
        return per_loc

    def take_nodes(self, key: Key, nodes: int, per_node: int) -> int:
        """Reserve ``per_node`` GPUs on up to ``nodes`` nodes of ``key``; returns how many."""
        need = nodes
        for k in range(per_node, self.max_free + 1):
            have = self.buckets.get(k, {}).get(key, 0)
            use = min(have, need)
            if use:
                self._remove(k, key, use)
                self.add(k - per_node, key[0], key[1], use)
                need -= use
            if not need:
                break
        return nodes - need

    def take_gang(self, nodes: int, per_node: int, model: str = "") -> Key | None:
        """Reserve ``per_node`` GPUs on each of ``nodes`` nodes in one location."""
        for key, c in sorted(self.gang_slots(per_node, model).items()):
            if c >= nodes:
                self.take_nodes(key, nodes, per_node)
                return key
        return None


@dataclass(frozen=True, slots=True)
class Bin:
    """One new instance and the jobs meant for it."""

    offer: Offer
    jobs: tuple[Job, ...]


Ranker = Callable[[int, Job], Sequence[Offer]]
"""Given a GPU count and a job (for its constraints), eligible offers best first."""


def pack_small_jobs(jobs: Sequence[Job], rank: Ranker, *, pack: bool, min_saving: float) -> tuple[list[Bin], list[Job]]:
    """Choose instances for single-node ``jobs``. Returns (bins, jobs with no eligible offer).

    Without packing every job gets the cheapest instance (by hourly price) that fits it. With
    packing, jobs are first-fit-decreasing into the cheapest-per-GPU multi-GPU offer, and such a
    bin is kept only when it costs at most ``(1 - min_saving)`` of the right-sized instances its
    jobs would otherwise get. Jobs with different GPU-model requirements never share a bin.
    """
    bins: list[Bin] = []
    unplaceable: list[Job] = []
    singles: dict[tuple[int, str, float], Offer | None] = {}

    def single_for(job: Job) -> Offer | None:
        key = (job.gpus, job.gpu_model, job.min_gpu_memory_gib)
        if key not in singles:
            ranked = rank(job.gpus, job)
            singles[key] = min(ranked, key=lambda o: (o.price_per_hour, o.price_per_gpu_hour, o.key)) if ranked else None
        return singles[key]

    groups: dict[tuple[str, float], list[Job]] = {}
    for j in jobs:
        groups.setdefault((j.gpu_model, j.min_gpu_memory_gib), []).append(j)

    for (_model, _mem), group in groups.items():
        remaining = sorted(group, key=lambda j: (-j.gpus, j.submit_time, j.id))
        if pack and len(remaining) > 1:
            probe = remaining[0]
            bulk = [o for o in rank(2, probe) if o.gpu_count > 1]
            bulk.sort(key=lambda o: (o.price_per_gpu_hour, o.key))
            for offer in bulk[:3]:
                while remaining:
                    free = offer.gpu_count
                    chosen: list[Job] = []
                    rest: list[Job] = []
                    for j in remaining:
                        if j.gpus <= free:
                            chosen.append(j)
                            free -= j.gpus
                        else:
                            rest.append(j)
                    if len(chosen) < 2:
                        break
                    alone = 0.0
                    for j in chosen:
                        s = single_for(j)
                        alone += s.price_per_hour if s else float("inf")
                    if offer.price_per_hour <= (1.0 - min_saving) * alone:
                        bins.append(Bin(offer, tuple(sorted(chosen, key=lambda j: (j.submit_time, j.id)))))
                        remaining = rest
                    else:
                        break
        for j in sorted(remaining, key=lambda j: (j.submit_time, j.id)):
            s = single_for(j)
            if s is None:
                unplaceable.append(j)
            else:
                bins.append(Bin(s, (j,)))
    return bins, unplaceable
