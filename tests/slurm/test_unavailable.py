"""A dead or unreachable slurmctld becomes QueueUnavailable within the timeout."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from burst.errors import QueueUnavailable
from burst.queues.slurm.adapter import SlurmQueue
from burst.queues.slurm.settings import SlurmSettings
from tests.support.slurm_cluster import SlurmCluster, free_ports

pytestmark = pytest.mark.slurm


def test_dead_slurmctld_is_unavailable_within_timeout(cluster: SlurmCluster, tmp_path: Path) -> None:
    # the same cluster's configuration, pointing at a port where no slurmctld listens
    (port,) = free_ports(1)
    conf = tmp_path / "slurm.conf"
    conf.write_text(re.sub(r"SlurmctldPort=\d+", f"SlurmctldPort={port}", cluster.conf.read_text()))
    (tmp_path / "gres.conf").write_text((cluster.conf.parent / "gres.conf").read_text())
    q = SlurmQueue(SlurmSettings(slurm_conf=conf, timeout_s=3))
    t0 = time.monotonic()
    with pytest.raises(QueueUnavailable) as ei:
        q.snapshot()
    took = time.monotonic() - t0
    print(f"\n[slurm] dead slurmctld -> QueueUnavailable in {took:.2f}s: {ei.value}")
    assert took < 3 + 2
    for op in (lambda: q.drain_node("gpu01", "x"), lambda: q.hold(["1"])):
        with pytest.raises(QueueUnavailable):
            op()


def test_stopped_slurmctld(cluster: SlurmCluster) -> None:
    q = SlurmQueue(SlurmSettings(slurm_conf=cluster.conf, timeout_s=3))
    q.snapshot()
    cluster.stop_ctld()
    try:
        t0 = time.monotonic()
        with pytest.raises(QueueUnavailable):
            q.snapshot()
        assert time.monotonic() - t0 < 5
    finally:
        cluster.start_ctld()
    assert len(q.snapshot().nodes) == 4


def test_missing_binaries_are_unavailable(tmp_path: Path) -> None:
    q = SlurmQueue(SlurmSettings(slurm_conf=tmp_path / "slurm.conf", bin_dir=tmp_path / "nope"))
    with pytest.raises(QueueUnavailable, match="cannot run"):
        q.snapshot()
