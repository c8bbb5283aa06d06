"""policies/requests.py, pure: quota verdicts and the on-demand pass of decide()."""

from __future__ import annotations

import pytest

from burst.domain import (
    Instance,
    InstanceState,
    Launch,
    Market,
    Notify,
    OnDemandRequest,
    Purpose,
    RequestState,
    Terminate,
)
from policies import PolicyConfig, Snapshot
from policies.requests import QuotaLimits, QuotaUsage, check_quota, decide_requests
from tests.bot.conftest import bot_offers

NOW = 1772445600.0


def req(rid: str = "r-000001", state: RequestState = RequestState.APPROVED, **kw: object) -> OnDemandRequest:
    base: dict[str, object] = dict(id=rid, user="u1", team="t1", gpus=1, gpu_model="A100", hours=2.0, state=state)
    base.update(kw)
    return OnDemandRequest(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("active", "usage", "limits", "ok", "needle"),
    [
        ([], QuotaUsage(), QuotaLimits(user_max_gpus=1), True, ""),
        ([req("r-000002", RequestState.READY)], QuotaUsage(), QuotaLimits(user_max_gpus=1), False, "your limit"),
        ([req("r-000002", RequestState.READY, user="u2")], QuotaUsage(), QuotaLimits(team_max_gpus=1), False, "team t1"),
        ([req("r-000002", RequestState.RELEASED)], QuotaUsage(), QuotaLimits(user_max_gpus=1), True, ""),
        ([], QuotaUsage(user_gpu_hours_month=9), QuotaLimits(user_gpu_hours_month=10), False, "GPU-hours"),
        ([], QuotaUsage(spend_month_usd=90, request_usd=20), QuotaLimits(budget_month_usd=100), False, "budget"),
        ([], QuotaUsage(), QuotaLimits(max_hours=1), False, "time limit"),
    ],
)
def test_check_quota(active: list[OnDemandRequest], usage: QuotaUsage, limits: QuotaLimits, ok: bool, needle: str) -> None:
    v = check_quota(req(), active, usage, limits)
    assert v.auto_approve is ok and (ok or any(needle in r for r in v.reasons))


def snap(requests: tuple[OnDemandRequest, ...], instances: tuple[Instance, ...] = (), now: float = NOW) -> Snapshot:
    return Snapshot(now=now, cluster="c", pending=(), running=(), nodes=(), instances=instances,
                    offers=tuple(bot_offers()), requests=requests)


def inst(rid: str, state: InstanceState = InstanceState.RUNNING) -> Instance:
    return Instance(id=f"od-{rid}", cloud="aws", region="us-east-1", zone="", instance_type="p4d.24xlarge",
                    market=Market.ON_DEMAND, purpose=Purpose.ON_DEMAND, gpus=8, gpu_model="A100",
                    price_per_hour=20.0, state=state, request_id=rid)


def test_launch_honours_cloud_region_spot_and_backoff() -> None:
    r = req(cloud="azure", region="westus2", spot=True)
    actions, wake = decide_requests(snap((r,)), PolicyConfig())
    (lc,) = actions
    assert isinstance(lc, Launch) and lc.purpose is Purpose.ON_DEMAND and lc.request_id == r.id
    assert lc.offer.cloud == "azure" and lc.offer.region == "westus2" and lc.offer.market is Market.SPOT
    assert lc.offer.gpu_count >= 1 and lc.offer.gpu_model == "A100" and lc.owner == "u1" and wake is not None
    # failing over: with the best offer backed off, the next one in price order
    r2 = req(cloud="aws")
    (first,) = decide_requests(snap((r2,)), PolicyConfig())[0]
    assert isinstance(first, Launch) and first.offer.market is Market.ON_DEMAND
    s2 = snap((r2,))
    backed = Snapshot(**{**{f: getattr(s2, f) for f in s2.__slots__}, "backoff_until": {first.offer.key: NOW + 60}})
    (lc2,) = decide_requests(backed, PolicyConfig())[0]
    assert isinstance(lc2, Launch) and lc2.offer.key != first.offer.key and lc2.offer.cloud == "aws"


def test_reminder_expiry_and_release() -> None:
    ready = req(state=RequestState.READY, instance_id="od-r-000001", expires_at=NOW + 3600)
    actions, wake = decide_requests(snap((ready,), (inst(ready.id),)), PolicyConfig())
    assert actions == [] and wake == NOW + 1800
    actions, _ = decide_requests(snap((ready,), (inst(ready.id),), now=NOW + 1900), PolicyConfig())
    assert [type(a) for a in actions] == [Notify] and actions[0].audience == "u1"  # type: ignore[union-attr]
    expiring = req(state=RequestState.EXPIRING, instance_id="od-r-000001", expires_at=NOW + 3600)
    assert decide_requests(snap((expiring,), (inst(ready.id),), now=NOW + 1900), PolicyConfig())[0] == []
    actions, _ = decide_requests(snap((expiring,), (inst(ready.id),), now=NOW + 3600), PolicyConfig())
    assert [a.instance_id for a in actions if isinstance(a, Terminate)] == ["od-r-000001"]
    # released: the request is not active any more, its instance goes
    actions, _ = decide_requests(snap((), (inst("r-000009"),)), PolicyConfig())
    assert [a.instance_id for a in actions if isinstance(a, Terminate)] == ["od-r-000009"]
    assert decide_requests(snap((), (inst("r-000009", InstanceState.TERMINATING),)), PolicyConfig())[0] == []
