"""A fixture that puts logging back as it was: ``burst run`` and ``burst bot`` configure the
root logger (burst.logs.setup) and quiet library loggers, which must not leak into later tests."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from burst.logs import QUIET_LIBRARIES


def logging_restored() -> Iterator[None]:
    """Generator body shared by the fixtures: snapshot logging, yield, put it back."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    libs = {name: logging.getLogger(name).level for name in (*QUIET_LIBRARIES, "apscheduler.scheduler")}
    filters = list(logging.getLogger("apscheduler.scheduler").filters)
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, lvl in libs.items():
        logging.getLogger(name).setLevel(lvl)
    logging.getLogger("apscheduler.scheduler").filters[:] = filters


@pytest.fixture
def restore_logging() -> Iterator[None]:
    yield from logging_restored()
