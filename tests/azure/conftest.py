from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.arm_standin import ArmStandin, serve_standin


@pytest.fixture
def standin() -> Iterator[ArmStandin]:
    yield from serve_standin()
