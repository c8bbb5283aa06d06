"""Budget gate for planned launches.

The policy admits launches, oldest work first, while the money already spent this period plus a
reserve per launch (the instance's price times ``reserve_hours_per_launch``, the least it will
cost before anyone can notice it is idle) stays within the cap. This is the *planning* check; the
executor repeats the check atomically with the intent row (Store.create_intent with a
BudgetCheck), which is what guarantees that concurrent writers cannot overspend a hard cap.

The site and team budgets (monthly and daily, each with a soft and a hard level) are described by
:class:`Limit`; :func:`level_of`, :func:`launch_usd` and :func:`soft_reasons` are their pure
rules. ``burst/budgets.py`` reads the numbers and applies them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from burst.domain import Launch
from policies.model import BudgetConfig, SpendView


@dataclass(frozen=True, slots=True)
class BudgetResult:
    admitted: tuple[Launch, ...]
    refused: tuple[Launch, ...]
    headroom_usd: float | None  # None when there is no cap


def admit(launches: Sequence[Launch], spend: SpendView, cfg: BudgetConfig) -> BudgetResult:
    caps = []
    if spend.month_cap_usd > 0:
        caps.append(spend.month_cap_usd - spend.month_usd)
    if spend.day_cap_usd > 0:
        caps.append(spend.day_cap_usd - spend.day_usd)
    if not caps:
        return BudgetResult(tuple(launches), (), None)
    headroom = min(caps)
    admitted: list[Launch] = []
    refused: list[Launch] = []
    for launch in launches:
        need = launch.offer.price_per_hour * cfg.reserve_hours_per_launch
        if need <= headroom:
            admitted.append(launch)
            headroom -= need
        else:
            refused.append(launch)
    return BudgetResult(tuple(admitted), tuple(refused), headroom)


# ---- site and team budgets (issue 13): levels, pure ------------------------------------------


class Period(StrEnum):
    MONTH = "month"
    DAY = "day"


class Level(StrEnum):
    OK = "ok"
    SOFT = "soft"  # admins told once; new on-demand requests need an admin's approval
    HARD = "hard"  # no new launch of any kind; running work is never stopped


@dataclass(frozen=True, slots=True)
class Limit:
    """One budget: ``scope`` is ``"site"`` or ``"team:<name>"``; ``soft_usd``/``hard_usd`` of 0
    mean none."""

    scope: str
    period: Period
    soft_usd: float = 0.0
    hard_usd: float = 0.0

    @property
    def name(self) -> str:
        """The label burst shows and meters it by, e.g. ``site:month``, ``team:ml:day``."""
        return f"{self.scope}:{self.period}"

    @property
    def team(self) -> str:
        return self.scope.removeprefix("team:") if self.scope.startswith("team:") else ""


def level_of(committed_usd: float, limit: Limit, *, adding_usd: float = 0.0) -> Level:
    """Where ``committed_usd`` (spent plus what live instances are projected to cost) stands, with
    ``adding_usd`` on top. A cap is reached when nothing more fits: at the hard cap a launch
    of any size is refused."""
    total = committed_usd + adding_usd
    if limit.hard_usd > 0 and (total > limit.hard_usd + 1e-9 or (adding_usd == 0 and total >= limit.hard_usd - 1e-9)):
        return Level.HARD
    if limit.soft_usd > 0 and total >= limit.soft_usd - 1e-9:
        return Level.SOFT
    return Level.OK


def launch_usd(
    price_per_hour: float, now: float, expires_at: float | None, project_s: float, minimum_s: float, late_s: float = 0.0
) -> float:
    """A launch's projected cost: its price for its expected life (to its expiry, the requested
    duration of an on-demand request, plus ``late_s``; else ``project_s``), at least the billing
    minimum. The same rule prices live instances (:func:`burst.store.ledger.projected_usd`)."""
    life = (expires_at - now + late_s) if expires_at is not None else project_s
    return max(minimum_s, life) * price_per_hour / 3600.0


def soft_reasons(states: Sequence[tuple[Limit, float]], adding_usd: float) -> list[str]:
    """Why a new on-demand request of about ``adding_usd`` needs an admin: every budget (with
    its committed spend) at or past its soft level with the request on top."""
    out = []
    for limit, committed in states:
        lvl = level_of(committed, limit, adding_usd=adding_usd)
        if lvl is Level.HARD:
            out.append(f"about ${adding_usd:,.2f} would pass the {limit.name} hard cap of ${limit.hard_usd:,.2f} "
                       f"(${committed:,.2f} committed); it would wait until the budget allows")
        elif lvl is Level.SOFT:
            out.append(f"the {limit.name} budget is past its soft level of ${limit.soft_usd:,.2f} "
                       f"(${committed + adding_usd:,.2f} with this request)")
    return out
