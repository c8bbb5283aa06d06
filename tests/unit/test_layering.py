"""The layering contracts of pyproject.toml ``[tool.importlinter]``, run by ``make lint``.

``lint-imports`` runs on a copy of the source tree: the clean copy keeps every contract, and a copy
with one deliberately wrong import breaks the contract it should (the broken import is named in
the report). The copy is analysed, not the installed package: PYTHONPATH puts it first, and a
wrong import that goes unreported would fail the test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("burst", "providers", "policies", "bot")


def _lint_imports() -> str | None:
    beside = Path(sys.executable).parent / "lint-imports"
    return str(beside) if beside.exists() else shutil.which("lint-imports")


LINT_IMPORTS = _lint_imports()
pytestmark = pytest.mark.skipif(
    LINT_IMPORTS is None, reason="lint-imports (PyPI import-linter, a test extra) is not installed; `make test` installs it"
)


def _tree(tmp: Path) -> Path:
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, tmp / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", tmp / "pyproject.toml")
    return tmp


def _run(tree: Path) -> subprocess.CompletedProcess[str]:
    assert LINT_IMPORTS is not None
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [LINT_IMPORTS, "--no-cache"], cwd=tree, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def _add_import(path: Path, line: str) -> None:
    path.write_text(path.read_text("utf-8") + f"\n{line}  # deliberately wrong (test_layering)\n", "utf-8")


def test_the_tree_keeps_every_contract(tmp_path: Path) -> None:
    res = _run(_tree(tmp_path))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "0 broken" in res.stdout


# (module that gets the import, the import, what the report must name as illegal)
WRONG = {
    "a policy imports a cloud SDK": ("policies/overflow.py", "import boto3", "policies.overflow -> boto3"),
    "a policy imports the store": (
        "policies/budget.py", "from burst.store.sql import SqlStore", "policies.budget -> burst.store.sql"
    ),
    "the controller imports a store adapter": (
        "burst/controller.py", "from burst.store.sql import SqlStore", "burst.controller -> burst.store.sql"
    ),
    "the executor imports a provider": ("burst/executor.py", "import providers.aws", "burst.executor -> providers.aws"),
    "a provider imports the controller": (
        "providers/aws.py", "from burst.controller import Controller", "providers.aws -> burst.controller"
    ),
    "a queue imports the config": (
        "burst/queues/jsonfile.py", "from burst.config import BurstConfig", "burst.queues.jsonfile -> burst.config"
    ),
    "node bootstrap imports a cloud SDK": ("providers/bootstrap.py", "import botocore", "providers.bootstrap -> botocore"),
    "the wiring imports the bot": ("burst/wiring.py", "import bot.notifier", "burst.wiring -> bot.notifier"),
}


@pytest.mark.parametrize("case", list(WRONG))
def test_a_wrong_import_breaks_its_contract(tmp_path: Path, case: str) -> None:
    module, line, edge = WRONG[case]
    tree = _tree(tmp_path)
    _add_import(tree / module, line)
    res = _run(tree)
    assert res.returncode != 0, res.stdout + res.stderr
    # (a wrong import in a policy also breaks the core's contract: the core imports the policies)
    assert " broken" in res.stdout and "0 broken" not in res.stdout, res.stdout
    assert edge in res.stdout, res.stdout
