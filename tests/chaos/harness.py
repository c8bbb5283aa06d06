"""The pieces the chaos tests share: a config for ``burst run`` against moto, the controller as a
real subprocess that can be SIGKILLed, and an on-prem cluster played from the test process.

The played cluster is a stand-in for Slurm/Kubernetes that works only through the two interfaces
a real site has: the JSON queue document (burst/queues/jsonfile.py, edited under its lock) and
EC2 (real boto3 over HTTP against moto). It

* submits jobs over time (pending, burstable);
* joins every running EC2 instance tagged for the cluster as a node named after its ``burst:id``
  once it has "booted" (been seen running for ``boot_s``), with the GPU count EC2 reports for its
  type;
* places pending jobs first fit on schedulable burst nodes, as a scheduler would, and finishes
  them after their duration;
* removes nodes whose instance is no longer running; their jobs go back to pending (an eviction).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import yaml
from botocore.config import Config

from burst.domain import TAG_CLUSTER, TAG_ID
from burst.queues.jsonfile import update_doc, write_doc
from tests.aws.helpers import default_security_group, default_subnets, some_ami
from tests.support.moto_server import MotoServer, fake_aws_env

REPO = Path(__file__).resolve().parents[2]
CLUSTER = "chaos"
REGION = "us-east-1"


# ---- config -------------------------------------------------------------------------------------


def write_config(
    tmp: Path,
    moto: MotoServer,
    *,
    accelerators: Iterable[str],
    orphan_grace_s: float = 3.0,
    idle_timeout_min: float = 0.05,
    join_timeout_min: float = 2.0,
    wait_threshold_min: float = 0.02,
    backoff_base_s: float = 60.0,
) -> tuple[Path, Path, str]:
    """(config path, queue document path, database URL)."""
    url = moto.endpoint_url
    queue = tmp / "queue.json"
    db_url = f"sqlite:///{tmp / 'burst.db'}"
    cfg: dict[str, Any] = {
        "cluster": CLUSTER,
        "database_url": db_url,
        "tick_interval_s": 1,
        "orphan_grace_s": orphan_grace_s,
        "lease_ttl_s": 5,
        "queue": {"kind": "jsonfile", "jsonfile": str(queue)},
        "clouds": {
            "aws": {
                "enabled": True,
                "simulated": False,
                "settings": {
                    "endpoint_url": url,
                    "max_attempts": 2,
                    "read_timeout": 10,
                    "regions": {
                        REGION: {
                            "ami": some_ami(url, REGION),
                            "subnets": default_subnets(url, REGION),
                            "security_group_ids": [default_security_group(url, REGION)],
                        }
                    },
                },
            },
            "azure": {"enabled": False},
        },
        "offers": {"regions": [REGION], "accelerators": list(accelerators)},
        "policy": {
            "wait_threshold_min": wait_threshold_min,
            "idle_timeout_min": idle_timeout_min,
            "join_timeout_min": join_timeout_min,
        },
        "backoff": {"base_s": backoff_base_s, "quota_base_s": 300, "cap_s": 1800},
    }
    path = tmp / "burst.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path, queue, db_url


def ec2_client(moto: MotoServer) -> Any:
    return boto3.client(
        "ec2", region_name=REGION, endpoint_url=moto.endpoint_url, config=Config(retries={"total_max_attempts": 1})
    )


def cluster_instances(ec2: Any) -> list[dict[str, Any]]:
    """Every EC2 instance tagged for the cluster, in any state (moto keeps terminated ones)."""
    out: list[dict[str, Any]] = []
    pages = ec2.get_paginator("describe_instances").paginate(
        Filters=[{"Name": f"tag:{TAG_CLUSTER}", "Values": [CLUSTER]}]
    )
    for page in pages:
        for r in page["Reservations"]:
            out.extend(r["Instances"])
    return out


def tag(raw: Mapping[str, Any], key: str) -> str:
    return next((str(t["Value"]) for t in raw.get("Tags") or () if t["Key"] == key), "")


# ---- the controller process --------------------------------------------------------------------


class ControllerProcess:
    """``burst run --config ...`` as a real subprocess; stderr goes to a log file."""

    def __init__(self, config: Path, log_dir: Path, *, crash_points: str = "", argv: list[str] | None = None) -> None:
        self.config = config
        self.log_dir = log_dir
        self.crash_points = crash_points
        self.argv = argv  # another controller command line (a driver script); default `burst run`
        self.proc: subprocess.Popen[bytes] | None = None
        self.log: Path | None = None
        self.generation = 0
        self.started_at = 0.0

    def env(self, crash_points: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(fake_aws_env())
        env.pop("AWS_PROFILE", None)
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        env["BURST_HOLDER_ID"] = "chaos-controller"  # a restart reclaims its own lease at once
        env.pop("BURST_CRASH_POINTS", None)
        if crash_points:
            env["BURST_CRASH_POINTS"] = crash_points
        env.pop("SLACK_BOT_TOKEN", None)
        env.pop("SLACK_BOT_TOKEN_FILE", None)
        return env

    def start(self, *, crash_points: str | None = None) -> None:
        assert self.proc is None or self.proc.poll() is not None
        self.generation += 1
        self.log = self.log_dir / f"controller-{self.generation:03d}.log"
        # The `burst` entry point (burst.cli:main), run by this interpreter over this checkout.
        cmd = self.argv or [sys.executable, "-c", "from burst.cli import main; main()", "run", "--config", str(self.config)]
        with open(self.log, "wb") as err:
            self.proc = subprocess.Popen(
                cmd,
                cwd=REPO,
                env=self.env(self.crash_points if crash_points is None else crash_points),
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
            )
        self.started_at = time.monotonic()

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log and self.log.exists() else ""

    def is_leader(self) -> bool:
        return "is now the leader" in self.text()

    def exit_code(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def fired_crash_point(self) -> str:
        for line in self.text().splitlines():
            if line.startswith("crash point ") and line.endswith(" fired"):
                return line.split()[2]
        return ""

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        """A clean stop (SIGINT: the scheduler ends, the lease is released)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()


# ---- the played on-prem cluster ----------------------------------------------------------------


@dataclass(frozen=True)
class JobSpec:
    id: str
    gpus: int
    arrive_s: float  # seconds after the start of the run
    duration_s: float


def job_stream(n: int, rng: random.Random, *, spread_s: float, first: int) -> list[JobSpec]:
    """``first`` jobs at t=0, the rest arriving uniformly over ``spread_s``; 1-8 GPUs each."""
    jobs = []
    for k in range(n):
        arrive = 0.0 if k < first else rng.uniform(0.0, spread_s)
        jobs.append(JobSpec(f"job-{k:02d}", rng.choice((1, 2, 4, 8)), round(arrive, 2), round(rng.uniform(2.0, 5.0), 2)))
    return sorted(jobs, key=lambda j: (j.arrive_s, j.id))


@dataclass
class PlayedCluster:
    path: Path
    ec2: Any
    jobs: list[JobSpec]
    onprem_nodes: int = 3
    gpus_per_node: int = 8
    boot_s: float = 1.0
    t0: float = field(default_factory=time.time)
    submitted: set[str] = field(default_factory=set)
    completed: set[str] = field(default_factory=set)
    ends: dict[str, float] = field(default_factory=dict)  # running job -> end time
    evictions: int = 0
    placements: int = 0
    joined: set[str] = field(default_factory=set)  # burst ids that became nodes
    left: set[str] = field(default_factory=set)  # burst ids whose node was removed (by anyone)
    running_since: dict[str, float] = field(default_factory=dict)  # burst id -> first seen running
    gpus_of_type: dict[str, int] = field(default_factory=dict)
    first_placed: dict[str, float] = field(default_factory=dict)  # job -> first start (wall)
    arrived_at: dict[str, float] = field(default_factory=dict)
    ignore: set[str] = field(default_factory=set)  # burst ids never to join (planted strays)

    def init(self) -> None:
        now = time.time()
        nodes = [
            {"name": f"onprem-{i}", "gpus": self.gpus_per_node, "gpus_used": self.gpus_per_node, "running_jobs": 1}
            for i in range(self.onprem_nodes)
        ]
        hogs = [
            {"id": f"hog-{i}", "gpus": self.gpus_per_node, "submit_time": now - 7200, "start_time": now - 7000,
             "node_names": [f"onprem-{i}"], "may_burst": False}
            for i in range(self.onprem_nodes)
        ]
        write_doc(self.path, {"pending": [], "running": hogs, "nodes": nodes})

    def _gpus(self, itype: str) -> int:
        if itype not in self.gpus_of_type:
            info = self.ec2.describe_instance_types(InstanceTypes=[itype])["InstanceTypes"][0]
            self.gpus_of_type[itype] = sum(g["Count"] for g in info.get("GpuInfo", {}).get("Gpus", []))
        return self.gpus_of_type[itype]

    @property
    def all_done(self) -> bool:
        return len(self.completed) == len(self.jobs)

    @property
    def waiting(self) -> set[str]:
        """Jobs that have arrived and are neither running nor done: work that needs capacity."""
        return self.submitted - self.completed - set(self.ends)

    def running(self) -> dict[str, str]:
        """Burst id -> instance type of every instance the cloud runs for the cluster (EC2 here;
        the Azure chaos test plays the same cluster over the ARM stand-in)."""
        live: dict[str, str] = {}
        for raw in cluster_instances(self.ec2):
            bid = tag(raw, TAG_ID)
            if bid and raw["State"]["Name"] == "running":
                live[bid] = str(raw["InstanceType"])
        return live

    def step(self) -> None:
        now = time.time()
        live = self.running()  # burst id -> instance type
        for bid in live:
            self.running_since.setdefault(bid, now)
        specs = {j.id: j for j in self.jobs}

        def fn(doc: dict[str, Any]) -> None:
            pending: list[dict[str, Any]] = doc.setdefault("pending", [])
            running: list[dict[str, Any]] = doc.setdefault("running", [])
            nodes: list[dict[str, Any]] = doc.setdefault("nodes", [])
            by_name = {n["name"]: n for n in nodes}
            # arrivals
            for j in self.jobs:
                if j.id not in self.submitted and now - self.t0 >= j.arrive_s:
                    self.submitted.add(j.id)
                    self.arrived_at[j.id] = now
                    pending.append({"id": j.id, "gpus": j.gpus, "submit_time": now, "may_burst": True, "team": "chaos"})
            # completions
            for r in list(running):
                end = self.ends.get(r["id"])
                if end is not None and end <= now:
                    running.remove(r)
                    del self.ends[r["id"]]
                    self.completed.add(r["id"])
                    for name in r["node_names"]:
                        n = by_name.get(name)
                        if n is not None:
                            n["gpus_used"] -= r["gpus"]
                            n["running_jobs"] -= 1
            # nodes whose instance is gone (or that the controller removed) leave; jobs requeue
            present = {n["name"] for n in nodes}
            self.left |= {b for b in self.joined if b not in present}
            for n in list(nodes):
                iid = n.get("instance_id") or ""
                if iid and iid not in live:
                    nodes.remove(n)
                    del by_name[n["name"]]
                    self.left.add(iid)
            for r in list(running):
                if any(name not in by_name for name in r["node_names"]):
                    running.remove(r)
                    self.ends.pop(r["id"], None)
                    self.evictions += 1
                    pending.append({"id": r["id"], "gpus": r["gpus"], "submit_time": r["submit_time"],
                                    "may_burst": True, "team": "chaos"})
            # joins, after the boot time
            for bid, itype in sorted(live.items()):
                if bid in by_name or bid in self.left or bid in self.ignore or now - self.running_since[bid] < self.boot_s:
                    continue
                n = {"name": bid, "gpus": self._gpus(itype), "gpus_used": 0, "running_jobs": 0,
                     "schedulable": True, "instance_id": bid}
                nodes.append(n)
                by_name[bid] = n
                self.joined.add(bid)
            # first-fit placement, oldest first, on schedulable burst nodes
            pending.sort(key=lambda p: (p["submit_time"], p["id"]))
            for p in list(pending):
                for n in nodes:
                    if n.get("instance_id") and n.get("schedulable", True) and n["gpus"] - n["gpus_used"] >= p["gpus"]:
                        n["gpus_used"] += p["gpus"]
                        n["running_jobs"] += 1
                        pending.remove(p)
                        running.append({**p, "start_time": now, "node_names": [n["name"]]})
                        self.ends[p["id"]] = now + specs[p["id"]].duration_s
                        self.placements += 1
                        self.first_placed.setdefault(p["id"], now)
                        break

        update_doc(self.path, fn)
