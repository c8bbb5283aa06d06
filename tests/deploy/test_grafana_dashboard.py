"""deploy/grafana/burst.json: every metric a panel queries is one the daemon exports (read from
burst.metrics.REGISTRY, not from a list here), and the dashboard shows what operators need."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from burst.metrics import REGISTRY

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "burst.json"

# PromQL words that are not metric names: aggregations, functions, keywords.
PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values", "group",
    "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool", "and", "or", "unless",
    "rate", "irate", "increase", "delta", "idelta", "deriv", "histogram_quantile", "abs", "absent", "clamp_min",
    "clamp_max", "label_replace", "label_join", "time", "vector", "scalar", "sort", "sort_desc", "round",
    "max_over_time", "min_over_time", "avg_over_time", "sum_over_time", "last_over_time", "changes", "resets",
}


def exported_names() -> set[str]:
    """Series names the daemon's registry exposes, by metric type (a labelled metric with no child
    yet has no samples, so names are derived from each family's type)."""
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created"),
                "gauge": ("",), "summary": ("_count", "_sum", "_created", ""), "info": ("_info",)}
    out: set[str] = set()
    for fam in REGISTRY.collect():
        out |= {fam.name + s for s in suffixes.get(fam.type, ("",))}
    return out


def load() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return doc


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for p in panels:
        yield p
        yield from all_panels(p.get("panels", []))


def expressions(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every query, rows' nested panels included."""
    return [(p.get("title", ""), t["expr"]) for p in all_panels(doc["panels"]) for t in p.get("targets", [])]


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers once strings, label matchers, label lists
    of by/without/on/ignoring/group_*, ranges and numbers are taken out."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', " ", expr)
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\$\{?\w+\}?", " ", e)
    words = set(re.findall(r"(?<![\w.])[A-Za-z_:][\w:]*", e))
    return {w for w in words if w not in PROMQL_WORDS and not re.fullmatch(r"\d.*|[eE]\d+|Inf|NaN", w)}


def test_every_queried_metric_is_exported() -> None:
    exported = exported_names()
    doc = load()
    queried = {(title, m) for title, expr in expressions(doc) for m in metric_names(expr)}
    assert queried, "no queries found"
    unknown = sorted(f"{title}: {m}" for title, m in queried if m not in exported)
    assert not unknown, f"panels query metrics the daemon does not export: {unknown}"


def test_the_check_catches_an_unknown_or_misspelt_metric() -> None:
    exported = exported_names()
    assert metric_names('sum by (state) (burst_instance{cloud="aws"}) * on (instance) group_left () burst_leader') == {
        "burst_instance", "burst_leader"}
    assert "burst_instance" not in exported and "burst_leader" in exported
    assert metric_names("histogram_quantile(0.9, sum by (le) (rate(burst_tick_duration_seconds_bucket[$__rate_interval])))") == {
        "burst_tick_duration_seconds_bucket"}


@pytest.mark.parametrize("topic, metric", [
    ("pending GPU demand", "burst_pending_gpus"),
    ("overflow decisions", "burst_actions_total"),
    ("instances by state/cloud/purpose", "burst_instances"),
    ("launch attempts", "burst_launch_attempts_total"),
    ("launch errors by class", "burst_launch_errors_total"),
    ("boot time", "burst_boot_estimate_seconds"),
    ("mirror bytes", "burst_mirror_bytes_total"),
    ("mirror time", "burst_mirror_copy_duration_seconds_bucket"),
    ("spend", "burst_spend_usd"),
    ("budget caps", "burst_budget_cap_usd"),
    ("tick duration", "burst_tick_duration_seconds_bucket"),
    ("grand-challenge phase", "burst_grand_challenge_phase"),
])
def test_the_dashboard_shows(topic: str, metric: str) -> None:
    assert any(metric in metric_names(expr) for _, expr in expressions(load())), topic


def test_instances_are_broken_down_by_state_cloud_and_purpose() -> None:
    exprs = [expr for _, expr in expressions(load()) if "burst_instances" in metric_names(expr)]
    for label in ("state", "cloud", "purpose"):
        assert any(re.search(rf"by \({label}\)", e) for e in exprs), label


def test_dashboard_is_importable() -> None:
    doc = load()
    assert doc["uid"] and doc["title"] and isinstance(doc["schemaVersion"], int)
    ids = [p["id"] for p in all_panels(doc["panels"])]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    # every query goes to the datasource picked in the dashboard's variable
    assert any(v["name"] == "datasource" and v["type"] == "datasource" for v in doc["templating"]["list"])
    for p in all_panels(doc["panels"]):
        for t in p.get("targets", []):
            assert t["datasource"]["uid"] == "${datasource}", p["title"]
            assert t["expr"].count("(") == t["expr"].count(")"), p["title"]
