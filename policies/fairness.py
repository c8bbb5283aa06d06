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
Kueue's fair sharing and Armada do. GPUs are the one resource burst rents, so the dominant share
is the GPU share, measured in burst GPU-hours: a team's share is

    (GPU-hours used in the window + GPUs held now x horizon_h) / weight

where the GPU-hours are those of its ended instances (the ledger: ``Snapshot.team_gpu_hours``)
and of its live ones so far, and the GPUs held now are its live overflow instances'. Each step
gives the next launch group to the team with the lowest share that still has a group waiting,
and adds that group's GPUs to its holding; so while the budget or a fleet limit binds, burst
GPU-hours split by weight over time, a team that had more than its share earlier waiting until
the others catch up. Ties go by team name. Within a team, groups go by the highest job priority
in them, then oldest job, then intent id. :func:`rebalance` keeps capacity turning over so
that a team holding joined nodes cannot keep them against the shares.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

from burst.domain import Action, Drain, Instance, InstanceState, Job, Launch, Purpose, Terminate, Undrain

if TYPE_CHECKING:
    from policies.model import Snapshot


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
    window_s: float = 7 * 24 * 3600.0  # GPU-hours older than this are forgotten (Slurm's decay: 7 days)
    horizon_h: float = 1.0  # GPUs held now weigh as this many hours of use to come

    @property
    def enabled(self) -> bool:
        return bool(self.teams)

    def team_of(self, raw: str) -> str:
        """The configured team of a job's or instance's raw team (account, namespace, label)."""
        return self.members.get(raw, raw)

    def policy(self, team: str) -> TeamPolicy:
        return self.teams.get(team) or TeamPolicy(weight=self.default_weight)

    def share(self, team: str, gpus: float, hours: float) -> float:
        """The team's weighted share: (GPU-hours used + GPUs held x horizon) / weight."""
        return (hours + gpus * self.horizon_h) / self.policy(team).weight


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


def usage_by_team(snap: Snapshot, cfg: FairnessConfig) -> dict[str, Usage]:
    """Burst GPUs per team: its live overflow instances (booting ones count: they are paid),
    each charged to the team it was launched for, as the spend ledger charges it. In join mode
    the scheduler decides which job runs on a joined node; what burst decides, and accounts
    for, is whose capacity it is."""
    gpus: dict[str, int] = {}
    hours: dict[str, float] = {}
    for i in snap.instances:
        if i.purpose is not Purpose.OVERFLOW or i.state in (InstanceState.TERMINATED, InstanceState.LAUNCH_FAILED):
            continue
        t = cfg.team_of(i.team)
        gpus[t] = gpus.get(t, 0) + i.gpus
        start = i.launched_at if i.launched_at is not None else i.created_at
        hours[t] = hours.get(t, 0.0) + i.gpus * max(0.0, snap.now - start) / 3600.0
    for raw, h in snap.team_gpu_hours.items():
        t = cfg.team_of(raw)
        hours[t] = hours.get(t, 0.0) + h
        gpus.setdefault(t, 0)
    return {t: Usage(gpus[t], hours[t]) for t in gpus}


def ended_gpu_hours(instances: Iterable[Instance], now: float, cfg: FairnessConfig) -> dict[str, float]:
    """The ledger side of fair share: GPU-hours of *ended* overflow instances per raw team,
    counted within the window ``[now - window_s, now]`` (live ones are counted from the snapshot)."""
    since = now - cfg.window_s
    out: dict[str, float] = {}
    for i in instances:
        if i.purpose is not Purpose.OVERFLOW or i.state is not InstanceState.TERMINATED or i.launched_at is None:
            continue
        end = min(now, i.terminated_at if i.terminated_at is not None else now)
        h = i.gpus * max(0.0, end - max(i.launched_at, since)) / 3600.0
        if h > 0:
            out[i.team] = out.get(i.team, 0.0) + h
    return out


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
        team = min(queues, key=lambda t: (cfg.share(t, used[t], hours[t]), t))
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
    planned: Sequence[Planned], jobs: Sequence[Job], snap: Snapshot, cfg: FairnessConfig
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
    fo = fair_order(claims, usage_by_team(snap, cfg), cfg)
    return [by_key[k] for k in fo.order], list(fo.notes)


def rebalance(
    actions: Sequence[Action], launches: Sequence[Launch], due: Sequence[Job], snap: Snapshot, cfg: FairnessConfig
) -> tuple[list[Action], list[str]]:
    """decide's second hook, after its launches are final: give burst nodes back from teams above
    their share to teams waiting below it.

    A joined node is refilled by the scheduler the moment its job ends, so ordering launches
    alone would leave capacity with the team that holds it for as long as work keeps coming.
    For each team still waiting (a due job with no launch this tick), lowest share first, drain
    one node of the team highest above it, provided that team stays at or above the waiting
    team's share once the node has changed hands: the running job finishes, nothing new lands
    there, scale-in gives it back, and the next launch goes by fair share. A team above its own
    limit (after a configuration change) has nodes drained the same way. A draining node whose
    return to its team would put that team above a waiting team is not taken back
    (``Undrain``). Nothing running is ever stopped; gang members are left alone.
    """
    usage = usage_by_team(snap, cfg)
    used = {t: u.gpus for t, u in usage.items()}
    hours = {t: u.hours for t, u in usage.items()}
    launched = {j for lc in launches for j in lc.for_jobs}
    for lc in launches:  # this tick's launches count for their team already
        t = cfg.team_of(lc.team)
        used[t] = used.get(t, 0) + lc.offer.gpu_count
    waiting = sorted({cfg.team_of(j.team) for j in due if j.id not in launched})
    donors: dict[str, list[tuple[str, int]]] = {}  # team -> joined instances (id, GPUs) it could give back
    leaving: list[tuple[str, str, int]] = []  # (team, instance, GPUs) already draining
    schedulable = {n.instance_id for n in snap.nodes if n.instance_id and n.schedulable}
    for inst in sorted(snap.instances, key=lambda i: (i.created_at, i.id)):
        if inst.purpose is not Purpose.OVERFLOW or inst.gang_id:
            continue
        t = cfg.team_of(inst.team)
        if inst.state is InstanceState.DRAINING:
            leaving.append((t, inst.id, inst.gpus))
        elif inst.state is InstanceState.JOINED and inst.id in schedulable:
            donors.setdefault(t, []).append((inst.id, inst.gpus))

    def share(t: str, extra: int = 0) -> float:
        return cfg.share(t, used.get(t, 0) + extra, hours.get(t, 0.0))

    # A node already draining is on its way from its team to the waiting team lowest in share.
    keep: set[str] = set()
    for b, iid, g in leaving:
        used[b] = used.get(b, 0) - g
        takers = [a for a in waiting if a != b]
        if takers:
            a = min(takers, key=lambda a: (share(a), a))
            if share(a) < share(b, g):  # handed back to b, it would put b above a waiting team
                keep.add(iid)
            used[a] = used.get(a, 0) + g
    out: list[Action] = []
    nodes = {n.instance_id: n for n in snap.nodes if n.instance_id}
    for x in actions:
        if isinstance(x, Undrain) and x.instance_id in keep:
            # decide dropped this node's Terminate in favour of the Undrain: put it back once empty
            node = nodes.get(x.instance_id)
            if node is None or node.idle:
                out.append(Terminate(x.instance_id, "drained and empty; kept from a team above its fair share"))
            continue
        out.append(x)
    notes: list[str] = []
    for t in sorted(cfg.teams):  # a team above its own limit
        limit = cfg.policy(t).max_gpus
        while limit and used.get(t, 0) > limit and donors.get(t):
            iid, g = donors[t].pop(0)
            used[t] -= g
            out.append(Drain(iid, f"team {t} is above its limit of {limit} burst GPUs; its job ends here, nothing new"))
    for a in sorted(waiting, key=lambda t: (share(t), t)):
        for b in sorted((t for t in donors if t != a and donors[t]), key=lambda t: (-share(t), t)):
            iid, g = donors[b][0]
            if share(b, -g) < share(a, g):  # moving it would only swap who is above
                continue
            donors[b].pop(0)
            used[b] -= g
            used[a] = used.get(a, 0) + g
            out.append(Drain(iid, f"fair share: team {b} holds more burst GPUs per weight than team {a}, which waits; its job ends here, nothing new"))
            notes.append(f"fair share: draining {iid} of team {b} for team {a}")
            break
    return out, notes
