"""`/burst request ... on azure` (issue 11): refused by name on a cluster whose config has no
Azure, accepted where it has one. The bot's offers come from the config, as ``bot/runtime.py``
builds them (``burst.wiring.offers_for``), over signed HTTP to the real Bolt app."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from burst.config import parse_config
from burst.domain import Offer, RequestState
from burst.store.memory import MemoryStore
from burst.wiring import offers_for
from tests.bot.conftest import Poster


def live_config(tmp_path: Path, clouds: dict[str, Any]) -> Any:
    queue = tmp_path / "queue.json"
    queue.write_text(json.dumps({"pending": [], "running": [], "nodes": []}))
    return parse_config({"cluster": "bot-az", "queue": {"kind": "jsonfile", "jsonfile": str(queue)}, "clouds": clouds})


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
