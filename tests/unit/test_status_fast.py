"""``burst status``'s fast path (burst/cli_status.py) behaves exactly as the Typer command: the same
stdout, stderr and exit code on the same state, for every option form it takes; it declines the
forms it does not take (Typer answers them); it loads neither Typer, SQLAlchemy nor pydantic on a
current store with the embedded defaults; and the defaults it reads without pydantic are the
embedded config's."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from burst.cli_status import EMBEDDED, parse
from burst.config import default_config
from burst.store.sql import SqlStore
from tests.store.test_sqlite_read import NOW, _populate

ROOT = Path(__file__).resolve().parents[2]
FAST = "import sys; sys.argv[0] = 'burst'; from burst.cli_help import main; main()"  # the console script
TYPER = "import sys; sys.argv[0] = 'burst'; from burst.cli import app; app()"  # the Typer command only
PROBE = "import atexit, json, sys\natexit.register(lambda: sys.stderr.write('\\nMODULES ' + json.dumps(sorted(sys.modules))))\n"


def _run(code: str, args: list[str], cwd: Path) -> tuple[str, str, int]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "FORCE_COLOR", "NO_COLOR")}
    env["PYTHONPATH"] = str(ROOT)
    p = subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True)
    return p.stdout, p.stderr, p.returncode


def _both(args: list[str], make: object, tmp_path: Path) -> tuple[str, str, int]:
    """Run ``burst status ARGS`` through the fast path and through Typer, each on its own copy of
    the state ``make(dir)`` builds; assert identical results; return them."""
    out = []
    for name, code in (("fast", FAST), ("typer", TYPER)):
        d = tmp_path / name
        d.mkdir()
        make(d)  # type: ignore[operator]
        out.append(_run(code, ["status", *args], d))
    # with no tick recorded, "as_of" is the clock at the run: the one field allowed to differ
    same = [(re.sub(r'^\{"as_of": [0-9.e+]+, (.*"last_tick": null)', r'{"as_of": T, \1', o), e, rc) for o, e, rc in out]
    assert same[0] == same[1]
    return out[0]


def _empty(d: Path) -> None:
    pass


def _current(d: Path) -> None:
    st = SqlStore.from_url(f"sqlite:///{d}/.burst/burst.db")
    try:
        _populate(st)
    finally:
        st.close()
    (d / "budgets.yaml").write_text("budget:\n  month_usd: 500\n  soft_day_usd: 2\n  teams:\n    nlp:\n      day_usd: 50\n")
    (d / "bad.yaml").write_text("budget:\n  month_usd: -1\n")


@pytest.mark.parametrize("args", [
    [],
    ["--json"],
    ["--config", "budgets.yaml"],
    ["--json", "--config=budgets.yaml"],
    ["--database-url", "sqlite:///elsewhere/none.db", "--json"],  # absent: read as empty, not created
    ["--config", "bad.yaml"],  # the config's one-line error, exit 2
    ["--config", "missing.yaml"],
    ["--database-url=mysql://u@h/db"],  # not burst's database: exit 2
    ["--database-url", "sqlite://"],  # in memory: the SqlStore path
    ["--json=1"], ["--config"], ["--help"], ["--database-url", "--json"], ["--verbose"],  # Typer's own answers
])
def test_fast_path_prints_as_typer_on_a_current_store(args: list[str], tmp_path: Path) -> None:
    stdout, stderr, rc = _both(args, _current, tmp_path)
    if args in ([], ["--config", "budgets.yaml"]):
        assert rc == 0 and "burst-aws-1" in stdout and "3 pending" in stdout and "budget site:month" in stdout
    if "--json" in args and rc == 0 and "--database-url" not in args:
        assert json.loads(stdout)["as_of"] == NOW
    assert not (tmp_path / "fast" / "elsewhere").exists()


def test_fast_path_prints_as_typer_in_an_empty_directory_and_creates_nothing(tmp_path: Path) -> None:
    stdout, stderr, rc = _both([], _empty, tmp_path)
    assert rc == 0 and "no tick recorded yet" in stdout and stderr == ""
    for name in ("fast", "typer"):
        assert list((tmp_path / name).iterdir()) == []


def _stale(d: Path) -> None:
    _current(d)
    with sqlite3.connect(d / ".burst" / "burst.db") as c:
        c.execute("UPDATE alembic_version SET version_num = 'zzzz'")


def test_fast_path_reports_an_unknown_revision_as_typer(tmp_path: Path) -> None:
    stdout, stderr, rc = _both([], _stale, tmp_path)
    assert rc == 1 and stderr.startswith("error: database sqlite:///.burst/burst.db: ")


def _corrupt(d: Path) -> None:
    (d / ".burst").mkdir()
    (d / ".burst" / "burst.db").write_bytes(b"this is not a database " * 200)


def test_fast_path_reports_an_unreadable_file_as_typer(tmp_path: Path) -> None:
    stdout, stderr, rc = _both([], _corrupt, tmp_path)
    assert rc == 1 and stderr.startswith("error: database sqlite:///.burst/burst.db: ")


def test_fast_path_loads_no_typer_sqlalchemy_nor_pydantic(tmp_path: Path) -> None:
    _current(tmp_path)
    stdout, stderr, rc = _run(PROBE + FAST, ["status"], tmp_path)
    assert rc == 0, stderr
    loaded = set(json.loads(stderr.split("MODULES ", 1)[1]))
    heavy = {m.split(".")[0] for m in loaded} & {"typer", "click", "sqlalchemy", "alembic", "pydantic"}
    assert not heavy
    shutil.rmtree(tmp_path / ".burst")
    stdout, stderr, rc = _run(PROBE + FAST, ["status", "--json"], tmp_path)  # empty directory
    assert rc == 0 and list(tmp_path.iterdir()) == [p for p in tmp_path.iterdir() if p.suffix == ".yaml"]
    loaded = set(json.loads(stderr.split("MODULES ", 1)[1]))
    assert not {m.split(".")[0] for m in loaded} & {"typer", "click", "sqlalchemy", "alembic", "pydantic"}


def test_parse_takes_only_the_plain_forms() -> None:
    assert parse([]) == {"config": None, "database_url": None, "json_out": False}
    assert parse(["--json", "--config", "c.yaml", "--database-url=sqlite://"]) == {
        "config": Path("c.yaml"), "database_url": "sqlite://", "json_out": True}
    for declined in (["--json", "--json"], ["--config", "a", "--config", "b"], ["--config"], ["--config="],
                     ["--config", "-x"], ["--json=yes"], ["--help"], ["--"], ["x"], ["--data", "sqlite://"]):
        assert parse(declined) is None, declined


def test_embedded_defaults_are_the_configs() -> None:
    cfg = default_config()
    assert EMBEDDED.database_url == cfg.database_url
    assert EMBEDDED.tick_interval_s == cfg.tick_interval_s
    assert EMBEDDED.policy.reserve_hours_per_launch == cfg.policy.reserve_hours_per_launch
    for name in ("month_usd", "day_usd", "soft_month_usd", "soft_day_usd", "teams", "team_of"):
        assert getattr(EMBEDDED.budget, name) == getattr(cfg.budget, name), name
