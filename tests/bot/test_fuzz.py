"""Hypothesis fuzz: >= 1,000 random and hostile ``/burst`` texts, each sent signed over real HTTP.

Every one is acked (HTTP 200) with a well-formed answer: an ephemeral JSON body in the ack, or a
reply through the response_url. Invalid input records nothing. No listener raises (nothing is
logged at ERROR, and no reply is the internal-error message)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from slack_sdk import WebClient

from bot.app import create_app
from bot.parse import ParseError, parse
from bot.server import HttpServer
from burst.ondemand.service import OnDemandService
from burst.store.memory import MemoryStore
from tests.bot.conftest import SECRET, USER, ManualClock, Poster, SyncExecutor, bot_offers, make_settings
from tests.support.fake_slack import FakeSlack

HOSTILE = [
    "<!channel>", "<!here>", "<@U0ADMIN01>", "*bold*", "_it_", "~s~", "`code`", "```block```", "&amp;", "&lt;",
    "'; DROP TABLE requests;--", "\" OR 1=1 --", "$(rm -rf /)", "`id`", "| cat /etc/passwd", "&& reboot",
    "../../etc/passwd", "%00", "\x00", "\u202e", "\u200b", "ｒｅｑｕｅｓｔ", "😀", "r-<!here>", "r-ABCDEF", "r-abcdeg",
    "gc-zzzzzz", "-5", "-1x A100", "0xA100", "99999999999999999999xA100", "1e309", "NaN", "inf", "0x10",
    "2xA100", "8xH100", "1xa100", "for", "on", "spot", "region", "note", "aws", "azure", "gcp", "us-east-1",
    "9999999h", "-3h", "0h", "1h30m", "1.5h", "2d", "+2h", "2026-13-45T99:99Z", "2026-05-01T09:00Z",
    "ssh-ed25519", "AAAAC3NzaC1lZDI1NTE5AAAAIG", "key", "set", "gc", "schedule", "cancel", "show", "list", "all",
    "approve", "reject", "extend", "release", "status", "budget", "help", "A" * 300,
]
VERBS = ["request", "extend", "release", "list", "show", "key", "status", "budget", "gc", "help", "approve",
         "reject", "REQUEST", "Gc", ""]

token = st.one_of(st.sampled_from(HOSTILE), st.text(min_size=1, max_size=12), st.integers(-10**30, 10**30).map(str))
composed = st.builds(lambda v, toks: " ".join([v, *toks]), st.sampled_from(VERBS), st.lists(token, max_size=8))
texts = st.one_of(
    composed,
    composed,
    st.text(max_size=300),
    st.text(min_size=4001, max_size=4200),
    st.builds(lambda n, m, h: f"request {n}x{m} for {h}", st.integers(-5, 2000), st.sampled_from(["A100", "H100", "<b>", "a100"]),
              st.sampled_from(["1h", "30m", "0h", "-1h", "100000h", "2d", "x"])),
)


@pytest.fixture(scope="module")
def rig() -> Iterator[tuple[Poster, MemoryStore, FakeSlack]]:
    fake = FakeSlack.start()
    store = MemoryStore()
    s = make_settings()
    svc = OnDemandService(store, s, bot_offers(), ManualClock())
    app = create_app(svc, s, client=WebClient(token="xoxb-test", base_url=fake.api_url), signing_secret=SECRET,
                     listener_executor=SyncExecutor())
    srv = HttpServer(app).start()
    yield Poster(srv, fake), store, fake
    srv.stop()
    fake.stop()


def _state(store: MemoryStore) -> tuple[Any, ...]:
    return (store.audit_count, len(store.requests()), len(store.challenges()), store.get_user_setting(USER, "ssh_public_key"))


COUNT = {"n": 0}


@settings(max_examples=1100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(text=texts)
def test_fuzz_every_text_is_acked_and_answered(rig: tuple[Poster, MemoryStore, FakeSlack], text: str, caplog: pytest.LogCaptureFixture) -> None:
    post, store, fake = rig
    COUNT["n"] += 1
    before = _state(store)
    with caplog.at_level(logging.ERROR, logger="burst.bot"):
        status, body, key = post.command(text)
    assert status == 200
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    try:
        parse(text)
        valid = True
    except ParseError:
        valid = False
    if body:
        msg = json.loads(body)
        assert msg["response_type"] == "ephemeral" and isinstance(msg["text"], str) and msg["text"]
        assert "<!channel>" not in msg["text"] and "<!here>" not in msg["text"]
        reply = msg["text"]
        assert not fake.responses(key)
    else:
        assert valid
        got = fake.responses(key)
        assert len(got) == 1, text
        reply = str(got[0].params.get("text", ""))
        assert reply and got[0].params.get("response_type") == "ephemeral"
    assert ":boom:" not in reply
    if not valid or reply.startswith(":warning:"):
        assert _state(store) == before, text
    elif reply.startswith(":no_entry:"):
        assert store.audit_rows(kind="admin")[0].action == "denied"
        assert _state(store)[1:] == before[1:]


def test_fuzz_ran_enough_examples() -> None:
    # Runs after the fuzz test in file order; hypothesis may stop early only on a failure.
    assert COUNT["n"] >= 1000
