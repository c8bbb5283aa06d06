"""burst's configuration: pydantic models, loaded from YAML, validated before anything runs.

Every model forbids unknown keys, so a typo is an error rather than a silently ignored setting.
Errors come back as one line each, naming the file and the dotted key path::

    burst.yaml: policy.wait_threshold_min: Input should be greater than 0 (got -5)

The file is read within bounds (:func:`read_yaml`): at most 256 KiB, 50 levels deep, aliases
expanding to at most 10,000 values, no duplicate keys, not empty; at most 20 problems are listed,
then a count. No message repeats a value whole, nor a password (:mod:`burst.redact`).

Secrets are never part of this file: cloud credentials come from each SDK's default chain,
registry passwords and Slack tokens from the environment or secret files named here.

With no file at all, :func:`default_config` gives the embedded defaults: SQLite under
``.burst/``, the simulated on-prem cluster replaying the bundled ITP trace, simulated AWS and
Azure priced from the bundled catalog. Clouds are simulated only beside the simulated queue or
where the config says ``simulated: true``: a live config gets exactly the clouds it names, real
unless marked simulated (:meth:`BurstConfig.cloud_mode`).
"""

from __future__ import annotations

import re
import reprlib
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

# SUPPORTED_DATABASES and database_url_problem are re-exported: defined in burst.db_url (no pydantic).
from burst.db_url import SUPPORTED_DATABASES as SUPPORTED_DATABASES
from burst.db_url import clip as _clip
from burst.db_url import database_url_problem as database_url_problem
from burst.domain import Market
from burst.errors import ConfigError
from burst.redact import escape_control, redact
from policies import BudgetConfig, OverflowConfig, PolicyConfig, ScaleInConfig, SelectionConfig
from policies.fairness import FairnessConfig, TeamPolicy
from policies.grand_challenge import ChallengeSettings

MAX_CONFIG_BYTES = 256 * 1024  # a production config is a few kB; this bounds time and memory
MAX_DEPTH = 50  # nesting levels, counted through aliases too
MAX_EXPANDED_NODES = 10_000  # nodes of the document once every alias is expanded
MAX_ERROR_LINES = 20


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SimQueueSettings(_Strict):
    """The simulated on-prem cluster used by ``burst run`` on the embedded defaults."""

    nodes: int = Field(default=80, ge=1, le=100_000)
    gpus_per_node: int = Field(default=8, ge=1, le=64)
    gpu_model: str = "A100"
    trace: str | None = None  # None: the bundled ITP cluster04 trace
    trace_format: Literal["itp", "csv"] = "itp"
    speed: float = Field(default=600.0, gt=0, le=1e7)  # simulated seconds per wall second
    # `burst run` starts the replay this many days into the trace (the world before it is
    # fast-forwarded without bursting), so the demo opens on a busy cluster.
    start_day: float = Field(default=5.9, ge=0, le=3650)
    boot_s: float = Field(default=240.0, ge=0, le=7200)
    capacity_error_rate: float = Field(default=0.0, ge=0, le=1)


class NestedSettingsError(ValueError):
    """A section validated by its own model (queue.slurm, clouds.aws.settings, mirror, slack)
    failed: carries that model's errors so they are reported under the section's full key."""

    def __init__(self, prefix: tuple[str, ...], err: ValidationError) -> None:
        super().__init__(f"{'.'.join(prefix)}: {err.error_count()} problem(s)")
        self.prefix = prefix
        self.err = err


def validate_section(prefix: tuple[str, ...], model: Any, data: Any) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise NestedSettingsError(prefix, e) from None


class QueueSettings(_Strict):
    kind: Literal["sim", "slurm", "kubernetes", "jsonfile"] = "sim"
    sim: SimQueueSettings = Field(default_factory=SimQueueSettings)
    slurm: dict[str, Any] | None = None  # validated by burst.queues.slurm.settings.SlurmSettings
    kubernetes: dict[str, Any] | None = None  # validated by burst.queues.kubernetes.settings.K8sSettings
    jsonfile: str | None = None  # path of the JSON queue document (burst/queues/jsonfile.py)

    @model_validator(mode="after")
    def _kind_settings(self) -> QueueSettings:
        if self.kind == "slurm":
            from burst.queues.slurm.settings import SlurmSettings

            validate_section(("queue", "slurm"), SlurmSettings, self.slurm or {})
        if self.kind == "kubernetes":
            from burst.queues.kubernetes.settings import K8sSettings

            validate_section(("queue", "kubernetes"), K8sSettings, self.kubernetes or {})
        if self.kind == "jsonfile" and not self.jsonfile:
            raise ValueError("queue.jsonfile: the path of the queue document is required for kind jsonfile")
        return self


class CloudMode(StrEnum):
    """How a configured cloud is served: the real SDK provider, or the simulator's."""

    REAL = "real"
    SIMULATED = "simulated"


class CloudSettings(_Strict):
    enabled: bool = True
    # None: simulated exactly when the queue is (the embedded demo); a live queue gets the real
    # provider unless the config says ``simulated: true`` itself.
    simulated: bool | None = None
    settings: dict[str, Any] | None = None  # AwsSettings / AzureSettings


CLOUD_NAMES = ("aws", "azure")


class CloudsSettings(_Strict):
    """Which clouds burst may rent from. A cloud left out is absent on a live queue (a live
    controller never gets a fake cloud by default) and simulated on the simulated queue."""

    aws: CloudSettings | None = None
    azure: CloudSettings | None = None

    @field_validator("aws", "azure", mode="before")
    @classmethod
    def _mapping(cls, v: Any) -> Any:
        if v is None:  # `azure:` with nothing under it: say so rather than silently drop it
            raise ValueError("give the cloud's settings as a mapping (or leave the cloud out)")
        return v


def validate_cloud_settings(name: str, data: dict[str, Any] | None) -> Any:
    """The real provider's settings model for ``clouds.<name>.settings`` (imported only here)."""
    if name == "aws":
        from providers.aws import AwsSettings

        return validate_section(("clouds", "aws", "settings"), AwsSettings, data or {})
    from providers.azure import AzureSettings

    return validate_section(("clouds", "azure", "settings"), AzureSettings, data or {})


class OfferSettings(_Strict):
    """Which offers burst may buy. Empty lists mean any."""

    catalog: str | None = None  # a price CSV; None = bundled
    regions: list[str] = ["us-east-1", "us-west-2", "eastus", "westus2"]
    accelerators: list[str] = ["V100", "V100-32GB", "A100", "A100-80GB", "H100"]
    instance_types: list[str] = []
    min_gpu_memory_gib: float = Field(default=0.0, ge=0)
    allow_spot: bool = False


class PolicySettings(_Strict):
    """Overflow, selection and scale-in knobs, in minutes where a person would think in minutes."""

    burst_enabled: bool = True
    wait_target_min: float = Field(default=30.0, gt=0, le=7 * 24 * 60)
    wait_threshold_min: float | None = Field(default=None, gt=0, le=7 * 24 * 60)  # overrides the computed one
    safety_margin_min: float = Field(default=1.0, ge=0, le=60)
    default_boot_min: float = Field(default=4.0, ge=0, le=120)
    gang_wait_threshold_min: float | None = Field(default=None, gt=0, le=7 * 24 * 60)
    idle_timeout_min: float = Field(default=1.0, gt=0, le=24 * 60)
    join_timeout_min: float = Field(default=20.0, gt=0, le=24 * 60)
    pack_small_jobs: bool = True
    pack_min_saving: float = Field(default=0.15, ge=0, lt=1)
    gang_gpus_per_node: int = Field(default=8, ge=1, le=64)
    max_launches_per_tick: int = Field(default=200, ge=1, le=10_000)
    max_instances: int = Field(default=1000, ge=0, le=100_000)
    max_cloud_gpus: int = Field(default=8000, ge=0, le=1_000_000)
    reserve_hours_per_launch: float = Field(default=0.25, ge=0, le=24)


class TeamBudgetSettings(_Strict):
    """One team's budgets (issue 13); 0 = none. Soft: admins told, new on-demand requests need
    approval. Hard: no new launch for the team."""

    month_usd: float = Field(default=0.0, ge=0)
    day_usd: float = Field(default=0.0, ge=0)
    soft_month_usd: float = Field(default=0.0, ge=0)
    soft_day_usd: float = Field(default=0.0, ge=0)

    @model_validator(mode="after")
    def _soft_below_hard(self) -> TeamBudgetSettings:
        for period in ("month", "day"):
            soft, hard = getattr(self, f"soft_{period}_usd"), getattr(self, f"{period}_usd")
            if soft and hard and soft > hard:
                raise ValueError(f"soft_{period}_usd ({soft:g}) must not be above {period}_usd ({hard:g})")
        return self


class BudgetSettings(TeamBudgetSettings):
    """The site's budgets (``month_usd``/``day_usd``: hard caps, 0 = none; ``soft_*``: soft
    levels), each team's (``teams``), and which scheduler teams (Slurm accounts, Kubernetes
    namespaces or team labels) belong to which budget team (``team_of``; unmapped: itself).
    Admins change the numbers at run time with ``burst budget set`` or ``/burst budget set``."""

    teams: dict[str, TeamBudgetSettings] = Field(default_factory=dict)
    team_of: dict[str, str] = Field(default_factory=dict)

    @field_validator("teams", "team_of")
    @classmethod
    def _team_names(cls, v: dict[str, Any]) -> dict[str, Any]:
        for name in [*v, *(x for x in v.values() if isinstance(x, str))]:
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", name):
                raise ValueError(f"team name {name!r}: letters, digits, '.', '_' or '-', at most 63")
        return v


class TeamSettings(_Strict):
    """One team for fair share of burst capacity (policies/fairness.py). ``accounts`` (Slurm) and
    ``namespaces`` (Kubernetes namespaces, or values of the queue's team label) are the names the
    scheduler uses for this team's jobs; the team's own name always counts as one of them."""

    weight: float = Field(default=1.0, gt=0, le=1_000_000)
    max_gpus: int = Field(default=0, ge=0, le=1_000_000)  # concurrent burst GPUs; 0 = no limit
    accounts: list[str] = []
    namespaces: list[str] = []


def _team_members(teams: dict[str, TeamSettings]) -> dict[str, str]:
    """account / namespace -> team; a name claimed by two teams is a configuration error."""
    members: dict[str, str] = {}
    for team, t in sorted(teams.items()):
        for raw in [team, *t.accounts, *t.namespaces]:
            if members.get(raw, team) != team:
                raise ValueError(f"{raw!r} is mapped to both team {members[raw]!r} and team {team!r}")
            members[raw] = team
    return members


class BackoffSettings(_Strict):
    base_s: float = Field(default=60.0, gt=0)
    quota_base_s: float = Field(default=300.0, gt=0)
    cap_s: float = Field(default=1800.0, gt=0)

    @model_validator(mode="after")
    def _order(self) -> BackoffSettings:
        if self.cap_s < self.base_s:
            raise ValueError(f"cap_s ({self.cap_s:g}) must be >= base_s ({self.base_s:g})")
        return self


class GrandChallengeConfig(_Strict):
    """Timeline of a grand challenge (issue 10), in hours and minutes as an admin thinks."""

    notice_hours: list[float] = Field(default_factory=lambda: [24.0, 1.0])  # notices at T - each
    drain_window_min: float = Field(default=60.0, ge=0, le=7 * 24 * 60)  # reserve this long before
    checkpoint_grace_min: float = Field(default=5.0, ge=0, le=24 * 60)  # signal -> hold
    max_duration_hours: float = Field(default=14 * 24.0, gt=0, le=365 * 24)
    # a job released but still seen held this long after is released again (the first call never
    # reached the scheduler: a crash between recording and calling)
    release_retry_s: float = Field(default=60.0, gt=0, le=3600)
    restore_poll_s: float = Field(default=30.0, gt=0, le=3600)  # how soon to look again while restoring

    @field_validator("notice_hours")
    @classmethod
    def _notices(cls, v: list[float]) -> list[float]:
        if any(h <= 0 or h > 24 * 30 for h in v):
            raise ValueError("each notice is hours before the start, between 0 and 720")
        return sorted(set(v), reverse=True)

    def settings(self) -> ChallengeSettings:
        return ChallengeSettings(
            notice_offsets_s=tuple(h * 3600.0 for h in self.notice_hours),
            drain_window_s=self.drain_window_min * 60.0,
            checkpoint_grace_s=self.checkpoint_grace_min * 60.0,
            max_duration_s=self.max_duration_hours * 3600.0,
            release_retry_s=self.release_retry_s,
            restore_poll_s=self.restore_poll_s,
        )


class BurstConfig(_Strict):
    cluster: str = Field(default="burst-demo", min_length=1, max_length=63, pattern=r"^[a-z0-9][a-z0-9-]*$")
    database_url: str = "sqlite:///.burst/burst.db"
    tick_interval_s: float = Field(default=30.0, ge=1, le=3600)
    orphan_grace_s: float = Field(default=300.0, ge=0, le=86400)
    lease_ttl_s: float = Field(default=90.0, ge=5, le=3600)
    queue: QueueSettings = Field(default_factory=QueueSettings)
    clouds: CloudsSettings = Field(default_factory=CloudsSettings)
    offers: OfferSettings = Field(default_factory=OfferSettings)
    policy: PolicySettings = Field(default_factory=PolicySettings)
    budget: BudgetSettings = Field(default_factory=BudgetSettings)
    backoff: BackoffSettings = Field(default_factory=BackoffSettings)
    grand_challenge: GrandChallengeConfig = Field(default_factory=GrandChallengeConfig)
    teams: dict[str, TeamSettings] = Field(default_factory=dict)  # empty: no fair share, oldest first
    mirror: dict[str, Any] | None = None  # validated by providers.mirror_service.MirrorSettings
    slack: dict[str, Any] | None = None  # validated by the bot

    @field_validator("teams")
    @classmethod
    def _teams(cls, v: dict[str, TeamSettings]) -> dict[str, TeamSettings]:
        _team_members(v)
        return v

    @field_validator("database_url")
    @classmethod
    def _db(cls, v: str) -> str:
        problem = database_url_problem(v)
        if problem:
            raise ValueError(problem)
        return v

    @model_validator(mode="after")
    def _checks(self) -> BurstConfig:
        if self.policy.idle_timeout_min * 60 < self.tick_interval_s:
            raise ValueError("policy.idle_timeout_min must be at least one tick_interval_s")
        p = self.policy
        if p.wait_threshold_min is None and p.default_boot_min + p.safety_margin_min + self.tick_interval_s / 60 >= p.wait_target_min:
            raise ValueError(
                "policy.wait_target_min must exceed default_boot_min + safety_margin_min + one tick, "
                "or no instance can be ready in time"
            )
        for name in self.real_clouds():
            c = self.cloud(name)
            if c is None or c.settings is None:
                raise ValueError(
                    f"clouds.{name}: on a live queue this is the real {name} provider and needs its settings "
                    f"(clouds.{name}.settings), or say simulated: true"
                )
            validate_cloud_settings(name, c.settings)
        # A live config that names no cloud at all has nothing to burst to, which `config check`
        # reports; naming clouds only to disable every one of them while bursting is a mistake.
        if not self.enabled_clouds() and self.policy.burst_enabled and (self.queue.kind == "sim" or self._names_a_cloud()):
            raise ValueError("no cloud is enabled; set policy.burst_enabled: false or enable a cloud")
        if self.mirror is not None:
            from providers.mirror_service import MirrorSettings

            validate_section(("mirror",), MirrorSettings, self.mirror)
        if self.slack is not None:
            from burst.ondemand.settings import OnDemandSettings

            validate_section(("slack",), OnDemandSettings, self.slack)
        return self

    # ---- conversion to the pure policy's config --------------------------------------------
    def policy_config(self, name: str = "burst") -> PolicyConfig:
        p = self.policy
        return PolicyConfig(
            name=name,
            overflow=OverflowConfig(
                enabled=p.burst_enabled,
                wait_target_s=p.wait_target_min * 60,
                wait_threshold_s=p.wait_threshold_min * 60 if p.wait_threshold_min else None,
                safety_margin_s=p.safety_margin_min * 60,
                default_boot_s=p.default_boot_min * 60,
                gang_wait_threshold_s=p.gang_wait_threshold_min * 60 if p.gang_wait_threshold_min else None,
                max_launches_per_tick=p.max_launches_per_tick,
                max_instances=p.max_instances,
                max_cloud_gpus=p.max_cloud_gpus,
            ),
            selection=SelectionConfig(
                pack=p.pack_small_jobs,
                pack_min_saving=p.pack_min_saving,
                gang_gpus_per_node=p.gang_gpus_per_node,
                allow_spot=self.offers.allow_spot,
            ),
            scale_in=ScaleInConfig(idle_timeout_s=p.idle_timeout_min * 60, join_timeout_s=p.join_timeout_min * 60),
            budget=BudgetConfig(reserve_hours_per_launch=p.reserve_hours_per_launch),
            fairness=FairnessConfig(
                teams={n: TeamPolicy(weight=t.weight, max_gpus=t.max_gpus) for n, t in self.teams.items()},
                members=_team_members(self.teams),
            ),
            tick_interval_s=self.tick_interval_s,
        )

    def markets(self) -> tuple[Market, ...]:
        return (Market.ON_DEMAND, Market.SPOT) if self.offers.allow_spot else (Market.ON_DEMAND,)

    # ---- which clouds, and how --------------------------------------------------------------
    def cloud(self, name: str) -> CloudSettings | None:
        """``clouds.<name>`` as written; on the simulated queue a cloud left out is the default."""
        c: CloudSettings | None = getattr(self.clouds, name)
        if c is None and self.queue.kind == "sim":
            return CloudSettings()
        return c

    def cloud_mode(self, name: str) -> CloudMode | None:
        """REAL or SIMULATED for a cloud burst uses; None when it has no such cloud. A cloud is
        simulated only when the queue is simulated or the config says ``simulated: true``."""
        c = self.cloud(name)
        if c is None or not c.enabled:
            return None
        simulated = self.queue.kind == "sim" if c.simulated is None else c.simulated
        return CloudMode.SIMULATED if simulated else CloudMode.REAL

    def enabled_clouds(self) -> tuple[str, ...]:
        return tuple(c for c in CLOUD_NAMES if self.cloud_mode(c) is not None)

    def real_clouds(self) -> tuple[str, ...]:
        return tuple(c for c in CLOUD_NAMES if self.cloud_mode(c) is CloudMode.REAL)

    def simulated_clouds(self) -> tuple[str, ...]:
        return tuple(c for c in CLOUD_NAMES if self.cloud_mode(c) is CloudMode.SIMULATED)

    def _names_a_cloud(self) -> bool:
        return any(getattr(self.clouds, c) is not None for c in CLOUD_NAMES)


def default_config() -> BurstConfig:
    return BurstConfig.model_validate({})


def _fmt_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


# A bounded repr: never walks more of a value than it prints (a value may be an alias bomb's
# expansion, or a 10 MB string), and what it prints is redacted.
_REPR = reprlib.Repr()
_REPR.maxlevel = 2
_REPR.maxlist = _REPR.maxtuple = _REPR.maxset = _REPR.maxdict = 4
_REPR.maxstring = _REPR.maxother = 60


def _fmt_input(v: Any) -> str:
    s = redact(_REPR.repr(v))
    return s if len(s) <= 60 else s[:57] + "..."


def format_validation_errors(source: str, err: ValidationError, prefix: tuple[int | str, ...] = ()) -> list[str]:
    lines = []
    for e in err.errors(include_url=False, include_context=True, include_input=True):
        inner = (e.get("ctx") or {}).get("error")
        if isinstance(inner, NestedSettingsError):
            lines += format_validation_errors(source, inner.err, inner.prefix)
            continue
        loc = _fmt_loc(prefix + tuple(e.get("loc", ())))
        msg = e.get("msg", "invalid")
        if e.get("type") == "extra_forbidden":
            msg = "unknown key"
        elif e.get("loc", ())[-1:] == ("database_url",):
            pass  # database_url_problem says what is wrong without repeating the value
        elif "input" in e and e.get("type") != "missing" and not isinstance(e["input"], dict):
            msg = f"{msg} (got {_fmt_input(e['input'])})"
        lines.append(escape_control(redact(f"{source}: {_clip(loc, 120)}: {_clip(msg, 300)}")))
    return lines


def cap_lines(source: str, lines: list[str], limit: int = MAX_ERROR_LINES) -> list[str]:
    """The first ``limit`` problems, then one line counting the rest (a file of 100,000 unknown
    keys is one screen, not 100,000 lines)."""
    if len(lines) <= limit:
        return lines
    return [*lines[:limit], f"{source}: and {len(lines) - limit} more problem(s)"]


def parse_config(data: Any, source: str = "<config>") -> BurstConfig:
    """Validate ``data`` (a mapping). Raises ConfigError whose message lists every problem (at
    most :data:`MAX_ERROR_LINES` of them, then a count; ``err.lines``: one per line)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, f"top level must be a mapping of keys, got {type(data).__name__}")
    try:
        return BurstConfig.model_validate(data)
    except ValidationError as e:
        lines = cap_lines(source, format_validation_errors(source, e))
        err = ConfigError(source, "; ".join(line.split(": ", 1)[1] for line in lines))
        err.lines = lines  # type: ignore[attr-defined]
        raise err from None


# ---- reading YAML safely ----------------------------------------------------------------------



class _Refused(Exception):
    """A document refused while reading it; ``line`` is 1-based (0: not known)."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing duplicate keys, nesting deeper than :data:`MAX_DEPTH` (its
    composer recurses once per level: 5,000 levels are a RecursionError) and documents whose
    aliases expand to more than :data:`MAX_EXPANDED_NODES` nodes (a "billion laughs" bomb is a
    few hundred bytes; the expanded value is what validation and error messages would walk)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise _Refused(mark.line + 1, f"nested deeper than {MAX_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def get_single_node(self) -> Any:
        node = super().get_single_node()
        if node is not None and self._aliases:  # without aliases the size bound is enough
            _check_expansion(node)
        return node

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        # PyYAML's scalar constructors raise plain ValueError/TypeError/OverflowError for
        # `!!int x`, `!!float nope`, a 13th month in a timestamp...: name the line instead.
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, TypeError, OverflowError, ArithmeticError) as e:
            raise _Refused(node.start_mark.line + 1, f"cannot read the value {_REPR.repr(node.value) if isinstance(node, yaml.ScalarNode) else ''}: "
                                                     f"{_clip(redact(str(e).splitlines()[0] if str(e) else type(e).__name__), 120)}") from None

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: dict[tuple[str, str], int] = {}
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = (key_node.tag, key_node.value)
                line = key_node.start_mark.line + 1
                if key in seen:
                    raise _Refused(line, f"duplicate key {_clip(key_node.value, 60)!r} (lines {seen[key]} and {line}); "
                                         "the second would silently replace the first")
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _check_expansion(root: Any) -> None:
    """Expanded size and depth of the node graph, memoised per node (linear in the document,
    whatever it expands to), without recursion; a cycle (``&a [*a]``) is refused too."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        k = id(node)
        children = _children(node)
        if done:
            on_path.discard(k)
            size[k] = 1 + sum(size[id(c)] for c in children)
            depth[k] = 1 + max((depth[id(c)] for c in children), default=0)
            if size[k] > MAX_EXPANDED_NODES:
                raise _Refused(node.start_mark.line + 1,
                               f"aliases expand to more than {MAX_EXPANDED_NODES:,} values; refused (an alias bomb?)")
            if depth[k] > MAX_DEPTH:
                raise _Refused(node.start_mark.line + 1, f"nested deeper than {MAX_DEPTH} levels (through aliases)")
            continue
        if k in size:
            continue
        if k in on_path:
            raise _Refused(node.start_mark.line + 1, "an alias refers to its own anchor (a cycle)")
        on_path.add(k)
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in size)


def _children(node: Any) -> list[Any]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def read_yaml(path: Path | str, *, what: str = "config") -> Any:
    """One YAML document from ``path``, read within the bounds above. Raises ConfigError (one
    line, naming the file and line) for a file that cannot be read, is too big, is not UTF-8
    or not YAML, has duplicate keys, nests too deep or expands too far. An empty document (or
    one of comments only) is returned as None."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise ConfigError(str(p), f"cannot read {what}: {e.strerror}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(str(p), f"{what} is larger than {MAX_CONFIG_BYTES // 1024} KiB; refused")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigError(str(p), f"{what} is not UTF-8 text") from None
    try:
        loader = _BoundedLoader(text)
    except yaml.reader.ReaderError as e:  # the reader checks every character up front
        line = text[: e.position].count("\n") + 1
        raise ConfigError(f"{p}:{line}", f"not valid YAML: character {ord(e.character) if isinstance(e.character, str) else e.character:#06x} "
                                         "is not allowed (a control character?)") from None
    try:
        return loader.get_single_data()
    except _Refused as e:
        raise ConfigError(f"{p}:{e.line}" if e.line else str(p), e.message) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{p}:{mark.line + 1}" if mark is not None else str(p)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(where, redact(f"not valid YAML: {_clip(problem, 200)}")) from None
    except RecursionError:  # pragma: no cover - the depth bound comes first; belt and braces
        raise ConfigError(str(p), f"nested deeper than {MAX_DEPTH} levels") from None
    finally:
        loader.dispose()


def load_config(path: Path | str | None) -> BurstConfig:
    """The config at ``path`` (None: the embedded defaults). Raises ConfigError; an empty file is
    an error (``burst config check`` guards the systemd unit's start: an empty file there is a
    mistake, never "use the defaults")."""
    if path is None:
        return default_config()
    data = read_yaml(path)
    if data is None:
        raise ConfigError(str(path), "is empty: no settings in it (for the embedded defaults give no --config)")
    return parse_config(data, str(path))
