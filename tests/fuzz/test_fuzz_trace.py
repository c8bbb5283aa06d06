"""Fuzz: 1,200 generated CSV traces (itp and csv formats; seeded, tests/fuzz/generate.py).

Every trace goes through :func:`burst.sim.trace.load_trace`, all that ``burst simulate`` and the
embedded demo do with a trace before replaying it: it loads, or raises InputError whose message
is one line naming ``file:line`` (or the file), within a time bound. One refused trace in ten
also goes through ``burst simulate --report DIR``: exit 2, one line, never a traceback, and the
report directory is not created.
"""

from __future__ import annotations

import resource
import time
from pathlib import Path

from typer.testing import CliRunner

from burst.cli import app
from burst.errors import InputError
from burst.sim.trace import load_trace
from tests.fuzz.generate import trace_documents

N = 1200
PER_INPUT_S = 2.0  # CPU seconds, not wall: robust on a loaded machine
runner = CliRunner()


def test_fuzz_csv_traces(tmp_path: Path) -> None:
    docs = trace_documents(N)
    trace = tmp_path / "trace.csv"
    report = tmp_path / "report"
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    seen = {"ok": 0, "refused": 0, "cli": 0}
    for k, (fmt, data) in enumerate(docs):
        trace.write_bytes(data)
        ctx = (k, fmt, data[:200])
        t0 = time.process_time()
        try:
            jobs = load_trace(trace, fmt, gpus_per_node=8)
            msg = ""
        except InputError as e:
            msg = str(e)
        assert time.process_time() - t0 < PER_INPUT_S, ctx
        if not msg:
            seen["ok"] += 1
            assert jobs and all(j.gpus >= 1 and j.duration >= 1 for j in jobs), ctx
            continue
        seen["refused"] += 1
        assert msg.startswith(str(trace)), (ctx, msg)
        assert "\n" not in msg and "\r" not in msg and len(msg) < 600, (ctx, msg)
        if seen["refused"] % 10 == 1:
            seen["cli"] += 1
            res = runner.invoke(app, ["simulate", "--trace", str(trace), "--format", fmt, "--policy", "never",
                                      "--report", str(report)])
            assert res.exception is None or isinstance(res.exception, SystemExit), (ctx, repr(res.exception))
            assert res.exit_code == 2 and "Traceback" not in res.stdout + res.stderr, (ctx, res.stderr[-500:])
            lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
            assert len(lines) == 1 and str(trace) in lines[0], (ctx, lines)
            assert not report.exists(), ctx
    assert seen["ok"] >= 100 and seen["refused"] >= 300, seen
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - rss0 < 400
    print(f"trace fuzz: {N} traces {seen}")
