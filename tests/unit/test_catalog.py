"""burst/catalog.py: the bundled price list, its filters, and refusal of bad price files."""

from __future__ import annotations

from pathlib import Path

import pytest

from burst.catalog import REQUIRED_COLUMNS, Catalog, OfferFilter
from burst.domain import Market
from burst.errors import InputError

HEADER = "cloud,instance_type,accelerator_name,accelerator_count,vcpus,memory_gib,region,availability_zone,price_per_hour,spot_price_per_hour"


@pytest.fixture(scope="module")
def cat() -> Catalog:
    return Catalog.bundled()


def test_bundled_catalog_loads(cat: Catalog) -> None:
    assert len(cat) > 1000
    offers = cat.offers()
    assert {o.cloud for o in offers} >= {"aws", "azure"}
    assert all(o.gpu_count >= 1 and o.price_per_hour > 0 for o in offers)
    assert {o.market for o in offers} == {Market.ON_DEMAND, Market.SPOT}
    # spot is never dearer than on-demand for the same row
    od = {(o.cloud, o.instance_type, o.region, o.zone): o.price_per_hour for o in offers if o.market is Market.ON_DEMAND}
    for o in offers:
        if o.market is Market.SPOT and (o.cloud, o.instance_type, o.region, o.zone) in od:
            assert o.price_per_hour <= od[(o.cloud, o.instance_type, o.region, o.zone)] + 1e-12


def test_known_row_becomes_two_offers(cat: Catalog) -> None:
    # first data row of the bundled file: g4ad.16xlarge in apne1-az1, 4.68 od / 4.68 spot
    got = [o for o in cat.offers() if o.instance_type == "g4ad.16xlarge" and o.zone == "apne1-az1"]
    assert sorted((o.market, o.price_per_hour) for o in got) == [(Market.ON_DEMAND, 4.68), (Market.SPOT, 4.68)]
    assert got[0].gpu_count == 4 and got[0].vcpus == 64.0 and got[0].memory_gib == 256.0


@pytest.mark.parametrize(
    ("flt", "check"),
    [
        (OfferFilter(clouds=("azure",)), lambda o: o.cloud == "azure"),
        (OfferFilter(regions=("us-west-2",)), lambda o: o.region == "us-west-2"),
        (OfferFilter(accelerators=("H100",)), lambda o: o.gpu_model == "H100"),
        (OfferFilter(min_gpu_memory_gib=80), lambda o: o.gpu_memory_gib >= 80),
        (OfferFilter(markets=(Market.SPOT,)), lambda o: o.market is Market.SPOT),
        (OfferFilter(), lambda o: o.market is Market.ON_DEMAND),  # default: on-demand only
        (OfferFilter(instance_types=("p4d.24xlarge",)), lambda o: o.instance_type == "p4d.24xlarge"),
    ],
    ids=["cloud", "region", "accelerator", "min-memory", "spot", "default-on-demand", "instance-type"],
)
def test_filters(cat: Catalog, flt: OfferFilter, check) -> None:  # type: ignore[no-untyped-def]
    got = cat.offers(flt)
    assert got, "filter matched nothing: the test would prove nothing"
    assert all(check(o) for o in got)
    # the filter is exact: every offer it leaves out fails the check or another constraint
    kept = set(got)
    rest = [o for o in cat.offers() if o not in kept]
    assert all(not flt.accepts(o) for o in rest)
    assert any(not check(o) for o in cat.offers())


def test_combined_filter(cat: Catalog) -> None:
    flt = OfferFilter(clouds=("aws",), regions=("us-east-1",), accelerators=("A100", "H100"), min_gpu_memory_gib=80)
    got = cat.offers(flt)
    assert got
    assert {o.gpu_model for o in got} == {"H100"}  # AWS "A100" is the 40 GB part
    assert all(o.cloud == "aws" and o.region == "us-east-1" for o in got)


def test_price_per_gpu_hour_and_cheapest(cat: Catalog) -> None:
    flt = OfferFilter(clouds=("aws",), regions=("us-east-1",), accelerators=("A100",))
    offers = cat.offers(flt)
    for o in offers:
        assert o.price_per_gpu_hour == pytest.approx(o.price_per_hour / o.gpu_count)
    best = cat.cheapest_per_gpu_hour(flt)
    assert best.price_per_gpu_hour == min(o.price_per_gpu_hour for o in offers)
    with pytest.raises(LookupError):
        cat.cheapest_per_gpu_hour(OfferFilter(accelerators=("no-such-gpu",)))


def test_regions_and_types(cat: Catalog) -> None:
    assert "us-east-1" in cat.regions("aws") and "eastus" not in cat.regions("aws")
    assert "eastus" in cat.regions("azure")
    assert "p4d.24xlarge" in cat.instance_types("aws", "us-east-1")


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "prices.csv"
    p.write_text(text)
    return p


def test_small_file_round_trip(tmp_path: Path) -> None:
    p = _write(
        tmp_path,
        f"{HEADER}\naws,p4d.24xlarge,A100,8,96,1152,us-east-1,use1-az1,32.77,\n"
        "azure,Standard_NC24ads_A100_v4,A100-80GB,1,24,220,eastus,,3.67,0.5\n",
    )
    cat = Catalog.load(p)
    assert len(cat) == 3  # no spot for the first row
    az = [o for o in cat.offers(OfferFilter(markets=(Market.ON_DEMAND, Market.SPOT))) if o.cloud == "azure"]
    assert {o.market for o in az} == {Market.ON_DEMAND, Market.SPOT}
    assert az[0].zone == "" and az[0].gpu_memory_gib == 80
    assert az[0].key.startswith("azure/eastus/-/")


@pytest.mark.parametrize(
    ("rows", "line", "words"),
    [
        ("aws,p4d,A100,8,96,1152,us-east-1,use1-az1,-1,\n", 2, ["price_per_hour", "non-negative"]),
        ("aws,p4d,A100,8,96,1152,us-east-1,use1-az1,1,\naws,p4d,A100,eight,96,1152,us-east-1,use1-az1,1,\n", 3, ["accelerator_count"]),
        ("aws,p4d,A100,0,96,1152,us-east-1,use1-az1,1,\n", 2, ["accelerator_count", "positive"]),
        ("aws,p4d,A100,1.5,96,1152,us-east-1,use1-az1,1,\n", 2, ["accelerator_count", "whole"]),
        ("aws,p4d,A100,8,96,1152,us-east-1,use1-az1,abc,\n", 2, ["price_per_hour", "not a number"]),
        ("aws,p4d,A100,8,96,1152,us-east-1,use1-az1,1,-0.1\n", 2, ["spot_price_per_hour"]),
        ("aws,p4d,A100,8,96,1152,us-east-1,use1-az1,1,nan\n", 2, ["spot_price_per_hour"]),
    ],
    ids=["negative-price", "bad-count-line3", "zero-count", "fractional-count", "price-not-number", "negative-spot", "nan-spot"],
)
def test_bad_rows_name_file_and_line(tmp_path: Path, rows: str, line: int, words: list[str]) -> None:
    p = _write(tmp_path, f"{HEADER}\n{rows}")
    with pytest.raises(InputError) as ei:
        Catalog.load(p)
    assert ei.value.where == f"{p}:{line}"
    assert str(ei.value).startswith(f"{p}:{line}: ")
    for w in words:
        assert w in str(ei.value)


@pytest.mark.parametrize("col", REQUIRED_COLUMNS)
def test_missing_column_is_named(tmp_path: Path, col: str) -> None:
    cols = HEADER.split(",")
    keep = [c for c in cols if c != col]
    p = _write(tmp_path, ",".join(keep) + "\n" + ",".join("1" for _ in keep) + "\n")
    with pytest.raises(InputError) as ei:
        Catalog.load(p)
    assert str(p) in ei.value.where
    assert col in str(ei.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError) as ei:
        Catalog.load(tmp_path / "nope.csv")
    assert "nope.csv" in str(ei.value)
