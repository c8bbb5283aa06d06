"""The reconcile loop: ``Controller.tick(now)``.

One tick, five steps (DESIGN.md), and nothing sleeps:

1. **observe**: the queue's snapshot; every provider's instances, listed by our cluster tag;
2. **mirror external state into the store** (Ray autoscaler v2 style): resolve PLANNED intents,
   mark launches running/joined, close lost and terminated instances, track idleness (decided
   per instance by the pure ``policies.reconcile.reconcile_instance``, applied by the executor),
   collect orphans after a grace period;
3. **snapshot**: one frozen :class:`policies.Snapshot`;
4. **decide**: ``policies.decide(snapshot, config)``, pure;
5. **act and record**: the :class:`burst.executor.Executor` carries the Plan out; every state
   change is audited by the store; the tick's result is returned and logged.

The live daemon (APScheduler interval job, ``burst run``) and the simulator (virtual clock,
``burst simulate``) both call this same method. If the queue cannot be read, the tick does not
act: acting on a partial picture is how autoscalers terminate busy nodes.

Who may call: one active controller per cluster (leader election is in burst/daemon.py); a
standby observes only. ``tick`` is not re-entrant.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from burst.domain import (
    CloudInstance,
    CloudState,
    GrandChallenge,
    Instance,
    InstanceState,
    JobState,
    Market,
    Node,
    Offer,
    Plan,
    QueueSnapshot,
    Timestamp,
    day_start,
    month_start,
)
from burst.domain import (
    Mirror as MirrorAction,
)
from burst.durations import DurationLearner
from burst.errors import ProviderError, QueueError
from burst.executor import BackoffPolicy, BudgetFn, ExecResult, Executor, UserDataFn
from burst.faults import crash_point
from burst.grand_challenge import ChallengeRunner, ChallengeRunResult
from burst.ondemand.reconcile import reconcile_requests
from burst.ports import (
    AsyncMirror,
    ChallengeQueue,
    GangHold,
    Notifier,
    Provider,
    QueueSource,
    Store,
    mirror_backoff_key,
)
from burst.ports import Mirror as MirrorPort
from burst.reconcile_memo import ReconcileMemo
from policies import PolicyConfig, Snapshot, SpendView
from policies import decide as default_decide
from policies.fairness import ended_gpu_hours
from policies.grand_challenge import ChallengeSettings, overflow_view
from policies.overflow import base_threshold, threshold_for
from policies.pending_index import PendingIndex, index_for
from policies.reconcile import (
    BootSample,
    ReconcileSettings,
    Transition,
)
from policies.requests import ACTIVE_REQUEST_STATES
from policies.spot import (
    CheckpointStep,
    NoticeSettings,
    ReclaimHistory,
    RequeueStep,
    SpotHold,
    held_view,
    leaving_view,
    noticed,
    plan_notices,
    plan_releases,
    spot_possible,
)
from policies.tick_memo import TickMemo

log = logging.getLogger("burst.controller")

Decide = Callable[[Snapshot, PolicyConfig], Plan]


@dataclass(frozen=True, slots=True)
class BudgetCaps:
    month_usd: float = 0.0  # 0 = no cap
    day_usd: float = 0.0


@dataclass
class TickResult:
    now: Timestamp
    plan: Plan
    snapshot: Snapshot | None
    executed: ExecResult = field(default_factory=ExecResult)
    skipped: str = ""  # why the tick did not act, "" when it did
    orphans_terminated: list[str] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)
    # What the grand-challenge runner did this tick (None when the queue cannot run challenges).
    challenges: ChallengeRunResult | None = None
    # Earliest time something falls due: the plan's wake_at, or a deadline of the reconcile step
    # (a launch's listing grace, an orphan's grace, a retry). The simulator sleeps until then.
    wake_at: Timestamp | None = None

    def due(self, t: Timestamp) -> None:
        if self.wake_at is None or t < self.wake_at:
            self.wake_at = t


class Controller:
    def __init__(
        self,
        *,
        cluster: str,
        queue: QueueSource,
        providers: Mapping[str, Provider],
        store: Store,
        offers: Sequence[Offer],
        policy: PolicyConfig,
        decide: Decide = default_decide,
        mirror: MirrorPort | None = None,
        async_mirror: AsyncMirror | None = None,
        gang_hold: GangHold | None = None,
        challenge_queue: ChallengeQueue | None = None,
        challenge_settings: ChallengeSettings | None = None,
        notifier: Notifier | None = None,
        caps: BudgetCaps = BudgetCaps(),
        backoff: BackoffPolicy = BackoffPolicy(),
        orphan_grace_s: float = 300.0,
        list_grace_s: float = 180.0,
        planned_timeout_s: float = 600.0,
        user_data_for: UserDataFn | None = None,
        budget_for: BudgetFn | None = None,
        request_gate: Callable[[Timestamp], object] | None = None,
        spot_notices: NoticeSettings = NoticeSettings(),
    ) -> None:
        """The queue's and the mirror's optional capabilities are handed over explicitly by the
        wiring (None when the adapter lacks them); the controller never probes an adapter:

        * ``async_mirror``: image copies off the tick (see :class:`burst.executor.Executor`);
        * ``gang_hold``: the queue's gang registration hold (Kubernetes);
        * ``challenge_queue``: the queue's reservations, checkpoint, hold, release and submit,
          with which the tick runs grand challenges (:mod:`burst.grand_challenge`); None on a
          queue that cannot, and then no challenge advances. Spot notices use the same
          capability (checkpoint, hold, release, set_priority) to requeue work off a node that
          is about to be reclaimed; without it a noticed node is only drained, and its work is
          left to the scheduler's own requeue.
        """
        self.cluster = cluster
        self.queue = queue
        self.providers = dict(providers)
        self.store = store
        self.offers = tuple(offers)
        self.policy = policy
        self.decide = decide
        self.caps = caps
        self.orphan_grace_s = orphan_grace_s
        self.list_grace_s = list_grace_s
        self.planned_timeout_s = planned_timeout_s
        self.disabled: set[str] = set()
        self._orphan_seen: dict[str, float] = {}
        self._orphans_listed: set[str] | None = None  # orphans the store was last pruned to
        self._mirrored: set[tuple[str, str, str]] = set()
        # Recent launch-to-joined times; their p90 is the boot estimate the policy plans with.
        # Seeded from the store's books (launched_at/joined_at of the newest instances), so a
        # restarted controller plans with what it measured before, not its configured prior.
        self._boots: deque[float] = deque(maxlen=BOOT_SAMPLES)
        self._boots.extend(_recent_boots(store))
        self.executor = Executor(
            cluster=cluster,
            store=store,
            queue=queue,
            providers=self.providers,
            mirror=mirror,
            async_mirror=async_mirror,
            gang_hold=gang_hold,
            notifier=notifier,
            backoff=backoff,
            budget_for=budget_for,
            user_data_for=user_data_for,
            disabled_providers=self.disabled,
        )
        self.challenges = (
            ChallengeRunner(store, challenge_queue, notifier, challenge_settings)
            if challenge_queue is not None else None
        )
        self.last: TickResult | None = None
        self.request_gate = request_gate
        self.spot_notices = spot_notices
        self._preempt = challenge_queue
        # Spot offer key -> [reclaims, instance-hours] (the reclaim factor's evidence,
        # policies/spot.py), rebuilt at start from the store's instance rows and audit, then
        # kept up to date by the reconcile: a restart does not forget what reclaims cost.
        self._reclaims: dict[str, list[float]] = _reclaims_from_store(store)
        # Jobs requeued off a noticed node and held until their replacement joins (job id ->
        # hold), rebuilt from the spot audit rows so a restart neither forgets nor repeats one.
        self._spot_holds: dict[str, SpotHold] = _spot_holds_from_audit(store)
        # Run times of the jobs seen finishing (burst/durations.py): overflow predicts on-prem
        # starts from them. In memory: a restart learns again.
        self.durations = DurationLearner()
        # The pending queue's replay order and may-burst counts (policies/pending_index.py),
        # reused while the queue source hands back the same pending tuple. It holds only that
        # tuple, which the last TickResult's snapshot holds anyway.
        self._pending_index: PendingIndex | None = None
        # Instances whose reconcile answered nothing, with the very objects it was asked about:
        # the same objects again answer nothing again (burst/reconcile_memo.py says why).
        self._reconcile_memo = ReconcileMemo()
        # What the policies keep between ticks (capacity pools, scale-in, nodes by instance),
        # reused where the snapshot hands the same objects again (policies/tick_memo.py).
        self._memo = TickMemo()
        # The last listing per provider (the objects it returned) and what was built from them:
        # a provider that hands back the same sequence object lists the same instances.
        self._listed: tuple[tuple[object, ...], dict[str, CloudInstance]] | None = None

    # ---- the tick ------------------------------------------------------------------------------
    def tick(self, now: Timestamp) -> TickResult:
        # 1. observe
        try:
            qs = self.queue.snapshot()
        except QueueError as e:
            log.warning("tick %.0f: queue unreadable, not acting: %s", now, e)
            self.last = TickResult(now, Plan(), None, skipped=f"queue: {e}")
            return self.last
        if self.policy.overflow.predict_starts:
            self.durations.observe(now, qs)
        cloud, unobserved = self._observe_clouds()
        self._collect_mirrors(now)

        # 2. mirror external state into the store
        res = TickResult(now, Plan(), None)
        self._reconcile(now, qs, cloud, unobserved, res)
        if self._spot_notices(now, qs, res):
            # Work was requeued off a node that is leaving: decide on the queue as it is now, so
            # a replacement launches this tick, before the reclaim, and not one tick later.
            try:
                qs = self.queue.snapshot()
            except QueueError as e:
                log.warning("tick %.0f: queue unreadable after a spot requeue, not acting: %s", now, e)
                res.skipped = f"queue: {e}"
                self.last = res
                return res
        active: Sequence[GrandChallenge] = ()
        if self.challenges is not None:
            # Grand challenges step forward on the same observation (notices, reservation,
            # checkpoint, hold, submit, release); what they hold shapes what overflow sees.
            res.challenges = self.challenges.run(now, qs)
            active = res.challenges.active
            if res.challenges.wake_at is not None:
                res.due(res.challenges.wake_at)

        # 3. snapshot (on-demand requests the quota no longer allows go back to an admin first:
        # burst.ondemand.quota.hold_over_quota, so they are never planned for launch)
        if self.request_gate is not None:
            self.request_gate(now)
        snap = self.build_snapshot(now, qs, challenges=active)

        # 4. decide
        plan = self.decide(snap, self.policy)

        # 5. act and record
        res.plan = plan
        res.snapshot = snap
        if plan.wake_at is not None:
            res.due(plan.wake_at)
        # Added to, not replacing, what the reconcile step recorded (failed lookups, terminate
        # retries, recovered launches): the tick's result and the metrics report both.
        res.executed.merge(self.executor.execute(plan, now))
        reconcile_requests(self.store, now, self.executor.notifier, plan=plan)  # on-demand lifecycle
        for m in plan.actions:
            if isinstance(m, MirrorAction) and (self.executor.mirror is None or m.image in res.executed.mirrored_images):
                # No mirror configured: nothing to wait for. A synchronous mirror: done now.
                self._mirrored.add((m.image, m.cloud, m.region))
        # One line per decision is logged by the executor (burst.executor.decision_lines).
        self.last = res
        return res

    def _collect_mirrors(self, now: Timestamp) -> None:
        worker = self.executor.async_mirror
        if worker is None:
            return
        for out in worker.collect():
            image, cloud, region = out.key
            if out.result is not None:
                self._mirrored.add(out.key)
                self.store.record_offer_success(mirror_backoff_key(*out.key))
                self.store.audit(
                    at=now, actor="controller", kind="mirror", subject=image, action="mirrored",
                    reason=f"{out.result.target} {out.result.digest} ({out.result.bytes_uploaded} bytes uploaded)",
                )
            else:
                b = self.store.record_offer_failure(
                    mirror_backoff_key(*out.key), now=now, base_s=self.executor.backoff.base_s,
                    cap_s=self.executor.backoff.cap_s, error=out.error,
                )
                self.store.audit(
                    at=now, actor="controller", kind="mirror", subject=image, action="failed",
                    reason=f"{cloud}/{region}: {out.error}; retry after {b.until - now:.0f}s, instances pull from Harbor meanwhile",
                )

    # ---- observe -------------------------------------------------------------------------------
    def _observe_clouds(self) -> tuple[dict[str, CloudInstance], set[str]]:
        """Every provider's listing by burst id. The returned dict is read only by the caller:
        when every provider listed and handed back the same sequence objects as last tick (the
        simulator's providers do while nothing changed), the dict built from them last time is
        returned again. Only tuples count: a tuple of frozen listings cannot have changed, while
        a list could have been changed in place by whoever returned it."""
        unobserved: set[str] = set()
        listings: list[Sequence[CloudInstance]] = []
        for name, p in self.providers.items():
            try:
                listings.append(p.list_instances())
            except ProviderError as e:
                log.warning("cannot list %s instances: %s", name, e)
                unobserved.add(name)
        if not unobserved:
            last = self._listed
            if last is not None and len(last[0]) == len(listings) and all(a is b for a, b in zip(last[0], listings, strict=True)):
                return last[1], unobserved
        by_id: dict[str, CloudInstance] = {}
        for listed in listings:
            for ci in listed:
                key = ci.burst_id or f"untagged:{ci.cloud}:{ci.cloud_id}"
                prev = by_id.get(key)
                # Several cloud instances under one intent id (a double launch) are all kept:
                # the extra ones become orphans below.
                if prev is not None and prev.cloud_id != ci.cloud_id:
                    by_id[f"dup:{ci.cloud}:{ci.cloud_id}"] = ci
                else:
                    by_id[key] = ci
        tuples = not unobserved and all(isinstance(x, tuple) for x in listings)
        self._listed = (tuple(listings), by_id) if tuples else None
        return by_id, unobserved

    # ---- reconcile -----------------------------------------------------------------------------
    def _reconcile(
        self,
        now: Timestamp,
        qs: QueueSnapshot,
        cloud: dict[str, CloudInstance],
        unobserved: set[str],
        res: TickResult,
    ) -> None:
        """Step 2 of the tick. Gathers each live instance's inputs (its cloud listing, its
        scheduler node, whether its jobs still wait), asks :func:`reconcile_instance` what to do,
        and has the executor do it; outcomes and errors go to ``res.executed``."""
        live = self.store.live_instances()
        # Looked up only by a live instance's id: with none live, no pass over the nodes.
        nodes_by_instance: dict[str, Node] = self._memo.nodes_by_instance(qs.nodes) if live else {}
        known = {inst.id for inst in live}
        settings = ReconcileSettings(self.list_grace_s, self.planned_timeout_s, self.policy.tick_interval_s)
        # Per instance, as reconcile_instance decides (burst/reconcile_memo.py: the same objects
        # that needed nothing last tick need nothing again, without asking).
        decided = self._reconcile_memo.decide_all(live, cloud, nodes_by_instance, unobserved, qs.pending, now, settings)
        for inst, d in decided:
            if d.recovered:
                res.recovered.append(inst.id)
            if d.due is not None:
                res.due(d.due)
            for step in d.steps:
                if isinstance(step, BootSample):
                    self._boots.append(step.seconds)
                elif isinstance(step, Transition) and inst.market is Market.SPOT:
                    self._count_reclaim(inst, step, now)
        # The executor owns the writes and calls; its outcomes and errors are this tick's too.
        self.executor.apply_reconciled(decided, now, res.executed)
        # Orphans: tagged instances of this cluster that the store does not know as live.
        st = self.store
        seen_orphans: set[str] = set()
        to_kill: dict[str, list[CloudInstance]] = {}
        for key, ci in cloud.items():
            if key in known or ci.state in (CloudState.TERMINATED, CloudState.FAILED):
                continue
            seen_orphans.add(ci.cloud_id)
            first = self._orphan_first_seen(ci.cloud_id, now)
            if now - first >= self.orphan_grace_s:
                to_kill.setdefault(ci.cloud, []).append(ci)
            else:
                res.due(first + self.orphan_grace_s)
        self._forget_orphans(seen_orphans, unobserved)
        if to_kill:
            st.check_fence()  # a stalled ex-leader must not terminate what its successor launched
        for cname, cis in to_kill.items():
            # Audit before the call (intent before action): a crash after the terminate but before
            # an audit row would leave an unaudited deletion that no later tick can see again.
            for c in cis:
                st.audit(
                    at=now, actor="controller", kind="orphan", subject=c.cloud_id, action="terminate-orphan",
                    reason=f"tagged for this cluster (burst:id={c.burst_id or '-'}) but unknown or terminal in the store for over {self.orphan_grace_s:.0f}s",
                )
            crash_point("orphan-terminate")  # chaos tests only (burst/faults.py)
            ids = ", ".join(c.cloud_id for c in cis)
            log.info("decision terminate orphans on %s: %s (unknown or terminal in the store for over %.0fs)", cname, ids, self.orphan_grace_s)
            try:
                self.providers[cname].terminate([c.cloud_id for c in cis])
            except ProviderError as e:
                log.warning("orphan terminate on %s of %s failed: %s", cname, ids, e)
                for c in cis:
                    self._orphan_seen[c.cloud_id] = now  # retried after another grace period
                    st.audit(
                        at=now, actor="controller", kind="orphan", subject=c.cloud_id, action="terminate-orphan-failed",
                        reason=f"{type(e).__name__}: {e.code or e}; retried after another {self.orphan_grace_s:.0f}s",
                    )
                continue
            for c in cis:
                self._orphan_seen.pop(c.cloud_id, None)
                res.orphans_terminated.append(c.cloud_id)

    # ---- spot ----------------------------------------------------------------------------------
    def _count_reclaim(self, inst: Instance, step: Transition, now: Timestamp) -> None:
        """A spot instance's end, as evidence for its offer's reclaim rate: LOST counts a reclaim;
        reaching TERMINATED adds its hours (both happen, LOST first, for a reclaimed one)."""
        seen = self._reclaims.setdefault(inst.offer_key, [0, 0.0])
        if step.to is InstanceState.LOST:
            seen[0] += 1
        elif step.to is InstanceState.TERMINATED and inst.launched_at is not None:
            end = inst.terminated_at if inst.terminated_at is not None else now
            seen[1] += max(0.0, end - inst.launched_at) / 3600.0

    def reclaim_history(self) -> dict[str, ReclaimHistory]:
        return {k: ReclaimHistory(int(v[0]), float(v[1])) for k, v in self._reclaims.items()}

    def spot_holds(self) -> dict[str, SpotHold]:
        """Jobs requeued off a noticed node and held until their replacement joins, by job id."""
        return dict(self._spot_holds)

    def _spot_notices(self, now: Timestamp, qs: QueueSnapshot, res: TickResult) -> bool:
        """Act on spot interruption notices that node agents reported through the scheduler
        (:func:`policies.spot.plan_notices` decides; every step is audited before it is taken).
        A queue error leaves the step to the next tick: the plan is stateless, so nothing is
        repeated that already happened and nothing is skipped. True when work was requeued."""
        requeued = self._spot_releases(now, qs, res) if self._spot_holds else False
        if not self.spot_notices.enabled or not noticed(qs.nodes):
            return requeued  # the common case: one pass over the nodes, no store read
        plan = plan_notices(now, self.store.live_instances(), qs.nodes, qs.running, self.spot_notices)
        if plan.wake_at is not None:
            res.due(plan.wake_at)
        st, q = self.store, self._preempt
        hold = self.spot_notices.hold_for_replacement_s > 0
        for step in plan.steps:
            data = {"node": step.node, "reclaim_at": step.reclaim_at, "jobs": list(step.job_ids)}
            try:
                if isinstance(step, CheckpointStep):
                    st.audit(at=now, actor="controller", kind="spot", subject=step.instance_id,
                             action="notice", reason=step.reason, data=data)
                    if q is not None and step.job_ids:
                        q.checkpoint(step.job_ids)
                        st.audit(at=now, actor="controller", kind="spot", subject=step.instance_id,
                                 action="checkpoint", reason=f"checkpoint signal to {', '.join(step.job_ids)}", data=data)
                    st.transition_instance(step.instance_id, InstanceState.DRAINING, now=now, actor="controller",
                                           reason=step.reason)
                elif isinstance(step, RequeueStep):
                    if q is None:
                        continue  # no preemption capability: the scheduler requeues after the reclaim
                    reason = step.reason + (", held until its replacement joins" if hold else "")
                    st.audit(at=now, actor="controller", kind="spot", subject=step.instance_id,
                             action="requeue", reason=reason,
                             data={**data, "priorities": list(step.priorities), "hold": hold})
                    q.hold(step.job_ids)
                    if hold:
                        for jid, prio in zip(step.job_ids, step.priorities, strict=True):
                            self._spot_holds[jid] = SpotHold(jid, step.instance_id, now, prio)
                        # the next tick looks for the replacement (or its absence)
                        res.due(now + self.policy.tick_interval_s)
                    else:
                        self._release(step.job_ids, step.priorities)
                    requeued = True
            except QueueError as e:
                log.warning("spot notice step for %s failed, retried next tick: %s", step.instance_id, e)
                res.executed.errors.append(f"{step.instance_id}: spot notice: {e}")
        return requeued

    def _release(self, job_ids: Sequence[str], priorities: Sequence[int]) -> None:
        q = self._preempt
        assert q is not None
        q.release(job_ids)
        for jid, prio in zip(job_ids, priorities, strict=True):
            if prio > 0:  # Slurm: priority=0 would hold the job again
                q.set_priority(jid, prio)

    def _spot_releases(self, now: Timestamp, qs: QueueSnapshot, res: TickResult) -> bool:
        """Release spot-held jobs whose replacement joined (:func:`policies.spot.plan_releases`),
        audited before the call. True when a job was released."""
        held = (j.id for j in qs.pending if j.state is JobState.HELD)
        plan = plan_releases(now, list(self._spot_holds.values()), self.store.live_instances(), held, self.spot_notices)
        for jid in plan.forget:
            del self._spot_holds[jid]
        if plan.wake_at is not None:
            res.due(plan.wake_at)
        released = False
        for step in plan.steps:
            try:
                self.store.audit(at=now, actor="controller", kind="spot", subject=step.instance_id, action="release",
                                 reason=step.reason, data={"jobs": list(step.job_ids), "priorities": list(step.priorities)})
                self._release(step.job_ids, step.priorities)
            except QueueError as e:
                log.warning("spot release of %s failed, retried next tick: %s", ", ".join(step.job_ids), e)
                res.executed.errors.append(f"{step.instance_id}: spot release: {e}")
                continue
            for jid in step.job_ids:
                self._spot_holds.pop(jid, None)
            released = True
        return released

    def _orphan_first_seen(self, cloud_id: str, now: Timestamp) -> Timestamp:
        """When an orphan was first seen, kept in the store too: a controller that restarts (or
        crash-loops) must not restart every orphan's grace period, or it never collects them."""
        first = self._orphan_seen.get(cloud_id)
        if first is None:
            first = self.store.orphan_first_seen(cloud_id, now)
            self._orphan_seen[cloud_id] = first
        return first

    def _forget_orphans(self, seen: set[str], unobserved: set[str]) -> None:
        """Orphans no longer listed are forgotten: in memory at once; in the store when the set
        seen changed since the last tick (or first after a start), and only when every cloud was
        listed, so an orphan of a cloud that could not be listed keeps its first sighting. The
        store is written only on a change: an orphan-free tick costs no write."""
        for cid in list(self._orphan_seen):
            if cid not in seen:
                del self._orphan_seen[cid]
        if not unobserved and seen != self._orphans_listed:
            self.store.forget_orphans(seen)
            self._orphans_listed = set(seen)

    # ---- snapshot ------------------------------------------------------------------------------
    def build_snapshot(self, now: Timestamp, qs: QueueSnapshot, *, challenges: Sequence[GrandChallenge] = ()) -> Snapshot:
        """The policy's view. ``challenges`` (the active grand challenges) hide their held jobs
        and reserved nodes from overflow (:func:`policies.grand_challenge.overflow_view`)."""
        pending, nodes = overflow_view(challenges, qs.pending, qs.nodes) if challenges else (qs.pending, qs.nodes)
        # Nodes under a spot notice are capacity that is leaving; spot-held jobs are due behind
        # the jobs already due (policies/spot.py).
        nodes, live = leaving_view(nodes, tuple(self.store.live_instances()))
        if self._spot_holds:
            ov, tick = self.policy.overflow, self.policy.tick_interval_s
            base = base_threshold(ov, self.boot_estimate(), tick, spot=spot_possible(self.policy.selection.allow_spot, self.offers))
            pending = held_view(tuple(pending), self._spot_holds.keys(), now, lambda j: threshold_for(j, ov, base), tick)
        spend = SpendView()
        if self.caps.month_usd or self.caps.day_usd:
            spend = SpendView(
                month_usd=self.store.spend(since=month_start(now), now=now),
                day_usd=self.store.spend(since=day_start(now), now=now) if self.caps.day_usd else 0.0,
                month_cap_usd=self.caps.month_usd,
                day_cap_usd=self.caps.day_usd,
            )
        backoffs = self.store.backoffs(now)
        self._pending_index = index_for(pending, self._pending_index)
        return Snapshot(
            now=now,
            cluster=self.cluster,
            pending=pending,
            running=qs.running,
            nodes=nodes,
            instances=live,
            offers=self.offers,
            backoff_until={k: b.until for k, b in backoffs.items()},
            disabled_providers=frozenset(self.disabled),
            spend=spend,
            mirrored=frozenset(self._mirrored),
            boot_estimate_s=self.boot_estimate(),
            requests=tuple(self.store.requests(states=ACTIVE_REQUEST_STATES)),
            reclaims=self.reclaim_history() if self._reclaims else {},
            team_gpu_hours=self._team_gpu_hours(now),
            durations=self.durations.model() if self.policy.overflow.predict_starts else None,
            pending_index=self._pending_index,
            memo=self._memo,
        )

    def _team_gpu_hours(self, now: Timestamp) -> Mapping[str, float]:
        """Burst GPU-hours of ended instances per team, for fair share; read only with teams."""
        f = self.policy.fairness
        if not f.enabled:
            return {}
        return ended_gpu_hours(self.store.instances(since=now - f.window_s), now, f)

    def boot_estimate(self) -> float | None:
        """p90 of recent launch-to-joined times, or None before the first join."""
        if not self._boots:
            return None
        b = sorted(self._boots)
        return b[min(len(b) - 1, int(0.9 * len(b)))]


BOOT_SAMPLES = 50


def _reclaims_from_store(store: Store) -> dict[str, list[float]]:
    """What :meth:`Controller._count_reclaim` would have counted over the store's history (one
    read of the instances and one of the audit, at construction only): a reclaim per spot
    instance that went LOST, and the hours of every spot instance that reached TERMINATED."""
    spot = {i.id: i for i in store.instances() if i.market is Market.SPOT}
    out: dict[str, list[float]] = {}
    if not spot:
        return out
    for i in spot.values():
        if i.state is InstanceState.TERMINATED and i.launched_at is not None:
            end = i.terminated_at if i.terminated_at is not None else i.launched_at
            out.setdefault(i.offer_key, [0, 0.0])[1] += max(0.0, end - i.launched_at) / 3600.0
    for row in store.audit_rows(kind="instance", limit=AUDIT_SCAN):
        inst = spot.get(row.subject)
        if inst is not None and row.action.endswith(f"->{InstanceState.LOST}"):
            out.setdefault(inst.offer_key, [0, 0.0])[0] += 1
    return out


def _spot_holds_from_audit(store: Store) -> dict[str, SpotHold]:
    """The spot holds not yet released, from the ``spot`` audit rows (oldest first)."""
    holds: dict[str, SpotHold] = {}
    for row in reversed(store.audit_rows(kind="spot", limit=AUDIT_SCAN)):
        jobs = [str(j) for j in row.data.get("jobs", ())]
        if row.action == "requeue" and row.data.get("hold"):
            prios = [int(p) for p in row.data.get("priorities", ())]
            for jid, prio in zip(jobs, prios, strict=False):
                holds[jid] = SpotHold(jid, row.subject, row.at, prio)
        elif row.action == "release":
            for jid in jobs:
                holds.pop(jid, None)
    return holds


AUDIT_SCAN = 100_000  # audit rows read at construction to rebuild reclaim history and holds


def _recent_boots(store: Store) -> list[float]:
    """Launch-to-joined seconds of the newest instances that joined, oldest first (one query,
    at construction only). Instances without both times (never joined) say nothing about boot."""
    seen = [
        (i.joined_at, i.joined_at - i.launched_at)
        for i in store.instances(limit=4 * BOOT_SAMPLES)
        if i.joined_at is not None and i.launched_at is not None and i.joined_at >= i.launched_at
    ]
    return [b for _, b in sorted(seen)[-BOOT_SAMPLES:]]
