"""burst/daemon.py: one leader per store; a standby takes over after the lease TTL."""

from __future__ import annotations

from burst.controller import Controller
from burst.daemon import Daemon
from burst.ports import Store
from tests.core.world import CLUSTER, T0, TICK, World


class FakeClock:
    def __init__(self, t: float) -> None:
        self.t = t

    def now(self) -> float:
        return self.t


def _second_controller(w: World) -> Controller:
    return Controller(cluster=CLUSTER, queue=w.cluster, providers=w.providers, store=w.store, offers=w.offers, policy=w.policy)


def test_only_the_lease_holder_ticks_and_the_standby_takes_over(any_store: Store) -> None:
    w = World(store=any_store)
    w.submit("hog", 8, 100_000)
    w.submit("b", 8, 600, at=T0 - 3600)
    clock = FakeClock(T0)
    # The lease is kept in wall time (lease_clock); here the test moves it with the tick clock.
    a = Daemon(w.controller, clock, any_store, holder="a", lease_ttl_s=90.0, lease_clock=clock)
    b = Daemon(_second_controller(w), clock, any_store, holder="b", lease_ttl_s=90.0, lease_clock=clock)

    assert a.run_once() is not None and a.leader
    assert b.run_once() is None and not b.leader
    assert w.launched() == 1  # only the leader acted
    for _ in range(5):  # a keeps renewing; b stays standby
        clock.t += TICK
        assert a.run_once() is not None
        assert b.run_once() is None
    assert (a.ticks, b.ticks) == (6, 0)

    # a stops (crash: no release). Within the TTL b still waits...
    last_renewal = clock.t
    clock.t = last_renewal + 89.0
    assert b.run_once() is None
    # ...and after it b takes over, acting on the same store
    clock.t = last_renewal + 90.0
    res = b.run_once()
    assert res is not None and b.leader and b.ticks == 1
    # a comes back: it is now the standby
    clock.t += 1
    assert a.run_once() is None
    assert w.launched() == 1  # the job's instance was not launched again by the new leader


def test_stop_releases_the_lease_at_once() -> None:
    w = World()
    clock = FakeClock(T0)
    a = Daemon(w.controller, clock, w.store, holder="a", lease_ttl_s=90.0, lease_clock=clock)
    b = Daemon(_second_controller(w), clock, w.store, holder="b", lease_ttl_s=90.0, lease_clock=clock)
    assert a.run_once() is not None
    a.stop()
    clock.t += 1
    assert b.run_once() is not None


def test_daemon_records_the_last_tick_for_status() -> None:
    w = World()
    w.submit("hog", 8, 100_000)
    w.submit("b", 8, 600, at=T0 - 3600)
    clock = FakeClock(T0)
    d = Daemon(w.controller, clock, w.store, holder="a", before_tick=w.step)
    d.run_once()
    last = w.store.controller_status() or {}
    assert last["at"] == T0 and last["holder"] == "a"
    assert last["pending"] == 1 and last["actions"] == ["Launch"]
    assert last["longest_wait_s"] == 3600


def test_a_failing_tick_does_not_kill_the_daemon() -> None:
    w = World()
    clock = FakeClock(T0)

    d = Daemon(w.controller, clock, w.store, holder="a")
    w.controller.decide = lambda snap, cfg: (_ for _ in ()).throw(RuntimeError("policy bug"))  # type: ignore[assignment]
    assert d.run_once() is None and d.leader
    assert d.ticks == 0


def test_last_tick_names_the_users_running_on_prem() -> None:

    from burst.daemon import Daemon
    from burst.sim.trace import TraceJob
    from tests.core.world import T0, World

    w = World(nodes=2)
    w.cluster.submit(TraceJob("a", 0.0, 1000.0, 8, per_node=8, owner="ada"), T0)
    w.cluster.submit(TraceJob("b", 0.0, 1000.0, 8, per_node=8, owner="grace"), T0)
    w.cluster.schedule(T0)
    d = Daemon(w.controller, w.clock, w.store, holder="h")
    assert d.run_once() is not None
    summary = w.store.controller_status() or {}
    assert summary["running"] == 2 and summary["running_users"] == ["ada", "grace"]
