"""Issue 13, budget property: whatever the interleaving of ticks, concurrent on-demand launches
(the controller's launch of an approved request) and extensions of running instances, boots,
releases, time limits, raised caps and concurrent ``budget set`` calls (which may lower a cap below
what is committed: running work is never stopped), no launch or extension takes spend plus what
live instances are still committed to cost past a hard cap (nor further past it, when a cap was
lowered), and no concurrent ``budget set`` is lost.

The launches go through the production path: :meth:`burst.budgets.BudgetBook.checks_for` (the
executor's ``budget_for``) and ``Store.create_intent``; the extensions through
:meth:`burst.budgets.BudgetBook.extend_checks` and ``Store.extend_instance`` (the service's
extend); the sets through :meth:`burst.budgets.BudgetBook.set_limit`; several at once from threads with a
store each (as separate controller processes would) on real PostgreSQL and SQLite, and in turn on
the memory store. The invariant is computed here from first principles (ledger rows, and each
live instance's price up to its time limit plus the termination lag), not with the code under
test. Budgets: the site's month, team ``a``'s day, team ``b``'s month (``b`` is two Slurm
accounts mapped in config).
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, text

from burst.budgets import BudgetBook, BudgetInputError
from burst.config import BudgetSettings
from burst.domain import Instance, InstanceState, Launch, Market, Offer, Purpose, day_start, month_start
from burst.errors import BudgetExceeded
from burst.ports import Store
from burst.store import migrate
from burst.store.memory import MemoryStore
from burst.store.sql import SqlStore

T0 = 1772409600.0 + 20 * 3600.0  # 2026-03-02T20:00:00Z: a day boundary falls within a few ticks
LATE_S = 60.0  # two 30 s ticks
PROJECT_S = 900.0
MARGIN_S = 1800.0  # policies.requests.LAUNCH_EXPIRY_MARGIN_S: the tag's expiry covers boot
PRICES = (1.0, 3.0, 12.0)
HOURS = (0.25, 0.5, 1.0, 2.0)
TEAMS = ("a", "b-one", "b-two", "c")  # b-one and b-two are team b's accounts
CAPS = {"site:month": 40.0, "team:a:day": 9.0, "team:b:month": 14.0}


def budget_settings() -> BudgetSettings:
    return BudgetSettings.model_validate({
        "month_usd": CAPS["site:month"],
        "teams": {"a": {"day_usd": CAPS["team:a:day"]}, "b": {"month_usd": CAPS["team:b:month"]}},
        "team_of": {"b-one": "b", "b-two": "b"},
    })


def offer(price: float) -> Offer:
    return Offer("aws", f"g.{int(price)}", "us-east-1", "us-east-1a", "A100", 1, 80.0, price, Market.ON_DEMAND)


# ---- steps ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LaunchMany:
    """k on-demand launches and extensions released together (approved requests of several
    users/controllers, and users extending their running instances)."""

    who: tuple[tuple[int, int, int], ...]  # (team index, price index, hours index) each
    extend: tuple[tuple[int, int], ...] = ()  # (running instance pick, hours index) each


@dataclass(frozen=True)
class SetMany:
    """Admins' ``budget set`` calls released together: (budget, level, dollars) each."""

    sets: tuple[tuple[str, str, float], ...]


@dataclass(frozen=True)
class Boot:
    pick: int


@dataclass(frozen=True)
class Release:
    pick: int


@dataclass(frozen=True)
class Tick:
    dt_s: float
    lag_s: float  # how late past its limit the controller terminates an expired instance (<= LATE_S)


@dataclass(frozen=True)
class Raise:
    budget: str
    usd: float


steps = st.one_of(
    st.builds(LaunchMany, st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2), st.integers(0, 3)),
                                   min_size=1, max_size=4).map(tuple),
              st.lists(st.tuples(st.integers(0, 50), st.integers(0, 3)), max_size=2).map(tuple)),
    st.builds(SetMany, st.lists(st.tuples(st.sampled_from(sorted(CAPS)), st.sampled_from(("soft", "hard", "hard")),
                                          st.floats(1.0, 50.0)), min_size=1, max_size=3).map(tuple)),
    st.builds(Boot, st.integers(0, 50)),
    st.builds(Release, st.integers(0, 50)),
    st.builds(Tick, st.floats(1.0, 5 * 3600.0), st.floats(0.0, LATE_S)),
    st.builds(Raise, st.sampled_from(sorted(CAPS)), st.floats(0.0, 10.0)),
)


# ---- the world --------------------------------------------------------------------------------


@dataclass
class World:
    stores: list[Store]
    now: float = T0
    caps: dict[str, float] = field(default_factory=lambda: dict(CAPS))
    ids: itertools.count[int] = field(default_factory=itertools.count)
    launched: int = 0
    refused: int = 0
    extended: int = 0
    ext_refused: int = 0
    sets: int = 0
    set_refused: int = 0
    # Per budget, the most it may hold: its cap, or what was already committed when a cap was
    # lowered below it (running work is never stopped; it only must not grow).
    ceiling: dict[str, float] = field(default_factory=lambda: dict(CAPS))

    @property
    def store(self) -> Store:
        return self.stores[0]

    def book(self, store: Store) -> BudgetBook:
        return BudgetBook(store, budget_settings(), project_s=PROJECT_S, late_s=LATE_S)

    def launch_many(self, step: LaunchMany) -> None:
        extends: list[tuple[Instance, float]] = []
        for pick, h in step.extend:  # a user extends a running instance (one still planned boots first)
            inst = self._pick(pick, {InstanceState.PLANNED, InstanceState.RUNNING})
            if inst is not None and inst.state is InstanceState.PLANNED:
                self.boot(Boot(0), inst)
                inst = self.store.get_instance(inst.id)
            if inst is not None and inst.state is InstanceState.RUNNING:
                extends.append((inst, HOURS[h]))
        launches = []
        for team_i, price_i, hours_i in step.who:
            n = next(self.ids)
            launches.append(Launch(
                intent_id=f"od-{n}", offer=offer(PRICES[price_i]), purpose=Purpose.ON_DEMAND, reason="approved",
                owner=f"u{n}", team=TEAMS[team_i], request_id=f"r-{n}",
                expires_at=self.now + HOURS[hours_i] * 3600.0 + MARGIN_S,
            ))
        barrier = threading.Barrier(len(launches) + len(extends))
        errors: list[BaseException] = []
        lock = threading.Lock()

        def extend(j: int) -> None:
            store = self.stores[(len(launches) + j) % len(self.stores)]
            inst, hours = extends[j]
            checks = self.book(store).extend_checks(inst.team, self.now, soft=False)
            barrier.wait()
            try:
                store.extend_instance(inst.id, hours * 3600.0, now=self.now, actor=inst.owner, reason="extended",
                                      budget=checks)
                with lock:
                    self.extended += 1
            except BudgetExceeded:
                with lock:
                    self.ext_refused += 1
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        def one(i: int) -> None:
            if i >= len(launches):
                extend(i - len(launches))
                return
            store = self.stores[i % len(self.stores)]
            a = launches[i]
            inst = Instance(
                id=a.intent_id, cloud="aws", region="us-east-1", zone="us-east-1a", instance_type=a.offer.instance_type,
                market=Market.ON_DEMAND, purpose=a.purpose, gpus=1, gpu_model="A100", price_per_hour=a.offer.price_per_hour,
                owner=a.owner, team=a.team, created_at=self.now, request_id=a.request_id, expires_at=a.expires_at,
            )
            barrier.wait()
            try:
                store.create_intent(inst, now=self.now, actor="controller", reason=a.reason,
                                    budget=self.book(store).checks_for(a, self.now))
                with lock:
                    self.launched += 1
            except BudgetExceeded:
                with lock:
                    self.refused += 1
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(launches) + len(extends))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors

    def _pick(self, pick: int, states: set[InstanceState]) -> Instance | None:
        live = [i for i in self.store.live_instances() if i.state in states]
        return live[pick % len(live)] if live else None

    def boot(self, step: Boot, inst: Instance | None = None) -> None:
        inst = inst or self._pick(step.pick, {InstanceState.PLANNED})
        if inst is None:
            return
        s = self.store
        if self.now - inst.created_at > MARGIN_S:  # took too long: the intent is given up
            s.transition_instance(inst.id, InstanceState.TERMINATED, now=self.now, actor="t", reason="abandoned")
            return
        s.transition_instance(inst.id, InstanceState.LAUNCHING, now=self.now, actor="t", reason="accepted",
                              cloud_id=f"i-{inst.id}", launched_at=self.now)
        s.transition_instance(inst.id, InstanceState.RUNNING, now=self.now, actor="t", reason="running")
        hours = round((inst.expires_at or 0) - inst.created_at - MARGIN_S) / 3600.0
        s.update_instance(inst.id, expires_at=self.now + hours * 3600.0)  # READY: the limit starts now

    def _end(self, inst: Instance, at: float) -> None:
        s = self.store
        if inst.state is InstanceState.PLANNED:
            s.transition_instance(inst.id, InstanceState.TERMINATED, now=at, actor="t", reason="released")
            return
        s.transition_instance(inst.id, InstanceState.TERMINATING, now=at, actor="t", reason="released")
        s.transition_instance(inst.id, InstanceState.TERMINATED, now=at, actor="t", reason="gone")

    def release(self, step: Release) -> None:
        inst = self._pick(step.pick, {InstanceState.PLANNED, InstanceState.RUNNING})
        if inst is not None:
            self._end(inst, self.now)

    def tick(self, step: Tick) -> None:
        self.now += step.dt_s
        for inst in self.store.live_instances():
            if inst.expires_at is not None and inst.expires_at + step.lag_s <= self.now:
                self._end(inst, inst.expires_at + step.lag_s)  # the controller, a little late

    def raise_cap(self, step: Raise) -> None:
        self.caps[step.budget] += step.usd
        self.book(self.store).set_limit("admin", step.budget, "hard", f"{self.caps[step.budget]:.6f}", now=self.now)
        self.ceiling[step.budget] = max(self.caps[step.budget], self.committed()[step.budget])

    def set_many(self, step: SetMany) -> None:
        """Concurrent sets from separate stores: each that was not refused is in force unless
        another of the same budget and level came with it (then one of theirs is)."""
        barrier = threading.Barrier(len(step.sets))
        done: list[tuple[str, str, float]] = []
        errors: list[BaseException] = []
        lock = threading.Lock()

        def one(i: int) -> None:
            name, level, usd = step.sets[i]
            book = self.book(self.stores[i % len(self.stores)])
            barrier.wait()
            try:
                book.set_limit("admin", name, level, f"{usd:.6f}", now=self.now)
                with lock:
                    done.append(step.sets[i])
            except BudgetInputError:  # a soft level above the hard cap, or the reverse: refused
                with lock:
                    self.set_refused += 1
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(step.sets))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        self.sets += len(done)
        now = {lim.name: lim for lim in self.book(self.store).limits()}
        for name, level, _ in done:
            got = getattr(now[name], f"{level}_usd")
            assert any(round(u, 6) == round(got, 6) for n, lv, u in done if (n, lv) == (name, level)), (
                f"{name} {level}: a concurrent set was lost ({got} in force; sets {done})")
        committed = self.committed()
        for name in CAPS:
            cap = now[name].hard_usd
            if cap != self.caps[name]:
                self.caps[name] = cap
                self.ceiling[name] = max(cap, committed[name])

    def apply(self, step: object) -> None:
        if isinstance(step, LaunchMany):
            self.launch_many(step)
        elif isinstance(step, Boot):
            self.boot(step)
        elif isinstance(step, Release):
            self.release(step)
        elif isinstance(step, Tick):
            self.tick(step)
        elif isinstance(step, Raise):
            self.raise_cap(step)
        elif isinstance(step, SetMany):
            self.set_many(step)

    # ---- the invariant, from first principles -------------------------------------------------
    def committed(self) -> dict[str, float]:
        """Per budget: its ledger this period plus each live instance's price from its launch (or
        intent) to its time limit plus the termination lag."""
        team_of = {"b-one": "b", "b-two": "b"}
        starts = {"month": month_start(self.now), "day": day_start(self.now)}
        entries = self.store.spend_entries(since=min(starts.values()))
        live = self.store.live_instances()
        out = {}
        for name in CAPS:
            scope, _, period = name.rpartition(":")
            team = scope.removeprefix("team:") if scope != "site" else ""

            def mine(t: str, team: str = team) -> bool:
                return not team or team_of.get(t, t) == team

            total = sum(e.usd for e in entries if e.end >= starts[period] and mine(e.team))
            for i in live:
                if mine(i.team):
                    assert i.expires_at is not None
                    start = i.launched_at if i.launched_at is not None else i.created_at
                    total += max(60.0, max(i.expires_at + LATE_S, self.now) - start) * i.price_per_hour / 3600.0
            out[name] = total
        return out

    def check(self) -> None:
        """Nothing is committed past a cap; past a lowered one, never more than when it was
        lowered. The ceiling comes down to the cap as work ends and never goes back up."""
        for name, total in self.committed().items():
            assert total <= self.ceiling[name] + 1e-6, (
                f"{name}: committed {total:.4f} > cap {self.caps[name]} (ceiling {self.ceiling[name]:.4f})")
            self.ceiling[name] = max(self.caps[name], min(self.ceiling[name], total))


def run(world: World, plan: list[object]) -> None:
    world.check()
    for step in plan:
        world.apply(step)
        world.check()


COUNTS: dict[str, list[int]] = {}


def _count(kind: str, w: World, n_steps: int) -> None:
    c = COUNTS.setdefault(kind, [0] * 8)
    for k, v in enumerate((1, n_steps, w.launched, w.refused, w.extended, w.ext_refused, w.sets, w.set_refused)):
        c[k] += v


# ---- memory store: many examples ---------------------------------------------------------------


@settings(max_examples=1200, deadline=None)
@given(st.lists(steps, min_size=1, max_size=30))
def test_hard_caps_hold_on_the_memory_store(plan: list[object]) -> None:
    w = World([MemoryStore()])
    run(w, plan)
    _count("memory", w, len(plan))


# ---- SQL stores: concurrent writers, each with its own engine ---------------------------------


def _reset(url: str) -> None:
    eng = create_engine(url)
    with eng.begin() as c:
        for table in ("spend_ledger", "audit", "instances", "budget_locks", "user_settings"):
            c.execute(text(f"DELETE FROM {table}"))
    eng.dispose()


@pytest.fixture(params=[pytest.param("postgres", marks=pytest.mark.postgres), "sqlite"])
def sql_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    u = str(request.getfixturevalue("postgres_url")) if request.param == "postgres" else f"sqlite:///{tmp_path}/b.db"
    migrate.upgrade(u)
    return u


def test_hard_caps_hold_on_sql_stores_under_concurrency(sql_url: str) -> None:
    stores: list[Store] = [SqlStore.from_url(sql_url, upgrade=False) for _ in range(4)]
    n = 0

    @settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(st.lists(steps, min_size=1, max_size=20))
    def prop(plan: list[object]) -> None:
        nonlocal n
        _reset(sql_url)
        w = World(stores)
        run(w, plan)
        n += 1
        _count("postgres" if sql_url.startswith("postgresql") else "sqlite", w, len(plan))

    try:
        prop()
    finally:
        for s in stores:
            s.close()
    assert n >= 120


def test_concurrent_launches_against_a_small_cap_admit_only_what_fits(sql_url: str) -> None:
    """Eight launches of 1 h at $1/h released together against team a's $9 day cap: each is
    projected at $1 x (1 h + the 30 min boot margin + the 60 s lag) = $1.52, so exactly five fit."""
    stores: list[Store] = [SqlStore.from_url(sql_url, upgrade=False) for _ in range(8)]
    w = World(stores, now=T0 - 12 * 3600.0)  # midday: the day does not turn over
    w.launch_many(LaunchMany(tuple((0, 0, 2) for _ in range(8))))
    assert (w.launched, w.refused) == (5, 3)
    w.check()
    for s in stores:
        s.close()


def teardown_module() -> None:
    """Print the counts the issue asks for (run with -s to see them)."""
    for kind, (examples, n_steps, launched, refused, ext, ext_refused, sets, set_refused) in sorted(COUNTS.items()):
        print(f"budget property [{kind}]: {examples} interleavings, {n_steps} steps, "
              f"{launched} launches admitted, {refused} refused at a hard cap; {ext} extensions admitted, "
              f"{ext_refused} refused; {sets} budget sets, {set_refused} refused (soft above hard)")
