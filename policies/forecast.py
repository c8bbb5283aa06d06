"""When pending jobs will start on-prem: a short look ahead over the running jobs' predicted ends.

Overflow (policies/overflow.py) bursts a job that nothing can take *now* once it has waited its
threshold. Often the GPUs it needs are about to free up: the running jobs on a node are young
and most jobs of their size end quickly. This module predicts that, from what a queue shows and
what burst has learnt (never a job's true duration):

* each running on-prem job ends by ``start + elapsed + r_q``, where ``r_q`` is the
  ``start_confidence`` quantile of its remaining time given how long it has run
  (policies/remaining.py), or by its time limit when the queue has one, whichever is earlier;
  a job whose remaining time the evidence cannot bound frees nothing;
* the on-prem scheduler is replayed forward over those ends up to the latest deadline: at
  ``now`` and at each predicted end, pending jobs in submission order each start if they fit
  (best fit on one node; a gang on that many distinct nodes), nothing reserved. Every pending
  job takes part, including jobs counted on burst capacity (the scheduler may put them on-prem
  first): that only makes the predicted starts later, never earlier.

A due job is *held* (not burst this tick) when the replay starts it on-prem by its deadline,
``submit + wait_target - tick``. It is looked at again next tick with fresh evidence, and bursts
then if the prediction no longer holds; overflow holds a job only while that burst would still
join within the target (policies/overflow.py).

Cost: nothing unless some job is due and some running job is predicted to end before the
deadline; then O(events x pending) cheap comparisons.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from burst.domain import Job, Node, Timestamp
from policies.packing import model_ok
from policies.remaining import DurationModel


def predicted_ends(
    now: Timestamp, running: Iterable[Job], onprem: dict[str, int], durations: DurationModel, q: float, until: float,
) -> list[tuple[float, tuple[str, ...], int]]:
    """(predicted end, its on-prem node names, GPUs per node) of running on-prem jobs predicted
    to end by ``until``, earliest first."""
    out: list[tuple[float, tuple[str, ...], int]] = []
    for r in running:
        if r.start_time is None:
            continue
        names = tuple(n for n in r.node_names if n in onprem)
        if not names:
            continue
        elapsed = max(0.0, now - r.start_time)
        end = now + durations.remaining_quantile(r.gpus, elapsed, q)
        limit = r.expected_end()
        if limit is not None:
            end = min(end, max(now, limit))
        if end <= until and not math.isinf(end):
            out.append((end, names, r.per_node))
    out.sort(key=lambda e: e[0])
    return out


def predicted_starts(
    now: Timestamp,
    order: tuple[Job, ...],
    due: Iterable[Job],
    nodes: tuple[Node, ...],
    running: tuple[Job, ...],
    durations: DurationModel,
    *,
    wait_target_s: float,
    tick_s: float,
    q: float,
) -> dict[str, float]:
    """Pure: job id -> predicted on-prem start, for the jobs of ``due`` the forward replay starts
    by their deadline (``submit + wait_target_s - tick_s``). ``order``: every pending job, in
    submission order."""
    want = {j.id: j.submit_time + wait_target_s - tick_s for j in due}
    if not want:
        return {}
    horizon = max(want.values())
    free: dict[str, int] = {}
    model: dict[str, str] = {}
    for n in nodes:
        if not n.instance_id and n.schedulable:
            free[n.name] = max(0, n.gpus - n.gpus_used)
            model[n.name] = n.gpu_model
    if not free:
        return {}
    events = predicted_ends(now, running, free, durations, q, horizon)
    if not events:
        return {}  # nothing frees before the deadline: the common case, and free of cost
    waiting = list(order)
    found: dict[str, float] = {}

    def fits(job: Job) -> list[str] | None:
        per = job.per_node
        cands = sorted(
            (f, name) for name, f in free.items() if f >= per and (not job.gpu_model or model_ok(job.gpu_model, model[name]))
        )
        if len(cands) < job.nodes:
            return None
        return [name for _, name in cands[: job.nodes]]  # best fit: the fullest nodes that fit

    def schedule(t: float) -> None:
        nonlocal waiting
        top = max(free.values())
        left: list[Job] = []
        for job in waiting:
            if job.per_node > top:
                left.append(job)
                continue
            chosen = fits(job)
            if chosen is None:
                left.append(job)
                continue
            for name in chosen:
                free[name] -= job.per_node
            top = max(free.values())
            if job.id in want and t <= want[job.id]:
                found[job.id] = t
        waiting = left

    schedule(now)
    i = 0
    while i < len(events) and len(found) < len(want):
        t = events[i][0]
        while i < len(events) and events[i][0] == t:
            _, names, per = events[i]
            for name in names:
                free[name] += per
            i += 1
        schedule(t)
    return found
