"""Budget gate for planned launches.

The policy admits launches, oldest work first, while the money already spent this period plus a
reserve per launch (the instance's price times ``reserve_hours_per_launch``, the least it will
cost before anyone can notice it is idle) stays within the cap. This is the *planning* check; the
executor repeats the check atomically with the intent row (Store.create_intent with a
BudgetCheck), which is what guarantees that concurrent writers cannot overspend a hard cap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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
