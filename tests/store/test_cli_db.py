"""``burst db upgrade|current|downgrade`` through typer's CliRunner."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from burst.store import migrate
from burst.store.cli_db import app

runner = CliRunner()


HEAD = migrate.head()  # pinned by tests/store/test_migrations.py


def test_upgrade_current_downgrade(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/x/burst.db"
    r = runner.invoke(app, ["current", "--url", url])
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == f"base (newest is {HEAD})"

    r = runner.invoke(app, ["upgrade", "--url", url])
    assert r.exit_code == 0, r.output
    assert f"at revision {HEAD}" in r.stdout
    assert migrate.current(url) == HEAD

    r = runner.invoke(app, ["current", "--url", url])
    assert (r.exit_code, r.stdout.strip()) == (0, HEAD)

    r = runner.invoke(app, ["downgrade", "base", "--url", url])
    assert r.exit_code == 0, r.output
    assert "at revision base" in r.stdout
    assert migrate.current(url) is None


def test_url_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path}/env.db"
    monkeypatch.setenv("BURST_DB_URL", url)
    r = runner.invoke(app, ["upgrade"])
    assert r.exit_code == 0, r.output
    assert migrate.current(url) == HEAD


def test_default_url_is_relative_sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BURST_DB_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["upgrade"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / ".burst" / "burst.db").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["upgrade", "--url", "nosuchdb://x"],
        ["upgrade", "--url", "postgresql+psycopg://nobody:secret@127.0.0.1:1/db"],
        ["downgrade", "nosuchrev", "--url", "sqlite://"],
        ["current", "--url", "not a url"],
    ],
    ids=["bad-scheme", "unreachable", "bad-revision", "garbage"],
)
def test_errors_print_one_line_and_exit_2(args: list[str]) -> None:
    r = runner.invoke(app, args)
    assert r.exit_code == 2, r.output
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "error" in lines[0], r.stderr
    assert "secret" not in r.stderr


def test_help_lists_commands() -> None:
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0
    for cmd in ("upgrade", "current", "downgrade"):
        assert cmd in r.stdout
