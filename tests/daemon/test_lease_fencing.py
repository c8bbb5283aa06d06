"""burst/daemon.py in one process: the lease in wall time, the standby's log lines, a leader that
lost its lease in the middle of a tick, an unreachable store. Real stores (SQLite files; two
store objects stand for two controller processes)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from burst.controller import Controller
from burst.daemon import LEASE, Daemon
from burst.domain import InstanceState
from burst.store.sql import SqlStore
from tests.core.world import CLUSTER, T0, TICK, World


class FakeClock:
    def __init__(self, t: float) -> None:
        self.t = t

    def now(self) -> float:
        return self.t


def _controller(w: World, store: SqlStore) -> Controller:
    return Controller(cluster=CLUSTER, queue=w.cluster, providers=w.providers, store=store, offers=w.offers,
                      policy=w.policy)


@pytest.fixture
def two_stores(tmp_path: Path):  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'burst.db'}"
    a, b = SqlStore.from_url(url), SqlStore.from_url(url, upgrade=False)
    yield a, b
    a.close()
    b.close()


def test_the_lease_is_kept_in_wall_time_not_the_tick_clock(two_stores: tuple[SqlStore, SqlStore]) -> None:
    """The embedded demo: every run starts at the same simulated day. A killed run whose
    simulated clock had run ten days ahead must not keep a new run out for ten days: its lease
    expires one TTL of wall time after its last renewal."""
    sa, sb = two_stores
    w = World(store=sa)
    # A TTL of 3 s of wall time: the standby check below must come within it, after a whole tick
    # of the killed daemon, which a loaded machine can stretch past a shorter TTL.
    ttl = 3.0
    killed = Daemon(w.controller, FakeClock(T0 + 10 * 86400), sa, holder="killed", lease_ttl_s=ttl)
    fresh = Daemon(_controller(w, sb), FakeClock(T0), sb, holder="fresh", lease_ttl_s=ttl)
    assert killed.run_once() is not None  # ... then SIGKILL: no release
    assert fresh.run_once() is None  # within the TTL: a standby
    deadline = time.monotonic() + 30  # about one TTL of wall time, not ten (simulated) days
    while fresh.run_once() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert fresh.leader


def test_standby_logs_the_holder_on_start_and_when_it_changes(
    two_stores: tuple[SqlStore, SqlStore], caplog: pytest.LogCaptureFixture
) -> None:
    sa, sb = two_stores
    w = World(store=sa)
    clock = FakeClock(T0)
    a = Daemon(w.controller, clock, sa, holder="a", lease_ttl_s=90.0, lease_clock=clock)
    b = Daemon(_controller(w, sb), clock, sb, holder="b", lease_ttl_s=90.0, lease_clock=clock)
    caplog.set_level(logging.INFO, logger="burst.daemon")
    assert a.run_once() is not None
    assert "a is now the leader (lease epoch 1)" in caplog.messages
    for _ in range(3):
        clock.t += TICK
        a.run_once()
        assert b.run_once() is None
    standby = [m for m in caplog.messages if m.startswith("standby:")]
    # once, on start: a renewed at T0+30 (2023-11-14T22:13:50Z) for 90 s
    assert standby == ["standby: lease held by a until 2023-11-14T22:15:20Z"]
    # a is frozen; b takes over after the TTL, under a new epoch
    clock.t += 91
    assert b.run_once() is not None
    assert "b is now the leader (lease epoch 2), taking over from a" in caplog.messages
    # a thaws: it finds b holding the lease, says so, and stands by
    caplog.clear()
    assert a.run_once() is None and not a.leader
    assert caplog.messages[0] == "lost the lease to b; standing by"
    assert caplog.messages[1].startswith("standby: lease held by b until ")


def test_a_leader_that_lost_its_lease_mid_tick_acts_no_further(
    two_stores: tuple[SqlStore, SqlStore], caplog: pytest.LogCaptureFixture
) -> None:
    """a takes the lease, then stalls past its TTL before its tick acts (here: in the
    before-tick hook); b takes over. When a's tick resumes its launch intent is refused by the
    store (epoch 1 is stale), nothing is launched by a, and a logs that it lost the lease."""
    sa, sb = two_stores
    w = World(store=sa)
    w.submit("hog", 8, 100_000)
    w.submit("b", 8, 600, at=T0 - 3600)
    clock = FakeClock(T0)
    b = Daemon(_controller(w, sb), clock, sb, holder="b", lease_ttl_s=90.0, lease_clock=clock)

    def stall(now: float) -> None:
        w.step(now)
        clock.t += 91  # a is frozen past its TTL...
        assert b.run_once() is not None  # ...and b takes over and acts

    a = Daemon(w.controller, clock, sa, holder="a", lease_ttl_s=90.0, lease_clock=clock, before_tick=stall)
    caplog.set_level(logging.INFO, logger="burst.daemon")
    assert a.run_once() is None
    assert not a.leader and a.ticks == 0
    assert any(m.startswith("lost the lease to b (now epoch 2; this controller held epoch 1)") for m in caplog.messages)
    assert w.launched() == 1  # b's launch only
    [inst] = sb.instances()
    assert inst.state is InstanceState.LAUNCHING
    assert [r.action for r in reversed(sb.audit_rows(subject=inst.id))] == ["->planned", "planned->launching"]
    # and a stays a standby on its next step
    clock.t += 1
    assert a.run_once() is None and w.launched() == 1


def test_sigterm_style_stop_releases_and_a_second_stop_is_harmless(two_stores: tuple[SqlStore, SqlStore]) -> None:
    sa, sb = two_stores
    w = World(store=sa)
    a = Daemon(w.controller, FakeClock(T0), sa, holder="a")
    assert a.run_once() is not None
    a.stop()
    a.stop()
    lease = sb.lease(LEASE)
    assert lease is not None and (lease.holder, lease.expires_at, lease.epoch) == ("", 0.0, 1)
    assert a.run_once() is None  # no tick after stop


class BrokenStore(SqlStore):
    def try_acquire_lease(self, name: str, holder: str, *, now: float, ttl_s: float) -> bool:
        raise OSError("connection refused\nsecond line")


def test_an_unreachable_store_stands_the_leader_by(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    st = SqlStore.from_url(f"sqlite:///{tmp_path / 'burst.db'}")
    w = World(store=st)
    d = Daemon(w.controller, FakeClock(T0), st, holder="a")
    assert d.run_once() is not None and d.leader
    d.store = BrokenStore(st.engine)
    caplog.set_level(logging.INFO, logger="burst.daemon")
    caplog.clear()  # the takeover line above is captured too when an earlier test left root at INFO
    assert d.run_once() is None and not d.leader
    assert caplog.messages == ["store unreachable, not acting: OSError: connection refused"]
    st.close()


def test_a_store_that_cannot_release_the_lease_does_not_stop_the_shutdown(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    class NoRelease(SqlStore):
        def release_lease(self, name: str, holder: str) -> None:
            raise OSError("server closed the connection")

    st = NoRelease.from_url(f"sqlite:///{tmp_path / 'burst.db'}")
    closed: list[bool] = []

    class Adapter:
        def close(self) -> None:
            closed.append(True)

    d = Daemon(_controller(World(store=st), st), FakeClock(T0), st, holder="a", lease_ttl_s=90.0, closeables=[Adapter()])
    assert d.run_once() is not None
    d.stop()
    assert closed == [True] and not d.leader
    assert "could not release the lease (it expires after 90 s): OSError: server closed the connection" in caplog.messages
    st.close()


def test_a_stale_leader_does_not_collect_orphans(two_stores: tuple[SqlStore, SqlStore]) -> None:
    """Orphan collection has no fenced write right before its terminate call (the first sighting
    is remembered in memory): the controller checks the fence before it. a saw a stray instance
    and would terminate it at the end of the grace period, but b took the lease meanwhile."""
    sa, sb = two_stores
    w = World(store=sa, orphan_grace_s=60.0)
    cid = w.launch_directly("aws", "b-stranger")
    clock = FakeClock(T0)
    takeover: list[bool] = []

    def maybe_taken_over(now: float) -> None:
        w.step(now)
        if takeover:
            assert sb.try_acquire_lease(LEASE, "b", now=now + 91, ttl_s=90.0)  # a froze; b took over

    a = Daemon(w.controller, clock, sa, holder="a", lease_ttl_s=90.0, lease_clock=clock,
               before_tick=maybe_taken_over)
    assert a.run_once() is not None  # first sighting
    clock.t += 60.0
    takeover.append(True)
    assert a.run_once() is None and not a.leader
    assert [c.cloud_id for c in w.providers["aws"].list_instances()] == [cid]
    assert sa.audit_rows(kind="orphan") == []


def test_a_leader_that_lost_its_lease_between_decide_and_act_makes_no_queue_call(
    two_stores: tuple[SqlStore, SqlStore],
) -> None:
    """A drain calls the scheduler before it records DRAINING: the executor checks the fence
    once before it carries out a plan, so a controller that lost the lease while it decided
    leaves the node schedulable."""
    from burst.domain import Drain
    from burst.errors import LeaseLost

    sa, sb = two_stores
    w = World(store=sa)
    assert sa.try_acquire_lease(LEASE, "a", now=0.0, ttl_s=10.0)  # expired, but nobody took it over
    w.submit("hog", 8, 100_000, may_burst=False)
    w.submit("b", 8, 600)
    decide = w.controller.decide

    def decide_then_stall(snap, cfg):  # type: ignore[no-untyped-def]
        plan = decide(snap, cfg)
        if plan.of(Drain):
            assert sb.try_acquire_lease(LEASE, "b", now=100.0, ttl_s=90.0)  # a froze; b took over
        return plan

    w.controller.decide = decide_then_stall  # type: ignore[method-assign]
    with pytest.raises(LeaseLost):
        while True:
            w.tick(w.now() + TICK)
            assert w.now() < T0 + 3600, f"never drained: {w.store.instances()}"
    [inst] = sa.instances()
    assert inst.state is InstanceState.JOINED
    node = next(n for n in w.cluster.snapshot().nodes if n.instance_id == inst.id)
    assert node.schedulable  # no drain_node call was made


def test_a_stale_leader_takes_no_grand_challenge_step(two_stores: tuple[SqlStore, SqlStore]) -> None:
    """At the challenge's start the runner records the preempted set (fenced) before it signals
    or holds any job: a runner whose lease was taken over stops there (LeaseLost is not one of
    the errors a challenge step records and moves past), and no job is checkpointed or held."""
    from burst.domain import ChallengeState
    from burst.errors import LeaseLost
    from tests.core import test_grand_challenge_runner as gcr

    sa, sb = two_stores
    assert sa.try_acquire_lease(LEASE, "a", now=0.0, ttl_s=10.0)
    w = gcr.World(sa)
    gcr.fill(w)
    w.until(gcr.T0 + gcr.H + 5 * gcr.M)
    assert w.gc.state is ChallengeState.DRAINING
    assert sb.try_acquire_lease(LEASE, "b", now=100.0, ttl_s=90.0)  # a froze; b took over
    w.now = gcr.START
    with pytest.raises(LeaseLost):
        w.tick()
    assert w.gc.state is ChallengeState.DRAINING and w.gc.preempted_jobs == ()
    assert w.cluster.held_count == 0
    assert all(w.job(j).signal_ckpt is None for j in ("a", "b", "d"))  # no checkpoint signal
