"""Pure parser tests (no Slurm needed): odd output becomes a QueueParseError naming the field."""

from __future__ import annotations

import json
from typing import Any

import pytest

from burst.domain import JobState
from burst.errors import QueueParseError, QueueUnavailable
from burst.queues.slurm.parse import (
    constraint_features,
    expand_hostlist,
    job_may_burst,
    parse_gres,
    parse_node_records,
    parse_scontrol_line,
    parse_sinfo,
    parse_squeue,
    parse_tres_gpus,
)
from burst.queues.slurm.settings import BurstRules, SlurmSettings

S = SlurmSettings(slurm_conf="/nonexistent/slurm.conf")  # type: ignore[arg-type]


def job(**kw: Any) -> dict[str, Any]:
    """A job as Slurm 22.05's squeue --json prints it (the fields the parser reads)."""
    base: dict[str, Any] = {
        "job_id": 5, "array_job_id": 0, "array_task_id": None, "array_task_string": "",
        "job_state": "PENDING", "state_reason": "Resources", "state_description": "",
        "partition": "gpu", "qos": "normal", "account": "vision", "user_name": "alice",
        "features": "", "node_count": 1, "tasks": 1, "tres_per_node": "gres:gpu:8",
        "tres_per_job": "", "tres_per_task": "", "submit_time": 1795739495,
        "start_time": 1827275494, "priority": 4294901755, "nodes": "", "name": "train",
        "restart_cnt": 0, "container": "", "job_resources": None,
    }
    base.update(kw)
    return base


def squeue(*jobs: dict[str, Any]) -> str:
    return json.dumps({"meta": {}, "errors": [], "jobs": list(jobs)})


def node(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "gpu01", "state": "mixed", "state_flags": [], "gres": "gpu:a100:8",
        "gres_used": "gpu:a100:8(IDX:0-7)", "features": "onprem", "active_features": "onprem",
        "comment": "", "reason": "", "partitions": ["gpu"], "address": "127.0.0.1",
    }
    base.update(kw)
    return base


def sinfo(*nodes: dict[str, Any]) -> str:
    return json.dumps({"meta": {}, "errors": [], "nodes": list(nodes)})


# ---- TRES / GRES -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec,expected",
    [
        ("gres:gpu:a100:8", (8, "a100")),
        ("gres:gpu:8", (8, "")),
        ("gres:gpu", (1, "")),
        ("gres/gpu:4", (4, "")),
        ("gres:gpu:h100:2,gres:nic:1", (2, "h100")),
        ("license:matlab:1", (0, "")),
        ("", (0, "")),
        (None, (0, "")),
    ],
)
def test_parse_tres_gpus(spec: str | None, expected: tuple[int, str]) -> None:
    assert parse_tres_gpus(spec) == expected


def test_parse_gres_forms() -> None:
    assert parse_gres("gpu:a100:8(S:0-1)") == (8, "a100")
    assert parse_gres("gpu:a100:3(IDX:0,2,5)") == (3, "a100")
    assert parse_gres("gpu:a100:0(IDX:N/A)") == (0, "a100")
    assert parse_gres("gpu:a100:4(S:0),gpu:v100:2(S:1)") == (6, "a100")
    assert parse_gres("(null)") == (0, "")
    assert parse_gres("mps:100,gpu:2") == (2, "")


@pytest.mark.parametrize("bad", ["gres:gpu:a100:eight", "gres:gpu:a:b:c:d"])
def test_bad_tres_names_the_field(bad: str) -> None:
    with pytest.raises(QueueParseError) as ei:
        parse_squeue(squeue(job(tres_per_node=bad)), S)
    assert ei.value.where == "squeue --json: job 5.tres_per_node"
    assert bad in str(ei.value)


# ---- squeue ----------------------------------------------------------------------------------


def test_pending_gang_and_running_job() -> None:
    pend, run = parse_squeue(
        squeue(
            job(job_id=7, node_count=2, tasks=2),
            job(job_id=8, job_state="RUNNING", state_reason="None", start_time=1795739500,
                nodes="gpu[01-02]", tres_per_node="", tres_per_job="gres:gpu:12", node_count=2),
            job(job_id=9, tres_per_node="", tres_per_task="gres:gpu:2", tasks=3),
            job(job_id=10, tres_per_node=""),  # CPU-only: left out
            job(job_id=11, job_state="COMPLETED"),  # finished: left out
        ),
        S,
    )
    assert [j.id for j in pend] == ["7", "9"] and [j.id for j in run] == ["8"]
    g = pend[0]
    assert (g.gpus, g.nodes, g.gpus_per_node, g.is_gang, g.reason, g.state) == (16, 2, 8, True, "Resources",
                                                                              JobState.PENDING)
    assert (g.owner, g.team, g.priority, g.submit_time) == ("alice", "vision", 4294901755, 1795739495.0)
    assert g.start_time is None  # a pending job's start_time is only Slurm's estimate
    r = run[0]
    assert (r.gpus, r.gpus_per_node, r.node_names, r.start_time, r.reason) == (12, 6, ("gpu01", "gpu02"),
                                                                             1795739500.0, "")
    assert r.elapsed(1795739560.0) == 60.0
    assert pend[1].gpus == 6


def test_held_and_ineligible_jobs() -> None:
    pend, _ = parse_squeue(
        squeue(job(job_id=1, state_reason="JobHeldAdmin"), job(job_id=2, state_reason="Dependency"),
               job(job_id=3, job_state="REQUEUE_HOLD"), job(job_id=4, state_reason="Priority")),
        S,
    )
    assert [j.state for j in pend] == [JobState.HELD, JobState.HELD, JobState.HELD, JobState.PENDING]


def test_completing_jobs_requeued_held_are_held_and_others_may_lack_a_start() -> None:
    """Measured on 22.05: right after ``requeuehold`` a job shows COMPLETING with reason
    JobHeldUser (and its start time may already be 0) until its processes are gone."""
    pend, run = parse_squeue(
        squeue(
            job(job_id=40, job_state="COMPLETING", state_reason="JobHeldUser", start_time=0, nodes="gpu01",
                state_description="job requeued in held state"),
            job(job_id=41, job_state="COMPLETING", state_reason="None", start_time=0, nodes="gpu02"),
            job(job_id=42, job_state="COMPLETING", state_reason="None", start_time=1795739600, nodes="gpu03"),
        ),
        S,
    )
    assert [(j.id, j.state) for j in pend] == [("40", JobState.HELD)]
    assert [(j.id, j.start_time, j.node_names) for j in run] == [("41", None, ("gpu02",)),
                                                                  ("42", 1795739600.0, ("gpu03",))]


def test_array_ids_and_later_slurm_number_objects() -> None:
    pend, run = parse_squeue(
        squeue(
            job(job_id=20, array_job_id=20, array_task_string="1-9"),
            job(job_id=21, array_job_id=20, array_task_id=0, job_state=["RUNNING"],
                start_time={"set": True, "infinite": False, "number": 1795739600},
                priority={"set": True, "infinite": False, "number": 5}, nodes="gpu03"),
        ),
        S,
    )
    assert pend[0].id == "20_[1-9]"
    assert run[0].id == "20_0" and run[0].start_time == 1795739600.0 and run[0].priority == 5


@pytest.mark.parametrize(
    "raw,expected",
    [
        (5, 300.0),  # 22.05: minutes as a plain number
        (525600, 525600 * 60.0),  # 22.05's "no --time in a MaxTime=INFINITE partition": a year, kept
        (None, None),  # 22.05: --time=UNLIMITED prints null
        (4294967295, None),  # INFINITE sentinel
        (4294967294, None),  # NO_VAL sentinel
        (0, None),
        ({"set": True, "infinite": False, "number": 90}, 5400.0),  # later versions
        ({"set": True, "infinite": True, "number": 0}, None),
        ({"set": False, "infinite": False, "number": 0}, None),
    ],
)
def test_time_limit(raw: Any, expected: float | None) -> None:
    _, run = parse_squeue(squeue(job(job_id=30, job_state="RUNNING", nodes="gpu01", start_time=1795739600,
                                     time_limit=raw)), S)
    assert run[0].time_limit_s == expected
    end = run[0].expected_end()
    assert end == (None if expected is None else 1795739600.0 + expected)


def test_time_limit_missing_is_none_and_bad_names_the_field() -> None:
    pend, _ = parse_squeue(squeue(job(job_id=31)), S)  # no time_limit key at all
    assert pend[0].time_limit_s is None
    with pytest.raises(QueueParseError) as e:
        parse_squeue(squeue(job(job_id=32, time_limit="ten")), S)
    assert "job 32.time_limit" in str(e.value)


def test_priority_no_val_is_zero() -> None:
    pend, _ = parse_squeue(squeue(job(job_id=33, priority=4294967294), job(job_id=34, priority=12)), S)
    assert [j.priority for j in pend] == [0, 12]


def test_may_burst_rules() -> None:
    rules = BurstRules(partitions=["cloudok"], qos=["burst"], accounts=["nlp"], constraints=["anywhere"])
    assert job_may_burst(BurstRules(), "cloud", "gpu", "", "", "cloud&a100")
    assert not job_may_burst(BurstRules(), "cloud", "gpu", "", "", "!cloud")
    assert not job_may_burst(BurstRules(), "cloud", "gpu", "normal", "vision", "")
    assert job_may_burst(rules, "cloud", "gpu,cloudok", "", "", "")
    assert job_may_burst(rules, "cloud", "gpu", "burst", "", "")
    assert job_may_burst(rules, "cloud", "gpu", "", "nlp", "")
    assert job_may_burst(rules, "cloud", "gpu", "", "", "[rack1|anywhere]")
    assert not job_may_burst(rules, "cloud", "gpu", "normal", "vision", "rack1")
    assert constraint_features("a100*2&[r1|r2]") == {"a100", "r1", "r2"}
    pend, _ = parse_squeue(squeue(job(features="cloud")), S)
    assert pend[0].may_burst and pend[0].labels["constraint"] == "cloud"


@pytest.mark.parametrize(
    "field,value,where",
    [
        ("submit_time", "yesterday", "squeue --json: job 5.submit_time"),
        ("submit_time", None, "squeue --json: job 5.submit_time"),
        ("job_state", 3, "squeue --json: jobs[0].job_state"),
        ("node_count", "two", "squeue --json: job 5.node_count"),
        ("user_name", ["x", 1], "squeue --json: job 5.user_name"),
        ("job_id", "abc", "squeue --json: jobs[0].job_id"),
    ],
)
def test_bad_job_fields_name_the_field(field: str, value: Any, where: str) -> None:
    with pytest.raises(QueueParseError) as ei:
        parse_squeue(squeue(job(**{field: value})), S)
    assert ei.value.where == where, str(ei.value)


def test_running_job_without_start_time() -> None:
    with pytest.raises(QueueParseError, match="start_time"):
        parse_squeue(squeue(job(job_state="RUNNING", start_time=0, nodes="gpu01")), S)


def test_bad_node_list() -> None:
    with pytest.raises(QueueParseError) as ei:
        parse_squeue(squeue(job(job_state="RUNNING", start_time=1, nodes="gpu[01-x]")), S)
    assert ei.value.where == "squeue --json: job 5.nodes"


@pytest.mark.parametrize(
    "text,where",
    [
        ("not json at all", "squeue --json"),
        ("[1, 2]", "squeue --json"),
        ('{"meta": {}}', "squeue --json: jobs"),
        ('{"jobs": {"a": 1}}', "squeue --json: jobs"),
        ('{"jobs": [1]}', "squeue --json: jobs[0]"),
        ('{"jobs": [], "errors": [{"error": "Invalid user"}]}', "squeue --json: errors"),
    ],
)
def test_malformed_documents(text: str, where: str) -> None:
    with pytest.raises(QueueParseError) as ei:
        parse_squeue(text, S)
    assert ei.value.where == where


def test_errors_saying_unreachable_are_unavailable() -> None:
    doc = '{"jobs": [], "errors": [{"error": "Unable to contact slurm controller (connect failure)"}]}'
    with pytest.raises(QueueUnavailable):
        parse_squeue(doc, S)


# ---- sinfo -----------------------------------------------------------------------------------


def test_nodes_gpu_use_from_gres_not_state() -> None:
    nodes = parse_sinfo(
        sinfo(
            node(name="gpu01"),  # mixed, all 8 GPUs used
            node(name="gpu02", state="idle", gres_used="gpu:a100:0(IDX:N/A)"),
            node(name="gpu03", state="idle", state_flags=["DRAIN"], gres_used="gpu:a100:0(IDX:N/A)"),
            node(name="gpu04", state="idle", state_flags=["NOT_RESPONDING"]),
            node(name="gpu05", state="down", gres_used="gpu:a100:0(IDX:N/A)"),
            node(name="b-1a2b3c4d5e6f7a8b", state="allocated", features="cloud,aws", active_features="cloud,aws",
                 gres_used="gpu:a100:3(IDX:0-2)"),
        ),
        S,
    )
    by = {n.name: n for n in nodes}
    assert (by["gpu01"].gpus, by["gpu01"].gpus_used, by["gpu01"].gpus_free) == (8, 8, 0)
    assert by["gpu02"].gpus_free == 8 and by["gpu02"].schedulable
    assert not by["gpu03"].schedulable and by["gpu03"].labels["state"] == "IDLE+DRAIN"
    assert not by["gpu04"].schedulable and not by["gpu05"].schedulable
    # drained is not the same as dead: only a node that answers can be taken back
    assert by["gpu03"].ready and not by["gpu04"].ready and not by["gpu05"].ready and by["gpu02"].ready
    b = by["b-1a2b3c4d5e6f7a8b"]
    assert (b.instance_id, b.is_cloud, b.gpus_used, b.labels["cloud"]) == ("b-1a2b3c4d5e6f7a8b", True, 3, "true")


@pytest.mark.parametrize(
    "kw,where",
    [
        ({"gres": "gpu:a100:lots"}, "sinfo --json: node gpu01.gres"),
        ({"gres_used": 8}, "sinfo --json: node gpu01.gres_used"),
        ({"state": 5}, "sinfo --json: node gpu01.state"),
        ({"state_flags": "DRAIN"}, "sinfo --json: node gpu01.state_flags"),
        ({"name": None}, "sinfo --json: nodes[0].name"),
    ],
)
def test_bad_node_fields_name_the_field(kw: dict[str, Any], where: str) -> None:
    with pytest.raises(QueueParseError) as ei:
        parse_sinfo(sinfo(node(**kw)), S)
    assert ei.value.where == where, str(ei.value)


# ---- naming and records ----------------------------------------------------------------------


def test_expand_hostlist() -> None:
    assert expand_hostlist("gpu[01-03,07],burst01") == ["gpu01", "gpu02", "gpu03", "gpu07", "burst01"]
    assert expand_hostlist("n[8-10]") == ["n8", "n9", "n10"]
    assert expand_hostlist("") == []
    for bad in ("gpu[a-b]", "gpu[01-02"):
        with pytest.raises(ValueError):
            expand_hostlist(bad)


def test_parse_scontrol_lines() -> None:
    line = ("NodeName=burst01 CoresPerSocket=1 AvailableFeatures=cloud,aws ActiveFeatures=cloud,aws "
            "State=FUTURE OS=Linux 6.1 #1 SMP Comment=burst-instance=b-abc Reason=being fixed [root@x]")
    f = parse_scontrol_line(line)
    assert f["OS"] == "Linux 6.1 #1 SMP" and f["Reason"] == "being fixed [root@x]"
    (p,) = parse_node_records(line)
    assert (p.name, p.is_future, p.is_dynamic, p.features) == ("burst01", True, False, ("cloud", "aws"))
    (d,) = parse_node_records("NodeName=b-1a2b3c4d5e6f7a8b State=IDLE+DYNAMIC_NORM AvailableFeatures=cloud")
    assert d.is_dynamic and not d.is_future
    with pytest.raises(QueueParseError, match="NodeName"):
        parse_node_records("Foo=bar State=IDLE")
