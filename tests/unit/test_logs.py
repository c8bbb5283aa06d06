"""Redaction, log lines and decision lines (issue 12: credentials never in a message or a log;
quiet libraries; one line per decision naming every object it touches; --log-format json)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

from burst import logs
from burst.domain import (
    Drain,
    Launch,
    Market,
    Mirror,
    Notify,
    Offer,
    Plan,
    Purpose,
    Release,
    Terminate,
    Undrain,
)
from burst.executor import decision_lines
from burst.redact import escape_control, redact
from tests.support.logging_state import restore_logging

_ = restore_logging  # the fixture, requested by name below


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("postgresql+psycopg://burst:hunter2@db:5432/burst", "hunter2"),
        ("mysql://root:p@ss/w0rd@db/x", "p@ss/w0rd"),
        ("connect failed for 'postgresql://u:hunter2@h/db' (timeout)", "hunter2"),
        ("host=db user=burst password=hunter2 dbname=burst", "hunter2"),
        ("postgresql://u@h/db?sslpassword=hunter2&x=1", "hunter2"),
        ("burst:hunter2@db.internal/burst", "hunter2"),
        ("token: xoxb-hunter2", "xoxb-hunter2"),
    ],
)
def test_redact_hides_every_credential(text: str, secret: str) -> None:
    out = redact(text)
    assert secret not in out and "***" in out


@pytest.mark.parametrize("text", ["sqlite:///.burst/burst.db", "postgresql+psycopg://burst@db/burst", "http://host:8080/x", "no secrets"])
def test_redact_leaves_the_rest_alone(text: str) -> None:
    assert redact(text) == text


def test_escape_control_keeps_one_line() -> None:
    assert escape_control("a\nCRITICAL forged\r\x1b[31m\u202eb") == "a\\nCRITICAL forged\\r\\x1b[31m\\u202eb"


def _record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("burst.test", logging.WARNING, __file__, 1, msg, args, None)
    for k, v in extra.items():
        setattr(rec, k, v)
    return rec


def test_text_lines_are_one_line_and_redacted() -> None:
    line = logs.TextFormatter().format(_record("db %s said\nCRITICAL admin approved", "postgresql://u:hunter2@h/db"))
    assert "\n" not in line and "hunter2" not in line and "\\nCRITICAL" in line
    assert " WARNING burst.test: db postgresql://u:***@h/db said" in line


def test_json_lines_carry_ts_level_logger_msg_fields() -> None:
    line = logs.JsonFormatter().format(_record("launch %s", "b-1", decision="launch", objects=["b-1", "j-1"], url="mysql://a:hunter2@h/x"))
    data = json.loads(line)
    assert set(data) == {"ts", "level", "logger", "msg", "fields"}
    assert data["level"] == "WARNING" and data["logger"] == "burst.test" and data["msg"] == "launch b-1"
    assert data["fields"]["decision"] == "launch" and data["fields"]["objects"] == ["b-1", "j-1"]
    assert "hunter2" not in line and data["ts"].endswith("Z")


def test_setup_refuses_an_unknown_format() -> None:
    with pytest.raises(ValueError, match="text, json"):
        logs.setup(logging.INFO, "xml")


def test_apscheduler_is_quiet_and_a_skipped_tick_is_said_once(capsys: pytest.CaptureFixture[str], restore_logging: None) -> None:
    """A real APScheduler interval job slower than its interval, as burst.scheduling sets it up."""
    from apscheduler.schedulers.background import BackgroundScheduler

    logs.setup(logging.INFO, "text")
    sched = BackgroundScheduler()
    sched.add_job(lambda: time.sleep(0.35), "interval", seconds=0.1, max_instances=1, coalesce=True, misfire_grace_time=None)
    sched.start()
    # Wait (with a deadline) until APScheduler has skipped at least three ticks, rather than a fixed
    # sleep: a loaded machine may not get the scheduler thread through several ticks in 1.3 s.
    (skips,) = [f for f in logging.getLogger("apscheduler.scheduler").filters if isinstance(f, logs.SkippedTickFilter)]
    deadline = time.monotonic() + 30
    while skips.skipped < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    sched.shutdown(wait=True)
    assert skips.skipped >= 3, skips.skipped
    err = capsys.readouterr().err
    assert "Running job" not in err and "executed successfully" not in err and "Added job" not in err
    assert "maximum number of running instances" not in err
    assert err.count("tick skipped: the previous tick is still running") == 1, err


def test_alembic_says_nothing_at_start(tmp_path: Path, capsys: pytest.CaptureFixture[str], restore_logging: None) -> None:
    from burst.store.sql import SqlStore

    logs.setup(logging.INFO, "text")
    SqlStore.from_url(f"sqlite:///{tmp_path / 'b.db'}").close()
    err = capsys.readouterr().err
    assert "alembic" not in err and "Context impl" not in err, err


OFFER = Offer("aws", "p4d.24xlarge", "us-east-1", "use1-az1", "A100", 8, 40.0, 21.96, Market.ON_DEMAND)


def test_a_gang_is_one_decision_naming_every_member_and_job() -> None:
    members = [Launch(f"b-{k}", OFFER, Purpose.OVERFLOW, "g1 (32 GPU) waited 40 min", for_jobs=("g1",), gang_id="gang-1") for k in range(4)]
    plan = Plan(actions=(*members, Launch("b-9", OFFER, Purpose.OVERFLOW, "j9 waited", for_jobs=("j9",))))
    lines = decision_lines(plan)
    assert len(lines) == 2
    kind, objects, text = lines[0]
    assert kind == "launch-gang" and text.startswith("launch gang gang-1: 4 x p4d.24xlarge on aws/us-east-1/use1-az1")
    for k in range(4):
        assert f"b-{k}" in text and f"b-{k}" in objects
    assert "g1" in objects and "for job(s) g1" in text
    assert lines[1][2].startswith("launch b-9: p4d.24xlarge") and "j9" in lines[1][1]


def test_every_decision_names_its_instance() -> None:
    plan = Plan(actions=(
        Drain("b-1", "idle 5 min"), Undrain("b-2", "work pending"), Release("b-3", "gang joined"),
        Terminate("b-4", "drained and empty", cool_offer=True), Mirror("harbor/x:1", "aws", "us-east-1", "first use"),
        Notify("admins", "text", "budget cap"),
    ))
    texts = [t for _, _, t in decision_lines(plan)]
    assert texts == [
        "drain b-1: idle 5 min", "undrain b-2: work pending", "release b-3: gang joined",
        "terminate b-4 (cooling its offer): drained and empty", "mirror harbor/x:1 to aws/us-east-1: first use",
        "notify admins: budget cap",
    ]
