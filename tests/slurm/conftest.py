"""Fixtures for the Slurm adapter tests: one real Slurm cluster per session (tests/support)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from burst.queues.slurm.adapter import SlurmQueue
from burst.queues.slurm.settings import SlurmSettings
from tests.support.slurm_cluster import SlurmCluster, started_cluster


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    yield from started_cluster(tmp_path_factory, "slurm")


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
