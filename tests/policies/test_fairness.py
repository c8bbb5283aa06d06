"""policies/fairness.py: team limits on concurrent burst GPUs, weighted fair share (progressive
filling over the dominant share), priority then age within a team; and its hook in decide."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from burst.domain import InstanceState, Launch
from policies import PolicyConfig, Snapshot, decide
from policies.fairness import Claim, FairnessConfig, TeamPolicy, Usage, fair_order
from policies.model import OverflowConfig
from tests.policies.helpers import A100_8_AZ1, MIN, NOW, full_cluster, instance, job

TEAMS = FairnessConfig(
    teams={"vision": TeamPolicy(weight=2.0), "nlp": TeamPolicy(weight=1.0)},
    members={"cv-lab": "vision", "vision": "vision", "nlp": "nlp"},
)


def _claim(key: str, team: str, gpus: int = 8, priority: int = 0, age: float = 0.0) -> Claim:
    return Claim(key, team, gpus, priority, NOW - age)


def test_progressive_filling_follows_the_weights() -> None:
    claims = [_claim(f"v{i}", "vision", age=100 - i) for i in range(6)] + [_claim(f"n{i}", "nlp", age=200 - i) for i in range(6)]
    fo = fair_order(claims, {}, TEAMS)
    # nlp's jobs are all older, yet vision (weight 2) gets two of every three grants.
    first_six = fo.order[:6]
    assert sum(k.startswith("v") for k in first_six) == 4
    assert sum(k.startswith("n") for k in first_six) == 2


def test_usage_already_running_counts() -> None:
    claims = [_claim("v0", "vision"), _claim("n0", "nlp")]
    # vision already holds 32 burst GPUs (share 16), nlp 8 (share 8): nlp goes first.
    fo = fair_order(claims, {"vision": Usage(32), "nlp": Usage(8)}, TEAMS)
    assert fo.order == ("n0", "v0")


def test_team_at_its_limit_gets_nothing_while_another_below_does() -> None:
    cfg = replace(TEAMS, teams={"vision": TeamPolicy(2.0, max_gpus=16), "nlp": TeamPolicy(1.0, max_gpus=0)})
    claims = [_claim("v0", "vision"), _claim("n0", "nlp"), _claim("n1", "nlp")]
    fo = fair_order(claims, {"vision": Usage(16), "nlp": Usage(64)}, cfg)
    assert fo.order == ("n0", "n1")
    assert fo.over_limit == ("v0",)
    assert "team vision at its limit of 16 burst GPUs" in fo.notes[0]


def test_within_a_team_priority_then_age() -> None:
    claims = [
        _claim("old-low", "nlp", priority=0, age=900),
        _claim("new-high", "nlp", priority=5, age=10),
        _claim("mid-high", "nlp", priority=5, age=300),
        _claim("new-low", "nlp", priority=0, age=5),
    ]
    assert fair_order(claims, {}, TEAMS).order == ("mid-high", "new-high", "old-low", "new-low")


# ---- the hook in decide ---------------------------------------------------------------------

def _snap(pending, instances=()) -> Snapshot:  # noqa: ANN001
    return Snapshot(
        now=NOW, cluster="c", pending=tuple(pending), running=(), nodes=full_cluster(), instances=tuple(instances),
        offers=(A100_8_AZ1,),
    )


def _teamed(jid: str, team: str, waited: float, priority: int = 0):  # noqa: ANN202
    return replace(job(jid, 8, waited), team=team, priority=priority)


def test_decide_under_a_fleet_limit_serves_teams_by_share_not_age() -> None:
    pending = [_teamed(f"n{i}", "nlp", 90 * MIN + i) for i in range(4)] + [_teamed(f"v{i}", "cv-lab", 40 * MIN + i) for i in range(4)]
    tight = OverflowConfig(max_cloud_gpus=24)
    old = [a for a in decide(_snap(pending), PolicyConfig(overflow=tight)).actions if isinstance(a, Launch)]
    assert sorted(j for a in old for j in a.for_jobs) == ["n1", "n2", "n3"]  # without teams: oldest first
    fair = PolicyConfig(overflow=tight, fairness=TEAMS)
    launched = [a for a in decide(_snap(pending), fair).actions if isinstance(a, Launch)]
    teams = sorted(a.team for a in launched)
    assert teams == ["cv-lab", "cv-lab", "nlp"]  # vision (cv-lab account) 16 GPUs : nlp 8


def test_decide_holds_back_a_team_at_its_limit() -> None:
    cfg = replace(TEAMS, teams={"vision": TeamPolicy(2.0, max_gpus=8), "nlp": TeamPolicy(1.0)})
    running = replace(instance("i-v", InstanceState.JOINED), team="vision")
    pending = [_teamed("v0", "vision", 60 * MIN), _teamed("n0", "nlp", 40 * MIN)]
    plan = decide(_snap(pending, [running]), PolicyConfig(fairness=cfg))
    launched = [a for a in plan.actions if isinstance(a, Launch)]
    assert [a.for_jobs for a in launched] == [("n0",)]
    assert any("team vision at its limit of 8 burst GPUs" in n for n in plan.notes)


# ---- properties -------------------------------------------------------------------------------

TEAM_NAMES = ("a", "b", "c")
claims_st = st.lists(
    st.builds(
        lambda t, g, p, s: (t, g, p, s),
        st.sampled_from(TEAM_NAMES), st.sampled_from([1, 2, 4, 8, 16]), st.integers(0, 3), st.floats(0, 1e4),
    ),
    max_size=30,
)
cfg_st = st.builds(
    lambda ws, ls: FairnessConfig(teams={t: TeamPolicy(w, m) for t, w, m in zip(TEAM_NAMES, ws, ls, strict=True)}),
    st.tuples(*[st.sampled_from([0.5, 1.0, 2.0, 3.0])] * 3),
    st.tuples(*[st.sampled_from([0, 8, 16, 32, 64])] * 3),
)
usage_st = st.fixed_dictionaries({t: st.sampled_from([0, 8, 16, 24]) for t in TEAM_NAMES})


def _build(raw) -> list[Claim]:  # noqa: ANN001
    return [Claim(f"k{i}", t, g, p, s) for i, (t, g, p, s) in enumerate(raw)]


@settings(max_examples=400, deadline=None)
@given(claims_st, cfg_st, usage_st)
def test_never_exceeds_a_team_limit(raw, cfg, used) -> None:  # noqa: ANN001
    claims = _build(raw)
    fo = fair_order(claims, {t: Usage(g) for t, g in used.items()}, cfg)
    assert sorted(fo.order + fo.over_limit) == sorted(c.key for c in claims)
    by_key = {c.key: c for c in claims}
    for t in TEAM_NAMES:
        limit = cfg.teams[t].max_gpus
        granted = sum(by_key[k].gpus for k in fo.order if by_key[k].team == t)
        if limit and used[t] <= limit:
            assert used[t] + granted <= limit


@settings(max_examples=400, deadline=None)
@given(claims_st, cfg_st, usage_st, st.integers(0, 200))
def test_a_team_below_its_share_is_never_starved_by_one_above_it(raw, cfg, used, capacity) -> None:  # noqa: ANN001
    """Serve the fair order until the first claim that no longer fits a capacity (a fleet limit
    or a budget). For any team A left with demand (not held by its own limit) and any team B
    that got capacity: when B got its last grant, B's share was no higher than A's final share.
    So capacity never went to a team already above a team that was waiting."""
    claims = _build(raw)
    fo = fair_order(claims, {t: Usage(g) for t, g in used.items()}, cfg)
    by_key = {c.key: c for c in claims}
    share = {t: used[t] / cfg.teams[t].weight for t in TEAM_NAMES}
    gpus = dict(used)
    left = capacity
    before_last: dict[str, float] = {}
    served = 0
    for k in fo.order:
        c = by_key[k]
        if c.gpus > left:
            break
        before_last[c.team] = share[c.team]
        left -= c.gpus
        gpus[c.team] += c.gpus
        share[c.team] = gpus[c.team] / cfg.teams[c.team].weight
        served += 1
    waiting = {by_key[k].team for k in fo.order[served:]}
    for a in waiting:
        for b, s in before_last.items():
            if b != a:
                assert s <= share[a] + 1e-9, (a, b, s, share[a])


# ---- the teams: config section --------------------------------------------------------------

def test_teams_config_maps_accounts_and_namespaces_to_teams() -> None:
    from burst.config import parse_config

    cfg = parse_config(
        {"teams": {"vision": {"weight": 2, "max_gpus": 64, "accounts": ["cv-lab"], "namespaces": ["vision-train"]}, "nlp": {}}},
        "burst.yaml",
    ).policy_config()
    f = cfg.fairness
    assert f.enabled
    assert f.team_of("cv-lab") == f.team_of("vision-train") == f.team_of("vision") == "vision"
    assert f.team_of("nlp") == "nlp" and f.team_of("other") == "other"
    assert f.policy("vision") == TeamPolicy(weight=2.0, max_gpus=64)
    assert not parse_config({}, "burst.yaml").policy_config().fairness.enabled  # no teams: B1 unchanged


def test_teams_config_refuses_a_name_in_two_teams_in_one_line() -> None:
    import pytest

    from burst.config import parse_config
    from burst.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        parse_config({"teams": {"a": {"accounts": ["x"]}, "b": {"namespaces": ["x"]}}}, "burst.yaml")
    assert str(e.value) == "burst.yaml: teams: Value error, 'x' is mapped to both team 'a' and team 'b'"
    with pytest.raises(ConfigError) as e:
        parse_config({"teams": {"a": {"weight": 0}}}, "burst.yaml")
    assert str(e.value) == "burst.yaml: teams.a.weight: Input should be greater than 0 (got 0)"
