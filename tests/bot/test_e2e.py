"""End to end: Slack request above quota -> approval buttons -> Approve -> controller ticks launch
the instance -> the requester's DM -> reminder -> expiry terminates it. And the release path.

Once with the simulated cloud (SimProvider + SimCluster + MemoryStore, wired as burst/sim/runner.py
does) and once with the AWS provider against moto over HTTP."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from slack_sdk import WebClient

from bot.app import create_app
from bot.notifier import SlackNotifier
from bot.server import HttpServer
from burst.controller import Controller
from burst.domain import InstanceState, Offer, RequestState
from burst.ondemand.service import OnDemandService
from burst.ondemand.userdata import make_user_data_for
from burst.ports import Provider
from burst.sim.cloud import SimProvider
from burst.sim.cluster import SimCluster
from burst.store.memory import MemoryStore
from policies import PolicyConfig
from tests.bot.conftest import (
    ADMIN,
    ADMIN_CHANNEL,
    SECRET,
    USER,
    ManualClock,
    Poster,
    SyncExecutor,
    make_settings,
)
from tests.support.fake_slack import FakeSlack, block_action_payload, payload_body

CLUSTER = "site-a"


@dataclass
class World:
    clock: ManualClock
    store: MemoryStore
    controller: Controller
    provider: Provider
    post: Poster
    fake: FakeSlack
    advance_cloud: Callable[[float], object]

    def tick(self, dt: float = 0.0) -> None:
        self.clock.advance(dt)
        self.advance_cloud(self.clock.now())
        self.controller.tick(self.clock.now())

    def dms(self) -> list[str]:
        return [str(c.params.get("text", "")) for c in self.fake.calls("chat.postMessage") if c.params.get("channel") == "D" + USER]


def build_world(fake: FakeSlack, provider: Provider, offers: list[Offer], clock: ManualClock,
                advance_cloud: Callable[[float], object]) -> Iterator[World]:
    store = MemoryStore()
    settings = make_settings()
    client = WebClient(token="xoxb-test-token", base_url=fake.api_url)
    service = OnDemandService(store, settings, offers, clock)
    app = create_app(service, settings, client=client, signing_secret=SECRET, listener_executor=SyncExecutor())
    controller = Controller(
        cluster=CLUSTER, queue=SimCluster(2, 8, "A100"), providers={provider.name: provider}, store=store,
        offers=offers, policy=PolicyConfig(), notifier=SlackNotifier(client, settings),
        user_data_for=make_user_data_for(store, settings.ssh_user),
    )
    srv = HttpServer(app).start()
    try:
        yield World(clock, store, controller, provider, Poster(srv, fake), fake, advance_cloud)
    finally:
        srv.stop()


def approve_via_button(w: World) -> str:
    status, _, key = w.post.command("request 8xA100 for 30h on aws note <!channel> please")
    assert status == 200 and "needs an admin" in w.post.reply(key)
    (req,) = w.store.requests()
    assert req.state is RequestState.REQUESTED
    msg = w.fake.calls("chat.postMessage")[-1]
    assert msg.params["channel"] == ADMIN_CHANNEL and "&lt;!channel&gt;" in str(msg.params["blocks"])
    payload = block_action_payload("burst_approve", req.id, user=ADMIN, channel=ADMIN_CHANNEL,
                                   message={"ts": msg.params.get("ts", "1.1"), "blocks": msg.params["blocks"]})
    assert w.post.signed(payload_body(payload))[0] == 200
    assert w.store.get_request(req.id).state is RequestState.APPROVED  # type: ignore[union-attr]
    return req.id


def run_expiry_path(w: World) -> None:
    rid = approve_via_button(w)
    w.tick()  # decide plans the Launch; reconcile: approved -> provisioning
    req = w.store.get_request(rid)
    assert req is not None and req.state is RequestState.PROVISIONING and req.instance_id
    inst = w.store.get_instance(req.instance_id)
    assert inst is not None and inst.request_id == rid and str(inst.purpose) == "on-demand" and inst.owner == USER
    for _ in range(6):  # boot: the cloud reports it running within a few ticks
        w.tick(30)
        if w.store.get_request(rid).state is RequestState.READY:  # type: ignore[union-attr]
            break
    req = w.store.get_request(rid)
    assert req is not None and req.state is RequestState.READY and req.expires_at is not None
    ready = [t for t in w.dms() if "is ready" in t]
    assert len(ready) == 1
    inst = w.store.get_instance(req.instance_id)
    assert inst is not None and inst.address and inst.address in ready[0]
    assert "ssh researcher@" in ready[0] and "/hour" in ready[0] and "expires" in ready[0] and inst.cloud_id
    # idle on-demand instances are not scaled in: jump an hour
    w.tick(3600)
    assert w.store.get_instance(inst.id).state is InstanceState.RUNNING  # type: ignore[union-attr]
    # the reminder, 30 minutes before the limit, once
    w.tick(req.expires_at - 29 * 60 - w.clock.now())
    assert w.store.get_request(rid).state is RequestState.EXPIRING  # type: ignore[union-attr]
    w.tick(60)
    reminders = [t for t in w.dms() if "time limit" in t and "in " in t]
    assert len(reminders) == 1
    # past the limit: terminated, request expired
    w.tick(req.expires_at + 1 - w.clock.now())
    assert w.store.get_request(rid).state is RequestState.EXPIRED  # type: ignore[union-attr]
    w.tick(30)
    assert w.store.get_instance(inst.id).state is InstanceState.TERMINATED  # type: ignore[union-attr]
    assert any("reached its time limit and was terminated" in t for t in w.dms())


def run_release_path(w: World) -> str:
    _, _, key = w.post.command("request 1xA100 for 2h on aws")
    assert "approved" in w.post.reply(key)
    rid = [r for r in w.store.requests() if r.gpus == 1][0].id
    for _ in range(6):
        w.tick(30)
        if w.store.get_request(rid).state is RequestState.READY:  # type: ignore[union-attr]
            break
    req = w.store.get_request(rid)
    assert req is not None and req.state is RequestState.READY
    _, _, key = w.post.command(f"release {rid}")
    assert "released" in w.post.reply(key)
    w.tick(30)  # decide: the request is over -> Terminate
    w.tick(30)
    inst = w.store.get_instance(req.instance_id)
    assert inst is not None and inst.state is InstanceState.TERMINATED
    assert w.store.get_request(rid).state is RequestState.RELEASED  # type: ignore[union-attr]
    return inst.cloud_id


# ---- simulated cloud ------------------------------------------------------------------------------


@pytest.fixture
def sim_world(fake: FakeSlack, offers: list[Offer]) -> Iterator[World]:
    clock = ManualClock()
    sim = SimProvider("aws", CLUSTER, clock, boot_s=240, running_after_s=60)
    aws = [o for o in offers if o.cloud == "aws"]
    yield from build_world(fake, sim, aws, clock, sim.advance)


def test_e2e_sim_request_approve_ready_remind_expire(sim_world: World) -> None:
    run_expiry_path(sim_world)
    sim = sim_world.provider
    assert isinstance(sim, SimProvider) and sim.launched == 1 and not sim.live_gpus()


def test_e2e_sim_release(sim_world: World) -> None:
    cid = run_release_path(sim_world)
    sim = sim_world.provider
    assert isinstance(sim, SimProvider) and sim.instances[cid].terminated_at is not None


# ---- AWS provider against moto ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def moto_server() -> Iterator[Any]:
    from tests.support.moto_server import serve_moto

    yield from serve_moto()


@pytest.fixture
def aws_world(fake: FakeSlack, offers: list[Offer], moto_server: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    from providers.aws import AwsProvider
    from tests.aws.helpers import settings_factory
    from tests.support.moto_server import fresh_moto

    fresh_moto(moto_server, monkeypatch)
    settings = settings_factory(moto_server.endpoint_url)()
    provider = AwsProvider(settings, cluster=CLUSTER)
    subnets = settings.regions["us-east-1"].subnets
    aws = [o for o in offers if o.cloud == "aws" and o.region == "us-east-1" and o.zone in subnets
           and o.instance_type in ("p4d.24xlarge", "g5.xlarge", "g6.xlarge", "p5.48xlarge")]
    assert aws
    yield from build_world(fake, provider, aws, ManualClock(), lambda _t: None)


def _ec2_state(moto_server: Any, cloud_id: str) -> str:
    import boto3

    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=moto_server.endpoint_url)
    return str(ec2.describe_instances(InstanceIds=[cloud_id])["Reservations"][0]["Instances"][0]["State"]["Name"])


def test_e2e_aws_moto_request_approve_ready_remind_expire(aws_world: World, moto_server: Any) -> None:
    run_expiry_path(aws_world)
    (inst,) = [i for i in aws_world.store.instances() if i.request_id]
    assert _ec2_state(moto_server, inst.cloud_id) == "terminated"
    run = moto_server.requests("RunInstances")[-1].params
    assert run["InstanceType"] == "p4d.24xlarge"
    tags = {v for k, v in run.items() if k.endswith(".Value")}
    assert {"on-demand", USER, "vision"} <= tags
    user_data = base64.b64decode(run["UserData"]).decode()
    assert "u=researcher" in user_data and "slurm" not in user_data  # never joins the scheduler


def test_e2e_aws_moto_release(aws_world: World, moto_server: Any) -> None:
    cid = run_release_path(aws_world)
    assert _ec2_state(moto_server, cid) == "terminated"
