"""Start-up: what a short command loads. Alembic only when a store has to migrate; no
SQLAlchemy, Alembic or pydantic for ``burst --help``. Each check runs in a fresh interpreter
(the test process has imported everything already)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import inspect

from burst.store import migrate
from burst.store.sql import SqlStore

ROOT = Path(__file__).resolve().parents[2]


def _modules_after(code: str, cwd: Path) -> set[str]:
    """The top-level packages loaded after running ``code`` in a fresh interpreter."""
    probe = code + "\nimport json, sys\nprint(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", probe], cwd=cwd, env=env, capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_shipped_head_is_alembics_head() -> None:
    """The revision lines read without Alembic name the same head Alembic computes: a new
    migration cannot leave a store believed current when it is not."""
    assert migrate.shipped_head() is not None
    assert migrate.shipped_head() == migrate.head()


def test_a_current_store_opens_without_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'b.db'}"
    SqlStore.from_url(url).close()  # a new database: migrated (Alembic runs)
    assert "alembic" not in _modules_after(f"from burst.store.sql import SqlStore\nSqlStore.from_url({url!r}).live_instances()", tmp_path)


def test_a_store_behind_is_still_migrated(tmp_path: Path) -> None:
    """The fast check says 'not current' for an old revision, and the upgrade then runs."""
    url = f"sqlite:///{tmp_path / 'b.db'}"
    migrate.upgrade(url, "0001")
    assert migrate.current(url) == "0001"
    st = SqlStore.from_url(url)
    assert migrate.current(url) == migrate.head()
    assert "grand_challenges" in inspect(st.engine).get_table_names()  # made by 0003
    st.close()


def test_help_loads_no_database_or_config_stack(tmp_path: Path) -> None:
    loaded = _modules_after(
        "import sys\nsys.argv = ['burst', '--help']\nfrom burst.cli import app\n"
        "try:\n    app()\nexcept SystemExit:\n    pass",
        tmp_path,
    )
    assert not loaded & {"sqlalchemy", "alembic", "pydantic", "boto3", "botocore"}
    assert not (tmp_path / ".burst").exists()
