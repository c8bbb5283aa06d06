"""Grand challenges from Slack, end to end: ``/burst gc schedule`` over signed HTTP opens the
confirmation with the impact read from the controller's last tick, the dialog's submit stores it
through the same path as the CLI, the ordinary Controller (daemon ticks over the simulated
cluster, Slack notifier pointed at the fake Slack) runs it, and the owners of the jobs at risk get
their notices. Cancel in several phases; bad input is one ephemeral line and stores nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from slack_sdk import WebClient

from bot.app import create_app
from bot.notifier import SlackNotifier
from bot.server import HttpServer
from burst.controller import Controller
from burst.daemon import Daemon
from burst.domain import ChallengeState, GrandChallenge, JobState, Offer
from burst.ondemand.service import OnDemandService
from burst.sim.cloud import SimProvider
from burst.sim.cluster import SimCluster
from burst.sim.trace import TraceJob
from burst.store.memory import MemoryStore
from policies import PolicyConfig
from policies.grand_challenge import ChallengeSettings
from tests.bot.conftest import ADMIN, OTHER, SECRET, USER, ManualClock, Poster, SyncExecutor, make_settings
from tests.support.fake_slack import FakeSlack, payload_body

H = 3600.0
THIRD = "U0USER003"
ANNOUNCE = "C0ANNOUNCE"
GRACE = 300.0


@dataclass
class GcWorld:
    clock: ManualClock
    store: MemoryStore
    cluster: SimCluster
    daemon: Daemon
    post: Poster
    fake: FakeSlack
    job_file: Path

    def step(self, to: float) -> None:
        """Move the cluster and tick the daemon at ``to`` (the scheduler starts work after)."""
        self.clock.t = to
        self.cluster.complete_until(to)
        self.cluster.schedule(to)
        self.daemon.run_once()
        self.cluster.schedule(to)

    def until(self, state: ChallengeState, limit: float) -> float:
        """Tick every minute until the challenge is in ``state`` (at most ``limit`` seconds)."""
        t = self.clock.now()
        end = t + limit
        while self.challenge().state is not state and t < end:
            t += 60.0
            self.step(t)
        assert self.challenge().state is state, self.challenge()
        return t

    def texts(self, channel: str) -> list[str]:
        return [str(c.params.get("text", "")) for c in self.fake.calls("chat.postMessage") if c.params.get("channel") == channel]

    def challenge(self) -> GrandChallenge:
        (gc,) = self.store.challenges()
        return gc


@pytest.fixture
def world(fake: FakeSlack, offers: list[Offer], tmp_path: Path) -> Iterator[GcWorld]:
    clock = ManualClock()
    store = MemoryStore()
    settings = make_settings()
    client = WebClient(token="xoxb-test-token", base_url=fake.api_url)
    cluster = SimCluster(4, 8, "A100")
    t0 = clock.now()
    # USER and OTHER run long jobs with no time limit: at risk. THIRD's job ends (by its time
    # limit) before the challenge starts: not at risk, so THIRD is never told anything.
    cluster.submit(TraceJob("j-user", t0, 100 * H, 8, owner=USER), t0)
    cluster.submit(TraceJob("j-other", t0, 100 * H, 16, nodes=2, per_node=8, owner=OTHER), t0, priority=5)
    cluster.submit(TraceJob("j-third", t0, 20 * H, 8, owner=THIRD), t0, time_limit=24 * H)
    aws = [o for o in offers if o.cloud == "aws"]
    sim = SimProvider("aws", "site-a", clock)
    challenge_settings = ChallengeSettings(checkpoint_grace_s=GRACE)
    controller = Controller(
        cluster="site-a", queue=cluster, providers={"aws": sim}, store=store, offers=aws, policy=PolicyConfig(),
        notifier=SlackNotifier(client, settings), challenge_queue=cluster, challenge_settings=challenge_settings,
    )
    daemon = Daemon(controller, clock, store, holder="test")
    service = OnDemandService(store, settings, aws, clock, challenge_settings=challenge_settings)
    app = create_app(service, settings, client=client, signing_secret=SECRET, listener_executor=SyncExecutor())
    job = tmp_path / "challenge.sh"
    job.write_text("#!/bin/sh\nsrun ./train --all\n")
    srv = HttpServer(app).start()
    try:
        w = GcWorld(clock, store, cluster, daemon, Poster(srv, fake), fake, job)
        w.step(t0)  # the controller's tick records the running jobs the bot's impact reads
        yield w
    finally:
        srv.stop()


def open_dialog(w: GcWorld, text: str) -> dict[str, Any]:
    _, _, key = w.post.command(text, user=ADMIN)
    opened = w.fake.calls("views.open")
    assert opened, w.post.reply(key)
    view: dict[str, Any] = opened[-1].params["view"]
    return view


def submit(w: GcWorld, view: dict[str, Any], user: str = ADMIN) -> str:
    body = {
        "type": "view_submission", "team": {"id": "T0BURST01"}, "user": {"id": user, "team_id": "T0BURST01"},
        "api_app_id": "A0BURST01", "trigger_id": "1.2.3",
        "view": {**view, "id": "V1", "state": {"values": {}}, "team_id": "T0BURST01"},
    }
    status, resp = w.post.signed(payload_body(body))
    assert status == 200
    out = json.loads(resp)
    assert out["response_action"] == "update"
    return json.dumps(out["view"])


def schedule(w: GcWorld, start_in: str = "+30h", dur: str = "2h", extra: str = "") -> GrandChallenge:
    view = open_dialog(w, f"gc schedule {start_in} {dur} {w.job_file} {extra}".strip())
    assert w.store.challenges() == []  # the dialog alone stores nothing
    assert "Scheduled" in submit(w, view)
    return w.challenge()


def test_dialog_shows_the_impact_and_promises_only_what_happens(world: GcWorld) -> None:
    view = open_dialog(world, f"gc schedule +30h 2h {world.job_file} burst-preempted big run")
    text = view["blocks"][0]["text"]["text"]
    # jobs and users at risk, from the last tick; THIRD's job ends before the start
    assert "2 running job(s) of 2 user(s) would be preempted" in text
    assert f"<@{USER}>" in text and f"<@{OTHER}>" in text and THIRD not in text
    # GPU-hours since their last start, at the start: 8 + 16 GPUs for 30 h
    assert "720.0 GPU-hours" in text
    # the cost of --burst-preempted: both may burst, 24 GPUs for the 2 h challenge at the cheapest price
    price = min(o.price_per_gpu_hour for o in world.daemon.controller.offers if o.market == "on-demand")
    assert f"${24 * 2 * price:,.2f}" in text and "Cost of burst-preempted" in text
    # the promise: checkpoint signal, grace, hold, release in priority order afterwards
    assert "checkpoint signal" in text and "5min of grace" in text and "held" in text
    assert "released in their original priority order" in text
    assert "checkpointed, held, and released afterwards" not in text  # the old, untrue promise
    meta = json.loads(view["private_metadata"])
    assert meta["burst_preempted"] is True and meta["job"] == str(world.job_file)
    assert "Scheduled" in submit(world, view)
    gc = world.challenge()
    assert gc.burst_preempted and gc.note == "big run" and gc.job_text.startswith("#!/bin/sh")
    assert gc.created_by == ADMIN and gc.duration_s == 2 * H
    (row,) = [r for r in world.store.audit_rows(kind="challenge") if r.subject == gc.id]
    assert row.actor == ADMIN


def test_notices_reach_the_owners_at_risk_and_the_announce_channel_then_all_come_back(world: GcWorld) -> None:
    gc = schedule(world)
    t0, start = world.clock.now(), gc.start_at
    world.step(start - 24 * H)  # T-24h
    assert world.challenge().state is ChallengeState.NOTIFIED
    user_dm, other_dm = world.texts("D" + USER), world.texts("D" + OTHER)
    assert len(user_dm) == 1 and "`j-user`" in user_dm[0] and "checkpoint" in user_dm[0]
    assert len(other_dm) == 1 and "`j-other`" in other_dm[0] and "j-user" not in other_dm[0]
    assert world.texts("D" + THIRD) == []  # its job ends before the start
    (summary,) = world.texts(ANNOUNCE)
    assert "2 job(s) of 2 user(s)" in summary and gc.id in summary
    world.step(start - 1 * H)  # T-1h: the second notice (and the drain window opens)
    assert len(world.texts("D" + USER)) == 2 and len(world.texts(ANNOUNCE)) == 2
    assert world.texts("D" + THIRD) == []
    # the start, the grace, the challenge, the restore
    world.until(ChallengeState.RUNNING, 2 * H)
    phases = [s for s, _ in world.challenge().phases]
    assert phases[-3:] == ["draining", "preempting", "running"]
    told = [m for m in world.texts("D" + OTHER) if "was told to checkpoint and will be held" in m]
    assert len(told) == 1 and "`j-other`" in told[0]
    _, _, key = world.post.command(f"gc show {gc.id}", user=USER)
    shown = world.post.reply(key)
    assert "phase: *running*" in shown and "preempted: 2, released: 0, restored: 0" in shown
    world.until(ChallengeState.DONE, 4 * H)
    done = world.challenge()
    assert done.state is ChallengeState.DONE and all(p.restored for p in done.preempted_jobs)
    assert {p.job_id for p in done.preempted_jobs} == {"j-user", "j-other"}
    assert any("released" in m for m in world.texts("D" + USER))
    _, _, key = world.post.command(f"gc show {gc.id}", user=USER)
    assert "preempted: 2, released: 2, restored: 2" in world.post.reply(key) and "*done*" in world.post.reply(key)
    assert t0 < start


def test_cancel_before_any_notice_touches_nothing(world: GcWorld) -> None:
    gc = schedule(world)
    _, _, key = world.post.command(f"gc cancel {gc.id}", user=USER)
    assert "Only burst admins" in world.post.reply(key)
    _, _, key = world.post.command(f"gc cancel {gc.id}", user=ADMIN)
    assert "cancelled; nothing on the cluster had been touched" in world.post.reply(key)
    assert world.challenge().state is ChallengeState.CANCELLED
    world.step(gc.start_at + GRACE)
    assert world.cluster.reservations == {} and world.texts(ANNOUNCE) == []
    assert {j.id for j in world.cluster.snapshot().running} >= {"j-user", "j-other"}


def test_cancel_after_the_notice_tells_the_channel(world: GcWorld) -> None:
    gc = schedule(world)
    world.step(gc.start_at - 24 * H)
    _, _, key = world.post.command(f"gc cancel {gc.id}", user=ADMIN)
    assert "cancelled; nothing on the cluster" in world.post.reply(key)
    world.step(gc.start_at - 23 * H)
    assert world.challenge().state is ChallengeState.CANCELLED
    notice, cancelled = world.texts(ANNOUNCE)
    assert gc.id in cancelled and "is cancelled; your jobs are not affected" in cancelled
    world.step(gc.start_at + H)
    assert len(world.texts(ANNOUNCE)) == 2 and world.cluster.reservations == {}


def test_cancel_while_running_restores_every_preempted_job(world: GcWorld) -> None:
    gc = schedule(world, start_in="+2h", dur="6h")
    world.until(ChallengeState.RUNNING, 3 * H)
    held = [j.id for j in world.cluster.snapshot().pending if j.state is JobState.HELD]
    assert sorted(held) == ["j-other", "j-third", "j-user"]  # j-third would still run at the start
    _, _, key = world.post.command(f"gc cancel {gc.id}", user=ADMIN)
    assert "releases every preempted job" in world.post.reply(key)
    _, _, key = world.post.command(f"gc cancel {gc.id}", user=ADMIN)  # twice: same answer, no error
    assert "releases every preempted job" in world.post.reply(key)
    assert world.challenge().state is ChallengeState.RUNNING  # the runner acts on its next tick
    world.until(ChallengeState.CANCELLED, 10 * 60)
    after = world.challenge()
    assert after.state is ChallengeState.CANCELLED and all(p.restored for p in after.preempted_jobs)
    assert world.cluster.reservations == {}
    _, _, key = world.post.command(f"gc cancel {gc.id}", user=ADMIN)
    assert "already cancelled" in world.post.reply(key)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ("2020-01-01T00:00Z 2h {job}", ["in the past"]),
        ("+2h 15d {job}", ["over the maximum of 14d"]),
        ("+2h 2h {job} nodes 99", ["asks for 99 nodes", "has 4"]),
        ("+2h 2h /nonexistent/gc.sh", ["cannot read the challenge job"]),
        ("+2h 2h {bad}", ["not UTF-8"]),
    ],
    ids=["past", "over-max", "too-many-nodes", "missing-script", "unreadable-script"],
)
def test_bad_input_is_one_ephemeral_line_and_nothing_stored(world: GcWorld, args: str, words: list[str]) -> None:
    bad = world.job_file.with_name("bin.sh")
    bad.write_bytes(b"\xff\xfe\x00binary")
    _, _, key = world.post.command("gc schedule " + args.format(job=world.job_file, bad=bad), user=ADMIN)
    reply = world.post.reply(key)
    assert reply.count("\n") == 0 and "Cannot schedule" in reply and "Nothing was scheduled" in reply
    for w in words:
        assert w in reply, reply
    assert world.store.challenges() == [] and world.fake.calls("views.open") == []
    resp = world.fake.responses(key)[-1].params
    assert resp.get("response_type", "ephemeral") == "ephemeral"


def test_zero_duration_is_refused_in_the_ack(world: GcWorld) -> None:
    status, ack, _ = world.post.command(f"gc schedule +2h 0h {world.job_file}", user=ADMIN)
    assert status == 200 and "duration must be more than 0" in json.loads(ack)["text"]
    assert json.loads(ack)["response_type"] == "ephemeral"
    assert world.store.challenges() == [] and world.fake.calls("views.open") == []


def test_overlap_is_refused_in_the_command_and_again_at_submit(world: GcWorld) -> None:
    view = open_dialog(world, f"gc schedule +30h 2h {world.job_file}")
    first = schedule(world, start_in="+31h")
    _, _, key = world.post.command(f"gc schedule +30h 2h {world.job_file}", user=ADMIN)
    assert f"overlaps grand challenge {first.id}" in world.post.reply(key)
    # the dialog opened before the other was stored: its submit is validated again
    result = submit(world, view)
    assert "overlaps" in result and "Nothing was scheduled" in result
    assert [g.id for g in world.store.challenges()] == [first.id]


def test_no_tick_recorded_means_nothing_can_be_scheduled(world: GcWorld) -> None:
    world.store.set_controller_status({}, now=world.clock.now())
    _, _, key = world.post.command(f"gc schedule +30h 2h {world.job_file}", user=ADMIN)
    assert "no controller tick recorded yet" in world.post.reply(key)
    assert world.store.challenges() == []


def test_list_shows_phase_and_counts(world: GcWorld) -> None:
    gc = schedule(world, start_in="+2h", dur="6h")
    _, _, key = world.post.command("gc list", user=USER)
    assert gc.id in world.post.reply(key) and "*scheduled*" in world.post.reply(key)
    world.until(ChallengeState.RUNNING, 3 * H)
    _, _, key = world.post.command("gc list", user=USER)
    assert "*running*, 3 preempted, 0 restored" in world.post.reply(key)


@pytest.mark.parametrize(
    ("text", "nodes", "burst", "note"),
    [
        ("gc schedule +2h 6h /srv/gc.sh", 0, False, ""),
        ("gc schedule +2h 6h /srv/gc.sh nodes 64 burst-preempted big eval", 64, True, "big eval"),
        ("gc schedule +2h 6h ~/gc.yaml burst-preempted", 0, True, ""),
        ("gc schedule +2h 6h ./gc.sh nodes 2 weekly", 2, False, "weekly"),
    ],
)
def test_schedule_options_parse(text: str, nodes: int, burst: bool, note: str) -> None:
    from bot import parse as p

    cmd = p.parse(text)
    assert isinstance(cmd, p.GcSchedule)
    assert (cmd.nodes, cmd.burst_preempted, cmd.note) == (nodes, burst, note)


@pytest.mark.parametrize("bad", ["nodes", "nodes x", "nodes ²", "nodes 1234567"])
def test_bad_node_count_is_a_parse_error(bad: str) -> None:
    from bot import parse as p

    with pytest.raises(p.ParseError, match="whole number of nodes"):
        p.parse(f"gc schedule +2h 6h /srv/gc.sh {bad}")
