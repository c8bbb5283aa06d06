"""`/burst request ... on azure` (issue 11): refused by name on a cluster whose config has no
Azure, accepted where it has one, and carried out on the real Azure SDK against the ARM stand-in:
the VM boots with the requester's SSH key in its custom data. The bot's offers come from the
config, as ``bot/runtime.py`` builds them (``burst.wiring.offers_for``), over signed HTTP to the
real Bolt app and the fake Slack Web API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from slack_sdk import WebClient

from bot.app import create_app
from bot.notifier import SlackNotifier
from bot.server import HttpServer
from burst.config import parse_config
from burst.domain import TAG_ID, TAG_OWNER, TAG_PURPOSE, Offer, RequestState
from burst.ondemand.service import OnDemandService
from burst.store.memory import MemoryStore
from burst.wiring import AzureAccess, build_runtime, offers_for
from tests.azure.helpers import azure_settings
from tests.bot.conftest import SECRET, USER, ManualClock, Poster, SyncExecutor, make_settings
from tests.bot.test_service import ed25519_key
from tests.support.arm_standin import (
    ArmStandin,
    StandinCredential,
    client_kwargs,
    custom_data_of,
    serve_standin,
)
from tests.support.fake_slack import FakeSlack


def live_config(tmp_path: Path, clouds: dict[str, Any]) -> Any:
    queue = tmp_path / "queue.json"
    queue.write_text(json.dumps({"pending": [], "running": [], "nodes": []}))
    return parse_config({"cluster": "bot-az", "queue": {"kind": "jsonfile", "jsonfile": str(queue)}, "clouds": clouds,
                         "slack": {"ssh_user": make_settings().ssh_user}})


class TestALiveClusterWithoutAzure:
    @pytest.fixture
    def offers(self, tmp_path: Path) -> list[Offer]:  # overrides the conftest's aws+azure offers
        return offers_for(live_config(tmp_path, {"aws": {"simulated": True}}))

    def test_on_azure_is_refused_naming_the_configured_clouds(self, post: Poster, store: MemoryStore) -> None:
        status, _, key = post.command("request 1xA100 for 2h on azure")
        assert status == 200
        reply = post.reply(key)
        assert "`azure` is not configured on this cluster" in reply and "Configured clouds: aws." in reply, reply
        assert store.requests() == []  # nothing recorded

    def test_on_aws_still_works(self, post: Poster, store: MemoryStore) -> None:
        status, _, key = post.command("request 1xA100 for 2h on aws")
        assert status == 200
        (req,) = store.requests()
        assert req.cloud == "aws" and req.state is RequestState.AUTO_APPROVED, post.reply(key)


class TestALiveClusterWithAzure:
    @pytest.fixture
    def offers(self, tmp_path: Path) -> list[Offer]:
        return offers_for(live_config(tmp_path, {"aws": {"simulated": True}, "azure": {"simulated": True}}))

    def test_on_azure_is_accepted(self, post: Poster, store: MemoryStore) -> None:
        status, _, key = post.command("request 1xA100 for 2h on azure")
        assert status == 200
        (req,) = store.requests()
        assert req.cloud == "azure" and req.state is RequestState.AUTO_APPROVED, post.reply(key)


# ---- end to end: the bot, the wiring, the controller, the real Azure SDK against the stand-in -----


@pytest.fixture
def standin() -> Iterator[ArmStandin]:
    yield from serve_standin()


def test_a_request_on_azure_reaches_a_vm_with_the_users_key_in_its_custom_data(
    tmp_path: Path, fake: FakeSlack, standin: ArmStandin
) -> None:
    clock = ManualClock()
    settings = make_settings()
    cfg = live_config(tmp_path, {"azure": {"settings": json.loads(azure_settings(standin).model_dump_json())}})
    assert cfg.real_clouds() == ("azure",)
    store = MemoryStore()
    client = WebClient(token="xoxb-test-token", base_url=fake.api_url)
    # The controller as `burst run` composes it (real AzureProvider; the stand-in's credential)...
    rt = build_runtime(cfg, store=store, clock=clock, notifier=SlackNotifier(client, settings),
                       azure_access=AzureAccess(StandinCredential(standin.token), client_kwargs()))
    # ... and the bot as bot/runtime.py does: offers from the same config, over the same store.
    service = OnDemandService(store, settings, offers_for(cfg), clock)
    srv = HttpServer(create_app(service, settings, client=client, signing_secret=SECRET,
                                listener_executor=SyncExecutor())).start()
    try:
        post = Poster(srv, fake)
        key = ed25519_key()
        _, _, k = post.command(f"key set {key} ann@laptop")
        assert "saved" in post.reply(k).lower(), post.reply(k)
        status, _, k = post.command("request 1xA100 for 2h on azure")
        assert status == 200 and "approved" in post.reply(k), post.reply(k)
        (req,) = store.requests()
        assert req.cloud == "azure"
        for _ in range(6):
            clock.advance(30)
            rt.controller.tick(clock.now())
            if store.get_request(req.id).state is RequestState.READY:  # type: ignore[union-attr]
                break
        req = store.get_request(req.id)  # type: ignore[assignment]
        assert req is not None and req.state is RequestState.READY and req.instance_id
    finally:
        srv.stop()
    inst = store.get_instance(req.instance_id)
    assert inst is not None and inst.cloud == "azure" and inst.owner == USER
    (vm,) = standin.vms()
    assert vm["tags"][TAG_ID] == inst.id and vm["tags"][TAG_PURPOSE] == "on-demand" and vm["tags"][TAG_OWNER] == USER
    custom = custom_data_of(standin, vm["name"])
    assert key.split()[1] in custom and "u=researcher" in custom
    assert "slurm" not in custom  # an on-demand VM never joins the scheduler
    ready = [str(c.params.get("text", "")) for c in fake.calls("chat.postMessage") if c.params.get("channel") == "D" + USER]
    assert any("is ready" in t and "ssh researcher@" in t for t in ready), ready
