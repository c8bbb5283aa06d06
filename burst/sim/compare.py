"""Run several policies over one trace and scenario, side by side (``burst simulate``, bench B1)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from burst.domain import GrandChallenge, Offer
from burst.ports import Store
from burst.sim.challenges import challenge_summary
from burst.sim.clairvoyant import run_clairvoyant
from burst.sim.report import PolicyRun, wait_figures
from burst.sim.runner import SimSettings, Simulation
from burst.sim.trace import TraceJob
from policies import PolicyConfig
from policies.grand_challenge import ChallengeSettings
from policies.reference import BY_NAME

KNOWN = ("never", "greedy", "burst", "clairvoyant")

ProgressFactory = Callable[[str], Callable[[float], None] | None]


def parse_policies(text: str) -> list[str]:
    names = [p.strip() for p in text.split(",") if p.strip()]
    bad = [p for p in names if p not in KNOWN]
    if bad or not names:
        raise ValueError(f"unknown policy {', '.join(bad) or '(none)'}; choose from {', '.join(KNOWN)}")
    return names


def run_policies(
    trace: Sequence[TraceJob],
    names: Sequence[str],
    *,
    settings: SimSettings,
    offers: Sequence[Offer],
    burst_config: PolicyConfig | None = None,
    overrides: dict[str, PolicyConfig] | None = None,
    progress: ProgressFactory | None = None,
    store_factory: Callable[[], Store] | None = None,
    challenges: Sequence[GrandChallenge] = (),
    challenge_settings: ChallengeSettings | None = None,
) -> list[PolicyRun]:
    """``challenges``: grand challenges added to each simulated policy's store before its replay
    (the what-if of ``--grand-challenge``); their figures land in ``extra["challenges"]``. The
    clairvoyant bound has no cluster to run them on and ignores them. The clairvoyant reference
    keeps ``burst``'s wait target (``burst_config``'s, else the default)."""
    runs: list[PolicyRun] = []
    target_s = (burst_config or BY_NAME["burst"]).overflow.wait_target_s
    for name in names:
        if name == "clairvoyant":
            price = min(o.price_per_gpu_hour for o in offers)
            cv = run_clairvoyant(
                trace, nodes=settings.nodes, gpus_per_node=settings.gpus_per_node, price_per_gpu_hour=price,
                window_s=target_s,
            )
            figs: dict[str, float | int | str] = {
                "policy": "clairvoyant",
                "jobs": len(trace),
                **wait_figures(cv.waits_s),
                "cloud_usd": cv.cloud_usd,
                "gpu_hours_paid": cv.cloud_gpu_hours,
                "gpu_hours_used": cv.cloud_gpu_hours,
                "utilisation": 1.0 if cv.cloud_gpu_hours else 0.0,
                "instances": 0,
                "wall_s": cv.wall_s,
                "sim_days": cv.sim_s / 86400.0,
                "wait_target_min": target_s / 60.0,
            }
            runs.append(PolicyRun("clairvoyant", figs, cv.waits_s, None, {"cloud_jobs": cv.cloud_jobs, "price_per_gpu_hour": price,
                                                                     "unplaceable": cv.unplaceable}))
            continue
        cfg = (overrides or {}).get(name, BY_NAME[name])
        if name == "burst" and burst_config is not None:
            cfg = replace(burst_config, name="burst")
        sim = Simulation(trace, cfg, settings=settings, offers=offers, store=store_factory() if store_factory else None,
                         challenge_settings=challenge_settings)
        for gc in challenges:
            sim.store.add_challenge(gc, now=sim.clock_origin, actor="simulate")
        res = sim.run(progress(name) if progress else None)
        extra: dict[str, object] = {"ledger_usd": res.ledger_usd}
        if challenges:
            ran = [sim.store.get_challenge(gc.id) for gc in challenges]
            extra["challenges"] = [challenge_summary(g, sim.cluster) for g in ran if g is not None]
        runs.append(PolicyRun(name, res.figures(), res.waits_s, res.series, extra))
    return runs


def headline(runs: Sequence[PolicyRun]) -> dict[str, float]:
    by = {r.name: r.figures for r in runs}
    out: dict[str, float] = {}
    if "burst" in by:
        out["p95_wait_min"] = float(by["burst"]["p95_wait_min"])
        out["burst_cloud_usd"] = float(by["burst"]["cloud_usd"])
        if "clairvoyant" in by and by["clairvoyant"]["cloud_usd"]:
            out["cost_ratio_vs_clairvoyant"] = float(by["burst"]["cloud_usd"]) / float(by["clairvoyant"]["cloud_usd"])
        if "greedy" in by and by["greedy"]["cloud_usd"]:
            out["cost_ratio_vs_greedy"] = float(by["burst"]["cloud_usd"]) / float(by["greedy"]["cloud_usd"])
        if by["burst"].get("wall_s"):
            out["sim_speedup"] = float(by["burst"].get("speedup", 0.0))
            out["sim_wall_s"] = float(by["burst"]["wall_s"])
    if "clairvoyant" in by:
        # the proof that the reference keeps the promise it measures: within its wait target
        out["clairvoyant_max_wait_min"] = float(by["clairvoyant"]["max_wait_min"])
    return out
