"""Builds a running burst from a :class:`burst.config.BurstConfig`: store, queue, providers and
the controller. The only place that knows which implementation stands behind each port.

Adapters are imported where they are chosen, so a live run loads only what its config names: the
simulator (:mod:`burst.sim`) only for the simulated queue or simulated clouds, and never the Slack
bot: the CLI builds the notifier and hands it in (``bot`` is imported by the CLI alone)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from burst.budgets import BudgetBook, budget_book
from burst.catalog import Catalog, OfferFilter
from burst.clock import WallClock
from burst.config import BurstConfig
from burst.controller import BudgetCaps, Controller
from burst.domain import Offer, Timestamp
from burst.errors import ProviderError, QueueError
from burst.executor import BackoffPolicy
from burst.ondemand.settings import OnDemandSettings
from burst.ports import (
    AsyncMirror,
    ChallengeQueue,
    Clock,
    Closeable,
    GangHold,
    Notifier,
    Prewarming,
    Provider,
    QueueSource,
    Store,
)

if TYPE_CHECKING:
    from burst.queues.slurm.adapter import SlurmQueue
    from providers.aws import AwsSettings
    from providers.azure import AzureProvider
    from providers.mirror_service import MirrorService

log = logging.getLogger("burst.wiring")


@dataclass
class Runtime:
    """What ``burst run`` drives. ``before_tick``/``after_tick`` are the simulated world's hooks
    (move the world to the tick's time; let the simulated scheduler start work) and None on a
    real queue; with real Azure, ``before_tick`` also re-applies the vCPU quota to the offers
    (:func:`azure_quota_refresh`)."""

    config: BurstConfig
    store: Store
    queue: QueueSource
    providers: dict[str, Provider]
    controller: Controller
    clock: Clock
    before_tick: Callable[[Timestamp], None] | None = None
    after_tick: Callable[[Timestamp], None] | None = None
    tick_every_wall_s: float = 30.0
    closeables: tuple[Closeable, ...] = ()  # for Daemon(closeables=...): stopped with the daemon
    prewarmer: Prewarming | None = None  # for Daemon(prewarmer=...): the mirror's prewarm job


def offers_for(cfg: BurstConfig) -> list[Offer]:
    cat = Catalog.load(cfg.offers.catalog) if cfg.offers.catalog else Catalog.bundled()
    flt = OfferFilter(
        clouds=cfg.enabled_clouds(),
        regions=tuple(cfg.offers.regions),
        accelerators=tuple(cfg.offers.accelerators),
        instance_types=tuple(cfg.offers.instance_types),
        min_gpu_memory_gib=cfg.offers.min_gpu_memory_gib,
        markets=cfg.markets(),
    )
    return cat.offers(flt)


def open_store(url: str) -> Store:
    from burst.store.sql import SqlStore

    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return SqlStore.from_url(url, upgrade=True)


def warn_isolation(queue: SlurmQueue) -> list[str]:
    """Log, once at start, every partition whose non-opted-in jobs could run on burst nodes
    (Slurm has no taint; see SlurmQueue.isolation_warnings). An unreachable slurmctld is not a
    reason to refuse to start: the tick copes with it, and the check runs again next start."""
    try:
        warnings = list(queue.isolation_warnings())
    except QueueError as e:
        log.warning("slurm partition check skipped: %s", e)
        return []
    for w in warnings:
        log.warning("slurm: %s", w)
    return warnings


def with_mirror_hosts(aws: AwsSettings, svc: MirrorService) -> AwsSettings:
    """Fill each AWS region's containerd mirror host (user data) from the mirror targets, and the
    Harbor host from the mirror source, where the AWS settings leave them empty; so the node
    pulls from the same registry burst copies into."""
    regions = {}
    for name, r in aws.regions.items():
        if not r.mirror_host and f"aws:{name}" in svc.settings.targets:
            prefix = svc.settings.targets[f"aws:{name}"].repository_prefix
            host = svc.target_host("aws", name)
            r = r.model_copy(update={"mirror_host": f"{host}/{prefix}" if prefix else host})
        regions[name] = r
    update: dict[str, Any] = {"regions": regions}
    if not aws.harbor_host:
        update["harbor_host"] = svc.settings.source.registry
    return aws.model_copy(update=update)


@dataclass(frozen=True)
class AzureAccess:
    """How the Azure provider reaches ARM. The defaults are production's: the identity chain
    (``DefaultAzureCredential``) and the SDK's own pipeline; tests hand in the stand-in's token
    credential and its plain-http policy here, and nothing else of the wiring changes."""

    credential: Any = None
    client_kwargs: Mapping[str, Any] | None = None


def build_azure(cfg: BurstConfig, access: AzureAccess | None = None) -> AzureProvider:
    """The real Azure provider for ``clouds.azure.settings``, validated against ARM before any
    launch (subscription, resource group, regions, subnets, images, sizes), as AWS is against
    EC2: a ConfigError here stops `burst run` with one line."""
    from providers.azure import AzureProvider, AzureSettings

    access = access or AzureAccess()
    settings = AzureSettings.model_validate(cfg.clouds.azure.settings if cfg.clouds.azure else {})
    provider = AzureProvider(settings, cluster=cfg.cluster, credential=access.credential, client_kwargs=access.client_kwargs)
    provider.validate()
    return provider


def azure_usable(provider: AzureProvider, offer: Offer) -> bool:
    problem = provider.offer_problem(offer)
    return problem is None or problem[0] == "QuotaExhausted"


def azure_quota_refresh(controller: Controller, offers: Sequence[Offer], provider: AzureProvider) -> Callable[[Timestamp], None]:
    """A before-tick hook: the controller's offers are ``offers`` less the Azure ones the vCPU
    quota left cannot hold now (the provider's view of ``usage.list``, re-read every
    ``sku_refresh_s``, counting its own launches in between), so the policy never picks one; an
    offer whose quota frees up comes back. If ARM cannot be read, the last list stays."""
    base = tuple(offers)

    def refresh(now: Timestamp) -> None:
        try:
            controller.offers = tuple(o for o in base if o.cloud != "azure" or provider.supports(o))
        except ProviderError as e:
            log.warning("azure quota not refreshed (offers unchanged): %s", e)

    return refresh


def _gate(store: Store, od: OnDemandSettings, budgets: BudgetBook, now: Timestamp) -> None:
    """Before each tick's snapshot: requests the quota no longer allows go back to an admin, and
    the budgets are metered and their crossings told (once)."""
    from burst.ondemand.quota import hold_over_quota

    hold_over_quota(store, od, now)
    budgets.watch(now)


def build_runtime(
    cfg: BurstConfig,
    *,
    store: Store | None = None,
    clock: Clock | None = None,
    notifier: Notifier | None = None,
    azure_access: AzureAccess | None = None,
) -> Runtime:
    """Compose the adapters ``cfg`` names with one ordinary :class:`Controller`. ``notifier`` is
    Slack when the CLI found a bot token (:func:`bot.notifier.slack_notifier`); None logs only.
    ``azure_access``: see :class:`AzureAccess` (None: production's identity chain)."""
    store = store if store is not None else open_store(cfg.database_url)
    offers = offers_for(cfg)
    policy = cfg.policy_config()
    backoff = BackoffPolicy(base_s=cfg.backoff.base_s, quota_base_s=cfg.backoff.quota_base_s, cap_s=cfg.backoff.cap_s)
    before: Callable[[Timestamp], None] | None = None
    after: Callable[[Timestamp], None] | None = None
    providers: dict[str, Provider] = {}
    tick_wall = cfg.tick_interval_s
    # The queue's optional capabilities, known here from the adapter built (never probed later).
    gang_hold: GangHold | None = None
    challenge_queue: ChallengeQueue | None = None
    closeables: list[Closeable] = []
    if cfg.queue.kind == "sim":
        # The simulator's adapter set (cluster as the QueueSource, clouds as Providers, one
        # virtual clock for both), moved by scaled wall time; the controller is the ordinary one.
        from burst.sim.clock import ScaledClock
        from burst.sim.trace import bundled_trace_path, load_trace
        from burst.sim.world import TRACE_EPOCH, SimSettings, SimWorld

        q = cfg.queue.sim
        trace = load_trace(q.trace or bundled_trace_path(), q.trace_format, gpus_per_node=q.gpus_per_node)
        world = SimWorld(
            trace,
            SimSettings(
                nodes=q.nodes,
                gpus_per_node=q.gpus_per_node,
                gpu_model=q.gpu_model,
                tick_s=cfg.tick_interval_s,
                boot_s=q.boot_s,
                capacity_error_rate=q.capacity_error_rate,
                cluster=cfg.cluster,
            ),
            {o.cloud for o in offers},
        )
        queue: QueueSource = world.cluster
        challenge_queue = world.cluster  # reservations, checkpoint, hold, release, submit
        providers = {k: v for k, v in world.providers.items() if k in cfg.simulated_clouds()}
        clock = clock or ScaledClock(TRACE_EPOCH + trace[0].submit + q.start_day * 86400.0, q.speed)
        before = world.advance_to
        after = world.after_tick
        tick_wall = cfg.tick_interval_s / q.speed
    elif cfg.queue.kind == "slurm":
        from burst.queues.slurm.adapter import SlurmQueue
        from burst.queues.slurm.settings import SlurmSettings

        slurm = SlurmQueue(SlurmSettings.model_validate(cfg.queue.slurm or {}))
        warn_isolation(slurm)
        queue = slurm
        challenge_queue = slurm  # reservations, checkpoint, hold, release, submit (typed: checked by mypy)
    elif cfg.queue.kind == "jsonfile":
        from burst.queues.jsonfile import JsonFileQueue

        queue = JsonFileQueue(cfg.queue.jsonfile or "")
    else:
        from burst.queues.kubernetes.adapter import KubernetesQueue
        from burst.queues.kubernetes.settings import K8sSettings

        kube = KubernetesQueue(K8sSettings.model_validate(cfg.queue.kubernetes or {}))
        queue = kube
        gang_hold = kube  # the burst.dev/gang taint
        challenge_queue = kube  # cordon reservations, checkpoint annotation, Job suspend, challenge Jobs
        closeables.append(kube)  # its watch threads
    clock = clock or WallClock()
    service: MirrorService | None = None
    async_mirror: AsyncMirror | None = None
    if cfg.mirror is not None:
        from burst.mirror_worker import MirrorWorker
        from providers.mirror_service import MirrorService, MirrorSettings

        service = MirrorService(MirrorSettings.model_validate(cfg.mirror), store, clock=clock)
        from burst.metrics import MeteredMirror

        # copies run off the tick; bytes, time and failures are counted for the dashboard
        async_mirror = MirrorWorker(service, copier=MeteredMirror(service))
    if "aws" in cfg.real_clouds():
        from providers.aws import AwsProvider, AwsSettings

        aws = AwsSettings.model_validate(cfg.clouds.aws.settings if cfg.clouds.aws else {})
        if service is not None:
            aws = with_mirror_hosts(aws, service)
        aws_provider = AwsProvider(aws, cluster=cfg.cluster)
        # Configuration is checked against EC2 before any launch (unknown region, missing AMI
        # or subnet, bad template): a ConfigError here stops `burst run` with one line.
        aws_provider.validate()
        providers["aws"] = aws_provider
        # Offers this configuration cannot serve (no subnet in that AZ, type not offered there,
        # spot not allowed) never reach the policy, so failover moves between real options.
        offers = [o for o in offers if o.cloud != "aws" or aws_provider.supports(o)]
    if "azure" in cfg.real_clouds():
        azure_provider = build_azure(cfg, azure_access)
        providers["azure"] = azure_provider
        # Offers this configuration can never serve (size restricted for the subscription there,
        # region not configured, spot off) never reach the policy. Quota is not a reason to drop
        # an offer for the daemon's lifetime: it frees up as VMs go, and the provider refuses a
        # launch the quota left cannot hold before any PUT (a QuotaError, backed off).
        offers = [o for o in offers if o.cloud != "azure" or azure_usable(azure_provider, o)]
    if cfg.queue.kind != "sim" and cfg.simulated_clouds():
        # Simulated clouds beside a real queue, only where the config asks for them by name
        # (`simulated: true`): the simulator's Provider adapter on this clock.
        from burst.sim.cloud import SimProvider

        for name in cfg.simulated_clouds():
            providers[name] = SimProvider(name, cfg.cluster, clock)
    log.info("clouds: %s", ", ".join(f"{n} {cfg.cloud_mode(n)}" for n in cfg.enabled_clouds()) or "none")
    from burst.ondemand.userdata import make_user_data_for

    od = OnDemandSettings.model_validate(cfg.slack or {})
    from burst.metrics import MeteredProvider

    budgets = budget_book(cfg, store, notifier)

    controller = Controller(
        cluster=cfg.cluster,
        queue=queue,
        # launch attempts and errors by class are counted for the dashboard (burst/metrics.py)
        providers={name: MeteredProvider(p) for name, p in providers.items()},
        store=store,
        offers=[o for o in offers if o.cloud in providers],
        policy=policy,
        # Budgets are checked in the transaction that writes each launch's intent, site and team,
        # month and day, with what live instances are projected to cost (burst/budgets.py); the
        # planner's own estimate (spend + a reserve per launch, BudgetCaps) is not used live: it
        # would hold launches back on a different count, and miss caps raised at run time.
        caps=BudgetCaps(),
        budget_for=budgets.checks_for,
        backoff=backoff,
        orphan_grace_s=cfg.orphan_grace_s,
        notifier=notifier,
        async_mirror=async_mirror,
        gang_hold=gang_hold,
        challenge_queue=challenge_queue,
        challenge_settings=cfg.grand_challenge.settings(),
        # On-demand instances boot with the requester's SSH key and never join the scheduler;
        # overflow instances get the provider's join template.
        user_data_for=make_user_data_for(store, od.ssh_user),
        request_gate=functools.partial(_gate, store, od, budgets),
    )
    if "azure" in cfg.real_clouds():
        refresh = azure_quota_refresh(controller, controller.offers, azure_provider)
        world_before = before
        if world_before is None:
            before = refresh
        else:  # a simulated queue beside real Azure: move the world, then look at the quota

            def before(now: Timestamp) -> None:
                world_before(now)
                refresh(now)

        refresh(clock.now())  # the first tick already sees the quota
    return Runtime(
        cfg, store, queue, providers, controller, clock, before, after, tick_wall,
        closeables=tuple(closeables), prewarmer=service,
    )
