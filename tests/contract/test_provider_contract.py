"""One contract suite for every :class:`burst.ports.Provider` implementation.

Backends:

* ``aws``: :class:`providers.aws.AwsProvider`, real boto3 over HTTP against moto in server mode.
* ``sim``: :class:`burst.sim.cloud.SimProvider`, the in-memory cloud the simulator drives.
* ``azure``: :class:`providers.azure.AzureProvider`, the real azure-mgmt-compute SDK over HTTP
  against the ARM stand-in (tests/support/arm_standin.py).

``provider_factory`` yields a :class:`Backend`: ``make(cluster)`` builds a provider for a cluster
(two clusters share one cloud, so "lists only this cluster" can be checked), ``offer`` is an offer
the backend can serve, and ``settle()`` lets time pass where the backend needs it (the sim's
virtual clock; nothing for AWS).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from functools import partial

import pytest

from burst.domain import REQUIRED_TAGS, TAG_CLUSTER, CloudInstance, CloudState, Offer
from burst.errors import PermanentProviderError
from burst.ports import Provider
from tests.aws.helpers import make_offer, make_spec
from tests.support.moto_server import MotoServer, fresh_moto, serve_moto

CLUSTER = "contract-a"
OTHER = "contract-b"


@dataclass
class Backend:
    name: str
    make: Callable[[str], Provider]
    offer: Offer
    settle: Callable[[], None]
    cloud: str = "aws"  # the provider's name and CloudInstance.cloud


@pytest.fixture(scope="module")
def moto_server() -> Iterator[MotoServer]:
    yield from serve_moto()


def _aws_backend(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Backend:
    from providers.aws import AwsProvider
    from tests.aws.helpers import settings_factory

    fresh_moto(moto_server, monkeypatch)
    settings = settings_factory(moto_server.endpoint_url)()

    def make(cluster: str) -> Provider:
        return AwsProvider(settings, cluster=cluster)

    return Backend("aws", make, make_offer("g5.xlarge", zone="use1-az1", gpu_model="A10G", gpus=1), lambda: None)


def _sim_backend() -> Backend:
    sim_cloud = pytest.importorskip("burst.sim.cloud")
    sim_clock = pytest.importorskip("burst.sim.clock")
    clock = sim_clock.VirtualClock(1_800_000_000.0)
    made: list[object] = []

    def make(cluster: str) -> Provider:
        provider = sim_cloud.SimProvider(cloud="aws", cluster=cluster, clock=clock)
        made.append(provider)
        return provider

    def settle() -> None:
        clock.advance(600.0)
        for provider in made:
            provider.advance(clock.now())  # type: ignore[attr-defined]

    return Backend("sim", make, make_offer("g5.xlarge", zone="use1-az1", gpu_model="A10G", gpus=1), settle)


def _azure_backend() -> Iterator[Backend]:
    from tests.azure.helpers import azure_offer
    from tests.support.arm_standin import serve_standin

    for standin in serve_standin():
        yield Backend("azure", partial(_azure_make, standin), azure_offer(), lambda: None, cloud="azure")


def _azure_make(standin: object, cluster: str) -> Provider:
    from tests.azure.helpers import make_provider

    return make_provider(standin, cluster=cluster)  # type: ignore[arg-type]


@pytest.fixture(params=["aws", "sim", "azure"])
def provider_factory(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Backend]:
    if request.param == "aws":
        yield _aws_backend(request.getfixturevalue("moto_server"), monkeypatch)
    elif request.param == "azure":
        yield from _azure_backend()
    else:
        yield _sim_backend()


def _launch(provider: Provider, backend: Backend, intent_id: str, cluster: str = CLUSTER) -> CloudInstance:
    return provider.launch(make_spec(intent_id, backend.offer, cluster=cluster))


def test_is_a_provider(provider_factory: Backend) -> None:
    provider = provider_factory.make(CLUSTER)
    assert isinstance(provider, Provider)
    assert provider.name == provider_factory.cloud


def test_launch_returns_the_tagged_instance(provider_factory: Backend) -> None:
    provider = provider_factory.make(CLUSTER)
    spec = make_spec("b-contract-1", provider_factory.offer, cluster=CLUSTER)
    inst = provider.launch(spec)
    assert inst.cloud_id
    assert inst.burst_id == spec.intent_id
    assert inst.cloud == provider_factory.cloud
    assert inst.region == spec.offer.region and inst.zone == spec.offer.zone
    assert inst.instance_type == spec.offer.instance_type
    assert inst.state in (CloudState.PENDING, CloudState.RUNNING)
    for key in REQUIRED_TAGS:
        assert inst.tags[key] == spec.tags[key], key


def test_find_by_intent_id(provider_factory: Backend) -> None:
    provider = provider_factory.make(CLUSTER)
    inst = _launch(provider, provider_factory, "b-contract-find")
    provider_factory.settle()
    found = provider.find("b-contract-find")
    assert found is not None
    assert found.cloud_id == inst.cloud_id and found.burst_id == "b-contract-find"
    assert found.state in (CloudState.PENDING, CloudState.RUNNING)
    assert provider.find("b-contract-never-launched") is None


def test_list_shows_only_this_clusters_instances(provider_factory: Backend) -> None:
    mine = provider_factory.make(CLUSTER)
    theirs = provider_factory.make(OTHER)
    a = _launch(mine, provider_factory, "b-contract-mine-1")
    b = _launch(mine, provider_factory, "b-contract-mine-2")
    c = _launch(theirs, provider_factory, "b-contract-theirs", cluster=OTHER)
    provider_factory.settle()

    listed = {i.cloud_id: i for i in mine.list_instances()}
    assert set(listed) == {a.cloud_id, b.cloud_id}
    assert all(i.tags[TAG_CLUSTER] == CLUSTER for i in listed.values())
    assert {i.burst_id for i in listed.values()} == {"b-contract-mine-1", "b-contract-mine-2"}
    assert [i.cloud_id for i in theirs.list_instances()] == [c.cloud_id]
    assert mine.find("b-contract-theirs") is None


def test_terminate_is_idempotent_and_accepts_unknown_ids(provider_factory: Backend) -> None:
    provider = provider_factory.make(CLUSTER)
    gone = _launch(provider, provider_factory, "b-contract-gone")
    kept = _launch(provider, provider_factory, "b-contract-kept")
    provider.terminate([gone.cloud_id])
    provider.terminate([gone.cloud_id])
    provider.terminate([gone.cloud_id, "i-0123456789abcdef0", "no-such-instance", _unknown_id(gone.cloud_id)])
    provider.terminate([])
    provider_factory.settle()

    listed = {i.cloud_id: i for i in provider.list_instances()}
    assert gone.cloud_id not in listed or listed[gone.cloud_id].state == CloudState.TERMINATED
    assert listed[kept.cloud_id].state == CloudState.RUNNING
    found = provider.find("b-contract-gone")
    assert found is None or found.state == CloudState.TERMINATED


def _unknown_id(cloud_id: str) -> str:
    """An id of the backend's own shape that the cloud does not have (an Azure VM id of another name)."""
    if cloud_id.startswith("/subscriptions/"):
        return cloud_id.rsplit("/", 1)[0] + "/never-launched"
    return "i-0fedcba9876543210"


def test_spec_for_another_cluster_is_refused(provider_factory: Backend) -> None:
    provider = provider_factory.make(CLUSTER)
    spec = make_spec("b-contract-foreign", provider_factory.offer, cluster=OTHER)
    with pytest.raises(PermanentProviderError):
        provider.launch(spec)
    spec = make_spec("b-contract-wrong-id", provider_factory.offer, cluster=CLUSTER)
    with pytest.raises(PermanentProviderError):
        provider.launch(replace(spec, intent_id="b-contract-other-id"))
    assert list(provider.list_instances()) == []
