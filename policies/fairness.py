"""Per-team fairness of burst capacity: limits on concurrent burst GPUs and weighted fair share.

Pure: no clock, no I/O. Active only when ``FairnessConfig.teams`` names at least one team; with
no teams configured :func:`order_planned` is never called and burst stays oldest-first.

**Teams.** The queue adapters put the scheduler's grouping into ``Job.team``: the Slurm account,
or the Kubernetes team label (default: the namespace). ``FairnessConfig.members`` maps those raw
names to a team (several accounts or namespaces may form one team); a name not mapped is its
own team, with ``default_weight`` and no limit.

**Limits.** A team's concurrent burst GPUs (its live overflow instances, booting or joined, plus
what this plan launches for it) never exceed ``TeamPolicy.max_gpus`` (0: no limit). A launch that
would cross it is held back, with a note; it is reconsidered every tick.

**Fair share.** Capacity goes by progressive filling over the *dominant share* of each team, as
Kueue's fair sharing and Armada do: a team's share is its burst GPUs in use divided by its weight
(GPUs are the one resource burst rents, so the dominant share is the GPU share). Each step gives
the next launch group to the team with the lowest share that still has a group waiting; so while
the budget or a fleet limit binds, concurrent burst GPUs, and therefore burst GPU-hours, split
by weight. Ties go to the team with fewer burst GPU-hours used so far (``hours``, from the
snapshot's live instances and any ledger the controller supplies), then by name. Within a team,
groups go by the highest job priority in them, then oldest job, then intent id.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from burst.domain import Instance, InstanceState, Job, Launch, Purpose


@dataclass(frozen=True, slots=True)
class TeamPolicy:
    """One team: its fair-share weight (> 0) and its limit on concurrent burst GPUs (0: none)."""

    weight: float = 1.0
    max_gpus: int = 0


def _no_teams() -> Mapping[str, TeamPolicy]:
    return MappingProxyType({})


def _no_members() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class FairnessConfig:
    """``teams``: team name -> policy. ``members``: Slurm account / namespace / team label -> team."""

    teams: Mapping[str, TeamPolicy] = field(default_factory=_no_teams)
    members: Mapping[str, str] = field(default_factory=_no_members)
    default_weight: float = 1.0

    @property
    def enabled(self) -> bool:
        return bool(self.teams)

    def team_of(self, raw: str) -> str:
        """The configured team of a job's or instance's raw team (account, namespace, label)."""
        return self.members.get(raw, raw)

    def policy(self, team: str) -> TeamPolicy:
        return self.teams.get(team) or TeamPolicy(weight=self.default_weight)


@dataclass(frozen=True, slots=True)
class Claim:
    """One indivisible request for burst capacity (a launch group: one instance, or a whole gang)."""

    key: str
    team: str
    gpus: int
    priority: int
    submit_time: float


@dataclass(frozen=True, slots=True)
class Usage:
    """A team's burst use now: concurrent GPUs and GPU-hours so far."""

    gpus: int = 0
    hours: float = 0.0


@dataclass(frozen=True, slots=True)
class FairOrder:
    order: tuple[str, ...]  # claim keys, in the order capacity should go to them
    over_limit: tuple[str, ...]  # claim keys held back by their team's limit
    notes: tuple[str, ...] = ()


def usage_by_team(instances: Iterable[Instance], now: float, cfg: FairnessConfig) -> dict[str, Usage]:
    """Burst GPUs in use per team: live overflow instances (booting ones count, they are paid)."""
    gpus: dict[str, int] = {}
    hours: dict[str, float] = {}
    for i in instances:
        if i.purpose is not Purpose.OVERFLOW or i.state in (InstanceState.TERMINATED, InstanceState.LAUNCH_FAILED):
            continue
        t = cfg.team_of(i.team)
        gpus[t] = gpus.get(t, 0) + i.gpus
        start = i.launched_at if i.launched_at is not None else i.created_at
        hours[t] = hours.get(t, 0.0) + i.gpus * max(0.0, now - start) / 3600.0
    return {t: Usage(gpus[t], hours[t]) for t in gpus}


def fair_order(claims: Sequence[Claim], usage: Mapping[str, Usage], cfg: FairnessConfig) -> FairOrder:
    """Order ``claims`` by weighted dominant share (progressive filling), holding back any claim
    that would take its team past ``max_gpus``. Every claim appears in exactly one of ``order``
    and ``over_limit``. Deterministic: total tie-breaks on share, hours, team name, key."""
    queues: dict[str, list[Claim]] = {}
    for c in claims:
        queues.setdefault(c.team, []).append(c)
    for q in queues.values():
        q.sort(key=lambda c: (-c.priority, c.submit_time, c.key), reverse=True)  # pop() takes the next
    used = {t: usage.get(t, Usage()).gpus for t in queues}
    hours = {t: usage.get(t, Usage()).hours for t in queues}
    order: list[str] = []
    held: list[str] = []
    notes: list[str] = []
    while queues:
        team = min(queues, key=lambda t: (used[t] / cfg.policy(t).weight, hours[t], t))
        c = queues[team].pop()
        if not queues[team]:
            del queues[team]
        limit = cfg.policy(team).max_gpus
        if limit and used[team] + c.gpus > limit:
            held.append(c.key)
            notes.append(f"team {team} at its limit of {limit} burst GPUs ({used[team]} in use): {c.key} waits")
            continue
        used[team] += c.gpus
        order.append(c.key)
    return FairOrder(tuple(order), tuple(held), tuple(notes))


Planned = tuple[float, list[Launch]]


def order_planned(
    planned: Sequence[Planned], jobs: Sequence[Job], instances: Iterable[Instance], now: float, cfg: FairnessConfig
) -> tuple[list[Planned], list[str]]:
    """decide's hook: reorder its planned launch groups (``(oldest submit, launches)``) by fair
    share and drop those over a team limit. A group's team is its first job's (``Launch.team``);
    its GPUs are the instances' GPUs, which is what the limit counts."""
    by_id = {j.id: j for j in jobs}
    claims: list[Claim] = []
    by_key: dict[str, Planned] = {}
    for p in planned:
        first = p[1][0]
        members = [by_id[j] for j in first.for_jobs if j in by_id]
        claims.append(
            Claim(
                key=first.intent_id,
                team=cfg.team_of(first.team),
                gpus=sum(lc.offer.gpu_count for lc in p[1]),
                priority=max((j.priority for j in members), default=0),
                submit_time=p[0],
            )
        )
        by_key[first.intent_id] = p
    fo = fair_order(claims, usage_by_team(instances, now, cfg), cfg)
    return [by_key[k] for k in fo.order], list(fo.notes)
