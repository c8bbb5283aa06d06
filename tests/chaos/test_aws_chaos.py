"""Chaos: the controller is SIGKILLed over and over while it bursts a full cluster to EC2 (moto).

The controller runs as it does in production (``python -m burst.cli run``: APScheduler tick, lease
in SQLite, the real AwsProvider talking HTTP to moto). The test process plays the on-prem
cluster through the JSON queue document and EC2 (tests/chaos/harness.py) and kills the
controller, both from outside at random moments and from inside at the crash points that sit in
the risky windows (burst/faults.py). Every kill is followed by a restart on the same database.

After the jobs are done and one last controller, left alone, has scaled everything in, the test
checks what intent-before-action promises (DESIGN.md, principle 4):

* nothing leaked: every instance tagged for the cluster is terminated in EC2 or known to the
  store as live under its cloud id; at the end nothing runs at all;
* nothing was launched twice: instances grouped by ``burst:id`` are all singletons (moto ignores
  ``ClientToken``, so this rests on the intent rows and the lookups by tag alone);
* every job got capacity and completed;
* every instance EC2 terminated was terminated by burst's books: either the store's row for it,
  or an orphan-collection audit row naming it (three or more strays are planted for that).

Seed: ``CHAOS_SEED`` (default 7). Kills: ``CHAOS_MIN_KILLS`` (default 30).
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from pathlib import Path

import pytest

from burst.domain import TAG_CLUSTER, TAG_ID, TAG_PURPOSE, InstanceState
from burst.store.sql import SqlStore
from tests.aws.helpers import some_ami
from tests.chaos.harness import (
    CLUSTER,
    REGION,
    ControllerProcess,
    JobSpec,
    PlayedCluster,
    cluster_instances,
    ec2_client,
    job_stream,
    tag,
    write_config,
)
from tests.support.moto_server import MotoServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # see CHAOS_BUDGET_S

SEED = int(os.environ.get("CHAOS_SEED", "7"))
MIN_KILLS = int(os.environ.get("CHAOS_MIN_KILLS", "30"))
BASE_ODDS = {
    "after-intent": 0.1,
    "after-launch": 0.15,
    "before-terminate-call": 0.15,
    "after-terminate-call": 0.15,
    "orphan-terminate": 0.5,
}


def crash_env(fired: Counter[str], rng: random.Random) -> tuple[str, str | None]:
    """BURST_CRASH_POINTS for the next controller, and the not-yet-fired point it forces (if any).

    Every other generation one point (the first that has not fired yet, in window order, else a
    random one) is certain to fire at its first call, so every window is hit. A generation that
    forces a point not yet fired is not killed from outside until that point had a fair chance
    to fire (FORCED_WAIT_S): on a slow machine a random external kill would otherwise beat the
    forced point every time, and the run would never cover the window (that is how CI once ran
    out of budget)."""
    odds = dict(BASE_ODDS)
    forced: str | None = None
    if rng.random() < 0.5:
        # Launch-side windows are forced first: they exist only while work needs capacity.
        unfired = [p for p in BASE_ODDS if not fired[p]]
        if unfired:
            forced = unfired[0]
            odds[forced] = 1.0
        else:
            odds[rng.choice(list(BASE_ODDS))] = 1.0
    return ",".join(f"{k}:{v}" for k, v in odds.items()), forced

LAUNCH_SIDE = ("after-intent", "after-launch")
FORCED_WAIT_S = 20.0  # a generation with a forced crash point lives this long at most
MAX_EXTRA_JOBS = 30
MAX_STRAYS = 8
# The kill phase: 90 s here, 120 s with both cores busy, 257 s in a CI run on a machine shared by
# other work (2026-12-03), so 300 s was too close. A liveness bound, not a speed claim: generous,
# with the test's own pytest timeout raised to match.
CHAOS_BUDGET_S = 480.0
SCALE_IN_BUDGET_S = 60.0
LEADER_WITHIN_S = 45.0  # a restarted process: interpreter start, imports, the 5 s TTL of the killed one


def plant_stray(ec2: object, moto: MotoServer, name: str) -> str:
    """An instance tagged for this cluster that no store row knows (e.g. launched by a controller
    whose database was restored from an old backup). Orphan collection must remove it."""
    resp = ec2.run_instances(  # type: ignore[attr-defined]
        ImageId=some_ami(moto.endpoint_url, REGION),
        InstanceType="g6.xlarge",
        MinCount=1,
        MaxCount=1,
        TagSpecifications=[
            {
                "ResourceType": "instance",
                "Tags": [
                    {"Key": TAG_CLUSTER, "Value": CLUSTER},
                    {"Key": TAG_ID, "Value": name},
                    {"Key": TAG_PURPOSE, "Value": "overflow"},
                ],
            }
        ],
    )
    return str(resp["Instances"][0]["InstanceId"])


def uncollected(ec2: object, strays: dict[str, str]) -> list[str]:
    """Planted strays that EC2 still runs."""
    if not strays:
        return []
    resp = ec2.describe_instances(InstanceIds=list(strays))  # type: ignore[attr-defined]
    return [
        i["InstanceId"] for r in resp["Reservations"] for i in r["Instances"] if i["State"]["Name"] != "terminated"
    ]


def test_controller_survives_repeated_sigkill_without_leaks_or_double_launches(
    moto: MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = random.Random(SEED)
    config, queue, db_url = write_config(tmp_path, moto, accelerators=["L4"], orphan_grace_s=1.0)
    ec2 = ec2_client(moto)
    jobs = job_stream(20, rng, spread_s=75.0, first=8)
    cluster = PlayedCluster(queue, ec2, jobs)
    cluster.init()
    ctl = ControllerProcess(config, tmp_path)
    strays_at = {8.0: "stray-1", 30.0: "stray-2", 55.0: "stray-3"}
    strays: dict[str, str] = {}  # cloud id -> burst:id tag

    external_kills = 0
    extras = 0
    fired: Counter[str] = Counter()
    kill_at: float | None = None
    t_start = time.monotonic()
    env, forced = crash_env(fired, rng)
    ctl.start(crash_points=env)
    restarts = 0
    while True:
        elapsed = time.monotonic() - t_start
        for at, name in list(strays_at.items()):
            if elapsed >= at:
                strays[plant_stray(ec2, moto, name)] = name
                cluster.ignore.add(name)
                del strays_at[at]
        cluster.step()
        code = ctl.exit_code()
        if code is not None:
            point = ctl.fired_crash_point()
            assert code == -9 and point, f"controller exited {code} on its own:\n{ctl.text()[-4000:]}"
            fired[point] += 1
        elif kill_at is None:
            if ctl.is_leader():
                kill_at = time.monotonic() + (FORCED_WAIT_S if forced else rng.uniform(0.3, 3.0))
            else:
                assert time.monotonic() - ctl.started_at < LEADER_WITHIN_S, f"never became leader:\n{ctl.text()[-4000:]}"
        elif time.monotonic() >= kill_at:
            ctl.kill()
            point = ctl.fired_crash_point()  # it may have died at a crash point just before
            if point:
                fired[point] += 1
            else:
                external_kills += 1
            code = -9
        if forced in LAUNCH_SIDE and not cluster.waiting and extras < MAX_EXTRA_JOBS:
            # The forced window needs a launch, and no job is waiting for capacity: add one, now.
            # The extra jobs must be served like the others (they are in `jobs`, which the final
            # checks cover).
            extras += 1
            cluster.jobs.append(JobSpec(f"extra-{extras:02d}", 8, round(time.time() - cluster.t0, 2), 3.0))
        if forced == "orphan-terminate" and not strays_at and len(strays) < MAX_STRAYS and not uncollected(ec2, strays):
            # Likewise the orphan window needs a stray to collect.
            name = f"stray-{len(strays) + 1}"
            strays[plant_stray(ec2, moto, name)] = name
            cluster.ignore.add(name)
        if code is not None:
            kills = external_kills + sum(fired.values())
            if kills >= MIN_KILLS and cluster.all_done and not strays_at and all(fired[p] for p in BASE_ODDS):
                break
            env, forced = crash_env(fired, rng)
            ctl.start(crash_points=env)
            restarts += 1
            kill_at = None
        assert elapsed < CHAOS_BUDGET_S, (
            f"chaos phase over budget: {external_kills} kills, {dict(fired)} crash points, "
            f"{len(cluster.completed)}/{len(jobs)} jobs done; instances up: {len(cluster.joined)}"
        )
        time.sleep(0.2)
    chaos_s = time.monotonic() - t_start

    # Left alone, the controller scales everything in.
    ctl.start(crash_points="")
    restarts += 1
    t_calm = time.monotonic()
    store = SqlStore.from_url(db_url, upgrade=False)
    while True:
        cluster.step()
        up = [i for i in cluster_instances(ec2) if i["State"]["Name"] != "terminated"]
        if not up and not store.live_instances():
            break
        code = ctl.exit_code()
        assert code is None, f"controller exited {code}:\n{ctl.text()[-4000:]}"
        assert time.monotonic() - t_calm < SCALE_IN_BUDGET_S, (
            f"not scaled in: {[(tag(i, TAG_ID), i['State']['Name']) for i in up]}, "
            f"store live: {[(i.id, str(i.state)) for i in store.live_instances()]}"
        )
        time.sleep(0.3)
    scale_in_s = time.monotonic() - t_calm
    ctl.stop()

    # ---- the books against the cloud --------------------------------------------------------
    everything = cluster_instances(ec2)
    rows = {i.id: i for i in store.instances()}
    live_rows = {i.id: i for i in store.live_instances()}
    by_intent: dict[str, list[str]] = {}
    for raw in everything:
        by_intent.setdefault(tag(raw, TAG_ID), []).append(str(raw["InstanceId"]))
    duplicates = {k: v for k, v in by_intent.items() if len(v) > 1}
    leaked = [
        (tag(raw, TAG_ID), raw["InstanceId"], raw["State"]["Name"])
        for raw in everything
        if raw["State"]["Name"] != "terminated"
        and not (tag(raw, TAG_ID) in live_rows and live_rows[tag(raw, TAG_ID)].cloud_id == raw["InstanceId"])
    ]
    still_running = [raw["InstanceId"] for raw in everything if raw["State"]["Name"] != "terminated"]
    orphan_rows = store.audit_rows(kind="orphan", limit=100_000)
    orphan_audited = {r.subject for r in orphan_rows if r.action == "terminate-orphan"}
    # Every instance EC2 terminated is accounted for: our row for it, or an orphan audit row.
    unaccounted = [
        (tag(raw, TAG_ID), raw["InstanceId"])
        for raw in everything
        if raw["State"]["Name"] == "terminated"
        and not (tag(raw, TAG_ID) in rows and rows[tag(raw, TAG_ID)].cloud_id == raw["InstanceId"])
        and raw["InstanceId"] not in orphan_audited
    ]
    ours = [raw for raw in everything if raw["InstanceId"] not in strays]
    orphans_collected = [cid for cid in strays if cid in orphan_audited]
    extra_orphans = sorted(orphan_audited - set(strays))
    kills = external_kills + sum(fired.values())
    run_instances = moto.count("RunInstances")
    summary = (
        f"[chaos] seed={SEED} kills={kills} (external={external_kills}, crash points={sum(fired.values())} "
        f"{dict(sorted(fired.items()))}) restarts={restarts} instances_launched={len(ours)} "
        f"RunInstances={run_instances} leaked={len(leaked)} duplicate_launches={sum(len(v) - 1 for v in duplicates.values())} "
        f"jobs_served={len(cluster.completed)}/{len(jobs)} evictions={cluster.evictions} "
        f"orphans_collected={len(orphans_collected)}/{len(strays)} other_orphans={len(extra_orphans)} "
        f"unaccounted_terminations={len(unaccounted)} chaos={chaos_s:.0f}s scale_in={scale_in_s:.0f}s"
    )
    with capsys.disabled():
        print("\n" + summary)

    assert kills >= MIN_KILLS
    assert not duplicates, f"launched twice: {duplicates}\n{summary}"
    assert not leaked, f"leaked: {leaked}\n{summary}"
    assert not still_running, summary
    assert not live_rows, summary
    assert cluster.all_done and set(cluster.first_placed) == {j.id for j in jobs}, summary
    stray_calls = [
        (r.action, r.params) for r in moto.requests("TerminateInstances") if set(r.params.values()) & set(strays)
    ]
    assert len(strays) >= 3 and len(orphans_collected) == len(strays), (
        f"orphans not audited: {strays} vs {orphan_audited}; calls that terminated them: {stray_calls}\n{summary}"
    )
    assert not unaccounted, f"terminated without a row or an orphan audit: {unaccounted}\n{summary}"
    # Every instance of ours went through the books to TERMINATED.
    assert all(rows[tag(raw, TAG_ID)].state is InstanceState.TERMINATED for raw in ours), summary
