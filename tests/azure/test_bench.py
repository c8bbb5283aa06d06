"""bench/azure.py runs end to end with a tiny n and prints one JSON line with its figures."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "azure.py"


def test_bench_prints_one_json_line(capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("bench_azure", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_azure"] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop("bench_azure", None)
    out = module.main(["--n", "12", "--seed", "3"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and json.loads(lines[0]) == out
    assert out["launches"] == 12
    assert out["blocked_pairs"] * 2 >= out["pairs"] > 0  # half the pairs are blocked
    assert 0.0 <= out["first_attempt_success"] <= 1.0
    assert out["mean_calls_per_launch"] >= out["first_attempt_success"]
    # with restrictions and quota known before launching, nothing is refused on a first call
    assert out["first_attempt_success"] == 1.0
