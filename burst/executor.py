"""Carries out a Plan: intent rows, provider/mirror/queue calls, outcomes, backoff.

Rules this module keeps (DESIGN.md):

* **Intent before action.** A Launch first writes the PLANNED instance row (with the budget check
  in the same transaction when a cap is set); only then is the provider called, with the intent
  id as ``ClientToken`` / VM name and ``burst:id`` tag. A crash between the two leaves a PLANNED
  row, which :meth:`Executor.recover_planned` resolves on the next tick: adopt what the cloud has
  under that tag, or finish the launch under the same idempotency key.
* **Errors decide by type.** Capacity and quota errors close the intent (LAUNCH_FAILED ->
  TERMINATED, cost 0) and cool the offer down 1, 2, 4... minutes (quota: 5, 10, 20...), capped at
  30; the next tick's policy picks the next offer. Transient errors leave the intent PLANNED for
  recovery. A cloud's ``Retry-After`` hint (``ProviderError.retry_after``) lengthens the offer's
  cool-down to at least the hint (capped at ``cap_s``): the controller waits it out, not the SDK. Permanent errors disable the provider and alert admins. Deleting what is gone is
  success.
* A gang is all or nothing: when one of its launches fails, the members already launched in this
  tick are terminated again.
* Nothing sleeps; one failure never aborts the rest of the plan.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from burst.domain import (
    TAG_CLUSTER,
    TAG_EXPIRES,
    TAG_ID,
    TAG_OWNER,
    TAG_PURPOSE,
    TAG_TEAM,
    Drain,
    Instance,
    InstanceState,
    Launch,
    LaunchSpec,
    Mirror,
    Notify,
    Offer,
    Plan,
    Release,
    Terminate,
    Timestamp,
    Undrain,
)
from burst.errors import (
    BudgetExceeded,
    CapacityError,
    MirrorError,
    NotFound,
    PermanentProviderError,
    ProviderError,
    QueueError,
    QuotaError,
    TransientProviderError,
)
from burst.faults import crash_point
from burst.ports import (
    AsyncMirror,
    BudgetArg,
    GangHold,
    Notifier,
    Provider,
    QueueSource,
    Store,
    mirror_backoff_key,
)
from burst.ports import Mirror as MirrorPort
from policies.reconcile import Decision, RecoverPlanned, RemoveNode, RetryTerminate, SetIdleSince, Transition

log = logging.getLogger("burst.executor")

ACTOR = "controller"


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    base_s: float = 60.0
    quota_base_s: float = 300.0
    transient_base_s: float = 30.0
    cap_s: float = 1800.0


@dataclass
class ExecResult:
    launched: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    terminated: list[str] = field(default_factory=list)
    drained: list[str] = field(default_factory=list)
    mirrored: list[str] = field(default_factory=list)
    mirrored_images: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)
    notified: int = 0

    def merge(self, other: ExecResult) -> None:
        """Add ``other``'s outcomes to these (one tick's reconcile step and its plan)."""
        self.launched += other.launched
        self.failed += other.failed
        self.terminated += other.terminated
        self.drained += other.drained
        self.mirrored += other.mirrored
        self.mirrored_images |= other.mirrored_images
        self.errors += other.errors
        self.notified += other.notified


BudgetFn = Callable[[Launch, Timestamp], BudgetArg]
# The user data for launching an instance, first try or retry: built from what the store holds
# of it (purpose, owner, request, image, gang...), never from the Launch action, which a retried
# launch (after a crash or a transient error) no longer has. "" lets the provider render its
# own template (the join template for burst nodes).
UserDataFn = Callable[[Instance], str]


class Executor:
    """Turns actions into effects. Called only by :class:`burst.controller.Controller`."""

    def __init__(
        self,
        *,
        cluster: str,
        store: Store,
        queue: QueueSource,
        providers: Mapping[str, Provider],
        mirror: MirrorPort | None = None,
        async_mirror: AsyncMirror | None = None,
        gang_hold: GangHold | None = None,
        notifier: Notifier | None = None,
        backoff: BackoffPolicy = BackoffPolicy(),
        budget_for: BudgetFn | None = None,
        user_data_for: UserDataFn | None = None,
        disabled_providers: set[str] | None = None,
    ) -> None:
        """Optional capabilities are handed over explicitly, None when absent:

        * ``mirror`` copies images within the tick; ``async_mirror`` copies them off the tick
          (a Mirror action is submitted, the controller collects the outcome next tick) and,
          when given, is also the ``mirror``.
        * ``gang_hold``: the queue's gang registration hold, lifted by a Release action (a queue
          without one: Release does nothing).
        """
        self.cluster = cluster
        self.store = store
        self.queue = queue
        self.providers = providers
        self.async_mirror = async_mirror
        self.mirror: MirrorPort | None = mirror if mirror is not None else async_mirror
        self.gang_hold = gang_hold
        self.notifier = notifier
        self.backoff = backoff
        self.budget_for = budget_for
        self.user_data_for = user_data_for
        self.disabled = disabled_providers if disabled_providers is not None else set()
        self.notify_repeat_s = 3600.0
        self._notified: dict[tuple[str, str], float] = {}

    # ---- plan ------------------------------------------------------------------------------
    def execute(self, plan: Plan, now: Timestamp) -> ExecResult:
        if log.isEnabledFor(logging.INFO):
            for kind, objects, line in decision_lines(plan):
                log.info("decision %s", line, extra={"decision": kind, "objects": objects})
        res = ExecResult()
        if plan.actions:
            # Fenced leadership: a controller that lost its lease while it observed and decided
            # stops here (LeaseLost) before any queue call; each fenced write checks again.
            self.store.check_fence()
        failed_gangs: set[str] = set()
        gang_members: dict[str, list[Instance]] = {}
        for action in plan.actions:
            try:
                if isinstance(action, Launch):
                    if action.gang_id and action.gang_id in failed_gangs:
                        continue
                    inst = self._launch(action, now, res)
                    if action.gang_id:
                        if inst is None:
                            failed_gangs.add(action.gang_id)
                            for member in gang_members.pop(action.gang_id, []):
                                self._terminate(member.id, now, f"gang {action.gang_id} incomplete: rolled back", res)
                        else:
                            gang_members.setdefault(action.gang_id, []).append(inst)
                elif isinstance(action, Terminate):
                    if action.cool_offer:
                        self._cool_offer_of(action.instance_id, now, action.reason)
                    self._terminate(action.instance_id, now, action.reason, res)
                elif isinstance(action, Drain):
                    self._drain(action, now, res)
                elif isinstance(action, Undrain):
                    self._undrain(action, now, res)
                elif isinstance(action, Release):
                    self._release(action, now)
                elif isinstance(action, Mirror):
                    self._mirror(action, now, res)
                elif isinstance(action, Notify):
                    # The same alert (audience, reason) goes out at most once per notify_repeat_s:
                    # a budget cap that holds for hours must not post every tick.
                    key = (action.audience, action.reason)
                    last = self._notified.get(key)
                    if last is None or now - last >= self.notify_repeat_s:
                        self._notified[key] = now
                        self._notify(action.audience, action.text)
                        res.notified += 1
            except QueueError as e:
                res.errors.append(f"{type(action).__name__}: queue: {e}")
                # named like its decision line: the action and the instance (or image) it touched
                log.warning("queue error during %s %s: %s", type(action).__name__.lower(), _target(action), e)
        return res

    # ---- launch ------------------------------------------------------------------------------
    def _instance_from(self, a: Launch, now: Timestamp) -> Instance:
        o = a.offer
        return Instance(
            id=a.intent_id,
            cloud=o.cloud,
            region=o.region,
            zone=o.zone,
            instance_type=o.instance_type,
            market=o.market,
            purpose=a.purpose,
            gpus=o.gpu_count,
            gpu_model=o.gpu_model,
            price_per_hour=o.price_per_hour,
            owner=a.owner,
            team=a.team,
            created_at=now,
            for_jobs=a.for_jobs,
            gang_id=a.gang_id,
            request_id=a.request_id,
            expires_at=a.expires_at,
            image=a.image,
        )

    def spec_for(self, inst: Instance, launch: Launch | None = None) -> LaunchSpec:
        """What the provider is asked to create for ``inst``. Tags and user data come from the
        stored instance alone, so a retried launch (``launch`` None: after a crash or a
        transient error) asks for exactly what its first try did; ``launch`` only supplies the
        offer as the catalog had it."""
        offer = (
            launch.offer
            if launch is not None
            else Offer(
                cloud=inst.cloud,
                instance_type=inst.instance_type,
                region=inst.region,
                zone=inst.zone,
                gpu_model=inst.gpu_model,
                gpu_count=inst.gpus,
                gpu_memory_gib=0.0,
                price_per_hour=inst.price_per_hour,
                market=inst.market,
            )
        )
        tags = {
            TAG_CLUSTER: self.cluster,
            TAG_ID: inst.id,
            TAG_PURPOSE: str(inst.purpose),
            TAG_OWNER: inst.owner or "burst",
            TAG_TEAM: inst.team or "none",
            TAG_EXPIRES: str(int(inst.expires_at)) if inst.expires_at else "none",
        }
        user_data = self.user_data_for(inst) if self.user_data_for is not None else ""
        return LaunchSpec(
            intent_id=inst.id,
            offer=offer,
            purpose=inst.purpose,
            tags=tags,
            owner=inst.owner,
            team=inst.team,
            user_data=user_data,
            image=inst.image,
            placement_group=f"{self.cluster}-{inst.gang_id}" if inst.gang_id else "",
            gang_id=inst.gang_id,
        )

    def _launch(self, a: Launch, now: Timestamp, res: ExecResult) -> Instance | None:
        provider = self.providers.get(a.offer.cloud)
        if provider is None or a.offer.cloud in self.disabled:
            res.errors.append(f"{a.intent_id}: provider {a.offer.cloud!r} not available")
            return None
        inst = self._instance_from(a, now)
        budget = self.budget_for(a, now) if self.budget_for else None
        try:
            stored = self.store.create_intent(inst, now=now, actor=ACTOR, reason=a.reason, budget=budget)
        except BudgetExceeded as e:
            res.errors.append(f"{a.intent_id}: {e}")
            # Once per budget per notify_repeat_s: a hard cap that holds for hours must not post
            # every tick (burst status, /burst budget and burst_budget_blocked say it meanwhile).
            key = ("admins", f"budget held back: {e.scope}")
            last = self._notified.get(key)
            if last is None or now - last >= self.notify_repeat_s:
                self._notified[key] = now
                self._notify("admins", f"burst: launch held back, {e}")
            return None
        if stored.state is not InstanceState.PLANNED:
            return stored  # idempotent replay of a plan already carried out
        return self._call_launch(stored, self.spec_for(stored, a), provider, now, res)

    def _call_launch(
        self, inst: Instance, spec: LaunchSpec, provider: Provider, now: Timestamp, res: ExecResult
    ) -> Instance | None:
        cooling = self.store.backoffs(now).get(inst.offer_key)
        if cooling is not None:
            # The offer failed moments ago: earlier in this tick (the policy planned several
            # launches on it), or this very intent hit a transient error. Calling it again within
            # its cool-down is a retry loop; close the intent instead (nothing exists under its
            # tag: new intents were never sent, and recovery looked the old ones up first), and
            # the policy picks another offer. Should the cloud still create it, orphan collection
            # removes it.
            self.store.transition_instance(
                inst.id, InstanceState.TERMINATED, now=now, actor=ACTOR,
                reason=f"offer {inst.offer_key} cools down until {cooling.until:.0f} ({cooling.last_error}); not called",
            )
            res.failed.append(inst.id)
            return None
        crash_point("after-intent")  # chaos tests only (burst/faults.py); inert in production
        try:
            ci = provider.launch(spec)
        except CapacityError as e:
            quota = isinstance(e, QuotaError)
            b = self.store.record_offer_failure(
                inst.offer_key,
                now=now,
                base_s=self._cool_down_base(self.backoff.quota_base_s if quota else self.backoff.base_s, e),
                cap_s=self.backoff.cap_s,
                error=f"{type(e).__name__}: {e.code or e}",
            )
            self._close_failed(inst, now, f"{'quota' if quota else 'capacity'}: {e.code or e}; offer cools down until {b.until:.0f}")
            res.failed.append(inst.id)
            return None
        except PermanentProviderError as e:
            self.disabled.add(inst.cloud)
            self._close_failed(inst, now, f"permanent provider error: {e.code or e}")
            self.store.audit(
                at=now, actor=ACTOR, kind="provider", subject=inst.cloud, action="disabled", reason=str(e.code or e)
            )
            self._notify("admins", f"burst stopped using {inst.cloud}: {e.code or type(e).__name__}. Check its credentials and configuration.")
            res.failed.append(inst.id)
            return None
        except (TransientProviderError, ProviderError) as e:
            # The call may or may not have created the instance: keep the intent PLANNED so the
            # next tick looks it up by tag before trying again under the same idempotency key.
            b = self.store.record_offer_failure(
                inst.offer_key,
                now=now,
                base_s=self._cool_down_base(self.backoff.transient_base_s, e),
                cap_s=self.backoff.cap_s,
                error=str(e),
            )
            if e.retry_after is not None:
                log.info("launch %s: %s asked to retry after %.0fs; offer %s cools down until %.0f",
                         inst.id, inst.cloud, e.retry_after, inst.offer_key, b.until)
            self.store.update_instance(inst.id, last_error=f"transient: {e.code or e}")
            res.errors.append(f"{inst.id}: transient: {e}")
            return None
        crash_point("after-launch")
        self.store.record_offer_success(inst.offer_key)
        adopted = self.store.transition_instance(
            inst.id,
            InstanceState.LAUNCHING,
            now=now,
            actor=ACTOR,
            reason=f"{inst.cloud} accepted the launch as {ci.cloud_id}",
            cloud_id=ci.cloud_id,
            launched_at=ci.launched_at if ci.launched_at is not None else now,
            address=ci.address,
        )
        res.launched.append(inst.id)
        return adopted

    def _cool_down_base(self, base_s: float, e: ProviderError) -> float:
        """The cool-down base for an offer after ``e``: at least the cloud's own ``Retry-After``
        hint (``e.retry_after``; Azure 429/503), capped at ``backoff.cap_s`` so a bogus hint cannot
        park an offer for days. The store grows the base 1, 2, 4... times, never shrinks it, so the
        offer is not called again before the hint has passed: burst/ports.py's "no hidden
        sleeping" contract, the SDK does not sleep on the hint (retry_total=0), the backoff waits."""
        if e.retry_after is None or e.retry_after <= 0:
            return base_s
        return max(base_s, min(float(e.retry_after), self.backoff.cap_s))

    def _close_failed(self, inst: Instance, now: Timestamp, reason: str) -> None:
        self.store.transition_instance(inst.id, InstanceState.LAUNCH_FAILED, now=now, actor=ACTOR, reason=reason, last_error=reason)
        self.store.transition_instance(inst.id, InstanceState.TERMINATED, now=now, actor=ACTOR, reason="nothing was created")

    def recover_planned(self, inst: Instance, now: Timestamp, res: ExecResult, *, abandon: bool) -> None:
        """Resolve an intent left PLANNED by a crash or a transient error.

        The cloud is asked by tag first. Found: adopt it. Not found: launch again under the same
        intent id (ClientToken / VM name keep this idempotent on real clouds), unless ``abandon``
        (the work no longer needs it), in which case the intent is closed; should the cloud
        still create it later, orphan collection terminates it.
        """
        provider = self.providers.get(inst.cloud)
        if provider is None or inst.cloud in self.disabled:
            self.store.transition_instance(inst.id, InstanceState.TERMINATED, now=now, actor=ACTOR, reason="provider unavailable; intent abandoned")
            return
        try:
            found = provider.find(inst.id)
        except ProviderError as e:
            res.errors.append(f"{inst.id}: lookup failed: {e}")
            return
        if found is not None:
            self.store.transition_instance(
                inst.id,
                InstanceState.LAUNCHING,
                now=now,
                actor="recovery",
                reason=f"adopted {found.cloud_id} found by its burst:id tag",
                cloud_id=found.cloud_id,
                launched_at=found.launched_at if found.launched_at is not None else now,
                address=found.address,
            )
            return
        if abandon:
            self.store.transition_instance(
                inst.id, InstanceState.TERMINATED, now=now, actor="recovery", reason="intent no longer needed; nothing found under its tag"
            )
            return
        self._call_launch(inst, self.spec_for(inst), provider, now, res)

    # ---- reconcile ---------------------------------------------------------------------------
    def apply_reconciled(self, decided: Sequence[tuple[Instance, Decision]], now: Timestamp, res: ExecResult) -> None:
        """Carry out the reconcile step's decisions (:func:`policies.reconcile.reconcile_instance`),
        instance by instance and each in its order. Terminate retries are batched per provider
        after the rest. Outcomes and errors go to ``res``. :class:`BootSample` steps are the
        controller's, not applied here."""
        retry_terminate: list[Instance] = []
        for inst, d in decided:
            for step in d.steps:
                if isinstance(step, Transition):
                    self.store.transition_instance(
                        inst.id, step.to, now=now, actor=step.actor, reason=step.reason, **step.values()
                    )
                elif isinstance(step, RecoverPlanned):
                    self.recover_planned(inst, now, res, abandon=step.abandon)
                elif isinstance(step, RetryTerminate):
                    retry_terminate.append(inst)
                elif isinstance(step, RemoveNode):
                    try:
                        self.queue.remove_node(step.node)
                    except QueueError as e:
                        log.warning("remove node %s: %s", step.node, e)
                elif isinstance(step, SetIdleSince):
                    self.store.update_instance(inst.id, idle_since=step.at)
        if retry_terminate:
            self.terminate_in_cloud(retry_terminate, now, res)

    # ---- scale-in ----------------------------------------------------------------------------
    def _drain(self, a: Drain, now: Timestamp, res: ExecResult) -> None:
        inst = self.store.get_instance(a.instance_id)
        if inst is None or inst.state is not InstanceState.JOINED:
            return
        if inst.node_name:
            self.queue.drain_node(inst.node_name, a.reason)
        self.store.transition_instance(inst.id, InstanceState.DRAINING, now=now, actor=ACTOR, reason=a.reason)
        res.drained.append(inst.id)

    def _undrain(self, a: Undrain, now: Timestamp, res: ExecResult) -> None:
        inst = self.store.get_instance(a.instance_id)
        if inst is None or inst.state is not InstanceState.DRAINING:
            return
        if inst.node_name:
            self.queue.undrain_node(inst.node_name, a.reason)
        self.store.transition_instance(inst.id, InstanceState.JOINED, now=now, actor=ACTOR, reason=a.reason)

    def _release(self, a: Release, now: Timestamp) -> None:
        """Lift a gang member's registration hold (queues that hold: Kubernetes). Idempotent;
        the instance's state does not change. Audited."""
        if self.gang_hold is None:
            return
        inst = self.store.get_instance(a.instance_id)
        if inst is None or not inst.node_name:
            return
        self.gang_hold.release_gang_hold(inst.node_name)
        # The node has been idle since it joined, but only held: its idle clock starts now, or the
        # idle timeout could drain it before the scheduler has placed the gang there.
        if inst.idle_since is not None:
            self.store.update_instance(inst.id, idle_since=now)
        self.store.audit(at=now, actor=ACTOR, kind="instance", subject=inst.id, action="release-gang-hold",
                         reason=a.reason)

    def _cool_offer_of(self, instance_id: str, now: Timestamp, reason: str) -> None:
        inst = self.store.get_instance(instance_id)
        if inst is None:
            return
        b = self.store.record_offer_failure(
            inst.offer_key, now=now, base_s=self.backoff.base_s, cap_s=self.backoff.cap_s, error=reason
        )
        if b.failures >= 2:
            # Twice in a row is a pattern (bad image, bootstrap or network), not bad luck.
            key = ("admins", f"join-failures:{inst.offer_key}")
            last = self._notified.get(key)
            if last is None or now - last >= self.notify_repeat_s:
                self._notified[key] = now
                self._notify(
                    "admins",
                    f"burst: instances of {inst.offer_key} keep failing to join the scheduler ({b.failures} in a row); "
                    f"the offer is cooling down. Check the image, user data and network of {inst.cloud}/{inst.region}.",
                )

    def _terminate(self, instance_id: str, now: Timestamp, reason: str, res: ExecResult) -> None:
        inst = self.store.get_instance(instance_id)
        if inst is None or inst.state in (InstanceState.TERMINATED, InstanceState.LOST, InstanceState.LAUNCH_FAILED):
            return
        if inst.state is InstanceState.PLANNED and not inst.cloud_id:
            self.store.transition_instance(inst.id, InstanceState.TERMINATED, now=now, actor=ACTOR, reason=reason)
            return
        if inst.state is not InstanceState.TERMINATING:
            inst = self.store.transition_instance(
                inst.id, InstanceState.TERMINATING, now=now, actor=ACTOR, reason=reason, terminated_at=now
            )
        self.terminate_in_cloud([inst], now, res)

    def terminate_in_cloud(self, insts: Sequence[Instance], now: Timestamp, res: ExecResult) -> None:
        """Batched per provider; already-gone counts as success. Node removal follows."""
        by_cloud: dict[str, list[Instance]] = {}
        for i in insts:
            if i.cloud_id:
                by_cloud.setdefault(i.cloud, []).append(i)
        for cloud, group in by_cloud.items():
            provider = self.providers.get(cloud)
            if provider is None:
                continue
            crash_point("before-terminate-call")
            try:
                provider.terminate([i.cloud_id for i in group])
                crash_point("after-terminate-call")
            except NotFound:
                pass
            except ProviderError as e:
                res.errors.append(f"terminate on {cloud}: {e}")
                continue  # still TERMINATING: retried on the next tick
            for i in group:
                res.terminated.append(i.id)
                if i.node_name:
                    try:
                        self.queue.remove_node(i.node_name)
                    except QueueError as e:
                        res.errors.append(f"remove node {i.node_name}: {e}")

    # ---- mirror / notify ------------------------------------------------------------------------
    def _mirror(self, a: Mirror, now: Timestamp, res: ExecResult) -> None:
        if self.async_mirror is not None:
            # Asynchronous: the copy runs beside the tick; the controller collects the outcome.
            if self.async_mirror.submit(a.image, a.cloud, a.region):
                self.store.audit(at=now, actor=ACTOR, kind="mirror", subject=a.image, action="queued", reason=a.reason)
            return
        if self.mirror is None:
            return
        key = mirror_backoff_key(a.image, a.cloud, a.region)
        try:
            out = self.mirror.ensure(a.image, a.cloud, a.region)
        except MirrorError as e:
            # A failed mirror never blocks the launch: instances fall back to pulling from Harbor.
            self.store.record_offer_failure(key, now=now, base_s=self.backoff.base_s, cap_s=self.backoff.cap_s, error=str(e))
            self.store.audit(at=now, actor=ACTOR, kind="mirror", subject=a.image, action="failed", reason=str(e))
            res.errors.append(f"{key}: {e}")
            return
        self.store.record_mirror(a.image, out.target, out.digest, now=now)
        res.mirrored.append(out.target)
        res.mirrored_images.add(a.image)

    def _notify(self, audience: str, text: str) -> None:
        if self.notifier is None:
            return
        try:
            self.notifier.notify(audience, text)
        except Exception as e:  # noqa: BLE001 - notifications are best effort by contract
            log.warning("notify %s failed: %s", audience, type(e).__name__)


# ---- decision log lines ---------------------------------------------------------------------------


def _names(items: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


def _where(o: Offer) -> str:
    return f"{o.instance_type} on {o.cloud}/{o.region}{'/' + o.zone if o.zone else ''} ({o.market}, ${o.price_per_hour:.2f}/h)"


def _target(a: object) -> str:
    """The object an action touches first: its instance, image or audience."""
    if isinstance(a, Launch):
        return a.intent_id
    if isinstance(a, Drain | Undrain | Release | Terminate):
        return a.instance_id
    if isinstance(a, Mirror):
        return a.image
    if isinstance(a, Notify):
        return a.audience
    return ""


def decision_lines(plan: Plan) -> list[tuple[str, list[str], str]]:
    """One line per decision, naming every object it touches: ``(kind, objects, text)``.

    A gang's launches are one decision (one line naming every member instance and job), not one
    identical line per member; Drain/Terminate/Undrain/Release name their instance."""
    out: list[tuple[str, list[str], str]] = []
    gangs: dict[str, list[Launch]] = {}
    for a in plan.actions:
        if isinstance(a, Launch) and a.gang_id:
            if a.gang_id not in gangs:
                gangs[a.gang_id] = []
                out.append(("gang", [a.gang_id], a.gang_id))  # placeholder, filled below
            gangs[a.gang_id].append(a)
        elif isinstance(a, Launch):
            who = "".join(f", {k} {v}" for k, v in (("request", a.request_id), ("owner", a.owner)) if v)
            jobs = f" for job(s) {_names(list(a.for_jobs))}" if a.for_jobs else ""
            out.append(("launch", [a.intent_id, *a.for_jobs], f"launch {a.intent_id}: {_where(a.offer)}{jobs}{who}: {a.reason}"))
        elif isinstance(a, Terminate):
            cool = " (cooling its offer)" if a.cool_offer else ""
            out.append(("terminate", [a.instance_id], f"terminate {a.instance_id}{cool}: {a.reason}"))
        elif isinstance(a, Drain | Undrain | Release):
            kind = type(a).__name__.lower()
            out.append((kind, [a.instance_id], f"{kind} {a.instance_id}: {a.reason}"))
        elif isinstance(a, Mirror):
            out.append(("mirror", [a.image], f"mirror {a.image} to {a.cloud}/{a.region}: {a.reason}"))
        elif isinstance(a, Notify):
            out.append(("notify", [a.audience], f"notify {a.audience}: {a.reason}"))
    for k, (kind, _objects, gang_id) in enumerate(out):
        if kind == "gang":
            members = gangs[gang_id]
            first = members[0]
            ids = [m.intent_id for m in members]
            gang_jobs = list(dict.fromkeys(j for m in members for j in m.for_jobs))
            for_jobs = f" for job(s) {_names(gang_jobs)}" if gang_jobs else ""
            out[k] = ("launch-gang", [gang_id, *ids, *gang_jobs],
                      f"launch gang {gang_id}: {len(members)} x {_where(first.offer)}, instances {_names(ids)}{for_jobs}: {first.reason}")
    return out
