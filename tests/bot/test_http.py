"""Real Bolt over real HTTP: signed requests to the bot's WSGI server, Web API calls to the fake."""

from __future__ import annotations

import json
import time
from pathlib import Path

import yaml

from burst.challenges import record_queue
from burst.domain import Job, JobState, Node, QueueSnapshot, RequestState
from burst.ondemand.service import OnDemandService
from burst.store.memory import MemoryStore
from tests.bot.conftest import ADMIN, ADMIN_CHANNEL, GROUP_ADMIN, OTHER, SECRET, USER, Poster
from tests.support.fake_slack import FakeSlack, block_action_payload, command_body, payload_body, sign


def test_signed_help_is_answered_in_the_ack(post: Poster) -> None:
    status, body, _ = post.command("help")
    assert status == 200
    msg = json.loads(body)
    assert msg["response_type"] == "ephemeral" and "/burst request" in msg["text"]


def test_bad_signature_and_stale_timestamp_get_401(post: Poster, store: MemoryStore) -> None:
    body = command_body("request 1xA100", user=USER)
    headers = sign(SECRET, body)
    headers["x-slack-signature"] = headers["x-slack-signature"][:-4] + "0000"
    assert post.raw(body, headers)[0] == 401
    stale = int(time.time()) - 6 * 60
    assert post.signed(body, timestamp=stale)[0] == 401
    assert post.raw(body, {"content-type": "application/x-www-form-urlencoded"})[0] == 401
    wrong_secret = sign("another-secret", body)
    assert post.raw(body, wrong_secret)[0] == 401
    assert store.requests() == []


def test_malformed_command_gets_usage_and_records_nothing(post: Poster, store: MemoryStore, fake: FakeSlack) -> None:
    status, body, key = post.command("request 2xA100 for -3h <!channel>")
    assert status == 200
    msg = json.loads(body)
    assert msg["response_type"] == "ephemeral"
    assert "Usage: `/burst request" in msg["text"]
    assert "<!channel>" not in msg["text"]
    assert store.requests() == [] and store.audit_rows() == []
    assert fake.responses(key) == []


def test_request_within_quota_is_auto_approved(post: Poster, store: MemoryStore) -> None:
    status, body, key = post.command("request 1xA100 for 2h on aws note fine-tuning <b>run</b>")
    assert status == 200 and body == ""
    reply = post.reply(key)
    assert "approved" in reply and "r-" in reply
    (req,) = store.requests()
    assert req.state is RequestState.AUTO_APPROVED and req.cloud == "aws" and req.gpus == 1
    assert req.note == "fine-tuning <b>run</b>"


def test_request_over_quota_posts_approval_buttons_and_admin_approves(
    post: Poster, store: MemoryStore, fake: FakeSlack
) -> None:
    status, _, key = post.command("request 8xA100 for 30h")
    assert status == 200
    assert "needs an admin" in post.reply(key)
    (req,) = store.requests()
    assert req.state is RequestState.REQUESTED
    (msg,) = fake.calls("chat.postMessage")
    assert msg.params["channel"] == ADMIN_CHANNEL
    actions = [b for b in msg.params["blocks"] if b["type"] == "actions"][0]
    assert [e["action_id"] for e in actions["elements"]] == ["burst_approve", "burst_reject"]
    message = {"ts": "1700000000.000001", "blocks": msg.params["blocks"], "text": msg.params["text"]}

    # a non-admin presses Approve: denied, audited, request unchanged
    payload = block_action_payload("burst_approve", req.id, user=OTHER, channel=ADMIN_CHANNEL, message=message,
                                   response_url=fake.response_url("deny"))
    assert post.signed(payload_body(payload))[0] == 200
    assert "Only burst admins" in post.reply("deny")
    assert store.get_request(req.id).state is RequestState.REQUESTED  # type: ignore[union-attr]
    denied = store.audit_rows(kind="admin")
    assert denied and denied[0].action == "denied" and denied[0].actor == OTHER

    # a member of the admin user group approves: message updated, requester DMed
    payload = block_action_payload("burst_approve", req.id, user=GROUP_ADMIN, channel=ADMIN_CHANNEL, message=message,
                                   response_url=fake.response_url("ok"))
    assert post.signed(payload_body(payload))[0] == 200
    got = store.get_request(req.id)
    assert got is not None and got.state is RequestState.APPROVED and got.approver == GROUP_ADMIN
    (upd,) = fake.calls("chat.update")
    assert upd.params["channel"] == ADMIN_CHANNEL and upd.params["ts"] == "1700000000.000001"
    assert not [b for b in upd.params["blocks"] if b["type"] == "actions"]
    assert fake.calls("usergroups.users.list")
    dm = fake.calls("conversations.open")
    assert dm and dm[-1].params["users"] == USER


def test_reject_button(post: Poster, store: MemoryStore, fake: FakeSlack) -> None:
    post.command("request 8xA100 for 30h")
    (req,) = store.requests()
    msg = fake.calls("chat.postMessage")[0]
    payload = block_action_payload("burst_reject", req.id, user=ADMIN, channel=ADMIN_CHANNEL,
                                   message={"ts": "1.2", "blocks": msg.params["blocks"]})
    assert post.signed(payload_body(payload))[0] == 200
    assert store.get_request(req.id).state is RequestState.REJECTED  # type: ignore[union-attr]
    assert "Rejected" in fake.calls("chat.update")[0].params["text"]


def test_non_admin_gc_schedule_is_denied_and_audited(post: Poster, store: MemoryStore, fake: FakeSlack) -> None:
    _, _, key = post.command("gc schedule +2h 6h llm-eval", user=USER)
    assert "Only burst admins" in post.reply(key)
    rows = store.audit_rows(kind="admin")
    assert len(rows) == 1 and rows[0].action == "denied" and rows[0].actor == USER
    assert store.challenges() == [] and fake.calls("views.open") == []


def test_gc_schedule_opens_impact_modal_and_submit_records(
    post: Poster, store: MemoryStore, fake: FakeSlack, service: OnDemandService, tmp_path: Path
) -> None:
    # The last tick recorded 42 running jobs (burst/daemon.py writes them under "queue").
    running = tuple(
        Job(id=f"j{k}", gpus=8, submit_time=0.0, state=JobState.RUNNING, owner="U0ADA0001" if k % 2 else "grace",
            start_time=0.0, node_names=(f"n{k}",))
        for k in range(42)
    )
    nodes = tuple(Node(name=f"n{k}", gpus=8, gpus_used=8) for k in range(42))
    store.set_controller_status({"at": 1.0, "queue": record_queue(QueueSnapshot((), running, nodes))}, now=0.0)
    job = tmp_path / "llm-eval.sh"
    job.write_text("#!/bin/sh\nsrun ./eval\n")
    _, _, key = post.command(f"gc schedule +2h 6h {job} big run", user=ADMIN)
    (opened,) = fake.calls("views.open")
    view = opened.params["view"]
    assert "42 running job(s)" in json.dumps(view)
    assert "<@U0ADA0001>" in json.dumps(view) and "grace" in json.dumps(view)  # which users
    assert store.challenges() == []
    submit = {
        "type": "view_submission",
        "team": {"id": "T0BURST01"},
        "user": {"id": ADMIN, "team_id": "T0BURST01"},
        "api_app_id": "A0BURST01",
        "trigger_id": "1.2.3",
        "view": {**view, "id": "V1", "state": {"values": {}}, "team_id": "T0BURST01"},
    }
    status, body = post.signed(payload_body(submit))
    assert status == 200 and json.loads(body)["response_action"] == "update"
    (gc,) = store.challenges()
    assert gc.name == "llm-eval.sh" and gc.note == "big run" and gc.duration_s == 6 * 3600
    _, _, key = post.command(f"gc cancel {gc.id}", user=ADMIN)
    assert "cancelled" in post.reply(key)


def test_status_list_show_key_extend_release(post: Poster, store: MemoryStore) -> None:
    from tests.bot.test_service import ed25519_key

    _, _, k = post.command(f"key set {ed25519_key()} me@laptop")
    assert "SHA256:" in post.reply(k)
    _, _, k = post.command("request 2xA100 for 1h")
    (req,) = store.requests()
    _, _, k = post.command("list")
    assert req.id in post.reply(k)
    _, _, k = post.command(f"show {req.id}")
    assert "auto-approved" in post.reply(k)
    _, _, k = post.command(f"show {req.id}", user=OTHER)
    # issue 12: someone else's request reads exactly like an unknown id (no id oracle)
    assert post.reply(k) == f":warning: No request `{req.id}`."
    _, _, k = post.command(f"extend {req.id} 1h")
    assert "only a ready instance" in post.reply(k)
    _, _, k = post.command("status")
    assert "On-prem" in post.reply(k) and "Spend" in post.reply(k)
    _, _, k = post.command("budget")
    assert "vision" in post.reply(k)
    _, _, k = post.command(f"release {req.id}")
    assert "released" in post.reply(k)
    assert store.get_request(req.id).state is RequestState.RELEASED  # type: ignore[union-attr]


def test_app_home_and_mention(post: Poster, fake: FakeSlack) -> None:
    def event(ev: dict[str, object]) -> str:
        return json.dumps({"token": "x", "team_id": "T0BURST01", "api_app_id": "A0BURST01", "type": "event_callback",
                           "event_id": "Ev1", "event_time": 1, "event": ev})

    body = event({"type": "app_home_opened", "user": USER, "channel": "D1", "tab": "home"})
    h = sign(SECRET, body)
    h["content-type"] = "application/json"
    assert post.raw(body, h)[0] == 200
    (pub,) = fake.calls("views.publish")
    assert pub.params["user_id"] == USER and pub.params["view"]["type"] == "home"
    body = event({"type": "app_mention", "user": USER, "channel": "C0GENERAL", "ts": "1.5", "text": "<@UBOTBURST> hi"})
    h = sign(SECRET, body)
    h["content-type"] = "application/json"
    assert post.raw(body, h)[0] == 200
    msg = fake.calls("chat.postMessage")[-1]
    assert msg.params["channel"] == "C0GENERAL" and "/burst request" in msg.params["text"]


def test_manifest_has_exactly_the_scopes_and_command_used() -> None:
    manifest = yaml.safe_load((Path(__file__).parents[2] / "bot" / "manifest.yaml").read_text())
    assert sorted(manifest["oauth_config"]["scopes"]["bot"]) == sorted(
        ["app_mentions:read", "chat:write", "commands", "im:write", "usergroups:read", "users:read", "users:read.email"]
    )
    assert [c["command"] for c in manifest["features"]["slash_commands"]] == ["/burst"]
    assert sorted(manifest["settings"]["event_subscriptions"]["bot_events"]) == ["app_home_opened", "app_mention"]
    # every Web API method the bot code calls maps to one of those scopes
    src = "\n".join(p.read_text() for p in (Path(__file__).parents[2] / "bot").glob("*.py"))
    used = {m for m in ("chat_postMessage", "chat_update", "conversations_open", "usergroups_users_list",
                        "users_lookupByEmail", "views_open", "views_publish") if f".{m}(" in src}
    assert used == {"chat_postMessage", "chat_update", "conversations_open", "usergroups_users_list",
                    "users_lookupByEmail", "views_open", "views_publish"}
