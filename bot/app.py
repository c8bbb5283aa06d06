"""The Bolt App factory.

``create_app(service, settings)`` builds a Bolt :class:`slack_bolt.App` with one registration
function per listener kind (commands, actions, views, events). The app only talks to the
:class:`burst.ondemand.OnDemandService`; it never calls a cloud.

Tokens and the signing secret come from the environment (``SLACK_BOT_TOKEN``,
``SLACK_SIGNING_SECRET``) unless passed in; they are never logged. Serving: see bot/server.py
(HTTP through a real WSGI server, or Socket Mode).
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import Executor

from slack_bolt import App
from slack_sdk import WebClient

from bot.actions import register_actions
from bot.commands import register_commands
from bot.common import BotDeps
from bot.events import register_events
from bot.notifier import AdminDirectory, SlackNotifier
from bot.views import register_views
from burst.ondemand import OnDemandService, OnDemandSettings

log = logging.getLogger("burst.bot")

__all__ = ["create_app", "register_actions", "register_commands", "register_events", "register_views"]


def create_app(
    service: OnDemandService,
    settings: OnDemandSettings,
    *,
    client: WebClient | None = None,
    signing_secret: str | None = None,
    token_verification_enabled: bool = True,
    listener_executor: Executor | None = None,
    process_before_response: bool = False,
) -> App:
    if client is None:
        client = WebClient(token=os.environ.get("SLACK_BOT_TOKEN"))
    secret = signing_secret if signing_secret is not None else os.environ.get("SLACK_SIGNING_SECRET", "")
    if not secret:
        raise ValueError("a Slack signing secret is needed (SLACK_SIGNING_SECRET)")
    app = App(
        client=client,
        signing_secret=secret,
        token_verification_enabled=token_verification_enabled,
        listener_executor=listener_executor,
        process_before_response=process_before_response,
        raise_error_for_unhandled_request=False,
        logger=logging.getLogger("burst.bot.bolt"),
    )
    # Admins: configured ids plus the admin user group, read through this app's client.
    service.use_admin_check(AdminDirectory(client, settings))
    if service.notifier is None:
        service.notifier = SlackNotifier(client, settings)
    deps = BotDeps(service, settings)
    register_commands(app, deps)
    register_actions(app, deps)
    register_views(app, deps)
    register_events(app, deps)

    @app.error
    def on_error(error: Exception) -> None:
        # Last line of defence (listeners are guarded already): log the type, never the payload.
        log.error("unhandled bolt error: %s", type(error).__name__)

    return app
