"""Top-level pytest configuration. Component fixtures live next to the tests that use them
(tests/<area>/conftest.py) and in tests/support/, so areas stay independent."""

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from tests.support.logging_state import logging_restored

# Hypothesis' too_slow health check times example generation on the wall clock, so a loaded CI
# machine can fail a property test that has no bug. Timing is never what a property proves here
# (every @settings already says deadline=None): the default profile drops that one check. Tests
# that name their own suppress_health_check list keep it (they list too_slow where it matters).
settings.register_profile("burst", settings.get_profile("default"), deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("burst")


# Commands run in-process (`burst run`, `burst bot`) configure the root logger; every test gets
# logging back as it found it, so a level or handler left by one test never decides another's
# output (test_gc_cli's one-line checks failed after a test that left the root logger at INFO).
@pytest.fixture(autouse=True)
def _logging_as_found() -> Iterator[None]:
    yield from logging_restored()
