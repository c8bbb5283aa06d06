"""Site and team budgets (issue 13): the numbers, the launch checks, and what every surface shows.

A budget is a :class:`policies.budget.Limit`: the site's or one team's, monthly or daily, with a
soft level (admins are told once per crossing; new on-demand requests need an admin) and a hard
cap (no new launch of any kind: overflow, on-demand or a grand challenge's spill). Running work
is never stopped by a budget; burst stops adding capacity, says why (``burst status``,
``burst budget show``, ``/burst budget``, ``/burst status``, ``burst_budget_blocked``), and
resumes by itself when the budget allows again (a new day or month, or a raised cap).

* The numbers: the config's ``budget:`` section, overridden per budget and level by
  ``burst budget set`` / ``/burst budget set`` (kept in the store, audited).
* The launch check: :meth:`BudgetBook.checks_for` is the executor's ``budget_for``. Every hard cap
  that applies to a launch (the site's, its team's; month and day) becomes a
  :class:`burst.ports.BudgetCheck` in projection mode, which the store checks in the transaction
  that writes the intent, with each budget's row locked: spend since the period began, plus
  what every live instance is projected to cost to its expected end, plus this launch's
  projected cost (price x its expected life, at least the billing minimum), must stay within
  the cap. Concurrent launches therefore cannot overspend a hard cap together.
* Teams: an instance's team is its requester's team (on-demand) or its job's team, which the
  queues fill from the Slurm account or the Kubernetes namespace/team label; ``budget.team_of``
  maps those to budget teams.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from burst.domain import Launch, Timestamp, day_start, month_start
from burst.errors import BudgetExceeded
from burst.ports import BudgetCheck, Notifier, Store
from burst.store.ledger import BILLING_MINIMUM_S, projected_usd
from policies.budget import Level, Limit, Period, launch_usd, level_of, soft_reasons

if TYPE_CHECKING:  # annotations only: `burst status` reads budgets without pydantic (issue 15)
    from burst.config import BudgetSettings, BurstConfig, TeamBudgetSettings

log = logging.getLogger("burst.budgets")
_RANK = [Level.OK, Level.SOFT, Level.HARD]

SETTINGS_USER = "_budgets"  # the store's user-settings row that holds the overrides
OVERRIDES_KEY = "limits"  # JSON: {"site:month": {"soft": 10.0, "hard": 20.0}, ...}
WANTS_KEY = "wanted"  # JSON: {"site:month": {"period_start": t, "usd": smallest launch asked}}
ACTOR = "budget"
_TEAM = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")  # as the config's team names
_LEVELS = ("soft", "hard")


class BudgetInputError(ValueError):
    """A bad ``budget set``: the message names what is wrong; nothing was changed."""


@dataclass(frozen=True, slots=True)
class BudgetState:
    """One budget now: ``spent_usd`` (the ledger and live instances' accrual this period) and
    ``committed_usd`` (the ledger plus what live instances are projected to cost in all)."""

    limit: Limit
    period_start: Timestamp
    spent_usd: float
    committed_usd: float
    level: Level

    @property
    def blocked(self) -> bool:
        return self.level is Level.HARD

    def line(self) -> str:
        """One line for people: the same words on the CLI and in Slack."""
        lim = self.limit
        caps = ", ".join(
            f"{k} ${v:,.2f}" for k, v in (("soft", lim.soft_usd), ("hard", lim.hard_usd)) if v > 0
        ) or "no limit"
        text = f"{lim.name}: spent ${self.spent_usd:,.2f}, committed ${self.committed_usd:,.2f} ({caps})"
        if self.level is Level.HARD:
            until = "the next month" if lim.period is Period.MONTH else "the next day (UTC)"
            text += (f" - HARD CAP REACHED: no new cloud capacity{' for team ' + lim.team if lim.team else ''} "
                     f"until {until} or a raised cap; running work continues")
            over = self.committed_usd - lim.hard_usd
            if over >= 0.005:
                # Said plainly: running work is never stopped, so what is committed can pass the
                # cap (an overflow instance that keeps running, an on-demand one that booted late,
                # a cap lowered below what was already committed).
                text += f" (committed ${over:,.2f} over the cap by work already running)"
        elif self.level is Level.SOFT:
            text += " - past the soft level: new on-demand requests need an admin's approval"
        return text


def parse_budget_name(name: str) -> tuple[str, Period]:
    """``site:month`` / ``team:<team>:day`` -> (scope, period), or BudgetInputError."""
    scope, _, period = name.strip().rpartition(":")
    if period not in (Period.MONTH, Period.DAY) or not (scope == "site" or scope.startswith("team:")):
        raise BudgetInputError(
            f"budget {name!r}: expected site:month, site:day, team:<team>:month or team:<team>:day"
        )
    if scope != "site" and not _TEAM.fullmatch(scope.removeprefix("team:")):
        raise BudgetInputError(f"budget {name!r}: the team name must be letters, digits, '.', '_' or '-'")
    return scope, Period(period)


def parse_usd(text: str) -> float:
    """``500``, ``$1,200.50``, or ``0`` (no limit) -> dollars, or BudgetInputError."""
    raw = text.strip().removeprefix("$").replace(",", "")
    try:
        usd = float(raw)
    except ValueError:
        raise BudgetInputError(f"amount {text!r}: expected dollars, e.g. 500 or $1,200 (0 removes the limit)") from None
    if not math.isfinite(usd) or usd < 0 or usd > 1e9:
        raise BudgetInputError(f"amount {text!r}: must be between 0 and 1,000,000,000 dollars")
    return usd


class BudgetBook:
    """The budgets of one burst, over its store. Cheap to build; reads the store on each call."""

    def __init__(
        self, store: Store, settings: BudgetSettings, *, project_s: float, late_s: float = 0.0,
        notifier: Notifier | None = None,
    ) -> None:
        """``project_s``: how long a live instance without an expiry (overflow) is expected to
        keep running from now, and an overflow launch's expected life (the policy's
        ``reserve_hours_per_launch``). ``late_s``: how long past its time limit an on-demand
        instance may still bill (the controller's ticks to terminate it and see it gone)."""
        self.store = store
        self.settings = settings
        self.project_s = project_s
        self.late_s = late_s
        self.notifier = notifier
        # The smallest launch asked of each budget since the last watch(): a cap that leaves less
        # than that is reached for burst's purposes (nothing it wants to launch fits).
        self._asked: dict[str, tuple[Timestamp, float]] = {}

    # ---- the numbers -------------------------------------------------------------------------
    def team_of(self, team: str) -> str:
        return self.settings.team_of.get(team, team)

    def members(self, budget_team: str) -> tuple[str, ...]:
        """Scheduler teams that count as ``budget_team`` (besides itself)."""
        return tuple(sorted(k for k, v in self.settings.team_of.items() if v == budget_team and k != budget_team))

    def overrides(self) -> dict[str, dict[str, float]]:
        return _parse_overrides(self.store.get_user_setting(SETTINGS_USER, OVERRIDES_KEY))

    def _configured(self) -> dict[str, tuple[float, float]]:
        """(soft, hard) of every budget the config names, by budget name."""
        base: dict[str, tuple[float, float]] = {}

        def put(scope: str, t: TeamBudgetSettings) -> None:
            base[f"{scope}:month"] = (t.soft_month_usd, t.month_usd)
            base[f"{scope}:day"] = (t.soft_day_usd, t.day_usd)

        put("site", self.settings)
        for team, t in self.settings.teams.items():
            put(f"team:{team}", t)
        return base

    def limits(self) -> list[Limit]:
        """Every budget with a soft or hard level: the config's, with the stored overrides."""
        base = self._configured()
        for name, lv in self.overrides().items():
            soft, hard = base.get(name, (0.0, 0.0))
            base[name] = (lv.get("soft", soft), lv.get("hard", hard))
        out = []
        for name, (soft, hard) in sorted(base.items()):
            if soft > 0 or hard > 0:
                scope, period = parse_budget_name(name)
                out.append(Limit(scope, period, soft, hard))
        return out

    def set_limit(self, actor: str, name: str, level: str, amount: str, *, now: Timestamp) -> Limit:
        """An admin sets one level of one budget (``amount`` 0 removes it). Checked first (soft
        not above hard), then stored and audited; bad input raises BudgetInputError and changes
        nothing. The caller checks that ``actor`` is an admin.

        The overrides are one stored document: it is read, checked and written in one locked
        step (``Store.change_user_setting``), so two admins setting budgets at the same moment
        both get their change (neither overwrites the other with what it read before), and the
        soft-not-above-hard check sees the other's change."""
        scope, period = parse_budget_name(name)
        if level not in _LEVELS:
            raise BudgetInputError(f"level {level!r}: expected soft or hard")
        usd = parse_usd(amount)
        key = f"{scope}:{period}"
        conf_soft, conf_hard = self._configured().get(key, (0.0, 0.0))
        seen: dict[str, float] = {}

        def change(raw: str | None) -> str:
            over = _parse_overrides(raw)
            cur = over.get(key, {})
            was_soft, was_hard = cur.get("soft", conf_soft), cur.get("hard", conf_hard)
            soft = usd if level == "soft" else was_soft
            hard = usd if level == "hard" else was_hard
            if soft and hard and soft > hard:
                raise BudgetInputError(f"{key}: soft level ${soft:,.2f} would be above the hard cap ${hard:,.2f}")
            seen.update(soft=soft, hard=hard, previous=was_soft if level == "soft" else was_hard)
            over.setdefault(key, {})[level] = usd
            return json.dumps(over, sort_keys=True)

        self.store.change_user_setting(SETTINGS_USER, OVERRIDES_KEY, change, now=now)
        self.store.audit(
            at=now, actor=actor, kind="budget", subject=key, action="set",
            reason=f"{level} {'removed' if usd == 0 else f'set to ${usd:,.2f}'}",
            data={"level": level, "usd": usd, "previous": seen["previous"]},
        )
        return Limit(scope, period, seen["soft"], seen["hard"])

    # ---- the launch check ----------------------------------------------------------------------
    def _applies(self, limit: Limit, team: str) -> bool:
        return limit.scope == "site" or limit.team == self.team_of(team)

    def checks_for(self, launch: Launch, now: Timestamp) -> tuple[BudgetCheck, ...]:
        """The executor's ``budget_for``: one check per hard cap that applies to ``launch``."""
        asked = launch_usd(
            launch.offer.price_per_hour, now, launch.expires_at, self.project_s, BILLING_MINIMUM_S, self.late_s
        )
        out = []
        for lim in self.limits():
            if lim.hard_usd <= 0 or not self._applies(lim, launch.team):
                continue
            start = self.period_start(lim.period, now)
            prev = self._asked.get(lim.name)
            if prev is None or prev[0] != start or asked < prev[1]:
                self._asked[lim.name] = (start, asked)
            out.append(
                BudgetCheck(
                    scope=f"budget:{lim.name}",
                    cap_usd=lim.hard_usd,
                    period_start=start,
                    asked_usd=asked,
                    team=lim.team,
                    teams=self.members(lim.team) if lim.team else (),
                    project_live_s=self.project_s,
                    expiry_late_s=self.late_s,
                )
            )
        return tuple(out)

    def _check(self, lim: Limit, cap: float, asked: float, now: Timestamp) -> BudgetCheck:
        return BudgetCheck(
            scope=f"budget:{lim.name}", cap_usd=cap, period_start=self.period_start(lim.period, now),
            asked_usd=asked, team=lim.team, teams=self.members(lim.team) if lim.team else (),
            project_live_s=self.project_s, expiry_late_s=self.late_s,
        )

    def extend_checks(self, team: str, now: Timestamp, *, soft: bool) -> tuple[BudgetCheck, ...]:
        """The checks ``Store.extend_instance`` runs under the budgets' locks when an on-demand
        instance of ``team`` is extended: every hard cap that applies, and (``soft``: the
        extender is not an admin) every soft level too."""
        out = []
        for lim in self.limits():
            if self._applies(lim, team):
                out += [self._check(lim, cap, 0.0, now) for cap in (lim.hard_usd, lim.soft_usd if soft else 0.0) if cap > 0]
        return tuple(out)

    def request_checks(self, team: str, usd: float, now: Timestamp) -> tuple[tuple[BudgetCheck, ...], tuple[str, ...]]:
        """The checks (and their words) a new on-demand request of about ``usd`` must pass, under
        the budgets' locks, to be auto-approved (``QuotaCheck.budgets``): every soft level and
        hard cap of ``team``'s budgets, with the approved requests not launched yet on top."""
        checks: list[BudgetCheck] = []
        words: list[str] = []
        for lim in self.limits():
            if not self._applies(lim, team):
                continue
            if lim.hard_usd > 0:
                checks.append(self._check(lim, lim.hard_usd, usd, now))
                words.append(f"about ${usd:,.2f} would pass the {lim.name} hard cap of ${lim.hard_usd:,.2f} with the "
                             "requests approved but not launched yet; it would wait until the budget allows")
            if lim.soft_usd > 0:
                checks.append(self._check(lim, lim.soft_usd, usd, now))
                words.append(f"the {lim.name} budget would pass its soft level of ${lim.soft_usd:,.2f} with this "
                             "request and those approved but not launched yet")
        return tuple(checks), tuple(words)

    def refusal(self, e: BudgetExceeded) -> tuple[bool, str]:
        """(is it a hard cap, the words) for an extension a budget check refused."""
        name = e.scope.removeprefix("budget:")
        lim = next((x for x in self.limits() if x.name == name), None)
        over = e.committed + e.asked - e.cap
        hard = lim is None or abs(e.cap - lim.hard_usd) < 1e-9
        what = "hard cap" if hard else "soft level"
        return hard, (f"the {name} budget's {what} of ${e.cap:,.2f} would be passed by ${over:,.2f} "
                      f"(${e.committed:,.2f} committed, this extension adds ${e.asked:,.2f})")

    # ---- what the surfaces show ----------------------------------------------------------------
    @staticmethod
    def period_start(period: Period, now: Timestamp) -> Timestamp:
        return month_start(now) if period is Period.MONTH else day_start(now)

    def _in(self, lim: Limit, team: str) -> bool:
        return not lim.team or self.team_of(team) == lim.team

    def states(self, now: Timestamp, limits: Sequence[Limit] | None = None) -> list[BudgetState]:
        lims = list(self.limits() if limits is None else limits)
        if not lims:
            return []
        earliest = min(self.period_start(lim.period, now) for lim in lims)
        entries = self.store.spend_entries(since=earliest)
        live = self.store.live_instances()
        wanted = self._wanted()
        out = []
        for lim in lims:
            start = self.period_start(lim.period, now)
            ledger = sum(e.usd for e in entries if e.end >= start and self._in(lim, e.team))
            mine = [i for i in live if self._in(lim, i.team)]
            spent = ledger + sum(i.cost(now, BILLING_MINIMUM_S) for i in mine if i.launched_at is not None)
            committed = ledger + sum(projected_usd(i, now, self.project_s, self.late_s) for i in mine)
            level = level_of(committed, lim)
            want = wanted.get(lim.name)
            if level is not Level.HARD and want is not None and want[0] == start:
                # burst wants to launch something that no longer fits: held back, as at the cap
                level = max(level, level_of(committed, lim, adding_usd=want[1]), key=_RANK.index)
            out.append(BudgetState(lim, start, spent, committed, level))
        return out

    def _wanted(self) -> dict[str, tuple[Timestamp, float]]:
        raw = self.store.get_user_setting(SETTINGS_USER, WANTS_KEY)
        try:
            return {k: (float(v["period_start"]), float(v["usd"])) for k, v in json.loads(raw).items()} if raw else {}
        except (ValueError, TypeError, KeyError, AttributeError):
            return {}

    def _publish_wanted(self, now: Timestamp) -> None:
        """Hand the launches asked since the last call to every process that shows budgets
        (written only when it changed)."""
        asked, self._asked = self._asked, {}
        if asked == self._wanted():
            return
        doc = {k: {"period_start": t, "usd": usd} for k, (t, usd) in sorted(asked.items())}
        self.store.set_user_setting(SETTINGS_USER, WANTS_KEY, json.dumps(doc), now=now)

    def blocked(self, now: Timestamp) -> list[BudgetState]:
        return [s for s in self.states(now) if s.blocked]

    def request_reasons(self, team: str, usd: float, now: Timestamp) -> list[str]:
        """Why a new on-demand request of about ``usd`` for ``team`` needs an admin (soft levels
        passed, or a hard cap it would not fit under); [] when none."""
        lims = [lim for lim in self.limits() if self._applies(lim, team)]
        return soft_reasons([(s.limit, s.committed_usd) for s in self.states(now, lims)], usd)

    # ---- once per crossing ---------------------------------------------------------------------
    def watch(self, now: Timestamp) -> list[BudgetState]:
        """Each tick: meter every budget, and tell the admins once when a budget passes its soft
        level or reaches its hard cap (once per budget, level, period and cap: a new period or a
        changed cap is a new crossing). The crossing is recorded in the audit table, so a
        restarted controller does not tell again."""
        self._publish_wanted(now)
        states = self.states(now)
        from burst.metrics import observe_budgets

        observe_budgets([(st.limit.name, st.committed_usd, st.limit.hard_usd, st.blocked) for st in states])
        for st in states:
            if st.level is Level.OK:
                continue
            level = str(st.level)
            cap = st.limit.hard_usd if st.level is Level.HARD else st.limit.soft_usd
            mark = {"period_start": st.period_start, "cap": cap}
            seen = self.store.audit_rows(subject=st.limit.name, kind="budget", limit=50)
            if any(r.action == f"{level}-reached" and dict(r.data) == mark for r in seen):
                continue  # the common case, read without a lock
            # Decided and recorded under the budget's lock: two controllers (an old leader and
            # its successor) watching at once tell the admins once.
            if not self.store.audit_once(lock=f"budget:{st.limit.name}", at=now, actor=ACTOR, kind="budget",
                                         subject=st.limit.name, action=f"{level}-reached", reason=st.line(), data=mark):
                continue
            if self.notifier is not None:
                try:
                    self.notifier.notify("admins", f"burst budget {st.line()}")
                except Exception as e:  # noqa: BLE001 - best effort, never fails the tick
                    log.warning("budget notice not sent: %s", e)
        return states


def _parse_overrides(raw: str | None) -> dict[str, dict[str, float]]:
    if not raw:
        return {}
    try:
        data = json.loads(raw)
        return {str(k): {str(lv): float(x) for lv, x in v.items()} for k, v in data.items()}
    except (ValueError, TypeError, AttributeError) as e:
        log.warning("budget overrides unreadable, using the config's: %s", e)
        return {}


def format_states(states: Iterable[BudgetState]) -> list[str]:
    lines = [s.line() for s in states]
    return lines or ["no budgets set (burst budget set <budget> soft|hard <usd>)"]


def budget_book(cfg: BurstConfig, store: Store, notifier: Notifier | None = None) -> BudgetBook:
    """The budgets of ``cfg`` over ``store``: the daemon's, the CLI's and the bot's see the same
    numbers. An overflow launch is expected to run ``reserve_hours_per_launch`` at least; an
    on-demand instance may bill up to two ticks past its limit (seen expired, then seen gone).
    Lives here, not in the wiring, so read-only commands (``burst status``) need not import the
    controller."""
    return BudgetBook(
        store, cfg.budget, project_s=cfg.policy.reserve_hours_per_launch * 3600.0,
        late_s=2 * cfg.tick_interval_s, notifier=notifier,
    )
