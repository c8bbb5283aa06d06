"""Reporting a notice through the scheduler the node joined (see :mod:`burst.agent`)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from typing import Protocol

from burst.agent.metadata import Notice
from policies.spot import notice_reason


class ReportError(Exception):
    """The scheduler did not take the report; the agent tries again on its next poll."""


class Reporter(Protocol):
    def report(self, notice: Notice) -> None: ...


class SlurmDrain:
    """``scontrol update nodename=<node> state=drain reason="burst:spot-reclaim at <T>"``.
    Draining an already drained node replaces its reason, so a node burst drained for idleness
    still gets the notice. Idempotent."""

    def __init__(
        self, node: str, *, scontrol: Sequence[str] = ("scontrol",), env: Mapping[str, str] | None = None,
        timeout_s: float = 15.0,
    ) -> None:
        self.node = node
        self.scontrol = tuple(scontrol)
        self.env = dict(env) if env is not None else None
        self.timeout_s = timeout_s

    def report(self, notice: Notice) -> None:
        args = [*self.scontrol, "update", f"nodename={self.node}", "state=drain", f"reason={notice_reason(notice.reclaim_at)}"]
        try:
            cp = subprocess.run(
                args, capture_output=True, text=True, timeout=self.timeout_s,
                env={**os.environ, **self.env} if self.env is not None else None,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise ReportError(f"{' '.join(args[:3])}: {e}") from None
        if cp.returncode != 0:
            raise ReportError(f"scontrol update nodename={self.node}: {cp.stderr.strip() or cp.returncode}")
