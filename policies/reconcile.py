"""What one tick does about one instance the store knows: reconcile as data.

:func:`reconcile_instance` compares burst's record of an instance (the store's
:class:`~burst.domain.Instance`) with what its cloud lists under the instance's ``burst:id`` tag
and with the scheduler node registered for it, and returns a :class:`Decision`: the steps to take,
in order, and when the instance next needs a look. It is pure: no clock, store, cloud or queue.
The controller gathers the inputs and hands the decisions to the executor, which applies them.

The rules, in the order they are tried (the first that matches decides):

1. the instance's cloud could not be listed this tick: nothing (never act on a partial picture);
2. PLANNED (an intent left by a crash or a transient error): listed under its tag, adopt it
   (LAUNCHING, actor ``recovery``); not listed, :class:`RecoverPlanned`: ask the cloud by tag,
   then adopt, launch again under the same idempotency key, or abandon when the intent is older
   than ``planned_timeout_s`` or none of the jobs it was planned for is pending any more;
3. TERMINATING: gone from the cloud, TERMINATED; still there, :class:`RetryTerminate`;
4. gone from the cloud (not listed, terminated or failed): a LAUNCHING instance not listed yet
   within ``list_grace_s`` of its launch waits (listings are eventually consistent); any other
   goes LOST ("spot reclaim" when the cloud says it was interrupted), its node is removed, and
   its books are closed (TERMINATED);
5. listed with a spot interruption notice: LOST, then TERMINATED;
6. LAUNCHING and the cloud reports it running, no node yet: RUNNING;
7. LAUNCHING or RUNNING with a node registered: JOINED (with a boot-time sample);
8. JOINED or DRAINING with a node: keep ``idle_since`` in step with the node's idleness.

Anything else needs nothing this tick (:data:`NOTHING`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from burst.domain import INSTANCE_LIVE, CloudInstance, CloudState, Instance, InstanceState, Node, Timestamp

_I = InstanceState

CONTROLLER = "controller"
RECOVERY = "recovery"
BOOKS_CLOSED = "books closed; its jobs go back to the queue"
_GONE = (CloudState.TERMINATED, CloudState.FAILED)


@dataclass(frozen=True, slots=True)
class ReconcileSettings:
    """``list_grace_s``: how long a fresh launch may be missing from its cloud's listing before
    it counts as lost. ``planned_timeout_s``: an intent older than this is abandoned rather than
    launched again. ``retry_s``: when a step that may fail transiently is tried again (the tick
    interval)."""

    list_grace_s: float = 180.0
    planned_timeout_s: float = 600.0
    retry_s: float = 30.0


@dataclass(frozen=True, slots=True)
class Transition:
    """Move the instance to ``to`` (the store checks the transition table and audits it with
    ``actor`` and ``reason``) and set ``fields``: (Instance attribute, value) pairs, sorted by
    name. Build with :func:`transition`."""

    to: InstanceState
    reason: str
    actor: str = CONTROLLER
    fields: tuple[tuple[str, Any], ...] = ()

    def values(self) -> dict[str, Any]:
        return dict(self.fields)


def transition(to: InstanceState, reason: str, *, actor: str = CONTROLLER, **fields: Any) -> Transition:
    return Transition(to, reason, actor, tuple(sorted(fields.items())))


@dataclass(frozen=True, slots=True)
class RecoverPlanned:
    """Ask the cloud for the intent by its tag: adopt what it finds; otherwise launch again under
    the same intent id, or, when ``abandon``, close the intent."""

    abandon: bool


@dataclass(frozen=True, slots=True)
class RetryTerminate:
    """The instance is TERMINATING but its cloud still lists it: call terminate again."""


@dataclass(frozen=True, slots=True)
class RemoveNode:
    """Remove the scheduler node of an instance that is gone (a failure is only logged)."""

    node: str


@dataclass(frozen=True, slots=True)
class SetIdleSince:
    """Set the instance's ``idle_since`` (None: busy again). Not audited."""

    at: Timestamp | None


@dataclass(frozen=True, slots=True)
class BootSample:
    """A launch-to-joined time, for the controller's boot estimate."""

    seconds: float


Step = Transition | RecoverPlanned | RetryTerminate | RemoveNode | SetIdleSince | BootSample


@dataclass(frozen=True, slots=True)
class Decision:
    """The steps for one instance, to apply in order; ``due``: when it next needs a look (None:
    no deadline of its own); ``recovered``: a PLANNED intent was resolved or looked into."""

    steps: tuple[Step, ...] = ()
    due: Timestamp | None = None
    recovered: bool = False


NOTHING = Decision()


def reconcile_instance(
    inst: Instance,
    cloud: CloudInstance | None,
    node: Node | None,
    now: Timestamp,
    settings: ReconcileSettings,
    *,
    observed: bool = True,
    jobs_pending: bool = True,
) -> Decision:
    """The decision for ``inst`` (see the module docstring for the rules).

    ``cloud``: what the instance's cloud lists under its ``burst:id`` (None: not listed).
    ``node``: the scheduler node registered for it (None: none). ``observed``: False when its
    cloud could not be listed this tick. ``jobs_pending``: False when none of the jobs it was
    planned for is pending any more (read for PLANNED intents only). Instances that are not live
    need nothing.
    """
    s = inst.state
    if not observed or s not in INSTANCE_LIVE:
        return NOTHING
    gone = cloud is None or cloud.state in _GONE
    if s is _I.PLANNED:
        if cloud is not None and not gone:
            adopt = transition(
                _I.LAUNCHING, f"adopted {cloud.cloud_id} listed under its burst:id tag", actor=RECOVERY,
                cloud_id=cloud.cloud_id, launched_at=cloud.launched_at if cloud.launched_at is not None else now,
                address=cloud.address,
            )
            return Decision((adopt,), recovered=True)
        stale = now - inst.created_at >= settings.planned_timeout_s
        unneeded = bool(inst.for_jobs) and not jobs_pending
        # A transient failure (lookup or launch) is tried again on the next tick.
        return Decision((RecoverPlanned(abandon=stale or unneeded),), due=now + settings.retry_s, recovered=True)
    if s is _I.TERMINATING:
        if gone:
            return Decision((transition(_I.TERMINATED, "the cloud confirms it is gone"),))
        return Decision((RetryTerminate(),), due=now + settings.retry_s)
    if cloud is None or cloud.state in _GONE:
        if s is _I.LAUNCHING and cloud is None:
            since = inst.launched_at or inst.created_at
            if now - since < settings.list_grace_s:
                return Decision(due=since + settings.list_grace_s)  # a fresh launch may not be listed yet
        why = "spot reclaim" if (cloud is not None and cloud.interrupted) else "the cloud no longer has it"
        lost = transition(_I.LOST, why, terminated_at=now)
        closed = transition(_I.TERMINATED, BOOKS_CLOSED)
        if inst.node_name:
            return Decision((lost, RemoveNode(inst.node_name), closed))
        return Decision((lost, closed))
    if cloud.interrupted:
        return Decision((transition(_I.LOST, "spot interruption notice", terminated_at=now), transition(_I.TERMINATED, BOOKS_CLOSED)))
    if s is _I.LAUNCHING and cloud.state is CloudState.RUNNING and node is None:
        return Decision((transition(_I.RUNNING, "the cloud reports it running", address=cloud.address or inst.address),))
    if node is None:
        return NOTHING
    if s is _I.LAUNCHING or s is _I.RUNNING:
        joined = transition(
            _I.JOINED, f"node {node.name} registered with the scheduler",
            node_name=node.name, joined_at=now, idle_since=now if node.idle else None,
        )
        if inst.launched_at is not None:
            return Decision((BootSample(now - inst.launched_at), joined))
        return Decision((joined,))
    # JOINED or DRAINING with its node: idleness.
    if node.idle:
        if inst.idle_since is None:
            return Decision((SetIdleSince(now),))
    elif inst.idle_since is not None:
        return Decision((SetIdleSince(None),))
    return NOTHING

