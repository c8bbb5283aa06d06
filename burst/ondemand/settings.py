"""The ``slack:`` section of the burst config, and the store keys the on-demand parts share."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

from policies.requests import REMINDER_BEFORE_S

SSH_KEY_SETTING = "ssh_public_key"
SETTINGS_USER = "_ondemand"
SLACK_USER_ID = re.compile(r"[UW][A-Z0-9]{2,}")  # what Slack's user ids look like  # the service publishes the SSH user here for the controller's DMs


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Quota(_Strict):
    """Limits for one user or team. ``None``: no limit of that kind."""

    max_gpus: int | None = Field(default=None, ge=0)
    gpu_hours_month: float | None = Field(default=None, ge=0)
    budget_month_usd: float | None = Field(default=None, ge=0)  # teams only


class OnDemandSettings(_Strict):
    """The ``slack:`` section of the burst config (no secrets here: tokens come from the
    environment)."""

    admins: list[str] = Field(default_factory=list, description="Slack user ids of admins")
    admin_usergroup: str = Field(default="", description="Slack user group id whose members are admins")
    admin_channel: str = Field(default="", description="channel id for approvals and admin alerts")
    announce_channel: str = Field(default="", description="channel id for messages to everyone")
    teams: dict[str, str] = Field(default_factory=dict, description="user id -> team")
    default_team: str = "default"
    user_quota: Quota = Quota(max_gpus=8, gpu_hours_month=500)
    team_quota: Quota = Quota(max_gpus=32, gpu_hours_month=5000)
    user_quotas: dict[str, Quota] = Field(default_factory=dict)
    team_quotas: dict[str, Quota] = Field(default_factory=dict)
    budget_month_usd: float = Field(default=0.0, ge=0, description="on-demand budget, all teams; 0 = none")
    budget_day_usd: float = Field(default=0.0, ge=0, description="shown by status; 0 = none")
    default_hours: float = Field(default=4.0, gt=0)
    max_hours: float = Field(default=72.0, gt=0)
    max_gpus: int = Field(default=64, ge=1)
    allowed_clouds: list[str] = Field(default_factory=lambda: ["aws", "azure"])
    allowed_regions: list[str] = Field(default_factory=list, description="empty: any region with offers")
    allowed_gpu_models: list[str] = Field(default_factory=list, description="empty: any model with offers")
    ssh_user: str = "ubuntu"
    reminder_before_s: float = Field(default=REMINDER_BEFORE_S, gt=0)
    http_max_body_bytes: int = Field(
        default=512 * 1024, ge=4096, le=16 * 1024 * 1024, description="larger requests get 413, unread"
    )
    http_read_timeout_s: float = Field(
        default=5.0, gt=0, le=60, description="a request body must arrive within this (else 408)"
    )
    user_ids: dict[str, str] = Field(
        default_factory=dict,
        description="scheduler user name -> Slack user id, for DMs about their jobs (grand challenges, spot requeues)",
    )
    email_domain: str = Field(
        default="",
        description="if set, a scheduler user with no user_ids entry is looked up as user@domain "
        "(users.lookupByEmail; needs the users:read and users:read.email scopes)",
    )
    allow_self_approval: bool = Field(
        default=False, description="may an admin approve their own request above quota (default: no; another admin must)"
    )

    @field_validator("ssh_user")
    @classmethod
    def _user(cls, v: str) -> str:
        if not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", v):
            raise ValueError("not a valid Unix user name")
        return v

    @field_validator("user_ids")
    @classmethod
    def _slack_ids(cls, v: dict[str, str]) -> dict[str, str]:
        bad = sorted(k for k, u in v.items() if not SLACK_USER_ID.fullmatch(u))
        if bad:
            raise ValueError(f"not Slack user ids (U… or W…) for: {', '.join(bad)}")
        return v

    @field_validator("email_domain")
    @classmethod
    def _domain(cls, v: str) -> str:
        if v and not re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}\.)+[A-Za-z]{2,63}", v):
            raise ValueError("not a domain name (e.g. example.org)")
        return v

    @field_validator("allowed_clouds")
    @classmethod
    def _clouds(cls, v: list[str]) -> list[str]:
        bad = [c for c in v if c not in ("aws", "azure")]
        if bad:
            raise ValueError(f"unknown clouds: {bad}")
        return v
