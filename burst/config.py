"""burst's configuration: pydantic models, loaded from YAML, validated before anything runs.

Every model forbids unknown keys, so a typo is an error rather than a silently ignored setting.
Errors come back as one line each, naming the file and the dotted key path::

    burst.yaml: policy.wait_threshold_min: Input should be greater than 0 (got -5)

Secrets are never part of this file: cloud credentials come from each SDK's default chain,
registry passwords and Slack tokens from the environment or secret files named here.

With no file at all, :func:`default_config` gives the embedded defaults: SQLite under
``.burst/``, the simulated on-prem cluster replaying the bundled ITP trace, simulated AWS and
Azure priced from the bundled catalog.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from burst.domain import Market
from burst.errors import ConfigError
from policies import BudgetConfig, OverflowConfig, PolicyConfig, ScaleInConfig, SelectionConfig
from policies.grand_challenge import ChallengeSettings


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


class CloudSettings(_Strict):
    enabled: bool = True
    simulated: bool = True  # False: the real SDK provider with ``settings``
    settings: dict[str, Any] | None = None  # AwsSettings / AzureSettings


class CloudsSettings(_Strict):
    aws: CloudSettings = Field(default_factory=CloudSettings)
    azure: CloudSettings = Field(default_factory=CloudSettings)

    @model_validator(mode="after")
    def _real_settings(self) -> CloudsSettings:
        if self.aws.enabled and not self.aws.simulated:
            from providers.aws import AwsSettings

            validate_section(("clouds", "aws", "settings"), AwsSettings, self.aws.settings or {})
        if self.azure.enabled and not self.azure.simulated:
            try:
                from providers.azure import AzureSettings  # type: ignore[import-not-found,import-untyped,unused-ignore]  # issue 11
            except ImportError as e:  # the Azure provider lands with its own issue
                raise ValueError("the real Azure provider is not available in this build; set azure.simulated: true") from e
            validate_section(("clouds", "azure", "settings"), AzureSettings, self.azure.settings or {})
        return self


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
    mirror: dict[str, Any] | None = None  # validated by providers.mirror_service.MirrorSettings
    slack: dict[str, Any] | None = None  # validated by the bot

    @field_validator("database_url")
    @classmethod
    def _db(cls, v: str) -> str:
        if not (v.startswith("sqlite:") or v.startswith("postgresql")):
            raise ValueError("must be a sqlite:/// or postgresql+psycopg:// URL")
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
        if not (self.clouds.aws.enabled or self.clouds.azure.enabled) and self.policy.burst_enabled:
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
            tick_interval_s=self.tick_interval_s,
        )

    def markets(self) -> tuple[Market, ...]:
        return (Market.ON_DEMAND, Market.SPOT) if self.offers.allow_spot else (Market.ON_DEMAND,)

    def enabled_clouds(self) -> tuple[str, ...]:
        return tuple(c for c in ("aws", "azure") if getattr(self.clouds, c).enabled)


def default_config() -> BurstConfig:
    return BurstConfig.model_validate({})


def _fmt_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _fmt_input(v: Any) -> str:
    s = repr(v)
    return s if len(s) <= 60 else s[:57] + "..."


def format_validation_errors(source: str, err: ValidationError, prefix: tuple[int | str, ...] = ()) -> list[str]:
    lines = []
    for e in err.errors():
        inner = (e.get("ctx") or {}).get("error")
        if isinstance(inner, NestedSettingsError):
            lines += format_validation_errors(source, inner.err, inner.prefix)
            continue
        loc = _fmt_loc(prefix + tuple(e.get("loc", ())))
        msg = e.get("msg", "invalid")
        if e.get("type") == "extra_forbidden":
            msg = "unknown key"
        elif "input" in e and e.get("type") != "missing" and not isinstance(e["input"], dict):
            msg = f"{msg} (got {_fmt_input(e['input'])})"
        lines.append(f"{source}: {loc}: {msg}")
    return lines


def parse_config(data: Any, source: str = "<config>") -> BurstConfig:
    """Validate ``data`` (a mapping). Raises ConfigError whose message lists every problem."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, f"top level must be a mapping of keys, got {type(data).__name__}")
    try:
        return BurstConfig.model_validate(data)
    except ValidationError as e:
        lines = format_validation_errors(source, e)
        err = ConfigError(source, "; ".join(line.split(": ", 1)[1] for line in lines))
        err.lines = lines  # type: ignore[attr-defined]
        raise err from None


def load_config(path: Path | str | None) -> BurstConfig:
    if path is None:
        return default_config()
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(str(p), f"cannot read config: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(str(p), "config is not UTF-8 text") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{p}:{mark.line + 1}" if mark is not None else str(p)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(where, f"not valid YAML: {problem}") from None
    return parse_config(data, str(p))
