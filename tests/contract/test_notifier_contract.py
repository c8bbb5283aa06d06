"""One contract suite for every :class:`burst.ports.Notifier` implementation.

Backends:

* ``slack``: :class:`SlackNotifier`, the real ``slack_sdk`` WebClient over HTTP to the local fake
  Slack Web API (tests/support/fake_slack.py). A user id gets a DM (``conversations.open``, then
  ``chat.postMessage``), ``"admins"`` the admin channel, ``"all"`` the announce channel.
* ``recording``: :class:`RecordingNotifier`, the simulator's in-memory notifier.

Each backend reports what was delivered as ``(audience, text)`` pairs, so one assertion fits
both. Failure modes (a Slack that answers errors, a Slack that is down, the fake's own failing
switch) are parametrized per backend: each backend is broken in the ways it can be.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from slack_sdk import WebClient

# The implementations are imported here and nowhere else in this file (fix these lines when
# modules move): bot.notifier, burst.ondemand (its settings), burst.sim.notifier.
from bot.notifier import SlackNotifier
from burst.ondemand.settings import OnDemandSettings
from burst.ports import Notifier
from burst.sim.notifier import RecordingNotifier
from tests.support.fake_slack import FakeSlack
from tests.support.slurm_cluster import free_ports

ADMIN_CHANNEL, ANNOUNCE_CHANNEL = "C0ADMINS1", "C0ANNOUNCE"
USER = "U0ADA0001"
TOKEN = "xoxb-contract-s3cr3t-0123456789"


@dataclass
class NotifierBackend:
    name: str
    notifier: Notifier
    delivered: Callable[[], list[tuple[str, str]]]  # (audience, text), in order
    secrets: tuple[str, ...]  # credentials the notifier holds: never in a message or a log
    # failure mode -> (break it, heal it)
    failures: dict[str, tuple[Callable[[], None], Callable[[], None]]]


@pytest.fixture(scope="module")
def slack_server() -> Iterator[FakeSlack]:
    fake = FakeSlack.start()
    yield fake
    fake.stop()


def _slack(request: pytest.FixtureRequest) -> NotifierBackend:
    fake: FakeSlack = request.getfixturevalue("slack_server")
    fake.reset()
    settings = OnDemandSettings(admin_channel=ADMIN_CHANNEL, announce_channel=ANNOUNCE_CHANNEL)
    client = WebClient(token=TOKEN, base_url=fake.api_url, timeout=3)
    notifier = SlackNotifier(client, settings)
    audiences = {ADMIN_CHANNEL: "admins", ANNOUNCE_CHANNEL: "all"}
    # The fake records every call, also those it answers with an error: posts made while it
    # answers errors were not delivered. ``refused`` holds their index ranges; an open range
    # (the fake still refusing) runs to the end.
    refused: list[tuple[int, int | None]] = []

    def posts() -> list[tuple[int, str, str]]:
        return [(i, str(c.params["channel"]), str(c.params["text"]))
                for i, c in enumerate(fake.calls("chat.postMessage"))]

    def delivered() -> list[tuple[str, str]]:
        return [
            (audiences.get(channel, channel.removeprefix("D")), text)
            for i, channel, text in posts()
            if not any(lo <= i and (hi is None or i < hi) for lo, hi in refused)
        ]

    def errors() -> None:
        refused.append((len(posts()), None))
        fake.fail_methods = {"chat.postMessage": "channel_not_found", "conversations.open": "user_not_found"}

    def heal_errors() -> None:
        fake.fail_methods = {}
        refused[-1] = (refused[-1][0], len(posts()))

    def down() -> None:
        (port,) = free_ports(1)  # nothing listens there
        client.base_url = f"http://127.0.0.1:{port}/api/"

    def heal_down() -> None:
        client.base_url = fake.api_url

    return NotifierBackend("slack", notifier, delivered, (TOKEN,),
                           {"errors": (errors, heal_errors), "down": (down, heal_down)})


def _recording(request: pytest.FixtureRequest) -> NotifierBackend:
    notifier = RecordingNotifier()

    def down() -> None:
        notifier.failing = "channel down"

    def heal() -> None:
        notifier.failing = ""

    return NotifierBackend("recording", notifier, lambda: list(notifier.sent), (), {"down": (down, heal)})


FACTORIES: dict[str, Callable[[pytest.FixtureRequest], NotifierBackend]] = {
    "slack": _slack,
    "recording": _recording,
}
FAILURE_MODES = {"slack": ("errors", "down"), "recording": ("down",)}


@pytest.fixture(params=list(FACTORIES))
def backend(request: pytest.FixtureRequest) -> NotifierBackend:
    return FACTORIES[request.param](request)


@pytest.fixture(params=[f"{name}-{mode}" for name, modes in FAILURE_MODES.items() for mode in modes])
def failing(request: pytest.FixtureRequest) -> tuple[NotifierBackend, str]:
    name, mode = str(request.param).split("-", 1)
    return FACTORIES[name](request), mode


def test_is_a_notifier(backend: NotifierBackend) -> None:
    assert isinstance(backend.notifier, Notifier)


def test_each_audience_gets_its_message(backend: NotifierBackend) -> None:
    n = backend.notifier
    n.notify(USER, "your instance is ready")
    n.notify("admins", "request r-1 waits for approval")
    n.notify("all", "grand challenge at 18:00")
    n.notify(USER, "one hour left")
    assert backend.delivered() == [
        (USER, "your instance is ready"),
        ("admins", "request r-1 waits for approval"),
        ("all", "grand challenge at 18:00"),
        (USER, "one hour left"),
    ]


def test_the_text_arrives_as_given_and_nothing_is_added(backend: NotifierBackend,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    text = 'Request `r-2` by <@U0ADA0001>: *8 x A100* for 4 h & "quoted" — ünïcødé\nsecond line'
    backend.notifier.notify("admins", text)
    assert backend.delivered() == [("admins", text)]
    for secret in backend.secrets:
        assert all(secret not in t for _, t in backend.delivered())
        assert secret not in caplog.text


def test_a_failure_is_logged_never_raised_and_the_next_message_goes_out(
    failing: tuple[NotifierBackend, str], caplog: pytest.LogCaptureFixture
) -> None:
    backend, mode = failing
    breaks, heals = backend.failures[mode]
    caplog.set_level(logging.DEBUG)
    breaks()
    for audience in (USER, "admins", "all"):
        backend.notifier.notify(audience, f"lost message for {audience}")  # returns: never raises
    assert backend.delivered() == []
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) >= 3, "every dropped message is logged"
    for secret in backend.secrets:
        assert secret not in caplog.text

    heals()
    backend.notifier.notify(USER, "back again")
    backend.notifier.notify("admins", "back again")
    assert backend.delivered() == [(USER, "back again"), ("admins", "back again")]
