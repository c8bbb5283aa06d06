"""The simulator elides ticks it can prove idle (Simulation._idle_after): a tick driven only by an
on-prem change, while no job is queued, after a tick that acted on nothing. Elided or run, the
replay must be the same in every respect the controller or a report can see: figures (``ticks``
included: an elided tick still counts as the daemon's tick), every plan and when it was made,
every wait, the sampled series, every audit row and every instance row.

Random small traces (single jobs and gangs, may-burst or not) over random clusters, policies
(never, greedy, burst, a short-threshold variant, spot with reclaims and notices) and settings
(tick length, capacity errors); and a slice of the bundled ITP trace, where most ticks are
elided. Also the two change counters elision relies on: ``SimCluster.cloud_version`` (burst
node views) and ``SimProvider.changes`` (a cloud's instances).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from burst.domain import TAG_CLUSTER, TAG_ID, LaunchSpec, Market, Purpose
from burst.sim.clock import VirtualClock
from burst.sim.cloud import SimProvider
from burst.sim.runner import SimSettings, Simulation, b1_offers
from burst.sim.trace import TraceJob, bundled_trace_path, load_trace
from policies import PolicyConfig
from policies.model import OverflowConfig, ScaleInConfig, SelectionConfig
from policies.reference import BY_NAME

SHORT = PolicyConfig(
    name="short", overflow=OverflowConfig(wait_threshold_s=300.0), scale_in=ScaleInConfig(idle_timeout_s=120.0),
)
SPOT = PolicyConfig(name="burst", selection=SelectionConfig(allow_spot=True, weigh_reclaims=True))
POLICIES = {**BY_NAME, "short": SHORT, "spot": SPOT}


def _everything(sim: Simulation) -> dict[str, Any]:
    res = sim.run()
    figs = res.figures()
    for k in ("wall_s", "speedup"):
        figs.pop(k)
    s = res.series
    return {
        "figures": figs,
        "plans": res.plans,
        "waits": res.waits_s,
        "series": (s.t, s.onprem_used, s.cloud_used, s.cloud_provisioned, s.pending, s.spend),
        "ledger": res.ledger_usd,
        "audit": [(r.at, r.actor, r.kind, r.subject, r.action, r.reason, r.data) for r in sim.store.audit_rows(limit=10**7)],
        "instances": sim.store.instances(),
        "elided": res.ticks_elided,
    }


def _both(trace: list[TraceJob], policy: PolicyConfig, s: SimSettings, spot: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    offers = b1_offers(spot=spot)
    run = _everything(Simulation(trace, policy, settings=s, offers=offers, record_plans=True))
    full = _everything(Simulation(trace, policy, settings=s, offers=offers, record_plans=True, elide_idle_ticks=False))
    return run, full


job = st.tuples(
    st.floats(0, 6 * 3600), st.floats(60, 4 * 3600), st.sampled_from((1, 1, 2, 4, 8, 16, 32)), st.booleans(),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    jobs=st.lists(job, min_size=1, max_size=40),
    nodes=st.integers(1, 5),
    policy=st.sampled_from(sorted(POLICIES)),
    tick_s=st.sampled_from((30.0, 60.0)),
    capacity_errors=st.sampled_from((0.0, 0.3)),
    seed=st.integers(0, 3),
)
def test_elided_replay_is_the_full_replay(
    jobs: list[tuple[float, float, int, bool]], nodes: int, policy: str, tick_s: float, capacity_errors: float, seed: int,
) -> None:
    trace = sorted(
        (TraceJob(f"j{k:03d}", round(sub), round(dur), g, nodes=max(1, g // 8), per_node=min(g, 8), may_burst=mb)
         for k, (sub, dur, g, mb) in enumerate(jobs)),
        key=lambda j: (j.submit, j.id),
    )
    spot = policy == "spot"
    s = SimSettings(
        nodes=nodes, tick_s=tick_s, capacity_error_rate=capacity_errors, seed=seed,
        # Reclaims often enough to happen in a few hours, not so often that a 4-node gang of
        # 4 h (restarted from scratch after each reclaim) practically never finishes.
        spot_interrupt_mean_s=6 * 3600.0 if spot else None, spot_notices=spot and seed % 2 == 0,
    )
    run, full = _both(trace, POLICIES[policy], s, spot)
    assert full["elided"] == 0
    assert run.pop("elided") <= run["figures"]["ticks"]
    full.pop("elided")
    assert run == full


def test_most_ticks_of_an_itp_slice_are_elided_and_nothing_changes() -> None:
    """Ten days of the bundled trace at 80 nodes under burst: the on-prem churn between bursts
    is most of the ticks, and eliding them changes nothing."""
    trace = [j for j in load_trace(bundled_trace_path()) if j.submit < 10 * 86400]
    run, full = _both(trace, BY_NAME["burst"], SimSettings(nodes=80), False)
    elided = run.pop("elided")
    full.pop("elided")
    assert run == full
    assert run["figures"]["instances"] > 0  # it did burst: not a trivially idle slice
    assert elided > run["figures"]["ticks"] // 2


def test_nothing_is_elided_when_the_policy_learns_from_every_tick() -> None:
    """Run-time prediction learns from each observation (when a job was last seen running):
    skipping one would change what it learns, so no tick is elided."""
    trace = [j for j in load_trace(bundled_trace_path()) if j.submit < 2 * 86400]
    learner = replace(BY_NAME["burst"], overflow=replace(BY_NAME["burst"].overflow, predict_starts=True))
    res = Simulation(trace, learner, settings=SimSettings(nodes=80), offers=b1_offers()).run()
    assert res.ticks > 0 and res.ticks_elided == 0


def test_nothing_is_elided_when_the_policy_ticks_faster_than_the_grid() -> None:
    """A policy whose relative wake-ups (``now + its tick``) fall between grid points could ask
    for a wake an elided tick would have moved: no elision then."""
    trace = [j for j in load_trace(bundled_trace_path()) if j.submit < 2 * 86400]
    res = Simulation(trace, BY_NAME["burst"], settings=SimSettings(nodes=80, tick_s=10.0), offers=b1_offers()).run()
    assert res.ticks > 0 and res.ticks_elided == 0


# ---- SimProvider.changes: equal counts mean the same listing ----------------------------------

provider_step = st.one_of(
    st.tuples(st.just("launch"), st.booleans()),
    st.tuples(st.just("advance"), st.integers(0, 400)),
    st.tuples(st.just("terminate"), st.integers(0, 6)),
    st.tuples(st.just("reclaim"), st.integers(0, 6), st.integers(0, 300)),
    st.tuples(st.just("look"),),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(provider_step, min_size=1, max_size=40))
def test_unchanged_count_means_the_same_listing_and_unchanged_instances_keep_their_view(steps: list[tuple[Any, ...]]) -> None:
    clock = VirtualClock(0.0)
    offers = {o.market: o for o in b1_offers(spot=True) if o.cloud == "aws"}
    p = SimProvider("aws", "sim", clock, notice_lead_s=120.0, spot_interrupt_mean_s=600.0, seed=1,
                    on_notice=lambda i, t: None)
    last: tuple[int, tuple[Any, ...], list[tuple[Any, ...]]] | None = None
    k = 0
    for s in steps:
        if s[0] == "launch":
            offer = offers[Market.SPOT if s[1] else Market.ON_DEMAND]
            p.launch(LaunchSpec(intent_id=f"b{k}", offer=offer, purpose=Purpose.OVERFLOW,
                                tags={TAG_ID: f"b{k}", TAG_CLUSTER: "sim"}))
            k += 1
        elif s[0] == "advance":
            clock.set(clock.now() + s[1])
            p.advance(clock.now())
        elif s[0] == "terminate":
            p.terminate([f"sim-aws-{s[1]:06d}"])
        elif s[0] == "reclaim":
            if f"sim-aws-{s[1]:06d}" in p.instances:
                p.reclaim(f"sim-aws-{s[1]:06d}", clock.now() + s[2])
        listing = tuple(p.list_instances())
        seen = [(i.cloud_id, i.state, i.interrupted) for i in listing]
        if last is not None and last[0] == p.changes:
            assert listing is last[1]  # the very same tuple (and so the same views)
            assert seen == last[2]
        if last is not None:
            # An instance whose listing did not change is the very same view object, even
            # when others changed (what the controller's per-instance memo keys on).
            before = {v.cloud_id: v for v in last[1]}
            for v in listing:
                old = before.get(v.cloud_id)
                if old is not None and (old.state, old.interrupted) == (v.state, v.interrupted):
                    assert v is old
        last = (p.changes, listing, seen)


def test_spot_with_reclaims_and_notices_is_the_same_elided() -> None:
    """Ten days of the bundled trace at 64 nodes on spot, reclaims announced (the node agent
    drains, the controller checkpoints, requeues and holds): reclaims happen, and eliding the
    idle ticks between them changes nothing."""
    trace = [j for j in load_trace(bundled_trace_path()) if j.submit < 10 * 86400]
    s = SimSettings(nodes=64, spot_interrupt_mean_s=12 * 3600.0, spot_notices=True)
    run, full = _both(trace, SPOT, s, True)
    elided = run.pop("elided")
    full.pop("elided")
    assert run == full
    assert run["figures"]["interruptions"] > 0 and elided > 0
