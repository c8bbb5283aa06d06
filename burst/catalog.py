"""Offer catalog: every purchasable GPU shape, priced from a bundled CSV.

Prices come from here, never from live API calls in the hot path (a pricing API is slow,
throttled and not needed per tick). The bundled file is SkyPilot's catalog trimmed to GPU rows
(see ``burst/data/PRICES_SOURCE.md``); ``Catalog.load(path)`` refreshes from a newer file of the
same columns.

Each CSV row becomes up to two offers: on-demand (``price_per_hour``) and spot
(``spot_price_per_hour``), either skipped when its price is empty.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TextIO

from burst.domain import Market, Offer
from burst.errors import InputError

REQUIRED_COLUMNS = (
    "cloud",
    "instance_type",
    "accelerator_name",
    "accelerator_count",
    "region",
    "availability_zone",
    "price_per_hour",
    "spot_price_per_hour",
)

# GPU memory per accelerator, GiB. The catalog gives names only; these are the vendors' figures
# for the variants the clouds sell (AWS "A100" is the 40 GB part, "H100" the 80 GB SXM part).
GPU_MEMORY_GIB: dict[str, float] = {
    "T4": 16,
    "T4g": 16,
    "A10G": 24,
    "A10": 24,
    "L4": 24,
    "L40S": 48,
    "V100": 16,
    "V100-32GB": 32,
    "A100": 40,
    "A100-80GB": 80,
    "H100": 80,
    "H200": 141,
    "B200": 180,
    "K80": 12,
    "M60": 8,
    "Radeon Pro V520": 8,
    "Radeon MI25": 16,
}


def _float(value: str, where: str, column: str) -> float | None:
    value = value.strip()
    if not value:
        return None
    try:
        out = float(value)
    except ValueError:
        raise InputError(where, f"column {column!r}: {value!r} is not a number") from None
    if out < 0 or out != out:
        raise InputError(where, f"column {column!r}: {value!r} must be a non-negative number")
    return out


@dataclass(frozen=True, slots=True)
class OfferFilter:
    """Which offers a deployment may buy. Empty tuples mean "any"."""

    clouds: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    accelerators: tuple[str, ...] = ()
    instance_types: tuple[str, ...] = ()
    min_gpu_memory_gib: float = 0.0
    markets: tuple[Market, ...] = (Market.ON_DEMAND,)

    def accepts(self, o: Offer) -> bool:
        return (
            (not self.clouds or o.cloud in self.clouds)
            and (not self.regions or o.region in self.regions)
            and (not self.accelerators or o.gpu_model in self.accelerators)
            and (not self.instance_types or o.instance_type in self.instance_types)
            and o.gpu_memory_gib >= self.min_gpu_memory_gib
            and o.market in self.markets
        )


class Catalog:
    """An immutable list of offers with filters. Cheap to query; load once, refresh by reloading."""

    def __init__(self, offers: Iterable[Offer], source: str = "") -> None:
        self._offers: tuple[Offer, ...] = tuple(offers)
        self.source = source

    @classmethod
    def bundled(cls) -> Catalog:
        ref = resources.files("burst") / "data" / "gpu_prices.csv"
        with resources.as_file(ref) as path:
            return cls.load(path)

    @classmethod
    def load(cls, path: Path | str) -> Catalog:
        path = Path(path)
        try:
            fh = path.open(newline="", encoding="utf-8-sig")
        except OSError as e:
            raise InputError(str(path), f"cannot read price catalog: {e.strerror}") from None
        try:
            return cls._read(fh, path)
        except UnicodeDecodeError:
            raise InputError(str(path), "price catalog is not UTF-8 text") from None
        except csv.Error as e:
            raise InputError(str(path), f"malformed CSV: {e}") from None

    @classmethod
    def _read(cls, fh: TextIO, path: Path) -> Catalog:
        with fh:
            reader = csv.DictReader(fh)
            missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise InputError(str(path), f"missing column(s) {', '.join(missing)}")
            offers: list[Offer] = []
            for lineno, row in enumerate(reader, start=2):
                where = f"{path}:{lineno}"
                if any(v is None for v in row.values()):
                    raise InputError(where, "row has fewer fields than the header")
                count = _float(row["accelerator_count"], where, "accelerator_count")
                if count is None or count <= 0 or count != int(count):
                    raise InputError(where, "column 'accelerator_count' must be a positive whole number")
                gpu = row["accelerator_name"].strip()
                base = dict(
                    cloud=row["cloud"].strip(),
                    instance_type=row["instance_type"].strip(),
                    region=row["region"].strip(),
                    zone=row["availability_zone"].strip(),
                    gpu_model=gpu,
                    gpu_count=int(count),
                    gpu_memory_gib=GPU_MEMORY_GIB.get(gpu, 0.0),
                    vcpus=_float(row.get("vcpus", "") or "", where, "vcpus") or 0.0,
                    memory_gib=_float(row.get("memory_gib", "") or "", where, "memory_gib") or 0.0,
                )
                od = _float(row["price_per_hour"], where, "price_per_hour")
                if od:
                    offers.append(Offer(price_per_hour=od, market=Market.ON_DEMAND, **base))  # type: ignore[arg-type]
                spot = _float(row["spot_price_per_hour"], where, "spot_price_per_hour")
                if spot:
                    # The source rounds spot to 4 decimals; never let spot exceed on-demand.
                    spot = min(spot, od) if od else spot
                    offers.append(Offer(price_per_hour=spot, market=Market.SPOT, **base))  # type: ignore[arg-type]
        return cls(offers, source=str(path))

    def __len__(self) -> int:
        return len(self._offers)

    def offers(self, flt: OfferFilter | None = None) -> list[Offer]:
        if flt is None:
            return list(self._offers)
        return [o for o in self._offers if flt.accepts(o)]

    def cheapest_per_gpu_hour(self, flt: OfferFilter | None = None) -> Offer:
        found = self.offers(flt)
        if not found:
            raise LookupError("no offer matches the filter")
        return min(found, key=lambda o: (o.price_per_gpu_hour, o.key))

    def regions(self, cloud: str | None = None) -> Sequence[str]:
        return sorted({o.region for o in self._offers if cloud is None or o.cloud == cloud})

    def instance_types(self, cloud: str, region: str) -> set[str]:
        return {o.instance_type for o in self._offers if o.cloud == cloud and o.region == region}
