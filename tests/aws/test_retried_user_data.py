"""A retried on-demand launch boots with the same user data as its first try (Bug 2).

A researcher with a stored SSH key asks for an on-demand box. ``burst run`` (a real subprocess,
AWS on moto, the shipped ``builtin:slurm`` join template configured) writes the launch intent
and is killed at the ``after-intent`` crash point, before calling EC2. A fresh controller, built
by the production wiring over the same database, recovers the PLANNED intent and launches it.
The user data EC2 received must be the on-demand script with the researcher's key, not the
join template: before the fix a retried launch had no ``Launch`` action, got empty user data,
and the provider rendered the join template (the box would have joined Slurm as a burst node,
with no way in for its owner).
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from burst.config import load_config
from burst.domain import InstanceState, Purpose, RequestState
from burst.ondemand.service import OnDemandService, RequestArgs
from burst.ondemand.settings import OnDemandSettings
from burst.wiring import build_runtime, offers_for, open_store
from providers.aws import AwsSettings
from tests.chaos.harness import ControllerProcess
from tests.support.moto_server import MotoServer, throttle_fault

pytestmark = pytest.mark.slow

REGION = "us-east-1"
RESEARCHER = "U0RESEARCH"
SSH_USER = "researcher"


class Wall:
    def now(self) -> float:
        return time.time()


def ed25519_key() -> str:
    blob = b"".join(len(p).to_bytes(4, "big") + p for p in (b"ssh-ed25519", bytes(range(32))))
    return "ssh-ed25519 " + base64.b64encode(blob).decode()


def write_config(tmp: Path, aws: AwsSettings) -> Path:
    queue = tmp / "queue.json"
    queue.write_text('{"pending": [], "running": [], "nodes": []}', encoding="utf-8")
    cfg: dict[str, Any] = {
        "cluster": "site-a",
        "database_url": f"sqlite:///{tmp / 'burst.db'}",
        "tick_interval_s": 1,
        "lease_ttl_s": 5,
        "queue": {"kind": "jsonfile", "jsonfile": str(queue)},
        "clouds": {
            "aws": {"enabled": True, "simulated": False, "settings": aws.model_dump(mode="json")},
            "azure": {"enabled": False},
        },
        "offers": {"regions": [REGION], "accelerators": ["A100"]},
        "slack": {"ssh_user": SSH_USER, "allowed_clouds": ["aws"]},
    }
    path = tmp / "burst.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def test_a_recovered_on_demand_launch_gets_the_owners_key_not_the_join_template(
    moto: MotoServer, aws_settings: Callable[..., AwsSettings], ec2: Callable[..., Any], tmp_path: Path
) -> None:
    aws = aws_settings()
    assert aws.user_data_template == "builtin:slurm"  # the join template is configured
    config = write_config(tmp_path, aws)
    cfg = load_config(config)

    # The researcher's key and request, as the Slack bot records them.
    store = open_store(cfg.database_url)
    service = OnDemandService(store, OnDemandSettings.model_validate(cfg.slack), offers_for(cfg), Wall())
    key = ed25519_key()
    service.set_ssh_key(RESEARCHER, key)
    req = service.request(RESEARCHER, RequestArgs(8, "A100", hours=2, cloud="aws")).request
    assert req.state is RequestState.AUTO_APPROVED  # within quota: no admin needed

    # 1. burst run writes the intent and dies before calling EC2.
    ctl = ControllerProcess(config, tmp_path, crash_points="after-intent:1")
    ctl.start()
    deadline = time.monotonic() + 60
    while ctl.exit_code() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    if ctl.exit_code() is None:
        ctl.stop()
    assert ctl.fired_crash_point() == "after-intent", ctl.text()[-4000:]
    assert moto.count("RunInstances") == 0
    (planned,) = [i for i in store.live_instances() if i.request_id == req.id]
    assert planned.state is InstanceState.PLANNED and planned.purpose is Purpose.ON_DEMAND
    assert planned.owner == RESEARCHER

    # 2. A fresh controller over the same database recovers the intent and launches it.
    rt = build_runtime(load_config(config))
    try:
        for _ in range(5):
            res = rt.controller.tick(time.time())
            inst = rt.store.get_instance(planned.id)
            assert inst is not None
            if inst.state is not InstanceState.PLANNED:
                break
        assert planned.id in res.recovered
        assert inst.state is InstanceState.LAUNCHING and inst.cloud_id, res.executed.errors
    finally:
        rt.store.close()
        store.close()
    (run,) = moto.requests("RunInstances")
    assert run.params["ClientToken"] == planned.id  # launched under the intent's own id

    # 3. What reached EC2: the on-demand script with the researcher's key, not the join template.
    attr = ec2(REGION).describe_instance_attribute(InstanceId=inst.cloud_id, Attribute="userData")
    text = base64.b64decode(attr["UserData"]["Value"]).decode()
    assert key in text and f"u={SSH_USER}" in text, text
    assert "slurmd" not in text and "conf-server" not in text, text


def test_an_on_demand_launch_retried_after_throttling_gets_the_owners_key(
    moto: MotoServer, aws_settings: Callable[..., AwsSettings], ec2: Callable[..., Any], tmp_path: Path
) -> None:
    """The other way to a retried launch: EC2 throttles the first RunInstances (the intent stays
    PLANNED), and a later tick, once the offer's cool-down is over, launches it again."""
    config = write_config(tmp_path, aws_settings())
    rt = build_runtime(load_config(config))
    try:
        service = OnDemandService(rt.store, OnDemandSettings.model_validate(rt.config.slack), offers_for(rt.config), Wall())
        key = ed25519_key()
        service.set_ssh_key(RESEARCHER, key)
        req = service.request(RESEARCHER, RequestArgs(8, "A100", hours=2, cloud="aws")).request
        throttle = throttle_fault()
        moto.inject(throttle)
        t0 = time.time()
        res = rt.controller.tick(t0)
        assert throttle.hits >= 1 and any("transient" in e for e in res.executed.errors), res.executed.errors
        (planned,) = [i for i in rt.store.live_instances() if i.request_id == req.id]
        assert planned.state is InstanceState.PLANNED
        moto.clear_faults()
        res = rt.controller.tick(t0 + 31.0)  # the transient cool-down (30 s) is over
        inst = rt.store.get_instance(planned.id)
        assert inst is not None and inst.state is InstanceState.LAUNCHING, (inst, res.executed.errors)
    finally:
        rt.store.close()
    assert [r.params["ClientToken"] for r in moto.requests("RunInstances") if not r.injected] == [planned.id]
    attr = ec2(REGION).describe_instance_attribute(InstanceId=inst.cloud_id, Attribute="userData")
    text = base64.b64decode(attr["UserData"]["Value"]).decode()
    assert key in text and f"u={SSH_USER}" in text, text
    assert "slurmd" not in text, text
