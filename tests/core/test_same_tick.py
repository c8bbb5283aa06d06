"""Acceptance: the daemon and the simulator run the same Controller.tick.

One scenario is run twice: (a) by ``Simulation.run()``, which ticks only on grid points where
something changed or the last Plan asked to be woken; (b) by a ``Daemon`` whose clock steps on
every grid point (every ``tick_s`` from the same origin), with a fresh Simulation used only as the
world (``advance_to(t)`` before each tick). Their non-empty Plans must be identical: the
simulator's skipping must never change a decision.
"""

from __future__ import annotations

import dataclasses

import pytest

from burst.daemon import Daemon
from burst.sim.runner import SimSettings, Simulation, _describe, b1_offers
from burst.sim.trace import bundled_trace_path, load_trace
from policies.reference import BURST, GREEDY

HORIZON_S = 24 * 3600.0  # compare the first day of decisions


class GridClock:
    def __init__(self, t: float) -> None:
        self.t = t

    def now(self) -> float:
        return self.t


def _daemon_plans(jobs, policy, settings: SimSettings, horizon: float, offers) -> tuple[list, Simulation]:  # type: ignore[no-untyped-def]
    world = Simulation(jobs, policy, settings=settings, offers=offers)
    clock = GridClock(world.clock_origin)
    d = Daemon(
        world.controller, clock, world.store, holder="daemon", before_tick=world.advance_to, after_tick=world.after_tick
    )
    plans = []
    k = 0
    while clock.t <= horizon:
        res = d.run_once()
        assert res is not None, "a lone daemon must always hold the lease"
        if res.plan.actions:
            plans.append((clock.t, tuple(_describe(a) for a in res.plan.actions)))
        k += 1
        clock.t = world.clock_origin + k * settings.tick_s
    return plans, world


PLAIN = ("burst-12-nodes", "greedy-8-nodes-capacity-errors", "burst-10-nodes-tick-60")
SPOT = dataclasses.replace(BURST, selection=dataclasses.replace(BURST.selection, allow_spot=True))

# name: (policy, settings, spot offers). The last four each diverged before the simulator ticked
# after acting, on cloud events and on the controller's own deadlines (see the sim commit).
SCENARIOS = {
    "burst-12-nodes": (BURST, SimSettings(nodes=12), False),
    "greedy-8-nodes-capacity-errors": (GREEDY, SimSettings(nodes=8, capacity_error_rate=0.3, seed=3), False),
    "burst-10-nodes-tick-60": (BURST, SimSettings(nodes=10, tick_s=60.0), False),
    "slow-boot-hits-join-timeout": (BURST, SimSettings(nodes=12, boot_s=1500.0), False),
    "spot-reclaimed-before-joining": (SPOT, SimSettings(nodes=12, spot_interrupt_mean_s=3600.0), True),
    "day-budget-cap": (BURST, SimSettings(nodes=12, day_cap_usd=2000.0), False),
    "transient-errors": (BURST, SimSettings(nodes=12, transient_error_rate=0.3, seed=1), False),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_daemon_and_simulator_make_the_same_decisions(name: str) -> None:
    policy, settings, spot = SCENARIOS[name]
    policy = dataclasses.replace(policy, tick_interval_s=settings.tick_s)
    # the first day of the trace, durations capped so the simulator's run ends soon after
    jobs = [dataclasses.replace(j, duration=min(j.duration, 8 * 3600.0)) for j in load_trace(bundled_trace_path(), days=1)]
    offers = b1_offers(spot=spot)

    sim = Simulation(jobs, policy, settings=settings, record_plans=True, offers=offers)
    horizon = sim.clock_origin + HORIZON_S
    sim_ticks: list[float] = []
    real_tick = sim.controller.tick

    def counted(now: float):  # type: ignore[no-untyped-def]
        sim_ticks.append(now)
        return real_tick(now)

    sim.controller.tick = counted  # type: ignore[method-assign]
    res = sim.run()
    sim_plans = [p for p in res.plans if p[0] <= horizon]

    daemon_plans, world = _daemon_plans(jobs, policy, settings, horizon, offers)

    launches = sum(1 for _, acts in sim_plans for a in acts if a.startswith("Launch"))
    assert launches >= 5, "the scenario must burst, or the comparison proves little"
    if name in PLAIN:
        assert any(a.startswith(("Drain", "Terminate")) for _, acts in sim_plans for a in acts)
        # the simulator really skipped grid points (otherwise this is the same loop twice)
        grid_points = (horizon - sim.clock_origin) / settings.tick_s
        assert sum(1 for t in sim_ticks if t <= horizon) < grid_points / 2
    for i, (x, y) in enumerate(zip(sim_plans, daemon_plans, strict=False)):
        assert x == y, f"plan {i} differs:\n simulator {x}\n daemon    {y}"
    assert len(sim_plans) == len(daemon_plans)
