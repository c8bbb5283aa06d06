"""Everything a running bot needs besides its listeners: the secrets, the bot's identity, and the
factory that builds the Bolt app over the store named by the burst config.

Secrets come from the environment (``SLACK_SIGNING_SECRET``, ``SLACK_BOT_TOKEN``,
``SLACK_APP_TOKEN``) or from a file named by the same variable with ``_FILE`` appended (Docker and
Kubernetes secrets). They are held in :class:`Secret`, whose ``repr`` hides the value, and never
appear in a log line or an error message: errors name the variable, not its value.

The bot's identity (``auth.test``: team, bot user and bot id) is fetched once, by the process that
starts the server, and handed to every worker: workers answer ``authorize`` from it and never call
``auth.test`` themselves, so a worker costs Slack nothing when it starts and a request costs no
round trip.
"""

from __future__ import annotations

import functools
import logging
import os
import secrets
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slack_bolt import App
from slack_bolt.authorization import AuthorizeResult
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.lazy import AckGate, YieldingExecutor, gated

log = logging.getLogger("burst.bot")

SLACK_API_URL = "https://slack.com/api/"


class BotSetupError(Exception):
    """The bot cannot start: a missing secret, a bad config, Slack refusing the token. The message
    is one line, fit for the user, and never holds a secret. ``exit_code``: 2 for bad input (the
    default), 1 for a failure that may pass (Slack unreachable)."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Secret:
    """A string that does not show itself in ``repr``/``str`` (so not in a traceback or a log)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __reduce__(self) -> tuple[Any, ...]:  # picklable, for process-based workers
        return (Secret, (self._value,))


def read_secret(name: str, *, env: dict[str, str] | None = None) -> Secret:
    """``$NAME``, else the contents of the file ``$NAME_FILE`` (stripped). Raises BotSetupError
    naming the variable when neither gives a non-empty value."""
    env = dict(os.environ) if env is None else env
    value = env.get(name, "").strip()
    if value:
        return Secret(value)
    path = env.get(f"{name}_FILE", "").strip()
    if not path:
        raise BotSetupError(f"{name} is not set (set it, or {name}_FILE to a file that holds it)")
    try:
        value = Path(path).read_text(encoding="utf-8").strip()
    except OSError as e:
        raise BotSetupError(f"{name}_FILE: cannot read {path}: {e.strerror or type(e).__name__}") from None
    except UnicodeDecodeError:
        raise BotSetupError(f"{name}_FILE: {path} is not UTF-8 text") from None
    if not value:
        raise BotSetupError(f"{name}_FILE: {path} is empty")
    return Secret(value)


@dataclass(frozen=True)
class BotIdentity:
    """What ``auth.test`` says about the bot token."""

    team_id: str
    bot_user_id: str
    bot_id: str
    enterprise_id: str | None = None

    def authorize_result(self, token: str) -> AuthorizeResult:
        return AuthorizeResult(
            enterprise_id=self.enterprise_id,
            team_id=self.team_id,
            bot_user_id=self.bot_user_id,
            bot_id=self.bot_id,
            bot_token=token,
        )


def fetch_identity(client: WebClient) -> BotIdentity:
    """One ``auth.test``; a refused token or an unreachable Slack is a BotSetupError (the token
    itself is never shown)."""
    try:
        resp = client.auth_test()
    except SlackApiError as e:
        code = e.response.get("error", "error") if e.response is not None else "error"
        raise BotSetupError(f"Slack refused SLACK_BOT_TOKEN (auth.test: {code})") from None
    except (SlackClientError, OSError) as e:
        raise BotSetupError(f"cannot reach Slack's Web API at {client.base_url} ({type(e).__name__})", 1) from None
    team, user, bot = str(resp.get("team_id") or ""), str(resp.get("user_id") or ""), str(resp.get("bot_id") or "")
    if not (team and user):
        raise BotSetupError("auth.test did not say which team and bot user SLACK_BOT_TOKEN belongs to")
    ent = resp.get("enterprise_id")
    return BotIdentity(team_id=team, bot_user_id=user, bot_id=bot, enterprise_id=str(ent) if ent else None)


def fixed_authorize(identity: BotIdentity, token: Secret) -> Any:
    """An ``authorize=`` function for a single-workspace app: the same result for every request,
    built once (no ``auth.test`` round trip per worker or per request)."""
    result = identity.authorize_result(token.get())

    def authorize() -> AuthorizeResult:
        return result

    return authorize


@dataclass(frozen=True)
class BotFactory:
    """Builds the Bolt app over the store of the burst config at ``config_path``. Called once per
    server worker process (after the fork, so no database connection is shared between
    processes), or once for Socket Mode."""

    config_path: str | None
    signing_secret: Secret
    bot_token: Secret
    identity: BotIdentity | None = None
    api_url: str = SLACK_API_URL
    lazy_workers: int = 4

    @functools.cached_property
    def gate(self) -> AckGate:
        """This process's acks in progress (one gate per worker: built after the fork)."""
        return AckGate()

    def wsgi(self, path: str = "/slack/events") -> Any:
        """The WSGI app of one HTTP worker: Bolt's adapter, its requests counted at the gate so
        that lazy work yields to them."""
        from bot.frontdoor import Limits
        from bot.server import wsgi_app

        settings = bot_settings(load_burst_config(self.config_path).slack)
        limits = Limits(max_body_bytes=settings.http_max_body_bytes, read_timeout_s=settings.http_read_timeout_s)
        return gated(wsgi_app(self(), path, limits), self.gate)

    def client(self) -> WebClient:
        return WebClient(token=self.bot_token.get(), base_url=self.api_url)

    def __call__(self, *, listener_executor: Executor | None = None, process_before_response: bool = True) -> App:
        from bot.app import create_app
        from burst.budgets import budget_book
        from burst.clock import WallClock
        from burst.ondemand.service import OnDemandService
        from burst.store.sql import SqlStore
        from burst.wiring import offers_for

        cfg = load_burst_config(self.config_path)
        settings = bot_settings(cfg.slack)
        # The schema was brought up to date once, by prepare_store() before the workers started.
        store = SqlStore.from_url(cfg.database_url, upgrade=False)
        service = OnDemandService(store, settings, offers_for(cfg), WallClock(),
                                  challenge_settings=cfg.grand_challenge.settings(),
                                  budgets=budget_book(cfg, store))
        executor = listener_executor or YieldingExecutor(self.gate, self.lazy_workers)
        # Socket Mode has no signing secret (nothing to verify: the bot dialled Slack); Bolt wants
        # one all the same, and this one verifies nothing because no HTTP request reaches it.
        secret = self.signing_secret.get() or secrets.token_hex(32)
        return create_app(
            service,
            settings,
            client=self.client(),
            signing_secret=secret,
            authorize=fixed_authorize(self.identity, self.bot_token) if self.identity is not None else None,
            listener_executor=executor,
            process_before_response=process_before_response,
        )


def prepare_store(config_path: str | None) -> None:
    """Check the config and the ``slack:`` section, open the store and migrate it to the newest
    schema (once, in the process that starts the workers), then close it again so no connection
    is inherited by a forked worker."""
    from burst.errors import BurstError
    from burst.wiring import open_store

    cfg = load_burst_config(config_path)
    bot_settings(cfg.slack)
    try:
        store = open_store(cfg.database_url)
    except BurstError as e:
        raise BotSetupError(f"database: {e}", 1) from None
    except Exception as e:  # noqa: BLE001 - driver errors: name the type only (a URL may hold a password)
        raise BotSetupError(f"database: cannot open the store ({type(e).__name__})", 1) from None
    close = getattr(store, "close", None)
    if callable(close):
        close()


def load_burst_config(path: str | None) -> Any:
    from burst.config import load_config
    from burst.errors import ConfigError

    try:
        return load_config(path)
    except ConfigError as e:
        lines = getattr(e, "lines", None)
        raise BotSetupError(lines[0] if lines and len(lines) == 1 else str(e)) from None


def bot_settings(section: dict[str, Any] | None) -> Any:
    """The config's free ``slack:`` section, validated by the bot's settings model."""
    from pydantic import ValidationError

    from burst.config import format_validation_errors
    from burst.ondemand.settings import OnDemandSettings

    try:
        return OnDemandSettings.model_validate(section or {})
    except ValidationError as e:
        lines = format_validation_errors("slack", e)
        raise BotSetupError("; ".join(lines)) from None
