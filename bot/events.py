"""Events: App Home opened (publish the help tab) and app mentions (answer with help)."""

from __future__ import annotations

from typing import Any

from slack_bolt import App

from bot.common import BotDeps, guard
from bot.parse import HELP
from bot.views import home_view

EVENTS = ("app_home_opened", "app_mention")  # the Events API types the bot subscribes to


def register_events(app: App, deps: BotDeps) -> None:
    @guard
    def ack_event(ack: Any) -> None:
        ack()

    @guard
    def on_home(event: dict[str, Any], client: Any) -> None:
        user = str(event.get("user") or "")
        if user and event.get("tab", "home") == "home":
            client.views_publish(user_id=user, view=home_view())

    @guard
    def on_mention(event: dict[str, Any], client: Any) -> None:
        channel = str(event.get("channel") or "")
        if channel:
            client.chat_postMessage(
                channel=channel, thread_ts=event.get("thread_ts") or event.get("ts"), text=HELP, unfurl_links=False
            )

    app.event(EVENTS[0])(ack=ack_event, lazy=[on_home])
    app.event(EVENTS[1])(ack=ack_event, lazy=[on_mention])
