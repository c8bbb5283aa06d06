"""Settings of the Slurm queue adapter (the ``queue.slurm`` config section)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class BurstRules(BaseModel):
    """Which jobs may run in the cloud. A job may burst if it matches ANY rule."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    partitions: list[str] = Field(default_factory=list)
    qos: list[str] = Field(default_factory=list)
    accounts: list[str] = Field(default_factory=list)
    constraints: list[str] = Field(default_factory=list)  # features in the job's --constraint
    all_jobs: bool = False  # every job may burst (a site that trusts the cloud with everything)


class SlurmSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    slurm_conf: Path  # exported as SLURM_CONF to every client call
    bin_dir: Path | None = None  # where squeue/sinfo/scontrol/... live; None: PATH
    timeout_s: float = Field(default=10.0, gt=0)
    burstable: BurstRules = Field(default_factory=BurstRules)
    cloud_feature: str = "cloud"  # burst nodes' feature; a job constraining on it opts in
    # Burst nodes are dynamic nodes (slurmd -Z) named after their instance: node name = prefix +
    # instance id (providers' ``node_name_prefix``; "" by default). Recognised in snapshots and
    # removed with ``scontrol delete``; see burst.queues.slurm.adapter.
    instance_node_prefix: str = ""
    instance_id_pattern: str = r"b-[0-9a-f]{16}"  # burst.domain.deterministic_id
    gpu_gres: str = "gpu"  # GRES name that counts as GPUs
    checkpoint_signal: str = "USR1"
    user: str = ""  # reserved for reservations/submits made by burst ("" = the caller)
    # A grand challenge's reservation outlives the challenge by this much, so that burst (after
    # releasing the preempted jobs with their priorities) lifts it, not Slurm's clock: a
    # reservation that ended on time by itself would let newer work take the nodes while the
    # preempted jobs are still held.
    reservation_slack_s: float = Field(default=60.0, ge=0)
