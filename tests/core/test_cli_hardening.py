"""The ``burst`` commands under hostile or careless input (issue 12, "Configuration" and
"Controller and CLI"): one line and exit 2 for bad input, exit 1 when the world is broken,
never a traceback, nothing created by a read-only command, no password in any message."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from burst.cli import app
from tests.support.logging_state import restore_logging

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("restore_logging")
_ = restore_logging  # the fixture, imported for usefixtures
ITP = "job_id,submission_time,duration,num_gpu\n"


def _burst(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, list(args))


def _one_error_line(res, *words: str, code: int = 2) -> str:  # type: ignore[no-untyped-def]
    assert res.exit_code == code, (res.exit_code, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr + res.stdout
    lines = [ln for ln in res.stderr.splitlines() if ln.strip() and not ln[:4].isdigit()]  # log lines start with a date
    assert len(lines) == 1, lines
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


# ---- config check ---------------------------------------------------------------------------------


def test_config_check_refuses_duplicate_keys_naming_both_lines(tmp_path: Path) -> None:
    cfg = tmp_path / "burst.yaml"
    cfg.write_text("budget:\n  month_usd: 500\nbudget:\n  day_usd: 10\n")
    _one_error_line(_burst("config", "check", str(cfg)), f"{cfg}:3", "duplicate key 'budget'", "lines 1 and 3")


def test_config_check_says_an_empty_file_is_empty(tmp_path: Path) -> None:
    """The systemd unit's ExecStartPre runs `burst config check`: an empty file must stop it."""
    cfg = tmp_path / "burst.yaml"
    cfg.write_text("")
    _one_error_line(_burst("config", "check", str(cfg)), str(cfg), "is empty")


def test_config_check_refuses_the_alias_bomb_in_a_second(tmp_path: Path) -> None:
    from tests.unit.test_config_hardening import BOMB

    cfg = tmp_path / "burst.yaml"
    cfg.write_text(BOMB)
    t0 = time.process_time()
    _one_error_line(_burst("config", "check", str(cfg)), str(cfg), "aliases expand")
    assert time.process_time() - t0 < 2.0


def test_config_check_caps_the_error_list(tmp_path: Path) -> None:
    cfg = tmp_path / "burst.yaml"
    cfg.write_text("".join(f"k{i}: {i}\n" for i in range(5000)))
    res = _burst("config", "check", str(cfg))
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.exit_code == 2 and len(lines) == 21 and lines[-1].endswith("and 4980 more problem(s)")


def test_config_check_deep_list_is_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "burst.yaml"
    cfg.write_text("policy: " + "[" * 5000 + "]" * 5000 + "\n")
    _one_error_line(_burst("config", "check", str(cfg)), f"{cfg}:1", "nested deeper than")


def test_config_check_never_echoes_the_database_password(tmp_path: Path) -> None:
    cfg = tmp_path / "burst.yaml"
    cfg.write_text("database_url: mysql://admin:hunter2@db.internal/burst\n")
    line = _one_error_line(_burst("config", "check", str(cfg)), "database_url", "SQLite", "PostgreSQL")
    assert "hunter2" not in line


def test_config_errors_are_not_read_as_markup(tmp_path: Path) -> None:
    cfg = tmp_path / "burst.yaml"
    cfg.write_text("'[/red] [bold]x': 1\n")
    _one_error_line(_burst("config", "check", str(cfg)), "[/red] [bold]x", "unknown key")


# ---- database URLs ----------------------------------------------------------------------------------


def test_simulate_store_garbage_is_one_line(tmp_path: Path) -> None:
    res = _burst("simulate", "--days", "0.1", "--policy", "never", "--store", "garbage")
    _one_error_line(res, "--store", "not a database URL", "SQLite", "PostgreSQL")
    assert res.stdout == ""  # refused before the replay


@pytest.mark.parametrize("cmd", [["status"], ["gc", "list"], ["gc", "show", "gc-000000"]])
def test_database_url_garbage_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cmd: list[str]) -> None:
    monkeypatch.chdir(tmp_path)
    line = _one_error_line(_burst(*cmd, "--database-url", "mysql://root:hunter2@db/x"), "--database-url", "unsupported database 'mysql'")
    assert "hunter2" not in line
    assert list(tmp_path.iterdir()) == []


def test_db_url_mysql_names_the_supported_databases() -> None:
    res = _burst("db", "current", "--url", "mysql://root:hunter2@db/x")
    assert res.exit_code == 2 and "Traceback" not in res.stderr
    assert "SQLite" in res.stderr and "PostgreSQL" in res.stderr and "hunter2" not in res.stderr


def test_run_once_with_an_unreachable_database_is_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "burst.yaml"
    cfg.write_text("database_url: postgresql+psycopg://burst:hunter2@127.0.0.1:1/burst\n")
    line = _one_error_line(_burst("run", "--once", "--config", str(cfg)), "database", "127.0.0.1", code=1)
    assert "hunter2" not in line and "***" in line


# ---- run --once ---------------------------------------------------------------------------------------


def test_run_once_exits_non_zero_when_the_queue_is_unreadable(tmp_path: Path) -> None:
    cfg = tmp_path / "burst.yaml"
    cfg.write_text(f"database_url: sqlite:///{tmp_path / 'b.db'}\nqueue:\n  kind: jsonfile\n  jsonfile: {tmp_path / 'missing.json'}\n")
    _one_error_line(_burst("run", "--once", "--config", str(cfg)), "did not act", "queue", code=1)


def _gang_world(tmp_path: Path) -> Path:
    trace = tmp_path / "t.csv"
    trace.write_text(ITP + "j0,0,86400,8\ng1,60,86400,32\n")  # one node busy; a 4-node gang waits 2.4 h
    cfg = tmp_path / "burst.yaml"
    cfg.write_text(
        f"cluster: t\ndatabase_url: sqlite:///{tmp_path / 'b.db'}\n"
        f"queue:\n  kind: sim\n  sim:\n    nodes: 1\n    start_day: 0.1\n    trace: {trace}\n"
    )
    return cfg


def test_run_logs_a_gang_launch_once_in_json(tmp_path: Path) -> None:
    res = _burst("run", "--once", "--config", str(_gang_world(tmp_path)), "--log-format", "json")
    assert res.exit_code == 0, res.stderr
    records = [json.loads(ln) for ln in res.stderr.splitlines() if ln.strip()]
    assert all(set(r) == {"ts", "level", "logger", "msg", "fields"} for r in records)
    launches = [r for r in records if r["fields"].get("decision", "").startswith("launch")]
    assert len(launches) == 1, launches  # not one identical line per member
    gang = launches[0]
    assert gang["fields"]["decision"] == "launch-gang" and "g1" in gang["fields"]["objects"]
    members = [o for o in gang["fields"]["objects"] if o.startswith("b-")]
    assert len(members) == 4 and all(m in gang["msg"] for m in members)


def test_run_refuses_an_unknown_log_format(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _one_error_line(_burst("run", "--once", "--log-format", "xml"), "--log-format")
    assert list(tmp_path.iterdir()) == []


# ---- status and read-only commands ------------------------------------------------------------------


def test_status_counts_actions_per_kind(tmp_path: Path) -> None:
    from burst.store.sql import SqlStore

    db = tmp_path / "b.db"
    st = SqlStore.from_url(f"sqlite:///{db}")
    st.set_controller_status({"at": 1.0e9, "pending": 3, "actions": ["Launch"] * 51 + ["Terminate"] * 2 + ["Drain"]}, now=1.0e9)
    st.close()
    res = _burst("status", "--database-url", f"sqlite:///{db}")
    assert res.exit_code == 0, res.stderr
    text = " ".join(res.stdout.split())
    assert "actions 51 Launch, 2 Terminate, 1 Drain" in text and "Launch, Launch" not in text


@pytest.mark.parametrize(
    "cmd",
    [["status"], ["status", "--json"], ["gc", "list"], ["gc", "show", "gc-000000"], ["--help"], ["simulate", "--help"],
     ["config", "check", "missing.yaml"], ["db", "--help"]],
    ids=lambda c: "-".join(c),
)
def test_read_only_commands_create_nothing_in_an_empty_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cmd: list[str]) -> None:
    monkeypatch.chdir(tmp_path)
    res = _burst(*cmd)
    assert "Traceback" not in res.stdout + res.stderr
    assert list(tmp_path.iterdir()) == [], res.stdout
    if cmd[0] == "status":
        assert res.exit_code == 0, res.stderr


# ---- simulate -------------------------------------------------------------------------------------------


def test_simulate_report_naming_a_file_is_refused_before_the_replay(tmp_path: Path) -> None:
    report = tmp_path / "report"
    report.write_text("precious")
    res = _burst("simulate", "--days", "2", "--policy", "never", "--report", str(report))
    _one_error_line(res, "--report", str(report), "not a directory")
    assert res.stdout == "" and report.read_text() == "precious"  # nothing replayed, nothing touched


def test_simulate_report_under_a_file_is_refused(tmp_path: Path) -> None:
    parent = tmp_path / "file"
    parent.write_text("x")
    _one_error_line(_burst("simulate", "--days", "1", "--policy", "never", "--report", str(parent / "r")), "--report")


def test_simulate_a_job_bigger_than_the_cluster_says_so_and_fails(tmp_path: Path) -> None:
    trace = tmp_path / "t.csv"
    trace.write_text("id,submit_time,duration,gpus\nbig,0,3600,2000\nsmall,0,60,1\n")
    res = _burst("simulate", "--trace", str(trace), "--format", "csv", "--nodes", "2", "--policy", "never")
    _one_error_line(res, "unfinished", "1 under never", "job big asks for 2000 GPUs", code=1)
    assert "unfinished" in res.stdout  # a column of the table, not only in --json


@pytest.mark.parametrize(("fmt", "header"), [("itp", ITP), ("csv", "id,submit_time,duration,gpus\n")])
def test_simulate_accepts_a_byte_order_mark(tmp_path: Path, fmt: str, header: str) -> None:
    trace = tmp_path / "t.csv"
    trace.write_bytes(b"\xef\xbb\xbf" + (header + "a,0,60,1\n").encode())
    res = _burst("simulate", "--trace", str(trace), "--format", fmt, "--nodes", "2", "--policy", "never")
    assert res.exit_code == 0, res.stderr


# ---- the other CLIs: burst mirror, burst bot ---------------------------------------------------------


def test_mirror_config_with_duplicate_keys_is_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "burst.yaml"
    cfg.write_text("mirror:\n  source: {registry: harbor.local}\nmirror:\n  parallel: 4\n")
    res = _burst("mirror", "harbor.local/team/app:v1", "--to", "aws:us-east-1", "--config", str(cfg))
    assert res.exit_code == 2 and "Traceback" not in res.stdout + res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "lines 1 and 3" in lines[0], lines  # not wrapped at 80 columns


def test_bot_refuses_a_bomb_config_and_a_bad_log_format(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.unit.test_config_hardening import BOMB

    monkeypatch.setenv("SLACK_SIGNING_SECRET", "s")
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1")
    cfg = tmp_path / "burst.yaml"
    cfg.write_text(BOMB)
    _one_error_line(_burst("bot", "serve", "--config", str(cfg), "--slack-api-url", "http://127.0.0.1:1/api/"), "aliases expand")
    _one_error_line(_burst("bot", "socket", "--log-format", "xml"), "--log-format")


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_an_endless_trace_or_config_is_refused_without_reading_it_whole(device: str) -> None:
    t0 = time.process_time()
    _one_error_line(_burst("simulate", "--trace", device, "--policy", "never"), f"{device}:1")
    _one_error_line(_burst("config", "check", device), device)
    assert time.process_time() - t0 < 3.0


CATALOG_HEADER = b"cloud,instance_type,region,availability_zone,accelerator_name,accelerator_count,price_per_hour,spot_price_per_hour\n"


@pytest.mark.parametrize(
    ("body", "word"),
    [(b"cloud,instance_type\n\xff\xfe\n", "not UTF-8"), (CATALOG_HEADER + b"a" * 200_000 + b"\n", "malformed CSV"),
     (CATALOG_HEADER + b"aws,p4d\n", "fewer fields")],
    ids=["not-utf8", "huge-field", "short-row"],
)
def test_a_bad_price_catalog_is_one_line_and_creates_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: bytes, word: str) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "prices.csv").write_bytes(body)
    (tmp_path / "burst.yaml").write_text("offers:\n  catalog: prices.csv\n")
    _one_error_line(_burst("run", "--once", "--config", "burst.yaml"), "prices.csv", word)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["burst.yaml", "prices.csv"]
