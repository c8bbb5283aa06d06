"""``burst status`` on a store at the newest revision loads neither Alembic nor the controller
(start-up, issue 15); a store Alembic cannot read is still one ``error:`` line, exit 1."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CODE = "import sys; sys.argv[0] = 'burst'; from burst.cli_help import main; main()"


def _burst(args: list[str], cwd: Path, probe: bool = False) -> subprocess.CompletedProcess[str]:
    code = CODE
    if probe:  # at exit: Typer ends the process with SystemExit
        code = "import atexit, json, sys\natexit.register(lambda: sys.stderr.write('MODULES ' + json.dumps(sorted(sys.modules))))\n" + code
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True)


def test_status_on_a_current_store_loads_no_alembic_nor_controller(tmp_path: Path) -> None:
    assert _burst(["db", "upgrade"], tmp_path).returncode == 0
    out = _burst(["status", "--json"], tmp_path, probe=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["instances"] == []
    loaded = set(json.loads(out.stderr.split("MODULES ", 1)[1]))
    assert not {m for m in loaded if m == "alembic" or m.startswith("alembic.")}
    assert "burst.controller" not in loaded and "burst.wiring" not in loaded


def test_status_on_a_store_at_an_unknown_revision_is_one_line(tmp_path: Path) -> None:
    assert _burst(["db", "upgrade"], tmp_path).returncode == 0
    with sqlite3.connect(tmp_path / ".burst" / "burst.db") as c:
        c.execute("UPDATE alembic_version SET version_num = 'zzzz'")
    out = _burst(["status"], tmp_path)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == ["error: database sqlite:///.burst/burst.db: Can't locate revision identified by 'zzzz'"]
    assert "Traceback" not in out.stderr
