"""``burst --help`` from the kept text (burst/cli_help.py) is byte for byte Typer's output, loads
no Typer or Rich, and is used only where Typer would print exactly that text."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from burst.cli_help import RENDER_ENV, applies, render_with_typer
from burst.cli_help_text import TEXT

ROOT = Path(__file__).resolve().parents[2]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in RENDER_ENV}
    env["PYTHONPATH"] = str(ROOT)
    return env | extra


class _Out(io.StringIO):
    def __init__(self, tty: bool, encoding: str = "utf-8") -> None:
        super().__init__()
        self._tty, self._enc = tty, encoding

    def isatty(self) -> bool:
        return self._tty

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self._enc


def test_kept_text_is_what_typer_prints() -> None:
    """Fails when a command or its help changes: render again with ``python -m burst.cli_help --write``."""
    assert render_with_typer() == TEXT


@pytest.mark.parametrize("entry", ["burst.cli_help", "burst.cli"])
def test_entry_points_print_the_kept_text_without_typer(entry: str, tmp_path: Path) -> None:
    code = (
        f"import sys, json; sys.argv[0] = 'burst'; from {entry} import main; main()\n"
        "sys.stderr.write(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    out = subprocess.run([sys.executable, "-c", code, "--help"], cwd=tmp_path, env=_env(), capture_output=True, check=True)
    assert out.stdout.decode("utf-8") == TEXT
    loaded = set(json.loads(out.stderr))
    if entry == "burst.cli_help":
        assert not loaded & {"typer", "rich", "click", "sqlalchemy", "pydantic"}
    else:
        assert "typer" in loaded  # burst.cli defines the app, but the renderer is never loaded
    assert "typer.rich_utils" not in out.stderr.decode()


def test_console_script_is_the_fast_entry() -> None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["project"]["scripts"]["burst"] == "burst.cli_help:main"


def test_other_invocations_go_to_typer(tmp_path: Path) -> None:
    """Where the output could differ (here: COLUMNS set), Typer renders it: 100 columns wide."""
    code = "import sys; sys.argv[0] = 'burst'; from burst.cli_help import main; main()"
    out = subprocess.run([sys.executable, "-c", code, "--help"], cwd=tmp_path, env=_env(COLUMNS="100"),
                         capture_output=True, check=True)
    text = out.stdout.decode("utf-8")
    assert text != TEXT and max(len(line) for line in text.splitlines()) == 100


@pytest.mark.parametrize(
    ("argv", "tty", "encoding", "env", "want"),
    [
        (["burst", "--help"], False, "utf-8", {}, True),
        (["/usr/local/bin/burst", "--help"], False, "UTF-8", {}, True),
        (["burst", "--help"], True, "utf-8", {}, False),  # a terminal: colours and its width
        (["burst", "--help"], False, "ascii", {}, False),  # Rich draws ASCII boxes
        (["burst", "--help"], False, "utf-8", {"COLUMNS": "120"}, False),
        (["burst", "--help"], False, "utf-8", {"FORCE_COLOR": "1"}, False),
        (["burst", "--help"], False, "utf-8", {"TERMINAL_WIDTH": "60"}, False),
        (["burst"], False, "utf-8", {}, False),
        (["burst", "status", "--help"], False, "utf-8", {}, False),
        (["burst", "--help", "x"], False, "utf-8", {}, False),
        (["python -m burst.cli", "--help"], False, "utf-8", {}, False),  # another program name
    ],
)
def test_applies_only_where_typer_prints_the_kept_text(
    argv: list[str], tty: bool, encoding: str, env: dict[str, str], want: bool
) -> None:
    assert applies(argv, env, _Out(tty, encoding)) is want
