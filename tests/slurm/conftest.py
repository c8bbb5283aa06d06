"""Fixtures for the Slurm adapter tests: one real Slurm cluster per session (tests/support)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from burst.queues.slurm import SlurmQueue, SlurmSettings
from tests.support.slurm_cluster import SlurmCluster, skip_reason


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    why = skip_reason()
    if why:
        pytest.skip(why)
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
    except Exception as e:
        logs = "\n".join(f"--- {k}\n{v}" for k, v in cluster.logs().items())
        pytest.fail(f"could not start the Slurm test cluster: {e}\n{logs}")
    print(f"\n[slurm] cluster up in {cluster.startup_s:.2f}s at {cluster.root}")
    yield cluster
    cluster.stop()


@pytest.fixture
def cluster(slurm_cluster: SlurmCluster) -> Iterator[SlurmCluster]:
    """The session cluster, reset to: no jobs, on-prem nodes in service, burst pool FUTURE."""
    slurm_cluster.reset()
    yield slurm_cluster
    slurm_cluster.reset()


@pytest.fixture
def settings(cluster: SlurmCluster) -> SlurmSettings:
    return SlurmSettings(slurm_conf=cluster.conf, timeout_s=10)


@pytest.fixture
def queue(settings: SlurmSettings) -> SlurmQueue:
    return SlurmQueue(settings)
