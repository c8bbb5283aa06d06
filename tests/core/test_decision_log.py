"""One log line per decision, naming every object it touches (issue 12, "Logs"): through the real
controller and executor over the simulated cluster and clouds."""

from __future__ import annotations

import logging

import pytest

from tests.core.world import T0, World


def test_a_gang_launch_is_one_line_naming_its_instances(caplog: pytest.LogCaptureFixture) -> None:
    w = World(nodes=1)
    w.submit("hog", 8, 10 * 3600.0, may_burst=False)
    w.submit("gang", 32, 3600.0)
    caplog.set_level(logging.INFO, logger="burst")
    w.run(T0 + 3600)
    launched = [i.id for i in w.store.instances()]
    assert len(launched) == 4, launched
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("decision launch")]
    assert len(lines) == 1, lines  # not four identical lines
    assert lines[0].startswith("decision launch gang ") and "for job(s) gang" in lines[0]
    assert all(i in lines[0] for i in launched)


def test_an_orphan_terminate_names_the_instance(caplog: pytest.LogCaptureFixture) -> None:
    w = World(orphan_grace_s=60.0)
    cid = w.launch_directly("aws", "b-stray0000000001")
    caplog.set_level(logging.INFO, logger="burst")
    w.tick(T0 + 30)
    w.tick(T0 + 120)
    assert w.providers["aws"].instances[cid].terminated_at is not None
    lines = [r.getMessage() for r in caplog.records if "orphan" in r.getMessage()]
    assert lines == [f"decision terminate orphans on aws: {cid} (unknown or terminal in the store for over 60s)"]
