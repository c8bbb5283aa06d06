"""``burst budget show|set`` and the budget lines of ``burst status``: set is audited, bad input
is one line (exit 2) and changes nothing, and a reached hard cap says why."""

from __future__ import annotations

import json
import time
from pathlib import Path

import yaml
from typer.testing import CliRunner

from burst.cli import app
from burst.domain import Instance, InstanceState, Market, Purpose
from burst.store.sql import SqlStore

runner = CliRunner()


def _config(tmp_path: Path) -> tuple[Path, str]:
    url = f"sqlite:///{tmp_path}/b.db"
    cfg = tmp_path / "burst.yaml"
    cfg.write_text(yaml.safe_dump({"database_url": url, "budget": {"month_usd": 1000, "soft_month_usd": 500,
                                                                    "teams": {"ml": {"day_usd": 10}}}}))
    return cfg, url


def _burst(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, list(args))


def test_show_set_and_audit(tmp_path: Path) -> None:
    cfg, url = _config(tmp_path)
    res = _burst("budget", "show", "--config", str(cfg))
    assert res.exit_code == 0, res.stdout
    assert "site:month: spent $0.00, committed $0.00 (soft $500.00, hard $1,000.00)" in res.stdout
    assert "team:ml:day: spent $0.00, committed $0.00 (hard $10.00)" in res.stdout
    res = _burst("budget", "set", "team:ml:day", "hard", "$25", "--as", "alice", "--config", str(cfg))
    assert res.exit_code == 0, res.stdout
    assert "set by alice: team:ml:day" in res.stdout and "hard $25.00" in res.stdout
    res = _burst("budget", "show", "--json", "--config", str(cfg))
    doc = {b["budget"]: b for b in json.loads(res.stdout)["budgets"]}
    assert doc["team:ml:day"]["hard_usd"] == 25.0 and doc["team:ml:day"]["blocked"] is False
    store = SqlStore.from_url(url, upgrade=False)
    (row,) = store.audit_rows(kind="budget")
    assert (row.actor, row.subject, row.action, row.reason) == ("alice", "team:ml:day", "set", "hard set to $25.00")
    store.close()


def test_bad_input_is_one_line_and_changes_nothing(tmp_path: Path) -> None:
    cfg, url = _config(tmp_path)
    for args, words in (
        (("site:week", "hard", "5"), ("site:week", "nothing was changed")),
        (("site:month", "firm", "5"), ("level 'firm'", "soft or hard")),
        (("site:month", "hard", "lots"), ("amount 'lots'",)),
        (("site:month", "hard", "1e12"), ("amount '1e12'", "between 0 and")),
        (("site:month", "hard", "400"), ("soft level $500.00 would be above the hard cap $400.00",)),
        (("team:a/b:day", "hard", "5"), ("team name",)),
    ):
        res = _burst("budget", "set", *args, "--config", str(cfg))
        assert res.exit_code == 2, (args, res.stdout)
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and "Traceback" not in res.stderr + res.stdout, lines
        for w in words:
            assert w in lines[0], (w, lines[0])
    store = SqlStore.from_url(url, upgrade=False)
    assert store.audit_rows(kind="budget") == [] and store.get_user_setting("_budgets", "limits") is None
    store.close()


def test_status_says_why_at_a_hard_cap(tmp_path: Path) -> None:
    cfg, url = _config(tmp_path)
    store = SqlStore.from_url(url, upgrade=True)
    now = time.time()
    inst = Instance(id="od-1", cloud="aws", region="us-east-1", zone="", instance_type="p4d", market=Market.ON_DEMAND,
                    purpose=Purpose.ON_DEMAND, gpus=8, gpu_model="A100", price_per_hour=32.0, owner="u", team="ml",
                    created_at=now, expires_at=now + 3600.0)
    store.create_intent(inst, now=now, actor="t", reason="r")
    store.transition_instance("od-1", InstanceState.LAUNCHING, now=now, actor="t", reason="r", launched_at=now, cloud_id="i-1")
    store.close()
    res = _burst("status", "--config", str(cfg))
    assert res.exit_code == 0, res.stdout
    text = " ".join(res.stdout.split())
    assert ("budget team:ml:day: spent $0.53, committed $32.53 (hard $10.00) - HARD CAP REACHED: no new cloud "
            "capacity for team ml until the next day (UTC) or a raised cap; running work continues") in text
    shown = " ".join(_burst("budget", "show", "--config", str(cfg)).stdout.split())
    assert "team:ml:day: spent $0.53, committed $32.53 (hard $10.00) - HARD CAP REACHED" in shown
    doc = json.loads(_burst("status", "--json", "--config", str(cfg)).stdout)
    assert {b["budget"]: b["blocked"] for b in doc["budgets"]} == {"site:month": False, "team:ml:day": True}
