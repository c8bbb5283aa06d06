"""``burst gc schedule|list|show|cancel|plan``: the admins' CLI over the same path as Slack
(schedule_challenge / request_cancel / challenge_impact / plan_slots), the live queue built from
the config (here a JSON queue document), audit rows with the OS user or ``--as``; bad input is
one line, exit 2, nothing stored."""

from __future__ import annotations

import getpass
import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from burst.cli import app
from burst.domain import ChallengeEnding, ChallengeState, PreemptedJob
from burst.store.sql import SqlStore

runner = CliRunner()
H = 3600.0


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A config whose queue is a JSON document: two on-prem nodes; n1 runs ada's 8-GPU job (10 h
    in), n2 runs bob's 1-GPU job (1 h in)."""
    now = time.time()
    doc = {
        "pending": [],
        "running": [
            {"id": "big", "gpus": 8, "submit_time": now - 11 * H, "start_time": now - 10 * H, "owner": "ada",
             "node_names": ["n1"]},
            {"id": "small", "gpus": 1, "submit_time": now - 2 * H, "start_time": now - 1 * H, "owner": "bob",
             "node_names": ["n2"], "may_burst": False},
        ],
        "nodes": [
            {"name": "n1", "gpus": 8, "gpus_used": 8, "running_jobs": 1},
            {"name": "n2", "gpus": 8, "gpus_used": 1, "running_jobs": 1},
        ],
    }
    (tmp_path / "queue.json").write_text(json.dumps(doc))
    cfg = tmp_path / "burst.yaml"
    cfg.write_text(f"database_url: sqlite:///{tmp_path}/burst.db\nqueue:\n  kind: jsonfile\n  jsonfile: {tmp_path}/queue.json\n")
    (tmp_path / "job.sh").write_text("#!/bin/sh\nsrun ./train\n")
    (tmp_path / "job.yaml").write_text("apiVersion: batch/v1\nkind: Job\nmetadata: {name: gc}\n")
    (tmp_path / "bin.sh").write_bytes(b"\xff\xfe\x00")
    return tmp_path


def gc(site: Path, *args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["gc", *args, "--config", str(site / "burst.yaml")])


def ok_json(res) -> object:  # type: ignore[no-untyped-def]
    assert res.exit_code == 0, (res.exit_code, res.stdout, res.stderr)
    return json.loads(res.stdout.strip().splitlines()[-1])


def one_error_line(res, *words: str) -> str:  # type: ignore[no-untyped-def]
    assert res.exit_code == 2, (res.exit_code, res.stdout, res.stderr)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in res.stderr + res.stdout, lines
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


def stored(site: Path) -> list[str]:
    got = ok_json(gc(site, "list", "--json"))
    assert isinstance(got, list)
    return [str(g["id"]) for g in got]


def test_schedule_shows_the_impact_stores_and_audits(site: Path) -> None:
    out = ok_json(gc(site, "schedule", "--start", "+2h", "--duration", "6h", "--job", str(site / "job.sh"),
                     "--burst-preempted", "--as", "admin-ann", "--json"))
    assert isinstance(out, dict)
    assert out["state"] == "scheduled" and out["job_kind"] == "slurm" and out["burst_preempted"] is True
    assert out["duration_s"] == 6 * H and out["owner"] == "admin-ann"
    impact = out["impact"]
    assert impact["jobs"] == ["big", "small"] and impact["users"] == ["ada", "bob"]
    # work since their last start, at the start: 8 GPUs x 12 h + 1 GPU x 3 h
    assert impact["gpu_hours_at_risk"] == pytest.approx(99.0, abs=0.1)
    assert impact["burst_jobs"] == ["big"]  # small may not burst
    assert impact["burst_preempted_cost_usd"] == pytest.approx(8 * 6 * impact["price_per_gpu_hour"], rel=1e-6)
    assert stored(site) == [out["id"]]
    store = SqlStore.from_url(f"sqlite:///{site}/burst.db")
    rows = [r for r in store.audit_rows(kind="challenge") if r.subject == out["id"]]
    assert rows and rows[0].actor == "admin-ann"
    row = store.get_challenge(str(out["id"]))
    assert row is not None and row.job_text.startswith("#!/bin/sh")


def test_schedule_defaults_to_the_os_user_and_a_manifest_is_kubernetes(site: Path) -> None:
    out = ok_json(gc(site, "schedule", "--start", "+2h", "--duration", "1h", "--nodes", "1",
                     "--job", str(site / "job.yaml"), "--json"))
    assert isinstance(out, dict)
    assert out["owner"] == getpass.getuser() and out["job_kind"] == "kubernetes" and out["nodes"] == 1
    # one node: the one losing the least work (bob's 1-GPU job on n2)
    assert out["impact"]["nodes"] == ["n2"] and out["impact"]["jobs"] == ["small"]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--start", "2020-01-01T00:00Z", "--duration", "6h", "--job", "{d}/job.sh"], ["in the past"]),
        (["--start", "+2h", "--duration", "0", "--job", "{d}/job.sh"], ["duration must be more than 0"]),
        (["--start", "+2h", "--duration", "15d", "--job", "{d}/job.sh"], ["over the maximum"]),
        (["--start", "+2h", "--duration", "6h", "--nodes", "3", "--job", "{d}/job.sh"], ["asks for 3 nodes", "has 2"]),
        (["--start", "+2h", "--duration", "6h", "--job", "{d}/missing.sh"], ["cannot read the challenge job"]),
        (["--start", "+2h", "--duration", "6h", "--job", "{d}/bin.sh"], ["not UTF-8"]),
        (["--start", "+2h", "--duration", "6h", "--job-text", "apiVersion: v1", "--kind", "kubernetes"], ["kind: Job"]),
        (["--start", "+2h", "--duration", "6h"], ["--job PATH or --job-text"]),
        (["--start", "soon", "--duration", "6h", "--job", "{d}/job.sh"], ["--start", "soon"]),
        (["--start", "+2h", "--duration", "six", "--job", "{d}/job.sh"], ["--duration", "six"]),
        (["--start", "+2h", "--duration", "6h", "--job", "{d}/job.sh", "--kind", "pbs"], ["--kind", "pbs"]),
    ],
    ids=["past", "zero", "over-max", "too-many-nodes", "missing", "unreadable", "not-a-job", "no-job",
         "bad-start", "bad-duration", "bad-kind"],
)
def test_bad_schedule_is_one_line_exit_2_and_nothing_stored(site: Path, args: list[str], words: list[str]) -> None:
    res = gc(site, "schedule", *[a.format(d=site) for a in args])
    one_error_line(res, *words)
    assert stored(site) == []


def test_overlap_is_refused(site: Path) -> None:
    first = ok_json(gc(site, "schedule", "--start", "+2h", "--duration", "6h", "--job", str(site / "job.sh"), "--json"))
    assert isinstance(first, dict)
    one_error_line(gc(site, "schedule", "--start", "+4h", "--duration", "1h", "--job", str(site / "job.sh")),
                   "overlaps grand challenge", str(first["id"]))
    assert stored(site) == [first["id"]]


def test_show_and_cancel_before_draining(site: Path) -> None:
    first = ok_json(gc(site, "schedule", "--start", "+2h", "--duration", "6h", "--job", str(site / "job.sh"), "--json"))
    assert isinstance(first, dict)
    cid = str(first["id"])
    shown = ok_json(gc(site, "show", cid, "--json"))
    assert isinstance(shown, dict) and shown["state"] == "scheduled" and shown["preempted"] == 0
    res = gc(site, "show", cid)
    assert res.exit_code == 0 and "scheduled" in res.stdout and "preempted 0" in res.stdout
    out = ok_json(gc(site, "cancel", cid, "--as", "admin-bo", "--json"))
    assert isinstance(out, dict) and out["state"] == "cancelled" and "nothing on the cluster" in str(out["outcome"])
    store = SqlStore.from_url(f"sqlite:///{site}/burst.db")
    assert any(r.actor == "admin-bo" and r.subject == cid for r in store.audit_rows(kind="challenge"))
    assert stored(site) == []
    one_error_line(gc(site, "cancel", cid), "already cancelled")
    one_error_line(gc(site, "show", "gc-000000"), "no such grand challenge")
    one_error_line(gc(site, "cancel", "nonsense"), "no such grand challenge")


def test_cancel_while_running_records_the_cancel_for_the_runner(site: Path) -> None:
    first = ok_json(gc(site, "schedule", "--start", "+2h", "--duration", "6h", "--job", str(site / "job.sh"), "--json"))
    assert isinstance(first, dict)
    cid = str(first["id"])
    store = SqlStore.from_url(f"sqlite:///{site}/burst.db")
    now = time.time()
    for to in (ChallengeState.NOTIFIED, ChallengeState.DRAINING, ChallengeState.PREEMPTING, ChallengeState.RUNNING):
        fields = {"preempted_jobs": (PreemptedJob("big", "ada", 8, 3, 0),)} if to is ChallengeState.PREEMPTING else {}
        store.transition_challenge(cid, to, now=now, actor="grand-challenge", reason="test: as the runner does", **fields)
    res = gc(site, "show", cid)
    assert res.exit_code == 0 and "job big (ada, 8 GPUs, priority 3): held" in res.stdout and "preempting" in res.stdout
    out = ok_json(gc(site, "cancel", cid, "--json"))
    assert isinstance(out, dict) and out["state"] == "running" and out["ending"] == "cancelled"
    assert "releases every preempted job" in str(out["outcome"])
    again = SqlStore.from_url(f"sqlite:///{site}/burst.db").get_challenge(cid)
    assert again is not None and again.ending is ChallengeEnding.CANCELLED
    res = gc(site, "list")
    assert res.exit_code == 0 and "(cancelled requested)" in res.stdout


def test_plan_ranks_slots_by_work_at_risk_and_skips_scheduled_challenges(site: Path) -> None:
    out = ok_json(gc(site, "plan", "--duration", "6h", "--nodes", "1", "--within", "1d", "--json"))
    assert isinstance(out, dict)
    slots = out["slots"]
    assert len(slots) == 10
    best = slots[0]
    # one node: n2, bob's 1-GPU job; at the first candidate (+1h) it has run 2 h
    assert best["jobs"] == ["small"] and best["users"] == ["bob"] and best["gpu_hours"] == pytest.approx(2.0, abs=0.05)
    assert [s["gpu_hours"] for s in slots] == sorted(s["gpu_hours"] for s in slots)
    # a scheduled challenge takes its window out of the candidates
    ok_json(gc(site, "schedule", "--start", str(best["start"] - 60), "--duration", "4h", "--job", str(site / "job.sh"),
               "--json"))
    after = ok_json(gc(site, "plan", "--duration", "6h", "--nodes", "1", "--within", "1d", "--json"))
    assert isinstance(after, dict)
    assert all(s["start"] >= best["start"] - 60 + 4 * H for s in after["slots"])
    res = gc(site, "plan", "--duration", "6h")
    assert res.exit_code == 0 and "GPU-h at risk" in res.stdout


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--duration", "0"], ["--duration", "more than 0"]),
        (["--duration", "6h", "--nodes", "5"], ["--nodes", "has 2"]),
        (["--duration", "6h", "--within", "0"], ["--within"]),
        (["--duration", "20d"], ["over the maximum"]),
    ],
    ids=["zero", "too-many-nodes", "no-window", "too-long"],
)
def test_bad_plan_is_one_line_exit_2(site: Path, args: list[str], words: list[str]) -> None:
    one_error_line(gc(site, "plan", *args), *words)


def test_cancel_after_the_notice_is_announced_from_the_cli_too(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As ``/burst gc cancel`` does: once users were told, a cancel from the CLI tells the
    announce channel (the runner never sees a challenge cancelled before draining again)."""
    from policies.grand_challenge import notice_key
    from tests.support.fake_slack import FakeSlack

    cfg = site / "burst.yaml"
    cfg.write_text(cfg.read_text() + "slack: {announce_channel: C0ANNOUNCE, admin_channel: C0ADMINS1}\n")
    fake = FakeSlack.start()
    try:
        monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-cli-test")
        monkeypatch.setenv("SLACK_API_URL", fake.api_url)
        first = ok_json(gc(site, "schedule", "--start", "+2h", "--duration", "6h", "--job", str(site / "job.sh"), "--json"))
        assert isinstance(first, dict)
        cid = str(first["id"])
        quiet = ok_json(gc(site, "schedule", "--start", "+30h", "--duration", "1h", "--job", str(site / "job.sh"), "--json"))
        assert isinstance(quiet, dict)
        ok_json(gc(site, "cancel", str(quiet["id"]), "--json"))
        assert fake.calls("chat.postMessage") == []  # nobody was told of it: nothing to take back
        # the 24 h notice went out, as the controller's runner records it after posting it
        SqlStore.from_url(f"sqlite:///{site}/burst.db").update_challenge(cid, notices=(notice_key(24 * H),))
        ok_json(gc(site, "cancel", cid, "--json"))
        (post,) = fake.calls("chat.postMessage")
        assert post.params["channel"] == "C0ANNOUNCE"
        assert cid in str(post.params["text"]) and "is cancelled; your jobs are not affected" in str(post.params["text"])
    finally:
        fake.stop()
