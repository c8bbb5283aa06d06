"""``burst simulate --grand-challenge``: the what-if runs the challenge through the replay's own
Controller.tick on the bundled trace; every preempted job comes back and every job finishes; the
table and the JSON summary carry the challenge's figures; bad values are one line, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from burst.cli import app

runner = CliRunner()


def _simulate(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["simulate", "--days", "3", "--nodes", "80", "--policy", "burst", *args])


def test_a_challenge_on_the_bundled_trace_gives_every_job_back(tmp_path: Path) -> None:
    report = tmp_path / "report"
    res = _simulate("--grand-challenge", "1,6h", "--grand-challenge", "2,2h,16", "--json", "--report", str(report))
    assert res.exit_code == 0, res.stdout + res.stderr
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["policies"]["burst"]["unfinished"] == 0
    first, second = summary["challenges"]
    for c in (first, second):
        assert c["state"] == "done"
        assert c["preempted_jobs"] == c["restored_jobs"]
        assert set(c) >= {"start", "end", "nodes", "preempted_jobs", "restored_jobs", "lost_gpu_hours",
                          "challenge_started_s", "restored_s"}
        assert c["end"] - c["start"] in (6 * 3600, 2 * 3600)
        assert c["challenge_started_s"] is not None and c["challenge_started_s"] >= 0
    assert first["preempted_jobs"] > 0, "the scenario must preempt something, or it tests nothing"
    assert first["nodes"] == 80 and second["nodes"] == 16
    assert first["lost_gpu_hours"] >= 0
    # the table after the policy table
    assert "grand challenge 1:" in res.stdout and "grand challenge 2:" in res.stdout
    # the written summary has them per policy
    written = json.loads((report / "summary.json").read_text())
    assert written["policies"]["burst"]["challenges"] == summary["challenges"]


def test_without_the_flag_the_summary_has_no_challenges() -> None:
    res = _simulate("--json")
    assert res.exit_code == 0
    assert "challenges" not in json.loads(res.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    ("values", "words"),
    [
        (["1"], ["--grand-challenge", "START,DURATION"]),
        (["soon,6h"], ["START", "soon"]),
        (["1,6x"], ["not a duration"]),
        (["1,0h"], ["more than 0"]),
        (["1,6h,81"], ["81 nodes", "has 80"]),
        (["1,15d"], ["over the maximum"]),
        (["-1,6h"], ["in the past"]),
        (["1,6h", "1.1,6h"], ["1.1,6h", "overlaps"]),
    ],
    ids=["no-duration", "bad-start", "bad-duration", "zero", "too-many-nodes", "too-long", "before-trace", "overlap"],
)
def test_bad_grand_challenge_is_one_line_exit_2(tmp_path: Path, values: list[str], words: list[str]) -> None:
    report = tmp_path / "report"
    args = [a for v in values for a in ("--grand-challenge", v)]
    res = _simulate(*args, "--report", str(report))
    assert res.exit_code == 2, (res.exit_code, res.stdout, res.stderr)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in res.stdout + res.stderr, lines
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert not report.exists()
