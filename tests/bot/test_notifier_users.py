"""DMs to scheduler users: a job's owner is a Slurm/Kubernetes user name, not a Slack id. The
notifier maps it through ``slack.user_ids``, else ``users.lookupByEmail`` of ``user@email_domain``;
a user it cannot map gets no ``conversations.open`` that Slack would refuse, and one log line.
Real ``slack_sdk`` WebClient over HTTP to the local fake Slack Web API."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import ValidationError
from slack_sdk import WebClient

from bot.notifier import SlackNotifier
from burst.ondemand.settings import OnDemandSettings
from tests.support.fake_slack import FakeSlack


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    f = FakeSlack.start()
    yield f
    f.stop()


def _notifier(fake: FakeSlack, **settings: object) -> SlackNotifier:
    return SlackNotifier(WebClient(token="xoxb-test", base_url=fake.api_url, timeout=3),
                         OnDemandSettings.model_validate({"announce_channel": "C0ANNOUNCE", **settings}))


def test_mapped_scheduler_user_gets_a_dm_at_their_slack_id(fake: FakeSlack) -> None:
    n = _notifier(fake, user_ids={"alice": "U0ALICE01"})
    n.notify("alice", "your job is checkpointed")
    (opened,) = fake.calls("conversations.open")
    assert opened.params["users"] == "U0ALICE01"
    (post,) = fake.calls("chat.postMessage")
    assert post.params["channel"] == "DU0ALICE01" and post.params["text"] == "your job is checkpointed"


def test_unmapped_user_is_looked_up_by_email_once(fake: FakeSlack) -> None:
    fake.users_by_email = {"bob@example.org": "U0BOB0001"}
    n = _notifier(fake, email_domain="example.org")
    n.notify("bob", "one")
    n.notify("bob", "two")
    assert [c.params["email"] for c in fake.calls("users.lookupByEmail")] == ["bob@example.org"]
    assert [c.params["channel"] for c in fake.calls("chat.postMessage")] == ["DU0BOB0001", "DU0BOB0001"]


def test_unknown_user_gets_no_refused_open_and_one_log_line(fake: FakeSlack, caplog: pytest.LogCaptureFixture) -> None:
    n = _notifier(fake, email_domain="example.org")
    with caplog.at_level("WARNING", logger="burst.bot"):
        n.notify("carol", "one")
        n.notify("carol", "two")
    assert fake.calls("conversations.open") == [] and fake.calls("chat.postMessage") == []
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["no Slack id for scheduler user carol: not in slack.user_ids nor found as carol@example.org; "
                     "DMs to them are skipped"]


def test_without_a_mapping_or_domain_a_user_name_is_never_sent_as_a_slack_id(fake: FakeSlack) -> None:
    n = _notifier(fake)
    n.notify("dave", "x")
    n.notify("U0SLACKID1", "y")  # a Slack id still goes straight to its DM
    assert [c.params["users"] for c in fake.calls("conversations.open")] == ["U0SLACKID1"]


def test_a_failing_lookup_is_asked_again_next_time(fake: FakeSlack) -> None:
    fake.fail_methods = {"users.lookupByEmail": "ratelimited"}
    n = _notifier(fake, email_domain="example.org")
    n.notify("erin", "x")
    fake.fail_methods = {}
    fake.users_by_email = {"erin@example.org": "U0ERIN001"}
    n.notify("erin", "y")
    assert [c.params["text"] for c in fake.calls("chat.postMessage")] == ["y"]


@pytest.mark.parametrize(("field", "value", "says"), [
    ("user_ids", {"alice": "alice"}, "not Slack user ids (U… or W…) for: alice"),
    ("email_domain", "not a domain", "not a domain name"),
])
def test_bad_mapping_config_is_refused_naming_it(field: str, value: object, says: str) -> None:
    with pytest.raises(ValidationError) as e:
        OnDemandSettings.model_validate({field: value})
    assert says in str(e.value) and field in str(e.value)
