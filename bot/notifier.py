"""Slack side of burst's ports: :class:`SlackNotifier` (burst.ports.Notifier) and the admin
directory (configured user ids plus the members of an admin user group).

Web API methods used here, and the scopes they need (bot/manifest.yaml lists exactly these):

* ``conversations.open`` (``im:write``): the DM channel of a user;
* ``chat.postMessage`` (``chat:write``): messages;
* ``usergroups.users.list`` (``usergroups:read``): who is in the admin group.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from burst.ondemand.settings import OnDemandSettings

log = logging.getLogger("burst.bot")


def slack_notifier(section: Mapping[str, Any] | None) -> SlackNotifier | None:
    """The Slack notifier for the daemon, built by the CLI and handed to the wiring: Slack when a
    bot token is in the environment (or a file named by SLACK_BOT_TOKEN_FILE); None otherwise
    (notifications are then only logged). ``section`` is the config's ``slack:`` section."""
    token = os.environ.get("SLACK_BOT_TOKEN", "")
    path = os.environ.get("SLACK_BOT_TOKEN_FILE", "")
    if not token and path:
        token = Path(path).read_text(encoding="utf-8").strip()
    if not token:
        return None
    return SlackNotifier(WebClient(token=token), OnDemandSettings.model_validate(section or {}))


class SlackNotifier:
    """``notify(audience, text)``: a user id gets a DM, ``"admins"`` the admin channel, ``"all"``
    the announce channel. Best effort, as the Notifier contract says: failures are logged (type
    only, never the token) and swallowed."""

    def __init__(self, client: WebClient, settings: OnDemandSettings) -> None:
        self.client = client
        self.settings = settings
        self._dm: dict[str, str] = {}
        self._lock = threading.Lock()

    def channel_for(self, audience: str) -> str:
        if audience == "admins":
            return self.settings.admin_channel
        if audience == "all":
            return self.settings.announce_channel
        with self._lock:
            got = self._dm.get(audience)
        if got:
            return got
        resp = self.client.conversations_open(users=audience)
        channel = str((resp.get("channel") or {}).get("id") or "")
        if channel:
            with self._lock:
                self._dm[audience] = channel
        return channel

    def notify(self, audience: str, text: str) -> None:
        try:
            channel = self.channel_for(audience)
            if not channel:
                log.warning("no channel for audience %s; message dropped", audience)
                return
            self.client.chat_postMessage(channel=channel, text=text, unfurl_links=False, unfurl_media=False)
        except (SlackApiError, SlackClientError, OSError, ValueError) as e:
            log.warning("slack notify %s failed: %s", audience, type(e).__name__)


class AdminDirectory:
    """Admin = a configured user id, or a member of the configured user group (cached ``ttl_s``).
    If Slack cannot be asked, the group counts as empty: fail closed."""

    def __init__(
        self, client: WebClient, settings: OnDemandSettings, *, ttl_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.settings = settings
        self.ttl_s = ttl_s
        self._clock = clock
        self._members: frozenset[str] = frozenset()
        self._fetched_at: float | None = None
        self._lock = threading.Lock()

    def group_members(self) -> frozenset[str]:
        group = self.settings.admin_usergroup
        if not group:
            return frozenset()
        now = self._clock()
        with self._lock:
            if self._fetched_at is not None and now - self._fetched_at < self.ttl_s:
                return self._members
        try:
            resp = self.client.usergroups_users_list(usergroup=group)
            members = frozenset(str(u) for u in (resp.get("users") or []))
        except (SlackApiError, SlackClientError, OSError, ValueError) as e:
            log.warning("cannot read admin user group: %s", type(e).__name__)
            members = frozenset()
        with self._lock:
            self._members, self._fetched_at = members, now
        return members

    def __call__(self, user: str) -> bool:
        return user in self.settings.admins or user in self.group_members()
