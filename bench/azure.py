"""Azure first-attempt launch success against the ARM stand-in (issue 11).

Scenario: the bundled catalog's Azure GPU offers (on-demand) for the sizes the stand-in knows, in
five regions. Half of the (size, region) pairs cannot be had: about a quarter because their VM
family has no vCPU quota left in that region, the rest because the size is restricted for the
subscription there (``NotAvailableForSubscription``). The other families get a finite quota
(``--family-vcpus``), so quota also runs out during the run. 200 launches (``--n``) of a job mix
(1 GPU, 1 A100, 2 GPUs, 8-GPU gang members) go through the path burst uses: the catalog's
offers, filtered by :meth:`AzureProvider.filter_offers` (restrictions and quota left, refreshed on
a virtual clock every ``sku_refresh_s``), ranked by :func:`policies.selection.rank`, launched with
:meth:`AzureProvider.launch`; a capacity or quota error backs the offer off (as the executor does)
and the next offer is tried. Live VMs are capped (``--live``): the oldest is terminated, so quota
is given back and seen again at the next refresh.

Prints ONE JSON line:

* ``first_attempt_success``: share of launches whose first ``launch`` call succeeded (goal >= 0.95);
* ``mean_calls_per_launch``: ``launch`` calls per launch;
* ``arm_requests_per_launch``: HTTP requests the stand-in saw per launch (PUT, polls, reads);
* ``startup_filter_first_attempt_success`` / ``..._mean_calls``: the same with the offers filtered
  once at start (as ``burst/wiring.py`` does for AWS) instead of at every decision; quota running
  out during the run is then caught by ``launch``'s own check (a refused call, but no ARM call);
* ``blocked_pairs`` / ``pairs``; ``failed``: launches every eligible offer refused;
  ``unserved_decisions``: decisions with no eligible offer at all (the policy waits instead of
  launching: not a launch, so not counted in the shares above; the loop runs until ``--n``
  launches were made).

Usage: python bench/azure.py [--n 200] [--seed 11]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path

# Run as a script, this file's directory is sys.path[0], where "azure" would name this very file
# and shadow the Azure SDK's namespace package. Take it out; put the project root in.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from burst.catalog import Catalog, OfferFilter  # noqa: E402
from burst.domain import (  # noqa: E402
    TAG_CLUSTER,
    TAG_EXPIRES,
    TAG_ID,
    TAG_OWNER,
    TAG_PURPOSE,
    TAG_TEAM,
    LaunchSpec,
    Market,
    Offer,
    Purpose,
)
from burst.errors import CapacityError, ProviderError, QuotaError  # noqa: E402
from policies.selection import Context, Need, rank  # noqa: E402
from tests.azure.helpers import ManualClock, make_provider  # noqa: E402
from tests.support.arm_standin import DEFAULT_SIZES, ArmStandin  # noqa: E402

REGIONS = ("eastus", "eastus2", "southcentralus", "westus2", "westus3")
CLUSTER = "bench-azure"
NEEDS = (
    (0.50, Need(gpus=1)),
    (0.20, Need(gpus=1, gpu_model="A100")),
    (0.15, Need(gpus=2)),
    (0.15, Need(gpus=8, exact_gpus=8)),
)


@dataclass
class Result:
    first_ok: int = 0
    calls: int = 0
    served: int = 0
    unserved: int = 0
    failed: int = 0
    arm_requests: int = 0


def catalog_offers() -> list[Offer]:
    sizes = {s.name for s in DEFAULT_SIZES if s.gpus}
    flt = OfferFilter(clouds=("azure",), regions=REGIONS, markets=(Market.ON_DEMAND,))
    return [o for o in Catalog.bundled().offers(flt) if o.instance_type in sizes]


def block_half(standin: ArmStandin, offers: list[Offer], rng: random.Random, family_vcpus: int) -> int:
    """Make half of the (size, region) pairs unusable; returns how many pairs are blocked."""
    family = {s.name: s.family for s in DEFAULT_SIZES}
    pairs = sorted({(o.instance_type, o.region) for o in offers})
    groups: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for size, region in pairs:
        groups.setdefault((family[size], region), []).append((size, region))
    for fam, region in groups:
        standin.set_quota(region, fam, family_vcpus)
    blocked: set[tuple[str, str]] = set()
    order = sorted(groups)
    rng.shuffle(order)
    for key in order:  # about a quarter: no quota left for the whole family there
        if len(blocked) + len(groups[key]) > len(pairs) // 4:
            continue
        standin.set_quota(key[1], key[0], family_vcpus, current=family_vcpus)
        blocked.update(groups[key])
    rest = [p for p in pairs if p not in blocked]
    rng.shuffle(rest)
    for size, region in rest[: len(pairs) // 2 - len(blocked)]:  # the rest of the half: restricted
        standin.restrict(size, region)
        blocked.add((size, region))
    return len(blocked)


def spec_for(intent: str, offer: Offer) -> LaunchSpec:
    tags = {TAG_CLUSTER: CLUSTER, TAG_ID: intent, TAG_PURPOSE: "overflow", TAG_OWNER: "bench", TAG_TEAM: "bench",
            TAG_EXPIRES: ""}
    return LaunchSpec(intent_id=intent, offer=offer, purpose=Purpose.OVERFLOW, tags=tags, owner="bench", team="bench")


def run(n: int, seed: int, *, per_decision: bool, family_vcpus: int, live_cap: int) -> tuple[Result, int, int]:
    rng = random.Random(seed)
    standin = ArmStandin(locations=REGIONS).start()
    try:
        offers = catalog_offers()
        blocked = block_half(standin, offers, rng, family_vcpus)
        pairs = len({(o.instance_type, o.region) for o in offers})
        clock = ManualClock(0.0)
        provider = make_provider(standin, cluster=CLUSTER, clock=clock, sku_refresh_s=900.0, user_data_template="")
        startup = provider.filter_offers(offers)
        backoff: dict[str, float] = {}
        live: deque[str] = deque()
        result = Result()
        before = len(standin.requests)
        i = 0
        while result.served + result.failed < n and i < 5 * n:
            i += 1
            clock.now += 120.0
            need = rng.choices([nd for _, nd in NEEDS], weights=[w for w, _ in NEEDS])[0]
            usable = provider.filter_offers(offers) if per_decision else startup
            ctx = Context(now=clock.now, backoff_until=backoff, disabled_providers=frozenset())
            ranked = rank(usable, need, ctx)
            first = True
            for offer in ranked:
                result.calls += 1
                try:
                    inst = provider.launch(spec_for(f"b-bench-{seed}-{i:04d}", offer))
                except CapacityError as e:
                    backoff[offer.key] = clock.now + (1800.0 if isinstance(e, QuotaError) else 600.0)
                    first = False
                    continue
                except ProviderError:
                    first = False
                    continue
                result.served += 1
                result.first_ok += int(first)
                live.append(inst.cloud_id)
                if len(live) > live_cap:
                    provider.terminate([live.popleft()])
                break
            else:
                if ranked:
                    result.failed += 1  # every eligible offer refused
                else:
                    result.unserved += 1  # nothing to try: the policy would wait, not launch
        result.arm_requests = len(standin.requests) - before
        return result, blocked, pairs
    finally:
        standin.stop()


def main(argv: list[str] | None = None) -> dict[str, object]:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--family-vcpus", type=int, default=960, help="vCPU quota of each usable family per region")
    ap.add_argument("--live", type=int, default=30, help="live VMs kept; the oldest is terminated beyond this")
    args = ap.parse_args(argv)
    main_run, blocked, pairs = run(args.n, args.seed, per_decision=True, family_vcpus=args.family_vcpus, live_cap=args.live)
    startup_run, _, _ = run(args.n, args.seed, per_decision=False, family_vcpus=args.family_vcpus, live_cap=args.live)
    launches = max(1, main_run.served + main_run.failed)
    startup_launches = max(1, startup_run.served + startup_run.failed)
    out: dict[str, object] = {
        "bench": "azure",
        "launches": main_run.served + main_run.failed,
        "first_attempt_success": round(main_run.first_ok / launches, 4),
        "mean_calls_per_launch": round(main_run.calls / launches, 4),
        "arm_requests_per_launch": round(main_run.arm_requests / launches, 2),
        "failed": main_run.failed,
        "unserved_decisions": main_run.unserved,
        "startup_filter_first_attempt_success": round(startup_run.first_ok / startup_launches, 4),
        "startup_filter_mean_calls_per_launch": round(startup_run.calls / startup_launches, 4),
        "pairs": pairs,
        "blocked_pairs": blocked,
    }
    print(json.dumps(out), flush=True)
    return out


if __name__ == "__main__":
    main()
