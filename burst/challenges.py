"""Grand-challenge bookkeeping for the bot: schedule, list, show and cancel challenges, and say
who one would preempt. The lifecycle itself (notify, drain, preempt, restore) is the
controller's; this module only records and reads challenges in the store.

:class:`ChallengeBook` is reached through ``OnDemandService.challenges``: it shares the
service's store, clock and admin check. Its methods were moved here unchanged from the former
``burst/ondemand.py``.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from burst.domain import ChallengeState, GrandChallenge, Timestamp
from burst.errors import DuplicateRecord
from burst.ondemand.errors import ServiceError
from burst.ondemand.messages import clean_text, fmt_time, slack_escape
from burst.ports import Clock, Store

CHALLENGE_ID = re.compile(r"^gc-[0-9a-f]{6}$")


@dataclass(frozen=True, slots=True)
class Impact:
    """Who a grand challenge would preempt."""

    jobs: int
    users: tuple[str, ...] = ()
    source: str = ""


ImpactFn = Callable[[Timestamp, float], Impact]


class ChallengeBook:
    """The bot's view of grand challenges. ``require_admin(user, action)`` raises
    :class:`~burst.ondemand.errors.Denied` (and audits) for a non-admin; ``last_tick()`` is the
    controller's last tick summary (who runs on-prem), used when no ``impact`` function is given."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        require_admin: Callable[[str, str], None],
        last_tick: Callable[[], dict[str, object]],
        impact: ImpactFn | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.require_admin = require_admin
        self.last_tick = last_tick
        self.impact_fn = impact

    def impact(self, start_at: Timestamp, duration_s: float) -> Impact:
        if self.impact_fn is not None:
            return self.impact_fn(start_at, duration_s)
        t = self.last_tick()
        running = t.get("running")
        at = t.get("at")
        users_raw = t.get("running_users")
        users = tuple(u for u in users_raw if isinstance(u, str)) if isinstance(users_raw, list) else ()
        if isinstance(running, int):
            return Impact(running, users, f"controller tick at {fmt_time(float(at)) if isinstance(at, int | float) else '-'}")
        return Impact(0, (), "no controller tick recorded yet")

    def gc_schedule(
        self, admin: str, start_at: Timestamp, duration_s: float, job: str, note: str = ""
    ) -> GrandChallenge:
        self.require_admin(admin, "schedule grand challenges")
        now = self.clock.now()
        if start_at <= now:
            raise ServiceError("The start time is in the past.")
        if not 0 < duration_s <= 14 * 86400:
            raise ServiceError("Duration must be more than 0 and at most 14 days.")
        for gc in self.store.challenges(
            states=(ChallengeState.SCHEDULED, ChallengeState.NOTIFIED, ChallengeState.DRAINING,
                    ChallengeState.PREEMPTED, ChallengeState.RUNNING)
        ):
            if start_at < gc.start_at + gc.duration_s and gc.start_at < start_at + duration_s:
                raise ServiceError(f"It overlaps grand challenge `{gc.id}` ({fmt_time(gc.start_at)}).")
        for _ in range(8):
            gc = GrandChallenge(
                id=f"gc-{secrets.token_hex(3)}", name=job, start_at=start_at, duration_s=duration_s,
                command=job, created_by=admin, note=clean_text(note),
            )
            try:
                return self.store.add_challenge(gc, now=now, actor=admin)
            except DuplicateRecord:
                continue
        raise ServiceError("Could not allocate a challenge id; try again.")  # pragma: no cover

    def gc_list(self) -> list[GrandChallenge]:
        return self.store.challenges(
            states=(ChallengeState.SCHEDULED, ChallengeState.NOTIFIED, ChallengeState.DRAINING,
                    ChallengeState.PREEMPTED, ChallengeState.RUNNING, ChallengeState.RESTORING)
        )

    def gc_get(self, cid: str) -> GrandChallenge:
        gc = self.store.get_challenge(cid) if CHALLENGE_ID.match(cid) else None
        if gc is None:
            raise ServiceError(f"No grand challenge `{slack_escape(cid[:20])}`.")
        return gc

    def gc_cancel(self, admin: str, cid: str) -> GrandChallenge:
        self.require_admin(admin, "cancel grand challenges")
        gc = self.gc_get(cid)
        if gc.state not in (ChallengeState.SCHEDULED, ChallengeState.NOTIFIED):
            raise ServiceError(f"Grand challenge `{gc.id}` is {gc.state}; only a scheduled one can be cancelled here.")
        return self.store.transition_challenge(
            gc.id, ChallengeState.CANCELLED, now=self.clock.now(), actor=admin, reason="cancelled by an admin"
        )
