"""Fixtures for the bot: the fake Slack Web API, a service over a MemoryStore with a manual clock,
and the Bolt app served by the real HTTP server on 127.0.0.1."""

from __future__ import annotations

import http.client
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from typing import Any
from urllib.parse import urlsplit

import pytest
from slack_sdk import WebClient

from bot.app import create_app
from bot.server import HttpServer
from burst.catalog import Catalog, OfferFilter
from burst.domain import Market, Offer
from burst.ondemand.service import OnDemandService
from burst.ondemand.settings import OnDemandSettings, Quota
from burst.store.memory import MemoryStore
from tests.support.fake_slack import FakeSlack, command_body, sign
from tests.support.postgres import postgres_server, postgres_url  # noqa: F401  (pytest fixtures)

SECRET = "test-signing-secret-not-real"
ADMIN = "U0ADMIN01"
GROUP_ADMIN = "U0ADMIN02"
USER = "U0USER001"
OTHER = "U0USER002"
ADMIN_CHANNEL = "C0ADMINS1"
ADMIN_GROUP = "S0ADMINS1"
T0 = 1772445600.0  # 2026-03-02T10:00:00Z
REGIONS = ("us-east-1", "us-west-2", "eastus", "westus2")


class ManualClock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def now(self) -> float:
        return self.t

    def advance(self, s: float) -> float:
        self.t += s
        return self.t


class SyncExecutor(Executor):
    """Runs every submitted call at once, so lazy listeners finish before dispatch returns."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        f: Future[Any] = Future()
        try:
            f.set_result(fn(*args, **kwargs))
        except BaseException as e:  # noqa: BLE001
            f.set_exception(e)
        return f


def bot_offers() -> list[Offer]:
    return Catalog.bundled().offers(
        OfferFilter(clouds=("aws", "azure"), regions=REGIONS, markets=(Market.ON_DEMAND, Market.SPOT))
    )


def make_settings(**kw: Any) -> OnDemandSettings:
    base: dict[str, Any] = dict(
        admins=[ADMIN],
        admin_usergroup=ADMIN_GROUP,
        admin_channel=ADMIN_CHANNEL,
        announce_channel="C0ANNOUNCE",
        teams={USER: "vision", OTHER: "nlp"},
        user_quota=Quota(max_gpus=8, gpu_hours_month=200),
        team_quota=Quota(max_gpus=16, gpu_hours_month=2000),
        allowed_regions=list(REGIONS),
        ssh_user="researcher",
    )
    base.update(kw)
    return OnDemandSettings(**base)


@pytest.fixture(scope="session")
def fake_server() -> Iterator[FakeSlack]:
    fake = FakeSlack.start()
    yield fake
    fake.stop()


@pytest.fixture
def fake(fake_server: FakeSlack) -> FakeSlack:
    fake_server.reset()
    fake_server.usergroup_members = {ADMIN_GROUP: [GROUP_ADMIN]}
    return fake_server


@pytest.fixture(scope="session")
def offers() -> list[Offer]:
    return bot_offers()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def settings() -> OnDemandSettings:
    return make_settings()


@pytest.fixture
def client(fake: FakeSlack) -> WebClient:
    return WebClient(token="xoxb-test-token", base_url=fake.api_url)


@pytest.fixture
def service(store: MemoryStore, settings: OnDemandSettings, offers: list[Offer], clock: ManualClock) -> OnDemandService:
    return OnDemandService(store, settings, offers, clock)


@pytest.fixture
def app(service: OnDemandService, settings: OnDemandSettings, client: WebClient) -> Any:
    return create_app(service, settings, client=client, signing_secret=SECRET, listener_executor=SyncExecutor())


@pytest.fixture
def server(app: Any) -> Iterator[HttpServer]:
    srv = HttpServer(app).start()
    yield srv
    srv.stop()


class Poster:
    """POSTs signed bodies to the bot's HTTP server."""

    def __init__(self, server: HttpServer, fake: FakeSlack) -> None:
        self.server = server
        self.fake = fake
        self.n = 0

    def raw(self, body: str, headers: dict[str, str]) -> tuple[int, str]:
        u = urlsplit(self.server.url)
        conn = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port, timeout=10)
        try:
            conn.request("POST", u.path, body=body.encode(), headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read().decode()
        finally:
            conn.close()

    def signed(self, body: str, timestamp: int | None = None) -> tuple[int, str]:
        return self.raw(body, sign(SECRET, body, timestamp))

    def command(self, text: str, user: str = USER) -> tuple[int, str, str]:
        """Returns (status, ack body, response_url key)."""
        self.n += 1
        key = f"cmd{self.n}"
        status, body = self.signed(command_body(text, user=user, response_url=self.fake.response_url(key)))
        return status, body, key

    def reply(self, key: str) -> str:
        got = self.fake.responses(key)
        return str(got[-1].params.get("text", "")) if got else ""


@pytest.fixture
def post(server: HttpServer, fake: FakeSlack) -> Poster:
    return Poster(server, fake)
