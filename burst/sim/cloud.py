"""A simulated cloud: a :class:`burst.ports.Provider` with boot delay, billing and faults.

* Offers come from the catalog; this provider sells whatever the controller asks for.
* ``running_after_s`` after a launch the instance reports RUNNING; ``boot_s`` after it, the
  instance has booted, joined the scheduler and pulled its image: ``on_ready`` is called (the
  simulator adds the node to the simulated cluster, as the user data would on a real instance).
* Billing is per second from the launch request until termination, with a minimum
  (BENCHMARKS.md B1: 60 s).
* Faults: capacity errors at ``capacity_error_rate`` (seeded), offers that are always short of
  capacity (``unavailable``), transient errors at ``transient_error_rate``, and spot
  interruptions after an exponential time with mean ``spot_interrupt_mean_s``. With
  ``notice_lead_s`` > 0 a reclaim is announced that long before it (AWS 120 s, Azure 30 s):
  ``on_notice`` is called then, as the instance's metadata service would show the notice.

Same contract as the real providers (tests/contract/test_provider_contract.py): launch tags,
find by ``burst:id``, list by ``burst:cluster``, idempotent terminate.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from burst.domain import TAG_CLUSTER, TAG_ID, CloudInstance, CloudState, LaunchSpec, Market, Offer
from burst.errors import CapacityError, PermanentProviderError, TransientProviderError
from burst.ports import Clock


@dataclass(slots=True)
class SimInstance:
    cloud_id: str
    burst_id: str
    offer: Offer
    tags: dict[str, str]
    launched_at: float
    running_at: float
    ready_at: float
    state: CloudState = CloudState.PENDING
    terminated_at: float | None = None
    interrupted: bool = False
    ready: bool = False
    view: CloudInstance | None = None
    interrupt_at: float | None = None
    notice_at: float | None = None  # when the reclaim is announced (spot notices modelled)
    noticed: bool = False
    extra: dict[str, str] = field(default_factory=dict)

    def billed_seconds(self, now: float, minimum: float) -> float:
        end = self.terminated_at if self.terminated_at is not None else now
        return max(minimum, end - self.launched_at)


ReadyHook = Callable[[SimInstance, float], None]


class SimProvider:
    """In-memory cloud. Not thread-safe; driven by the simulator's virtual clock."""

    def __init__(
        self,
        cloud: str,
        cluster: str,
        clock: Clock,
        *,
        boot_s: float = 240.0,
        running_after_s: float = 60.0,
        billing_minimum_s: float = 60.0,
        capacity_error_rate: float = 0.0,
        transient_error_rate: float = 0.0,
        unavailable: Iterable[str] = (),
        spot_interrupt_mean_s: float | None = None,
        seed: int = 0,
        on_ready: ReadyHook | None = None,
        on_gone: ReadyHook | None = None,
        notice_lead_s: float = 0.0,
        on_notice: ReadyHook | None = None,
    ) -> None:
        self.name = cloud
        self.cluster = cluster
        self.clock = clock
        self.boot_s = boot_s
        self.running_after_s = min(running_after_s, boot_s)
        self.billing_minimum_s = billing_minimum_s
        self.capacity_error_rate = capacity_error_rate
        self.transient_error_rate = transient_error_rate
        self.unavailable: set[str] = set(unavailable)
        self.spot_interrupt_mean_s = spot_interrupt_mean_s
        self.rng = random.Random(seed)
        self.on_ready = on_ready
        self.on_gone = on_gone
        self.notice_lead_s = notice_lead_s
        self.on_notice = on_notice
        self.notices = 0
        self.instances: dict[str, SimInstance] = {}
        self._live: dict[str, SimInstance] = {}
        self._by_burst_id: dict[str, SimInstance] = {}
        self._events: list[tuple[float, int, str]] = []
        self._seq = 0
        self.calls: dict[str, int] = {"launch": 0, "list": 0, "find": 0, "terminate": 0}
        self.launched = 0
        self.capacity_errors = 0
        self.interruptions = 0
        self.broken: str = ""  # when set, every call raises PermanentProviderError (tests)
        self._list_cache: tuple[CloudInstance, ...] | None = None
        self._closed_usd = 0.0
        self._closed_gpu_h = 0.0
        # Bumped on every launch, end and applied event (boot, ready, notice, reclaim): equal
        # counts mean nothing about this cloud changed in between (the runner's idle ticks).
        self.changes = 0

    # ---- Provider ------------------------------------------------------------------------------
    def launch(self, spec: LaunchSpec) -> CloudInstance:
        self.calls["launch"] += 1
        if self.broken:
            raise PermanentProviderError(self.broken, provider=self.name, code="AuthFailure")
        if spec.tags.get(TAG_ID) != spec.intent_id or spec.tags.get(TAG_CLUSTER) != self.cluster:
            raise PermanentProviderError("launch without burst:id/burst:cluster tags", provider=self.name, code="InvalidParameterValue")
        offer = spec.offer
        if offer.key in self.unavailable or (self.capacity_error_rate and self.rng.random() < self.capacity_error_rate):
            self.capacity_errors += 1
            raise CapacityError(
                f"insufficient capacity for {offer.instance_type} in {offer.zone or offer.region}",
                provider=self.name,
                code="InsufficientInstanceCapacity",
                offer_key=offer.key,
            )
        if self.transient_error_rate and self.rng.random() < self.transient_error_rate:
            raise TransientProviderError("simulated throttling", provider=self.name, code="RequestLimitExceeded")
        now = self.clock.now()
        self.launched += 1
        cid = f"sim-{self.name}-{self.launched:06d}"
        inst = SimInstance(
            cloud_id=cid,
            burst_id=spec.intent_id,
            offer=offer,
            tags=dict(spec.tags),
            launched_at=now,
            running_at=now + self.running_after_s,
            ready_at=now + self.boot_s,
        )
        self.instances[cid] = inst
        self._live[cid] = inst
        self._by_burst_id.setdefault(spec.intent_id, inst)
        self._push(inst.running_at, cid)
        self._push(inst.ready_at, cid)
        if offer.market is Market.SPOT and self.spot_interrupt_mean_s:
            inst.interrupt_at = now + self.rng.expovariate(1.0 / self.spot_interrupt_mean_s)
            self._push(inst.interrupt_at, cid)
            if self.notice_lead_s > 0:
                inst.notice_at = max(now, inst.interrupt_at - self.notice_lead_s)
                self._push(inst.notice_at, cid)
        self._list_cache = None
        self.changes += 1
        return self._view(inst)

    def list_instances(self) -> Sequence[CloudInstance]:
        self.calls["list"] += 1
        if self.broken:
            raise PermanentProviderError(self.broken, provider=self.name, code="AuthFailure")
        if self._list_cache is None:
            self._list_cache = tuple(self._view(i) for i in self._live.values())
        return self._list_cache

    def find(self, intent_id: str) -> CloudInstance | None:
        self.calls["find"] += 1
        inst = self._by_burst_id.get(intent_id)
        return None if inst is None else self._view(inst)

    def terminate(self, cloud_ids: Sequence[str]) -> None:
        self.calls["terminate"] += 1
        now = self.clock.now()
        for cid in cloud_ids:
            inst = self.instances.get(cid)
            if inst is None or inst.terminated_at is not None:
                continue  # already gone: success
            self._end(inst, now, interrupted=False)

    # ---- simulation ----------------------------------------------------------------------------
    def reclaim(self, cloud_id: str, at: float) -> None:
        """Have the cloud take this instance back at ``at`` (announced ``notice_lead_s`` ahead),
        instead of or before its drawn reclaim time. For tests and what-ifs."""
        inst = self.instances[cloud_id]
        inst.interrupt_at = at if inst.interrupt_at is None else min(at, inst.interrupt_at)
        self._push(inst.interrupt_at, cloud_id)
        if self.notice_lead_s > 0:
            inst.notice_at = max(self.clock.now(), inst.interrupt_at - self.notice_lead_s)
            inst.noticed = False
            self._push(inst.notice_at, cloud_id)

    def _push(self, t: float, cid: str) -> None:
        self._seq += 1
        heapq.heappush(self._events, (t, self._seq, cid))

    def _view(self, inst: SimInstance) -> CloudInstance:
        if inst.view is None:
            inst.view = CloudInstance(
                cloud=self.name,
                cloud_id=inst.cloud_id,
                burst_id=inst.burst_id,
                region=inst.offer.region,
                zone=inst.offer.zone,
                instance_type=inst.offer.instance_type,
                state=inst.state,
                tags=inst.tags,
                launched_at=inst.launched_at,
                address=_address(inst.cloud_id),
                interrupted=inst.interrupted,
                market=inst.offer.market,
            )
        return inst.view

    def _end(self, inst: SimInstance, now: float, *, interrupted: bool) -> None:
        inst.terminated_at = now
        self._closed_usd += inst.billed_seconds(now, self.billing_minimum_s) * inst.offer.price_per_hour / 3600.0
        self._closed_gpu_h += inst.billed_seconds(now, self.billing_minimum_s) * inst.offer.gpu_count / 3600.0
        inst.state = CloudState.TERMINATED
        inst.interrupted = interrupted
        inst.view = None
        self._live.pop(inst.cloud_id, None)
        self._list_cache = None
        self.changes += 1
        if self.on_gone is not None:
            self.on_gone(inst, now)

    def next_event(self) -> float | None:
        while self._events:
            t, _, cid = self._events[0]
            if self.instances[cid].terminated_at is None:
                return t
            heapq.heappop(self._events)
        return None

    def advance(self, now: float) -> int:
        """Apply every boot/ready/interruption event due by ``now``. Returns how many applied."""
        n = 0
        while self._events and self._events[0][0] <= now:
            t, _, cid = heapq.heappop(self._events)
            inst = self.instances[cid]
            if inst.terminated_at is not None:
                continue
            n += 1
            self.changes += 1
            if inst.interrupt_at is not None and t >= inst.interrupt_at:
                self.interruptions += 1
                self._end(inst, t, interrupted=True)
                continue
            if inst.notice_at is not None and not inst.noticed and t >= inst.notice_at:
                inst.noticed = True
                self.notices += 1
                if self.on_notice is not None:
                    self.on_notice(inst, t)
            if inst.state is CloudState.PENDING and t >= inst.running_at:
                inst.state = CloudState.RUNNING
                inst.view = None
                self._list_cache = None
            if not inst.ready and t >= inst.ready_at:
                inst.ready = True
                if self.on_ready is not None:
                    self.on_ready(inst, t)
        return n

    # ---- measurements --------------------------------------------------------------------------
    def cost(self, now: float) -> float:
        """USD billed so far: closed instances plus live ones' accrual (minimum included)."""
        m = self.billing_minimum_s
        return self._closed_usd + sum(i.billed_seconds(now, m) * i.offer.price_per_hour / 3600.0 for i in self._live.values())

    def gpu_hours_paid(self, now: float) -> float:
        m = self.billing_minimum_s
        return self._closed_gpu_h + sum(i.billed_seconds(now, m) * i.offer.gpu_count / 3600.0 for i in self._live.values())

    def live_gpus(self) -> int:
        return sum(i.offer.gpu_count for i in self._live.values())


def _address(cloud_id: str) -> str:
    """A stable private address per instance (the launch counter in its id), same in any process."""
    n = int(cloud_id.rsplit("-", 1)[-1])
    return f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"
