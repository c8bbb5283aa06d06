"""Top-level pytest configuration. Component fixtures live next to the tests that use them
(tests/<area>/conftest.py) and in tests/support/, so areas stay independent."""

from collections.abc import Iterator

import pytest

from tests.support.logging_state import logging_restored


# Commands run in-process (`burst run`, `burst bot`) configure the root logger; every test gets
# logging back as it found it, so a level or handler left by one test never decides another's
# output (test_gc_cli's one-line checks failed after a test that left the root logger at INFO).
@pytest.fixture(autouse=True)
def _logging_as_found() -> Iterator[None]:
    yield from logging_restored()
