"""The orphan sightings the controller keeps in the store. Our own fakes only (SimCluster, SimProvider, the stores)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from burst.controller import Controller
from burst.domain import CloudInstance, LaunchSpec
from burst.errors import TransientProviderError
from burst.ports import Provider, Store
from tests.core.world import CLUSTER, T0, World


class Unlistable:
    """A provider whose listing fails while ``down`` is set."""

    def __init__(self, inner: Provider) -> None:
        self.inner = inner
        self.name = inner.name
        self.down = False

    def launch(self, spec: LaunchSpec) -> CloudInstance:
        return self.inner.launch(spec)

    def list_instances(self) -> Sequence[CloudInstance]:
        if self.down:
            raise TransientProviderError("503", provider=self.name)
        return self.inner.list_instances()

    def find(self, intent_id: str) -> CloudInstance | None:
        return self.inner.find(intent_id)

    def terminate(self, cloud_ids: Sequence[str]) -> None:
        self.inner.terminate(cloud_ids)


def _controller(
    w: World, *, providers: Mapping[str, Provider] | None = None
) -> Controller:
    return Controller(
        cluster=CLUSTER, queue=w.cluster, providers=w.providers if providers is None else providers, store=w.store,
        offers=w.offers, policy=w.policy, orphan_grace_s=w.orphan_grace_s,
    )


def test_a_collected_orphan_is_forgotten_by_the_store() -> None:
    w = World(orphan_grace_s=300.0)
    cid = w.launch_directly("aws", "b-stray0000000001")
    w.tick(T0 + 30)
    assert w.store.orphan_first_seen(cid, T0 + 31) == T0 + 30  # recorded at first sight
    w.tick(T0 + 340)
    assert w.providers["aws"].instances[cid].terminated_at is not None
    w.tick(T0 + 370)  # no longer listed as live: its sighting goes
    assert w.store.orphan_first_seen(cid, T0 + 400) == T0 + 400


def test_an_orphan_of_a_cloud_that_cannot_be_listed_keeps_its_first_sighting(sql_store: Store) -> None:
    w = World(store=sql_store, orphan_grace_s=300.0)
    azure = Unlistable(w.providers["azure"])
    w.controller = _controller(w, providers={"aws": w.providers["aws"], "azure": azure})
    cid = w.launch_directly("azure", "b-stray0000000002")
    w.tick(T0 + 30)  # first seen
    azure.down = True
    w.tick(T0 + 60)  # azure unlisted: the orphan is not seen, and must not be forgotten
    azure.down = False
    w.controller = _controller(w, providers={"aws": w.providers["aws"], "azure": azure})  # a restart, too
    w.tick(T0 + 340)  # 310 s after it was FIRST seen
    assert w.providers["azure"].instances[cid].terminated_at is not None
