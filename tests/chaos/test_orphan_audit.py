"""Regression: an orphan's termination is audited even if the controller dies inside the call.

Found by the chaos run (crash point ``orphan-terminate``): the controller used to terminate the
orphan first and write the audit row afterwards, so a kill between the two left a deletion with no
audit row, and no later tick could notice (the instance is gone, so it is no orphan any more).
The audit row is now written before the call.
"""

from __future__ import annotations

import pytest

from burst.errors import TransientProviderError
from tests.core.world import T0, TICK, World


def _world_with_orphan() -> tuple[World, str]:
    w = World(orphan_grace_s=60.0)
    w.submit("hog", 8, 100_000)
    cid = w.launch_directly("aws", "b-stranger")
    w.tick(T0 + TICK)  # first seen: the grace starts
    return w, cid


def test_orphan_audit_survives_a_crash_inside_the_terminate_call() -> None:
    w, cid = _world_with_orphan()
    aws = w.providers["aws"]
    real = aws.terminate

    def dies_after_the_call(ids):  # type: ignore[no-untyped-def]
        real(ids)
        raise SystemExit("kill -9")  # not a ProviderError: the process dies mid-tick

    aws.terminate = dies_after_the_call  # type: ignore[method-assign]
    with pytest.raises(SystemExit):
        w.tick(T0 + TICK + 60.0)
    assert aws.list_instances() == ()  # the cloud deleted it...
    rows = w.store.audit_rows(kind="orphan")
    assert [(r.subject, r.action) for r in rows] == [(cid, "terminate-orphan")]  # ...and the books say so
    assert "b-stranger" in rows[0].reason


def test_failed_orphan_terminate_is_audited_and_retried_after_another_grace() -> None:
    w, cid = _world_with_orphan()
    aws = w.providers["aws"]
    real = aws.terminate

    def throttled(ids):  # type: ignore[no-untyped-def]
        raise TransientProviderError("throttled", provider="aws", code="RequestLimitExceeded")

    aws.terminate = throttled  # type: ignore[method-assign]
    failed_at = T0 + TICK + 60.0
    w.tick(failed_at)
    assert [c.cloud_id for c in aws.list_instances()] == [cid]
    assert [r.action for r in reversed(w.store.audit_rows(kind="orphan"))] == ["terminate-orphan", "terminate-orphan-failed"]
    aws.terminate = real  # type: ignore[method-assign]
    w.tick(failed_at + 30.0)  # within the new grace: left alone
    assert [c.cloud_id for c in aws.list_instances()] == [cid]
    w.tick(failed_at + 60.0)
    assert aws.list_instances() == ()
    assert [r.action for r in reversed(w.store.audit_rows(kind="orphan"))] == [
        "terminate-orphan", "terminate-orphan-failed", "terminate-orphan",
    ]
