"""``burst status``: its body (:func:`run`, which the Typer command calls too) and a fast path that
runs it without Typer (:func:`fast_status`; issue 15: start-up ≤ 0.3 s).

The fast path takes only command lines whose meaning is certain: ``burst status`` followed by at
most one each of ``--json``, ``--config PATH`` / ``--config=PATH`` and ``--database-url URL`` /
``--database-url=URL``, values non-empty and not starting with ``-``. Anything else (``--help``,
an unknown or repeated option, a missing value) goes to Typer, which prints its usual help or
usage error. What the fast path runs is :func:`run`, the same function the Typer command runs,
with the same arguments; only the way an error ends the process differs (``SystemExit`` here,
``typer.Exit`` there: the same line on stderr and the same exit code).
``tests/unit/test_status_fast.py`` runs both on the same states and compares stdout, stderr and
exit codes.

What :func:`run` avoids importing for the common case:

* **pydantic** (the configuration models): with no ``--config``, the embedded defaults are read
  from :data:`EMBEDDED`, the few values ``status`` needs (``tests/unit/test_status_fast.py``
  holds them equal to :func:`burst.config.default_config`'s). A ``--config`` file is loaded and
  validated by :func:`burst.config.load_config` as before.
* **SQLAlchemy**: a SQLite store at the newest revision, or one that does not exist yet, is read
  through :mod:`burst.store.sqlite_read` (why a second reader, and how it is held to ``SqlStore``,
  is said there). PostgreSQL, an in-memory URL, a store that needs migrating, or any SQLite error
  take the ``SqlStore`` path exactly as before (which migrates, or reports the error as one
  line).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, cast

from burst.cli_common import Fail, check_db_url, console, exit_with, open_store, sqlite_file

if TYPE_CHECKING:
    from burst.budgets import BudgetState
    from burst.config import BurstConfig
    from burst.domain import Instance
    from burst.ports import Store


# ---- the embedded defaults status reads ----------------------------------------------------------


@dataclass(frozen=True)
class _Budget:
    """``budget:`` of the embedded defaults: no site or team budget."""

    month_usd: float = 0.0
    day_usd: float = 0.0
    soft_month_usd: float = 0.0
    soft_day_usd: float = 0.0
    teams: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    team_of: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class _Policy:
    reserve_hours_per_launch: float = 0.25


@dataclass(frozen=True)
class _Embedded:
    """What ``status`` and :func:`burst.budgets.budget_book` read of the embedded defaults, with
    the same names as :class:`burst.config.BurstConfig`'s fields."""

    database_url: str = "sqlite:///.burst/burst.db"
    tick_interval_s: float = 30.0
    budget: _Budget = _Budget()
    policy: _Policy = _Policy()


EMBEDDED = _Embedded()


# ---- the command ---------------------------------------------------------------------------------


def run(config: Path | None, database_url: str | None, json_out: bool, fail: Fail) -> None:
    """Instances, spend and pending overflow, read from the store (``burst status``)."""
    from burst.errors import InputError

    if config is None:
        cfg = cast("BurstConfig", EMBEDDED)  # duck-typed: only the fields above are read
    else:
        from burst.config import load_config

        try:
            cfg = load_config(config)
        except InputError as e:
            fail(str(e), 2)
    url = database_url or cfg.database_url
    option = "--database-url" if database_url else "database_url"
    check_db_url(url, option, fail)
    path = sqlite_file(url)
    if path is not None and url.startswith("sqlite:///") and "?" not in url:
        import sqlite3

        from burst.store.sqlite_read import open_current

        reader = open_current(path)
        if reader is not None:
            try:
                # Every read happens before anything is printed: on an error nothing is out yet.
                state = _read(cfg, cast("Store", reader))  # duck-typed: it has the reads _read makes
            except sqlite3.Error:
                pass  # the SqlStore path below answers, or reports the problem as it always has
            else:
                _print(cfg, *state, json_out=json_out)
                return
    state = _read(cfg, open_store(url, option, fail, read_only=True))
    _print(cfg, *state, json_out=json_out)


_State = tuple[float, list["Instance"], float, float, "dict[str, Any] | None", list["BudgetState"]]


def _read(cfg: BurstConfig, st: Store) -> _State:
    """Everything ``status`` shows: (now, live instances, spend today, this month, the last
    tick's summary, budget states)."""
    from burst.budgets import budget_book
    from burst.domain import day_start, month_start

    last = st.controller_status()
    now = last["at"] if last else time.time()
    live = st.live_instances()
    month = st.spend(since=month_start(now), now=now)
    day = st.spend(since=day_start(now), now=now)
    return now, live, day, month, last, budget_book(cfg, st).states(now)


def _print(cfg: BurstConfig, now: float, live: list[Instance], day: float, month: float, last: dict[str, Any] | None,
           budget_states: list[BudgetState], *, json_out: bool) -> None:
    data = {
        "as_of": now,
        "instances": [
            {"id": i.id, "state": str(i.state), "purpose": str(i.purpose), "cloud": i.cloud, "region": i.region, "type": i.instance_type, "gpus": i.gpus, "usd_per_hour": i.price_per_hour, "node": i.node_name}
            for i in live
        ],
        "spend_today_usd": day,
        "spend_month_usd": month,
        "budget_month_usd": cfg.budget.month_usd,
        "last_tick": last,
        "budgets": [budget_dict(b) for b in budget_states],
    }
    if json_out:
        print(json.dumps(data, default=float))
        return
    from rich.table import Table

    t = Table(title=f"burst instances ({len(live)} live)")
    for col in ("id", "state", "purpose", "cloud/region", "type", "GPUs", "$/h", "node"):
        t.add_column(col)
    for i in live:
        t.add_row(i.id, str(i.state), str(i.purpose), f"{i.cloud}/{i.region}", i.instance_type, str(i.gpus), f"{i.price_per_hour:.2f}", i.node_name or "-")
    console.print(t)
    cap = f" of ${cfg.budget.month_usd:,.0f}" if cfg.budget.month_usd else ""
    console.print(f"spend: today ${day:,.2f}, this month ${month:,.2f}{cap}")
    for b in budget_states:
        console.print(f"budget {b.line()}", highlight=False, soft_wrap=True)
    if last:
        console.print(
            f"last tick: {last.get('pending')} pending (longest wait {(last.get('longest_wait_s') or 0) / 60:.1f} min), "
            f"on-prem GPUs {last.get('onprem_gpus_used')}/{last.get('onprem_gpus')}, actions {action_counts(last.get('actions') or [])}"
        )
    else:
        console.print("no tick recorded yet (is `burst run` running?)")


def action_counts(actions: list[str]) -> str:
    """``51 Launch, 2 Terminate`` (most first): a tick's actions by kind, not one name each."""
    from collections import Counter

    counts = Counter(str(a) for a in actions)
    return ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))) or "none"


def budget_dict(b: BudgetState) -> dict[str, object]:
    return {
        "budget": b.limit.name, "soft_usd": b.limit.soft_usd, "hard_usd": b.limit.hard_usd,
        "spent_usd": round(b.spent_usd, 2), "committed_usd": round(b.committed_usd, 2),
        "level": str(b.level), "blocked": b.blocked,
    }


# ---- the fast path -------------------------------------------------------------------------------

_VALUED = {"--config": "config", "--database-url": "database_url"}


def parse(args: list[str]) -> dict[str, Any] | None:
    """``run``'s keyword arguments for the options after ``status``, or None when Typer must
    read them (anything but the plain forms the module docstring lists)."""
    out: dict[str, Any] = {"config": None, "database_url": None, "json_out": False}
    seen: set[str] = set()
    k = 0
    while k < len(args):
        arg = args[k]
        name, eq, value = arg.partition("=")
        if arg == "--json":
            name = arg
        elif name in _VALUED:
            if not eq:
                if k + 1 >= len(args):
                    return None
                k += 1
                value = args[k]
            if not value or value.startswith("-"):
                return None
        else:
            return None
        if name in seen:
            return None
        seen.add(name)
        if name == "--json":
            out["json_out"] = True
        elif name == "--config":
            out["config"] = Path(value)
        else:
            out["database_url"] = value
        k += 1
    return out


def fast_status(argv: list[str]) -> bool:
    """Run ``burst status`` without Typer and return True when :func:`parse` takes the command
    line; else do nothing and return False."""
    if argv[1:2] != ["status"]:
        return False
    kwargs = parse(argv[2:])
    if kwargs is None:
        return False
    from burst.errors import InputError

    try:
        run(fail=exit_with, **kwargs)
    except InputError as e:  # as burst.cli.main: anything that escaped the command's own handling
        exit_with(str(e), 2)
    sys.stdout.flush()
    return True
