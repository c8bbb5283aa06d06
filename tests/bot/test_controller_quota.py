"""Issue 12: the controller must not launch an on-demand request that the quota no longer allows.
A real runtime (``build_runtime``: the simulated queue and clouds, the ordinary Controller and its
wiring) is handed auto-approved requests past the user's quota, as an older bot or a quota
lowered since could leave them; one tick launches only what fits."""

from __future__ import annotations

from pathlib import Path

from burst.config import parse_config
from burst.domain import OnDemandRequest, Purpose, RequestState
from burst.store.memory import MemoryStore
from burst.wiring import build_runtime

USER = "U0USER001"


def test_a_tick_launches_only_what_the_quota_allows(tmp_path: Path) -> None:
    trace = tmp_path / "trace.csv"
    trace.write_text("job_id,submission_time,duration,num_gpu\nj0,0,3600,8\n", "utf-8")
    cfg = {
        "queue": {"kind": "sim", "sim": {"nodes": 2, "start_day": 0, "trace": str(trace)}},
        "slack": {"user_quota": {"max_gpus": 8, "gpu_hours_month": 1000}},
    }
    store = MemoryStore()
    rt = build_runtime(parse_config(cfg), store=store)
    now = rt.clock.now()
    for i in range(3):
        rid = f"r-00000{i}"
        store.add_request(OnDemandRequest(id=rid, user=USER, team="default", gpus=8, gpu_model="A100", hours=2,
                                          created_at=now - 10 + i), now=now, actor=USER)
        store.transition_request(rid, RequestState.AUTO_APPROVED, now=now, actor="quota", reason="within quota")
    rt.controller.tick(now)
    launched = [i for i in store.live_instances() if i.purpose is Purpose.ON_DEMAND]
    assert [i.request_id for i in launched] == ["r-000000"]
    states = {r.id: r.state for r in store.requests()}
    assert states["r-000000"] is RequestState.PROVISIONING
    assert states["r-000001"] is states["r-000002"] is RequestState.REQUESTED  # back to an admin
    held = [a for a in store.audit_rows(kind="request") if a.action == "auto-approved->requested"]
    assert {a.subject for a in held} == {"r-000001", "r-000002"} and all(a.actor == "controller" for a in held)
