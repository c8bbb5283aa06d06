"""schedule_challenge: the one validated, audited way to store a grand challenge (CLI, Slack)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from burst.domain import ChallengeJobKind, ChallengeState
from burst.errors import InputError
from burst.grand_challenge import read_job_spec, schedule_challenge
from burst.store.memory import MemoryStore

NOW = 1_800_000_000.0
H = 3600.0


def sched(store: MemoryStore, **kw: Any) -> Any:
    base: dict[str, Any] = dict(now=NOW, actor="ADMIN", name="llm", start_at=NOW + 2 * H, duration_s=6 * H,
                                onprem_nodes=4, job_text="#!/bin/sh\nsrun train\n")
    base.update(kw)
    return schedule_challenge(store, **base)


def test_a_valid_challenge_is_stored_with_its_job_text_and_audited(tmp_path: Path) -> None:
    script = tmp_path / "gc.sh"
    script.write_text("#!/bin/sh\nsrun --nodes=4 train\n")
    store = MemoryStore()
    gc = sched(store, job_path=str(script), job_text="", nodes=4, burst_preempted=True, name="")
    assert store.get_challenge(gc.id) == gc
    assert (gc.state, gc.nodes, gc.owner, gc.burst_preempted, gc.name) == (ChallengeState.SCHEDULED, 4, "ADMIN", True,
                                                                           "gc.sh")
    assert gc.job_text == "#!/bin/sh\nsrun --nodes=4 train\n" and gc.job_path == str(script)
    assert [r.action for r in store.audit_rows(subject=gc.id)] == ["->scheduled"]


@pytest.mark.parametrize(("change", "error"), [
    ({"start_at": NOW - 1}, "is in the past"),
    ({"duration_s": 0}, "the duration must be more than 0"),
    ({"duration_s": 30 * 86400}, "over the maximum"),
    ({"nodes": 9}, "it asks for 9 nodes; the on-prem cluster has 4"),
    ({"job_text": ""}, "no challenge job"),
    ({"job_path": "/nonexistent/gc.sh"}, "cannot read the challenge job /nonexistent/gc.sh: No such file"),
    ({"job_kind": ChallengeJobKind.KUBERNETES, "job_text": "kind: Pod"}, "not a batch/v1 Job"),
])
def test_bad_input_is_one_line_and_stores_nothing(change: dict[str, Any], error: str) -> None:
    store = MemoryStore()
    with pytest.raises(InputError) as ei:
        sched(store, **change)
    assert error in str(ei.value) and "\n" not in str(ei.value)
    assert store.challenges() == [] and store.audit_rows() == []


def test_overlap_with_an_active_challenge_is_refused_but_not_with_a_cancelled_one() -> None:
    store = MemoryStore()
    first = sched(store)
    with pytest.raises(InputError, match=f"overlaps grand challenge {first.id}"):
        sched(store, start_at=NOW + 4 * H)
    store.transition_challenge(first.id, ChallengeState.CANCELLED, now=NOW, actor="ADMIN", reason="r")
    assert sched(store, start_at=NOW + 4 * H).id != first.id


def test_read_job_spec_reports_unreadable_files(tmp_path: Path) -> None:
    binary = tmp_path / "x.bin"
    binary.write_bytes(b"\xff\xfe\x00")
    assert read_job_spec(str(binary))[1] == f"the challenge job {binary} is not UTF-8 text"
    assert read_job_spec(str(tmp_path))[1].startswith(f"cannot read the challenge job {tmp_path}")
    ok = tmp_path / "ok.yaml"
    ok.write_text("kind: Job\n")
    assert read_job_spec(str(ok)) == ("kind: Job\n", "")
