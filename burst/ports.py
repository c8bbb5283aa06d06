"""The Protocols behind which every side effect of burst sits.

Each Protocol has a real implementation and an in-memory fake (``burst/sim``); one contract suite
in ``tests/contract`` runs against every implementation. The controller sees only these types.

Shared rules, stated once:

* **Idempotency.** Every mutating call may be repeated with the same arguments after a crash or a
  timeout, and the second call has no further effect.
* **Not found is success** for every delete/terminate/remove/release.
* **Eventual consistency.** A list call may lag a mutation by some seconds (EC2 does). Callers
  must not conclude "it does not exist" from a single list right after a create; they reconcile
  on later ticks instead.
* **Errors** are from :mod:`burst.errors`. SDK exceptions never cross a port.
* **No sleeping.** An implementation may wait on the network, but never sleeps to pace itself;
  pacing is the controller's job (next tick, backoff table).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from burst.domain import CloudInstance, LaunchSpec, Offer, QueueSnapshot, Timestamp


@runtime_checkable
class Clock(Protocol):
    """Source of time. The daemon uses the wall clock; the simulator a virtual one."""

    def now(self) -> Timestamp: ...


@runtime_checkable
class QueueSource(Protocol):
    """The on-prem scheduler (Slurm, Kubernetes, or the simulated cluster).

    ``snapshot`` is a read: pending and running jobs, and nodes with GPU capacity and use (GPU use
    comes from GRES/allocations, never from a node's state word). It raises
    :class:`burst.errors.QueueUnavailable` when the scheduler does not answer and
    :class:`burst.errors.QueueParseError` when its answer cannot be read; in both cases the
    controller skips the tick's actions rather than act on a partial picture.

    Node operations are idempotent and name nodes by scheduler name. ``remove_node`` of a node the
    scheduler no longer has is success.
    """

    name: str

    def snapshot(self) -> QueueSnapshot: ...

    def drain_node(self, node_name: str, reason: str) -> None: ...

    def undrain_node(self, node_name: str, reason: str) -> None: ...

    def remove_node(self, node_name: str) -> None: ...


@runtime_checkable
class PreemptionControl(Protocol):
    """Queue operations that grand challenges need. Implemented by queues that support them.

    * ``checkpoint`` asks running jobs to checkpoint (a signal); it does not stop them.
    * ``hold`` stops the jobs and keeps them queued but not schedulable (requeue-hold / suspend).
      Holding a job that is already held or finished is success.
    * ``release`` makes held jobs schedulable again. Releasing a job that is not held is success.
    """

    def checkpoint(self, job_ids: Sequence[str]) -> None: ...

    def hold(self, job_ids: Sequence[str]) -> None: ...

    def release(self, job_ids: Sequence[str]) -> None: ...


@runtime_checkable
class ReservingQueue(Protocol):
    """A queue that reserves a scheduler node for an instance before it boots (Slurm's FUTURE
    pool). ``node_reservations()`` maps node name -> instance id for nodes reserved but not joined;
    ``release_node_reservation`` gives one back (idempotent; an unknown node is success). The
    controller releases reservations whose instance the store no longer holds as live, so a
    failed or abandoned launch never strands a pool node."""

    def node_reservations(self) -> Mapping[str, str]: ...

    def release_node_reservation(self, node_name: str) -> None: ...


@runtime_checkable
class Provider(Protocol):
    """One cloud (AWS, Azure, or a simulated one).

    * ``launch(spec)`` creates exactly one instance tagged with ``spec.tags`` (which always hold
      ``burst:id = spec.intent_id``) and returns what the cloud reported. Where the cloud supports
      it the intent id is also the idempotency key (AWS ``ClientToken``, Azure VM name); callers do
      **not** rely on that: after a crash they call ``find(intent_id)`` before launching again.
      Raises ``CapacityError``/``QuotaError`` (try another offer), ``TransientProviderError``
      (try again later), ``PermanentProviderError`` (stop using this provider).
    * ``list_instances()`` lists every instance of this cluster by the ``burst:cluster`` tag, in
      every configured region, including recently terminated ones when the cloud still shows them.
      Eventually consistent.
    * ``find(intent_id)`` looks one instance up by its ``burst:id`` tag; ``None`` when absent.
      Eventually consistent like ``list_instances``.
    * ``terminate(cloud_ids)`` is batched and idempotent: ids already gone are success.
    """

    name: str

    def launch(self, spec: LaunchSpec) -> CloudInstance: ...

    def list_instances(self) -> Sequence[CloudInstance]: ...

    def find(self, intent_id: str) -> CloudInstance | None: ...

    def terminate(self, cloud_ids: Sequence[str]) -> None: ...


@dataclass(frozen=True, slots=True)
class MirrorResult:
    source: str
    target: str  # full reference at the target registry
    digest: str  # manifest digest, identical at source and target
    bytes_uploaded: int = 0
    blobs_copied: int = 0
    blobs_skipped: int = 0


@runtime_checkable
class Mirror(Protocol):
    """The image registries: copies a Harbor image into a cloud region's registry.

    * ``target_for(image, cloud, region)`` is pure naming: where the image will live.
    * ``ensure(image, cloud, region)`` makes the image present at the target with the same
      manifest digest and returns the result. Idempotent: a present image costs only HEAD calls.
      Raises :class:`burst.errors.MirrorError` subclasses.
    """

    def target_for(self, image: str, cloud: str, region: str) -> str: ...

    def ensure(self, image: str, cloud: str, region: str) -> MirrorResult: ...


@runtime_checkable
class Notifier(Protocol):
    """Tells people things (Slack). ``audience`` is a user id, ``"admins"`` or ``"all"``.

    Best effort: a failure to notify is logged and never fails the tick. Texts never hold secrets.
    """

    def notify(self, audience: str, text: str) -> None: ...


class Offers(Protocol):
    """Where the controller gets purchasable offers: the catalog, filtered by configuration."""

    def offers(self) -> Sequence[Offer]: ...
