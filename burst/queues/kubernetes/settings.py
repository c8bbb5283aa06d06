"""Settings of the Kubernetes queue adapter (the ``queue.kubernetes`` config section)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator


class K8sSettings(BaseModel):
    """How to reach the API server and how burst reads the cluster.

    Connection, by the first that is set: ``host`` (+ ``token_file``/``ca_file``; tests use
    ``http://127.0.0.1:PORT``), ``in_cluster``, else the kubeconfig (``kubeconfig``/``context``, or
    the client's default ``~/.kube/config``). Secrets are read from files, never held in config.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str | None = None
    token_file: Path | None = None
    ca_file: Path | None = None
    verify_ssl: bool = True
    in_cluster: bool = False
    kubeconfig: Path | None = None
    context: str | None = None
    timeout_s: float = Field(default=10.0, gt=0)
    namespaces: list[str] = Field(default_factory=list)  # empty: all namespaces
    gpu_resource: str = "nvidia.com/gpu"
    opt_in_key: str = "burst.dev/allow-cloud"
    opt_in_value: str = "true"
    instance_id_label: str = "burst.dev/instance-id"
    cloud_taint_key: str = "burst.dev/cloud"
    gpu_model_label: str = "nvidia.com/gpu.product"
    owner_label: str = "burst.dev/owner"
    team_label: str = "burst.dev/team"  # default team: the namespace
    eviction_grace_s: int | None = None  # None: each pod's own terminationGracePeriodSeconds
    # Watch (see burst.queues.kubernetes.informers). false: one LIST of each resource per snapshot.
    watch: bool = True
    # A watcher failing for longer than this is not trusted: snapshot reads by LIST instead.
    watch_stale_after_s: float = Field(default=60.0, gt=0)
    # Server-side timeoutSeconds of one watch request; the watcher then resumes where it was.
    # client-go picks 5-10 min; shorter costs a request, never events.
    watch_timeout_s: int = Field(default=300, ge=1)
    # After burst's own eviction, node deletion or Job suspension, how long the next snapshot
    # waits for the watch to show it (read-your-writes); 0: do not wait.
    watch_settle_s: float = Field(default=2.0, ge=0)
    # A watch that delivers nothing (no event, no bookmark) for this long is cut and resumed:
    # the API server sends a bookmark about every minute, so silence means a half-open
    # connection, which would otherwise look healthy until watch_timeout_s.
    watch_silence_s: float = Field(default=120.0, gt=0)
    # Where a grand challenge's Job is created. None: the first of ``namespaces``, else "default".
    # It must be one burst reads (in ``namespaces`` when that is set): the runner follows the
    # challenge Job through the snapshot.
    challenge_namespace: str | None = None

    @model_validator(mode="after")
    def _challenge_namespace_is_read(self) -> K8sSettings:
        if self.challenge_namespace and self.namespaces and self.challenge_namespace not in self.namespaces:
            raise ValueError(f"challenge_namespace {self.challenge_namespace!r} is not in namespaces "
                             f"{self.namespaces}: burst would not see the challenge Job it creates")
        return self

    @property
    def challenge_ns(self) -> str:
        return self.challenge_namespace or (self.namespaces[0] if self.namespaces else "default")
