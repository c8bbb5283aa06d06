"""burst/sim/trace.py: the two trace formats, and refusal of bad rows naming file:line and column."""

from __future__ import annotations

from pathlib import Path

import pytest

from burst.errors import InputError
from burst.sim.trace import bundled_trace_path, load_trace


def _write(tmp_path: Path, text: str, name: str = "t.csv") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


ITP = "job_id,submission_time,duration,num_gpu\n"
CSV = "id,submit_time,duration,gpus\n"


def test_itp_loads_sorted_with_gangs(tmp_path: Path) -> None:
    p = _write(tmp_path, ITP + "b,20,100,16\na,10,50,1\nc,10,60,9\n")
    jobs = load_trace(p)
    assert [j.id for j in jobs] == ["a", "c", "b"]  # by submit time, then id
    a, c, b = jobs
    assert (a.gpus, a.nodes, a.per_node, a.duration) == (1, 1, 1, 50.0)
    assert (b.gpus, b.nodes, b.per_node) == (16, 2, 8)
    assert (c.gpus, c.nodes, c.per_node) == (9, 2, 8)  # ceil(9/8) whole nodes
    assert all(j.may_burst for j in jobs)


def test_gpus_per_node_changes_gangs(tmp_path: Path) -> None:
    p = _write(tmp_path, ITP + "a,0,10,8\n")
    (j,) = load_trace(p, gpus_per_node=4)
    assert (j.nodes, j.per_node) == (2, 4)


def test_bundled_trace_loads() -> None:
    jobs = load_trace(bundled_trace_path())
    assert len(jobs) == 15_802
    assert all(jobs[k].submit <= jobs[k + 1].submit for k in range(len(jobs) - 1))


def test_generic_csv_with_optional_columns(tmp_path: Path) -> None:
    p = _write(
        tmp_path,
        "id,submit_time,duration,gpus,nodes,team,owner,may_burst,image,gpu_model\n"
        "x,5,60,4,,vision,ada,no,harbor/x:1,H100\n"
        "y,1,60,8,2,nlp,bob,true,,\n"
        "z,2,60,16,,,,,,\n",
    )
    y, z, x = load_trace(p, "csv")
    assert (x.team, x.owner, x.may_burst, x.image, x.gpu_model, x.nodes) == ("vision", "ada", False, "harbor/x:1", "H100", 1)
    assert (y.nodes, y.per_node, y.may_burst) == (2, 4, True)
    assert (z.nodes, z.per_node, z.may_burst) == (2, 8, True)


def test_generic_csv_minimal_columns(tmp_path: Path) -> None:
    (j,) = load_trace(_write(tmp_path, CSV + "only,0,1,1\n"), "csv")
    assert (j.id, j.team, j.may_burst) == ("only", "", True)


BAD = [
    # (id, format, text, line, words in the message)
    ("negative-duration", "itp", ITP + "a,0,100,1\nb,5,-3,1\n", 3, ["duration", "-3"]),
    ("zero-duration", "itp", ITP + "a,0,0,1\n", 2, ["duration"]),
    ("non-numeric-gpus", "itp", ITP + "a,0,100,four\n", 2, ["num_gpu", "four", "not a number"]),
    ("fractional-gpus", "itp", ITP + "a,0,100,1.5\n", 2, ["num_gpu", "whole"]),
    ("zero-gpus", "itp", ITP + "a,0,100,0\n", 2, ["num_gpu"]),
    ("negative-submit", "itp", ITP + "a,-1,100,1\n", 2, ["submission_time"]),
    ("empty-cell", "itp", ITP + "a,,100,1\n", 2, ["submission_time", "empty"]),
    ("inf", "itp", ITP + "a,0,inf,1\n", 2, ["duration", "finite"]),
    ("huge", "itp", ITP + "a,0,1e12,1\n", 2, ["duration", "implausibly"]),
    ("too-many-fields", "itp", ITP + "a,0,100,1\nb,0,100,1,extra\n", 3, ["more fields"]),
    ("too-few-fields", "itp", ITP + "a,0,100\n", 2, ["fewer fields"]),
    ("duplicate-id", "itp", ITP + "a,0,100,1\nb,1,100,1\na,2,100,1\n", 4, ["duplicate", "'a'"]),
    ("empty-id", "itp", ITP + " ,0,100,1\n", 2, ["job_id", "empty"]),
    ("csv-bad-may-burst", "csv", "id,submit_time,duration,gpus,may_burst\na,0,1,1,maybe\n", 2, ["may_burst", "maybe"]),
    ("csv-nodes-too-small", "csv", "id,submit_time,duration,gpus,nodes\na,0,1,32,2\n", 2, ["nodes", "per node"]),
    ("csv-duplicate", "csv", CSV + "a,0,1,1\na,0,1,1\n", 3, ["duplicate"]),
    ("csv-negative-duration", "csv", CSV + "a,0,-1,1\n", 2, ["duration"]),
]


@pytest.mark.parametrize(("fmt", "text", "line", "words"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_rows_name_file_line_and_column(tmp_path: Path, fmt: str, text: str, line: int, words: list[str]) -> None:
    p = _write(tmp_path, text)
    with pytest.raises(InputError) as ei:
        load_trace(p, fmt)
    assert ei.value.where == f"{p}:{line}"
    assert str(ei.value).startswith(f"{p}:{line}: ")
    assert "\n" not in str(ei.value)
    for w in words:
        assert w in str(ei.value)


@pytest.mark.parametrize(
    ("fmt", "header", "missing"),
    [("itp", "job_id,submission_time,num_gpu", "duration"), ("csv", "id,duration,gpus", "submit_time"), ("itp", "", "job_id")],
    ids=["itp-no-duration", "csv-no-submit", "empty-file"],
)
def test_missing_columns(tmp_path: Path, fmt: str, header: str, missing: str) -> None:
    p = _write(tmp_path, header + ("\n" if header else ""))
    with pytest.raises(InputError) as ei:
        load_trace(p, fmt)
    assert ei.value.where == f"{p}:1"
    assert missing in str(ei.value)


def test_header_only_has_no_jobs(tmp_path: Path) -> None:
    p = _write(tmp_path, ITP)
    with pytest.raises(InputError, match="no jobs") as ei:
        load_trace(p)
    assert str(p) in ei.value.where


def test_not_utf8(tmp_path: Path) -> None:
    p = tmp_path / "t.csv"
    p.write_bytes(ITP.encode() + b"a,0,100,1\n\xff\xfe,0,1,1\n")
    with pytest.raises(InputError) as ei:
        load_trace(p)
    assert ei.value.where == f"{p}:3" and "UTF-8" in str(ei.value)


def test_not_utf8_deep_in_a_large_file(tmp_path: Path) -> None:
    rows = "".join(f"j{k},{k},100,1\n" for k in range(5000))
    p = tmp_path / "t.csv"
    p.write_bytes(ITP.encode() + rows.encode() + b"\xff,0,1,1\n")
    with pytest.raises(InputError) as ei:
        load_trace(p)
    assert ei.value.where == f"{p}:5002" and "UTF-8" in str(ei.value)


def test_missing_file_and_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read"):
        load_trace(tmp_path / "nope.csv")
    with pytest.raises(InputError) as ei:
        load_trace(_write(tmp_path, ITP + "a,0,1,1\n"), "parquet")
    assert ei.value.where == "--format"


def test_days_keeps_the_first_days(tmp_path: Path) -> None:
    p = _write(tmp_path, ITP + "a,1000,10,1\nb,87399,10,1\nc,87400,10,1\nd,200000,10,1\n")
    assert [j.id for j in load_trace(p, days=1)] == ["a", "b"]  # [first submit, first submit + 1 day)
    assert [j.id for j in load_trace(p, days=0.5)] == ["a"]
    assert len(load_trace(p, days=10)) == 4
    for bad in (0, -1):
        with pytest.raises(InputError) as ei:
            load_trace(p, days=bad)
        assert ei.value.where == "--days"
