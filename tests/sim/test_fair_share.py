"""Fair share in the simulator: two teams at weights 2:1 under a tight concurrent-GPU limit split
burst GPU-hours about 2:1, although the lighter team's work is all older and it held the whole
fleet first; a team at its own limit gets no more burst capacity while another team below its
limit does. GPU-hours are charged per instance to the team it was launched for, as the spend
ledger charges them (the scheduler decides which job runs on a joined node)."""

from __future__ import annotations

from burst.sim.runner import SimSettings, Simulation, b1_offers
from burst.sim.trace import TraceJob
from burst.sim.world import TRACE_EPOCH
from policies import PolicyConfig
from policies.fairness import FairnessConfig, TeamPolicy
from policies.model import OverflowConfig

TICK = 30.0
HOURS = 24


def _a100_8() -> list:
    return [o for o in b1_offers() if o.gpu_count == 8 and o.gpu_model == "A100" and o.cloud == "aws"]


def _sample(sim: Simulation, hours: dict[str, float]) -> None:
    """Burst GPU-hours by team, as the spend ledger charges them: every tick, the GPUs of each
    team's live instances (launched for it), for one tick."""
    for i in sim.store.live_instances():
        if i.launched_at is not None:
            hours[i.team] = hours.get(i.team, 0.0) + i.gpus * TICK / 3600.0


def _run(fairness: FairnessConfig, max_cloud_gpus: int, trace: list[TraceJob]) -> tuple[Simulation, dict[str, float]]:
    policy = PolicyConfig(overflow=OverflowConfig(max_cloud_gpus=max_cloud_gpus), fairness=fairness)
    sim = Simulation(trace, policy, settings=SimSettings(nodes=1, tick_s=TICK), offers=_a100_8())
    until = TRACE_EPOCH + HOURS * 3600.0
    t = sim.clock.now()
    hours: dict[str, float] = {}
    while t < until:
        t += TICK
        sim.world.advance_to(t)
        sim.controller.tick(t)
        sim.world.after_tick(t)
        _sample(sim, hours)
    return sim, hours


def _backlog() -> list[TraceJob]:
    # One job holds the one on-prem node; the nlp account submits all its work first, the
    # cv-lab account (team vision) ten minutes later: both always have work waiting.
    trace = [TraceJob("hold", 0.0, 48 * 3600.0, 8, per_node=8, team="ops")]
    trace += [TraceJob(f"n{i}", 60.0 + i, 3600.0, 8, per_node=8, team="nlp") for i in range(80)]
    trace += [TraceJob(f"v{i}", 600.0 + i, 3600.0, 8, per_node=8, team="cv-lab") for i in range(80)]
    return trace


TEAMS = FairnessConfig(
    teams={"vision": TeamPolicy(weight=2.0), "nlp": TeamPolicy(weight=1.0), "ops": TeamPolicy(weight=1.0)},
    members={"cv-lab": "vision"},
)


def test_two_teams_at_weights_2_to_1_split_burst_gpu_hours_about_2_to_1() -> None:
    _, hours = _run(TEAMS, 24, _backlog())
    vision, nlp = hours.get("cv-lab", 0.0), hours.get("nlp", 0.0)
    print(f"fair share split, burst GPU-hours over {HOURS} h: vision {vision:.1f}, nlp {nlp:.1f}, ratio {vision / nlp:.2f}")
    assert 1.8 <= vision / nlp <= 2.3  # measured: 2.12 over 24 h (2.26 over 12 h: nlp's head start is repaid)
    # Without teams, oldest first: nlp's older backlog takes the fleet first.
    _, plain = _run(FairnessConfig(), 24, _backlog())
    assert plain.get("nlp", 0.0) > plain.get("cv-lab", 0.0)


def test_a_team_at_its_limit_gets_no_more_while_another_below_does() -> None:
    capped = FairnessConfig(
        teams={"vision": TeamPolicy(weight=2.0, max_gpus=8), "nlp": TeamPolicy(weight=1.0)}, members={"cv-lab": "vision"}
    )
    sim, hours = _run(capped, 64, _backlog())
    # vision never had more than one 8-GPU instance at once; nlp, below any limit, got the rest.
    vision = sorted((i.launched_at or 0.0, i.terminated_at or 1e18) for i in sim.store.instances() if i.team == "cv-lab")
    assert vision
    for (_, end), (start, _) in zip(vision, vision[1:], strict=False):
        assert start >= end
    assert hours["nlp"] > 3 * hours["cv-lab"]
