"""Simulation reports: the comparison table, a JSON summary and PNG plots.

Plots (matplotlib, Agg backend, no display needed):

* ``gpus_over_time.png``: GPUs in use on-prem and in the cloud, one panel per policy;
* ``queue_length.png``: pending jobs over time;
* ``wait_cdf.png``: CDF of job waits per policy (log scale);
* ``spend.png``: cumulative cloud spend.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from burst.sim.runner import Series

COLUMNS = (
    ("jobs", "jobs", "{:,}"),
    ("mean_wait_min", "mean wait", "{:.1f}"),
    ("p50_wait_min", "p50", "{:.1f}"),
    ("p95_wait_min", "p95", "{:.1f}"),
    ("p99_wait_min", "p99", "{:.1f}"),
    ("max_wait_min", "max", "{:.1f}"),
    ("cloud_usd", "cloud $", "{:,.0f}"),
    ("gpu_hours_paid", "GPU-h paid", "{:,.0f}"),
    ("gpu_hours_used", "GPU-h used", "{:,.0f}"),
    ("utilisation", "used/paid", "{:.3f}"),
    ("instances", "instances", "{:,}"),
    ("wall_s", "wall s", "{:.1f}"),
)


@dataclass
class PolicyRun:
    name: str
    figures: dict[str, Any]
    waits_s: Sequence[float]
    series: Series | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def percentile_min(waits_s: Sequence[float], p: float) -> float:
    w = sorted(waits_s)
    if not w:
        return 0.0
    k = min(len(w) - 1, max(0, math.ceil(p / 100.0 * len(w)) - 1))
    return w[k] / 60.0


def wait_figures(waits_s: Sequence[float]) -> dict[str, float]:
    w = list(waits_s)
    return {
        "mean_wait_min": (sum(w) / len(w) / 60.0) if w else 0.0,
        "p50_wait_min": percentile_min(w, 50),
        "p95_wait_min": percentile_min(w, 95),
        "p99_wait_min": percentile_min(w, 99),
        "max_wait_min": (max(w) / 60.0) if w else 0.0,
    }


def cost_ratio(run: PolicyRun, runs: Sequence[PolicyRun], reference: str = "clairvoyant") -> float | None:
    """``run``'s cloud dollars over the reference's; None without a reference that spends, or
    for a run that spends nothing (nothing to compare)."""
    ref = next((r for r in runs if r.name == reference), None)
    ref_usd = float(ref.figures.get("cloud_usd") or 0.0) if ref is not None else 0.0
    usd = float(run.figures.get("cloud_usd") or 0.0)
    if ref_usd <= 0.0 or usd <= 0.0:
        return None
    return usd / ref_usd


def render_table(runs: Sequence[PolicyRun], title: str) -> Any:
    """The comparison table; with a ``clairvoyant`` run, a last column gives each policy's
    cloud dollars over the reference's (its own max wait, within the target, is in its row)."""
    from rich.table import Table

    t = Table(title=title)
    t.add_column("policy", style="bold")
    # Jobs that never finished have no wait: the wait columns do not count them, so a run that
    # left some says so in its own column rather than showing a clean 0.0 (a job bigger than
    # the cluster, with nowhere to burst to, is the usual cause).
    columns = COLUMNS + ((("unfinished", "unfinished", "{:,}"),) if any(unfinished(r) for r in runs) else ())
    for _, head, _ in columns:
        t.add_column(head, justify="right")
    with_ratio = any(r.name == "clairvoyant" for r in runs)
    if with_ratio:
        t.add_column("vs clairvoyant", justify="right")
    for r in runs:
        row = [r.name]
        for key, _, fmt in columns:
            v = r.figures.get(key)
            row.append("-" if v is None else fmt.format(v))
        if with_ratio:
            ratio = cost_ratio(r, runs)
            row.append("-" if ratio is None else f"{ratio:.3f}x")
        t.add_row(*row)
    return t


def unfinished(run: PolicyRun) -> int:
    """Jobs of the trace still pending, running or held when the replay ended."""
    return int(run.figures.get("unfinished") or 0)


def render_challenges(runs: Sequence[PolicyRun]) -> list[Any]:
    """One small table per grand challenge of ``--grand-challenge``: its figures under each
    simulated policy."""
    from datetime import UTC, datetime

    from rich.table import Table

    with_gc = [r for r in runs if r.extra.get("challenges")]
    if not with_gc:
        return []
    tables = []
    for k, first in enumerate(with_gc[0].extra["challenges"]):
        start = datetime.fromtimestamp(float(first["start"]), UTC).strftime("%Y-%m-%d %H:%M UTC")
        t = Table(title=f"grand challenge {k + 1}: {start}, {(float(first['end']) - float(first['start'])) / 3600:g} h, "
                        f"{first['nodes']} nodes")
        for col in ("policy", "state", "preempted", "restored", "lost GPU-h", "start signal -> running s",
                    "end -> all released s"):
            t.add_column(col, justify="left" if col in ("policy", "state") else "right")
        for r in with_gc:
            c = r.extra["challenges"][k]

            def num(v: Any, fmt: str = "{:.0f}") -> str:
                return "-" if v is None else fmt.format(v)

            t.add_row(r.name, str(c["state"]), str(c["preempted_jobs"]), str(c["restored_jobs"]),
                      num(c["lost_gpu_hours"], "{:.1f}"), num(c["challenge_started_s"]), num(c["restored_s"]))
        tables.append(t)
    return tables


def report_dir_problem(out: Path) -> str | None:
    """Why ``write_report`` could not write into ``out``, or None; checked before a simulation
    runs (it may take minutes), without creating anything."""
    import os

    if out.exists():
        if not out.is_dir():
            return f"{out} exists and is not a directory"
        if not os.access(out, os.W_OK | os.X_OK):
            return f"{out} is not writable"
        for name in ("summary.json", *PLOT_NAMES):
            f = out / name
            if f.exists() and not f.is_file():
                return f"{f} exists and is not a file"
        return None
    parent = out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return f"{parent} is not a directory"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"cannot create {out}: {parent} is not writable"
    return None


PLOT_NAMES = ("gpus_over_time.png", "queue_length.png", "wait_cdf.png", "spend.png")


def write_report(out: Path, runs: Sequence[PolicyRun], meta: Mapping[str, Any]) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    summary = {"meta": dict(meta), "policies": {r.name: {**r.figures, **r.extra} for r in runs}}
    files = [out / "summary.json"]
    files[0].write_text(json.dumps(summary, indent=2, sort_keys=True, default=float) + "\n")
    files.extend(_plots(out, runs))
    return files


def _plots(out: Path, runs: Sequence[PolicyRun]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths: list[Path] = []

    def save(fig: Any, name: str, xlabel: str, ylabel: str | None = None, legend: bool = True) -> None:
        ax = fig.axes[-1]
        ax.set_xlabel(xlabel)
        if ylabel is not None:
            ax.set_ylabel(ylabel)
        if legend:
            ax.legend()
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        paths.append(out / name)
    timed = [r for r in runs if r.series is not None and r.series.t]
    t0 = min((r.series.t[0] for r in timed if r.series is not None), default=0.0)

    def days(ts: Sequence[float]) -> list[float]:
        return [(x - t0) / 86400.0 for x in ts]

    if timed:
        fig, axes = plt.subplots(len(timed), 1, figsize=(11, 2.6 * len(timed)), sharex=True, squeeze=False)
        for ax, r in zip(axes[:, 0], timed, strict=True):
            s = r.series
            assert s is not None
            d = days(s.t)
            ax.fill_between(d, s.onprem_used, step="post", alpha=0.6, label="on-prem GPUs in use")
            ax.fill_between(d, [a + b for a, b in zip(s.onprem_used, s.cloud_used, strict=True)], s.onprem_used, step="post", alpha=0.6, label="cloud GPUs in use")
            ax.plot(d, [a + b for a, b in zip(s.onprem_used, s.cloud_provisioned, strict=True)], lw=0.6, color="k", label="on-prem + cloud provisioned")
            ax.set_ylabel("GPUs")
            ax.set_title(r.name, loc="left", fontsize=10)
        axes[0, 0].legend(loc="upper right", fontsize=8)
        save(fig, "gpus_over_time.png", "days", legend=False)

        fig, ax = plt.subplots(figsize=(11, 3.5))
        for r in timed:
            assert r.series is not None
            ax.step(days(r.series.t), r.series.pending, where="post", lw=0.8, label=r.name)
        save(fig, "queue_length.png", "days", "pending jobs")

        fig, ax = plt.subplots(figsize=(11, 3.5))
        for r in timed:
            assert r.series is not None
            ax.plot(days(r.series.t), r.series.spend, lw=1.2, label=r.name)
        for r in runs:
            if r.series is None and r.figures.get("cloud_usd"):
                ax.axhline(r.figures["cloud_usd"], ls="--", lw=0.8, color="grey", label=f"{r.name} (total)")
        save(fig, "spend.png", "days", "cumulative cloud spend, USD")

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for r in runs:
        w = sorted(x / 60.0 for x in r.waits_s)
        if not w:
            continue
        n = len(w)
        xs = [max(x, 0.01) for x in w]
        ax.step(xs, [(k + 1) / n for k in range(n)], where="post", label=r.name)
    ax.set_xscale("log")
    ax.axvline(30, ls=":", color="grey")
    save(fig, "wait_cdf.png", "wait, minutes (log; 0 shown at 0.01)", "fraction of jobs")
    return paths
