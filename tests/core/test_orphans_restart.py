"""Controller state that must survive a restart: orphan grace periods and the boot estimate (both live in the store)."""

from __future__ import annotations

from burst.controller import Controller
from burst.ports import Store
from tests.core.world import CLUSTER, T0, World


def _restart(w: World) -> None:
    old = w.controller
    w.controller = Controller(
        cluster=CLUSTER, queue=w.cluster, providers=w.providers, store=w.store, offers=w.offers,
        policy=w.policy, notifier=w.notifier, orphan_grace_s=old.orphan_grace_s,
    )


def test_orphan_grace_is_not_reset_by_a_restart(sql_store: Store) -> None:
    w = World(store=sql_store, orphan_grace_s=300.0)
    cid = w.launch_directly("aws", "b-stray0000000001")
    w.tick(T0 + 30)  # first seen
    _restart(w)
    w.tick(T0 + 200)
    assert w.providers["aws"].instances[cid].terminated_at is None, "still inside the grace period"
    _restart(w)  # a crash-looping controller...
    w.tick(T0 + 340)  # ...still collects it once 300 s have passed since it was FIRST seen
    assert w.providers["aws"].instances[cid].terminated_at is not None
    assert any(r.action == "terminate-orphan" for r in w.store.audit_rows(kind="orphan", limit=10))


def test_boot_estimate_survives_a_restart(sql_store: Store) -> None:
    # One job overflows, its instance boots and joins: the controller measured a boot time.
    w = World(store=sql_store)
    w.submit("hog", 8, 10 * 3600.0, may_burst=False)
    w.submit("j", 8, 3600.0)
    w.run(T0 + 3 * 3600)
    measured = w.controller.boot_estimate()
    assert measured is not None and measured > 0
    joined = [i for i in w.store.instances() if i.joined_at is not None]
    assert joined, "the scenario must have joined an instance"
    _restart(w)
    # The new controller plans with the same measurement, read back from the books.
    assert w.controller.boot_estimate() == measured
