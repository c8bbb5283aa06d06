"""Which offers a piece of work may use, best first.

Built like Cluster Autoscaler's expanders: small strategies, each narrowing or ordering a list of
offers, chained in a fixed order. Time comes in as an argument (for backoff expiry); nothing here
reads a clock.

Chain: ``fits`` (GPU count, model, memory) -> ``not_disabled`` (providers with a permanent
error) -> ``not_backed_off`` (offers cooling down after capacity/quota errors) ->
``cheapest_per_gpu_hour`` (ties broken by hourly price, then the offer key, so the order is
total and the plan deterministic). A spot offer is ranked by its price times its reclaim factor
(``Context.spot_factor``, from :func:`policies.spot.reclaim_factors`: observed reclaims make it
dearer) when the decision has one, else by its price over ``1 - spot_discount``. Failing over is just the next offer in this order: another
zone, then another region, then another type, then another cloud, by price.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from burst.domain import Job, Market, Offer, Timestamp


@dataclass(frozen=True, slots=True)
class Need:
    """What the work needs from one instance."""

    gpus: int
    gpu_model: str = ""
    min_gpu_memory_gib: float = 0.0
    exact_gpus: int = 0  # gangs: instances must have exactly this many GPUs (0 = at least gpus)
    allow_spot: bool = False

    @classmethod
    def for_job(cls, job: Job, gpus: int | None = None, *, allow_spot: bool = False, exact: int = 0) -> Need:
        return cls(gpus or job.per_node, job.gpu_model, job.min_gpu_memory_gib, exact, allow_spot)


@dataclass(frozen=True, slots=True)
class Context:
    now: Timestamp
    backoff_until: Mapping[str, float]
    disabled_providers: frozenset[str]
    spot_discount: float = 0.3
    # offer key -> paid hours per useful hour on that spot offer (policies/spot.py); empty: the
    # flat spot_discount rule applies
    spot_factor: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))


Strategy = Callable[[Sequence[Offer], Need, Context], Sequence[Offer]]


def fits(offers: Sequence[Offer], need: Need, ctx: Context) -> Sequence[Offer]:
    return [
        o
        for o in offers
        if (o.gpu_count == need.exact_gpus if need.exact_gpus else o.gpu_count >= need.gpus)
        and (not need.gpu_model or o.gpu_model.casefold() == need.gpu_model.casefold())
        and o.gpu_memory_gib >= need.min_gpu_memory_gib
        and (need.allow_spot or o.market is Market.ON_DEMAND)
    ]


def not_disabled(offers: Sequence[Offer], need: Need, ctx: Context) -> Sequence[Offer]:
    if not ctx.disabled_providers:
        return offers
    return [o for o in offers if o.cloud not in ctx.disabled_providers]


def not_backed_off(offers: Sequence[Offer], need: Need, ctx: Context) -> Sequence[Offer]:
    if not ctx.backoff_until:
        return offers
    return [o for o in offers if ctx.backoff_until.get(o.key, 0.0) <= ctx.now]


def cheapest_per_gpu_hour(offers: Sequence[Offer], need: Need, ctx: Context) -> Sequence[Offer]:
    def score(o: Offer) -> tuple[float, float, str]:
        per_gpu = o.price_per_gpu_hour
        if o.market is Market.SPOT:
            factor = ctx.spot_factor.get(o.key)
            if factor is not None:
                per_gpu *= factor  # what a useful GPU-hour costs once reclaims are paid for
            else:
                # Spot can be reclaimed: prefer it only when clearly cheaper.
                per_gpu /= 1.0 - ctx.spot_discount
        return (per_gpu, o.price_per_hour, o.key)

    return sorted(offers, key=score)


DEFAULT_CHAIN: tuple[Strategy, ...] = (fits, not_disabled, not_backed_off, cheapest_per_gpu_hour)


def rank(offers: Iterable[Offer], need: Need, ctx: Context, chain: Sequence[Strategy] = DEFAULT_CHAIN) -> list[Offer]:
    """Run the chain; the result is eligible offers, best first (possibly empty)."""
    out: Sequence[Offer] = list(offers)
    for strategy in chain:
        out = strategy(out, need, ctx)
        if not out:
            return []
    return list(out)


class Ranker:
    """Memoises :func:`rank` per need within one decision (offers and context are fixed)."""

    def __init__(self, offers: Sequence[Offer], ctx: Context, chain: Sequence[Strategy] = DEFAULT_CHAIN) -> None:
        self._offers = offers
        self._ctx = ctx
        self._chain = chain
        self._memo: dict[Need, list[Offer]] = {}

    def __call__(self, need: Need) -> list[Offer]:
        got = self._memo.get(need)
        if got is None:
            got = self._memo[need] = rank(self._offers, need, self._ctx, self._chain)
        return got
