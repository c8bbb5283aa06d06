"""Fuzz: 1,200 generated YAML config documents (seeded; tests/fuzz/generate.py).

Every document goes through :func:`burst.config.load_config`, the whole of what ``burst config
check``, ``burst run`` and the bot do with a config file before using it: it either loads or
raises ConfigError, within a time bound, with at most MAX_ERROR_LINES + 1 lines, each one line
naming the file, never a ``database_url`` password. One document in twelve also goes through
``burst config check`` itself (the CLI runner costs ~50 ms a call): same verdict, exit 0 or 2,
never a traceback; and some refused ones through ``burst run --once``: refused, nothing created.
Memory is bounded over the whole run (one alias bomb used to take 3 GB).
"""

from __future__ import annotations

import resource
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from burst.cli import app
from burst.config import MAX_ERROR_LINES, load_config
from burst.errors import ConfigError
from tests.fuzz.generate import config_documents
from tests.support.logging_state import restore_logging

pytestmark = pytest.mark.usefixtures("restore_logging")
_ = restore_logging  # the fixture, imported for usefixtures

N = 1200
PER_INPUT_S = 2.0  # CPU seconds (a loaded machine must not fail it); a bomb used to take 37 s
runner = CliRunner()
SECRETS = ("hunter2", "s3cr3t")


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _lines(e: ConfigError) -> list[str]:
    return list(getattr(e, "lines", None) or [str(e)])


def test_fuzz_config_documents(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    docs = config_documents(N)
    cfg = tmp_path / "burst.yaml"
    rss0 = _rss_mib()
    seen = {"ok": 0, "refused": 0, "cli": 0, "run": 0}
    for k, doc in enumerate(docs):
        cfg.write_bytes(doc)
        ctx = (k, doc[:200])
        t0 = time.process_time()
        try:
            load_config(cfg)
            lines: list[str] = []
        except ConfigError as e:
            lines = _lines(e)
        assert time.process_time() - t0 < PER_INPUT_S, ctx
        if lines:
            seen["refused"] += 1
            assert len(lines) <= MAX_ERROR_LINES + 1, (ctx, len(lines))
            for ln in lines:
                assert "\n" not in ln and "\r" not in ln and len(ln) < 1000, (ctx, ln)
                assert ln.startswith(str(cfg)), (ctx, ln)
                assert not any(s in ln for s in SECRETS), (ctx, ln)
        else:
            seen["ok"] += 1
        if k % 12 == 0:
            seen["cli"] += 1
            res = runner.invoke(app, ["config", "check", str(cfg)])
            out = res.stdout + res.stderr
            assert res.exception is None or isinstance(res.exception, SystemExit), (ctx, repr(res.exception))
            assert "Traceback" not in out and not any(s in out for s in SECRETS), (ctx, out[-800:])
            assert res.exit_code == (2 if lines else 0), (ctx, res.exit_code, out[-800:])
            errs = [ln for ln in res.stderr.splitlines() if ln.strip()]
            assert len(errs) == len(lines) and all(ln.startswith("error: ") for ln in errs), (ctx, errs, lines)
            if lines and seen["run"] < 20:
                seen["run"] += 1
                res = runner.invoke(app, ["run", "--once", "--config", str(cfg)])
                assert res.exit_code == 2 and "Traceback" not in res.stdout + res.stderr, ctx
                assert sorted(p.name for p in tmp_path.iterdir()) == ["burst.yaml"], ctx  # no .burst/, no db
    assert seen["ok"] >= 50 and seen["refused"] >= 500 and seen["run"] == 20, seen
    assert _rss_mib() - rss0 < 400, (rss0, _rss_mib())
    print(f"config fuzz: {N} documents {seen}")
