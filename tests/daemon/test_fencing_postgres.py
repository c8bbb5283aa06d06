"""Fenced leadership between two real ``burst run`` processes on a real PostgreSQL, against EC2
in moto (tests/daemon/harness.py).

The leader is frozen (SIGSTOP) inside a tick, right after EC2 accepted its launch and before it
recorded it. The standby takes over after the TTL and adopts the instance. On SIGCONT the old
leader's write is refused (stale fencing epoch): it logs that it lost the lease and stands by.
Nothing is launched or terminated twice. Prints the failover time after SIGSTOP (``-s``).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from burst.domain import TAG_ID
from burst.ports import Lease
from burst.store.sql import SqlStore
from tests.chaos.harness import cluster_instances, ec2_client, tag
from tests.daemon.harness import (
    TICK_S,
    Controller,
    configure,
    lease_of,
    signal_at_first_launch,
    start_pair,
    submit_burstable_job,
    wait_for,
)
from tests.support.moto_server import MotoServer


@pytest.mark.postgres
def test_sigstop_past_the_ttl_the_old_leader_is_fenced_and_nothing_happens_twice(
    tmp_path: Path, moto: MotoServer, controllers: list[Controller], postgres_url: str
) -> None:
    ttl = 5.0
    config, queue, url = configure(tmp_path, moto, lease_ttl_s=ttl, database_url=postgres_url)
    a, b = start_pair(config, tmp_path, url, controllers)
    frozen: list[float] = []
    undo = signal_at_first_launch(moto, lambda: a.pid, frozen)
    lease = lease_of(url)
    store = SqlStore.from_url(url, upgrade=False)
    ec2 = ec2_client(moto)
    try:
        # Work arrives: ctl-a writes the intent, EC2 accepts the launch, and ctl-a freezes.
        submit_burstable_job(queue)
        wait_for("ctl-a to launch and freeze", lambda: bool(frozen), 60.0)
        t1 = wait_for("ctl-b to take over", lambda: (lease() or Lease("", "", 0, 0)).holder == "ctl-b", 30.0)
        failover = t1 - frozen[0]
        print(f"\nfailover after SIGSTOP: {failover:.2f} s (tick {TICK_S:.0f} s, lease TTL {ttl:.0f} s)")
        assert failover <= ttl + 2 * TICK_S + 0.5, failover
        [intent] = store.instances()
        # ctl-b adopts the instance ctl-a launched (found under its burst:id tag)
        wait_for("ctl-b to adopt the launch", lambda: bool((store.get_instance(intent.id) or intent).cloud_id), 30.0)
        assert "lost the lease" not in a.text()

        os.kill(a.pid, signal.SIGCONT)
        wait_for("ctl-a to notice", lambda: "lost the lease to ctl-b" in a.text(), 30.0)
        wait_for("ctl-a to stand by", lambda: "standby: lease held by ctl-b until " in a.text(), 30.0)
        time.sleep(3 * TICK_S)  # a few more steps of both

        log = a.text()
        assert "lost the lease to ctl-b (now epoch 2; this controller held epoch 1): the write was refused" in log
        assert log.count("is now the leader") == 1 and a.exit_code() is None
        assert (lease() or Lease("", "", 0, 0)).holder == "ctl-b"
        # Nothing twice: one intent, one EC2 instance under its tag, recorded launching once
        # (by ctl-b's recovery, since ctl-a's write was refused), nothing terminated.
        assert [i.id for i in store.instances()] == [intent.id]
        raws = cluster_instances(ec2)
        assert [tag(r, TAG_ID) for r in raws] == [intent.id]
        assert raws[0]["State"]["Name"] in ("pending", "running")
        audit = [(r.action, r.actor) for r in reversed(store.audit_rows(subject=intent.id))]
        assert audit[0] == ("->planned", "controller")
        assert audit[1] == ("planned->launching", "recovery")
        assert [act for act, _ in audit].count("planned->launching") == 1
        assert not any("terminat" in act for act, _ in audit)
        assert moto.count("TerminateInstances") == 0
    finally:
        undo()
        store.close()
    for c in (a, b):
        assert c.proc is not None
        c.proc.send_signal(signal.SIGTERM)
        assert c.proc.wait(timeout=30) == 0, c.text()[-3000:]
