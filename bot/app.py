"""The Bolt App factory.

``create_app(service, settings)`` builds a Bolt :class:`slack_bolt.App` with one registration
function per listener kind (commands, actions, views, events). The app only talks to the
:class:`burst.ondemand.service.OnDemandService`; it never calls a cloud.

Tokens and the signing secret come from the environment (``SLACK_BOT_TOKEN``,
``SLACK_SIGNING_SECRET``) unless passed in; they are never logged. Serving: see bot/server.py
(HTTP through a real WSGI server, or Socket Mode).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor

from slack_bolt import App
from slack_bolt.authorization import AuthorizeResult
from slack_sdk import WebClient

from bot.actions import APPROVE, REJECT, register_actions
from bot.commands import register_commands
from bot.common import BotDeps
from bot.events import EVENTS, register_events
from bot.frontdoor import Routes
from bot.notifier import AdminDirectory, SlackNotifier
from bot.views import GC_CALLBACK, register_views
from burst.ondemand.service import OnDemandService
from burst.ondemand.settings import OnDemandSettings

log = logging.getLogger("burst.bot")

ROUTES = Routes(
    commands=frozenset({"/burst"}), actions=frozenset({APPROVE, REJECT}), views=frozenset({GC_CALLBACK}),
    events=frozenset(EVENTS),
)
"""What the listeners below handle; the front door (bot/frontdoor.py) answers 404 to the rest."""

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
    authorize: Callable[..., AuthorizeResult] | None = None,
) -> App:
    """``authorize``: for a single workspace, a function returning a fixed result
    (:func:`bot.runtime.fixed_authorize`) saves the ``auth.test`` call Bolt otherwise makes when the
    app is built. Request signature verification is always on."""
    if client is None:
        client = WebClient(token=os.environ.get("SLACK_BOT_TOKEN"))
    secret = signing_secret if signing_secret is not None else os.environ.get("SLACK_SIGNING_SECRET", "")
    if not secret:
        raise ValueError("a Slack signing secret is needed (SLACK_SIGNING_SECRET)")
    # One executor for Bolt's lazy listeners and for the work /burst defers itself (Bolt's default
    # when none is given is a pool of 10 threads).
    executor = listener_executor if listener_executor is not None else ThreadPoolExecutor(max_workers=10)
    # With authorize=, every request's client gets its token from the AuthorizeResult; Bolt's own
    # client then needs none (and warns if it has one). The tokened client stays for the notifier.
    bolt_client = WebClient(base_url=client.base_url, timeout=client.timeout) if authorize is not None else client
    app = App(
        client=bolt_client,
        signing_secret=secret,
        token_verification_enabled=token_verification_enabled,
        listener_executor=executor,
        process_before_response=process_before_response,
        authorize=authorize,
        raise_error_for_unhandled_request=False,
        request_verification_enabled=True,
        # burst defines no custom workflow steps: nothing to attach a function token to.
        attaching_function_token_enabled=False,
        logger=logging.getLogger("burst.bot.bolt"),
    )
    _quiet_request_verification(app)
    # Admins: configured ids plus the admin user group, read through this app's client.
    service.use_admin_check(AdminDirectory(client, settings))
    if service.notifier is None:
        service.notifier = SlackNotifier(client, settings)
    deps = BotDeps(service, settings, executor)
    register_commands(app, deps)
    register_actions(app, deps)
    register_views(app, deps)
    register_events(app, deps)

    @app.error
    def on_error(error: Exception) -> None:
        # Last line of defence (listeners are guarded already): log the type, never the payload.
        log.error("unhandled bolt error: %s", type(error).__name__)

    return app


def _quiet_request_verification(app: App) -> None:
    """Bolt's request verification logs the whole body of a badly signed request at INFO
    (response_url included). The front door (bot/frontdoor.py) refuses those before Bolt sees
    them; for any that still reach Bolt (a direct dispatch), one line without the body."""
    from slack_bolt.middleware.request_verification import RequestVerification

    def no_body(signature: str, timestamp: str, body: str) -> None:
        log.info("invalid request signature (%d-byte body not logged)", len(body))

    for m in app._middleware_list:
        if isinstance(m, RequestVerification):
            m._debug_log_error = no_body  # type: ignore[method-assign]
