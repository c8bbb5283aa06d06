"""Fixtures for issue 6's end-to-end acceptance: the real ``Controller.tick`` over a real queue
(Slurm 22.05, or the real kubernetes client against the stand-in API server) and a real or
simulated cloud (AwsProvider against moto in server mode, or SimProvider on the wall clock).

Nothing here fakes an SDK method. The harness only plays what is outside burst's reach: the
booted instance that joins the scheduler (as its user data would), the scheduler binding a pod,
and the instance's processes dying when the cloud terminates it.

The Slurm cluster and the moto server are module-scoped (each test module starts its own, and
stops it before the next module runs), so this directory never overlaps with tests/slurm's
session cluster.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from botocore.config import Config

from burst.catalog import Catalog, OfferFilter
from burst.controller import Controller, TickResult
from burst.domain import Offer
from tests.support.fake_kube_api import FakeKube
from tests.support.moto_server import MotoServer, fresh_moto, serve_moto
from tests.support.slurm_cluster import SlurmCluster, started_cluster

CLUSTER = "site-a"
REGION = "us-east-1"
INSTANCE_TYPE = "p4d.24xlarge"


# ---- timings -------------------------------------------------------------------------------


@dataclass
class Timeline:
    """Wall-clock marks of an end-to-end run; ``report()`` prints the time between steps."""

    title: str
    marks: list[tuple[str, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.mark("start")

    def mark(self, what: str) -> float:
        t = time.monotonic()
        self.marks.append((what, t))
        return t

    def since(self, what: str) -> float:
        t0 = next(t for w, t in self.marks if w == what)
        return time.monotonic() - t0

    def between(self, a: str, b: str) -> float:
        ta = next(t for w, t in self.marks if w == a)
        tb = next(t for w, t in self.marks if w == b)
        return tb - ta

    def report(self) -> str:
        lines = [f"[e2e] {self.title}"]
        t_start = self.marks[0][1]
        for (_, ta), (b, tb) in zip(self.marks, self.marks[1:], strict=False):
            lines.append(f"[e2e]   {b:<46} +{tb - ta:6.2f}s  (t={tb - t_start:6.2f}s)")
        text = "\n".join(lines)
        print("\n" + text)
        return text


# ---- driving the controller ------------------------------------------------------------------


def tick_until(
    controller: Controller,
    done: Callable[[TickResult], Any],
    *,
    timeout: float,
    what: str,
    before: Callable[[float], None] | None = None,
    after: Callable[[TickResult], None] | None = None,
    interval: float = 0.2,
) -> tuple[Any, list[TickResult]]:
    """Tick with the real wall clock (``time.time()``) until ``done(result)`` is truthy.

    ``before(now)`` runs ahead of each tick (the harness's world: a simulated cloud advancing,
    an instance booting), ``after(result)`` right after it. Bounded by ``timeout`` seconds; a
    TimeoutError names ``what`` and the last tick's plan and errors."""
    deadline = time.monotonic() + timeout
    results: list[TickResult] = []
    while True:
        now = time.time()
        if before is not None:
            before(now)
        res = controller.tick(now)
        results.append(res)
        if after is not None:
            after(res)
        got = done(res)
        if got:
            return got, results
        if time.monotonic() >= deadline:
            last = results[-1]
            raise TimeoutError(
                f"timed out after {timeout:.1f}s ({len(results)} ticks) waiting for {what}; last tick: "
                f"skipped={last.skipped!r} actions={[type(a).__name__ for a in last.plan.actions]} "
                f"notes={list(last.plan.notes)} errors={last.executed.errors}"
            )
        time.sleep(interval)


def aws_offers(instance_type: str = INSTANCE_TYPE, region: str = REGION) -> list[Offer]:
    """Bundled-catalog offers restricted to one type in one region (the one moto is set up for)."""
    offers = Catalog.bundled().offers(
        OfferFilter(clouds=("aws",), regions=(region,), instance_types=(instance_type,))
    )
    assert offers, f"the bundled catalog has no {instance_type} in {region}"
    return offers


# ---- Slurm -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def e2e_slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    yield from started_cluster(tmp_path_factory, "e2e-slurm")


@pytest.fixture
def cluster(e2e_slurm: SlurmCluster) -> Iterator[SlurmCluster]:
    """The module's cluster, reset: no jobs, on-prem nodes idle, burst pool FUTURE, no dynamic node."""
    e2e_slurm.reset()
    yield e2e_slurm
    e2e_slurm.reset()


# ---- AWS (moto) ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def e2e_moto() -> Iterator[MotoServer]:
    yield from serve_moto()


@pytest.fixture
def moto(e2e_moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    return fresh_moto(e2e_moto, monkeypatch)


@pytest.fixture
def ec2(moto: MotoServer) -> Any:
    """A plain boto3 EC2 client on moto, for the test's own checks (the cloud's view)."""
    return boto3.client(
        "ec2", region_name=REGION, endpoint_url=moto.endpoint_url, config=Config(retries={"total_max_attempts": 1})
    )


# ---- Kubernetes ------------------------------------------------------------------------------


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    k = FakeKube().start()
    try:
        yield k
    finally:
        k.stop()
