"""Slack side of burst's ports: :class:`SlackNotifier` (burst.ports.Notifier) and the admin
directory (configured user ids plus the members of an admin user group).

Web API methods used here, and the scopes they need (bot/manifest.yaml lists exactly these):

* ``conversations.open`` (``im:write``): the DM channel of a user;
* ``chat.postMessage`` (``chat:write``): messages;
* ``usergroups.users.list`` (``usergroups:read``): who is in the admin group;
* ``users.lookupByEmail`` (``users:read``, ``users:read.email``): the Slack id of a scheduler user,
  only when ``slack.email_domain`` is set.

Audiences that are scheduler user names (the owner of a job a grand challenge preempts) are not
Slack ids: :meth:`SlackNotifier.slack_id` maps them through ``slack.user_ids``, else by e-mail
``user@email_domain``; a user it cannot map gets no DM (logged once per user, never retried in a
loop) rather than a ``conversations.open`` Slack would refuse.
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

from burst.ondemand.settings import SLACK_USER_ID, OnDemandSettings

log = logging.getLogger("burst.bot")


def slack_notifier(section: Mapping[str, Any] | None) -> SlackNotifier | None:
    """The Slack notifier for the daemon and the admin CLI, built by the CLI: Slack when a bot
    token is in the environment (or a file named by SLACK_BOT_TOKEN_FILE); None otherwise
    (notifications are then only logged). ``section`` is the config's ``slack:`` section. The Web
    API base URL is SLACK_API_URL when set (GovSlack, a test double), as for ``burst bot serve``."""
    token = os.environ.get("SLACK_BOT_TOKEN", "")
    path = os.environ.get("SLACK_BOT_TOKEN_FILE", "")
    if not token and path:
        token = Path(path).read_text(encoding="utf-8").strip()
    if not token:
        return None
    api_url = os.environ.get("SLACK_API_URL", "")
    client = WebClient(token=token, base_url=api_url) if api_url else WebClient(token=token)
    return SlackNotifier(client, OnDemandSettings.model_validate(section or {}))


class SlackNotifier:
    """``notify(audience, text)``: a user id gets a DM, ``"admins"`` the admin channel, ``"all"``
    the announce channel. Best effort, as the Notifier contract says: failures are logged (type
    only, never the token) and swallowed."""

    def __init__(self, client: WebClient, settings: OnDemandSettings) -> None:
        self.client = client
        self.settings = settings
        self._dm: dict[str, str] = {}
        self._ids: dict[str, str] = {}  # scheduler user -> Slack id ("" = not found, not asked again)
        self._lock = threading.Lock()

    def slack_id(self, user: str) -> str:
        """The Slack user id for ``user``: itself if it is one, else ``slack.user_ids``, else a
        ``users.lookupByEmail`` of ``user@email_domain`` (answers cached, a miss too); "" if none.
        A Slack error other than ``users_not_found`` is not cached: the next message asks again."""
        if SLACK_USER_ID.fullmatch(user):
            return user
        mapped = self.settings.user_ids.get(user)
        if mapped:
            return mapped
        with self._lock:
            if user in self._ids:
                return self._ids[user]
        found = ""
        if self.settings.email_domain:
            try:
                resp = self.client.users_lookupByEmail(email=f"{user}@{self.settings.email_domain}")
                found = str((resp.get("user") or {}).get("id") or "")
            except SlackApiError as e:
                if (e.response.get("error") if e.response is not None else "") != "users_not_found":
                    raise
        if not found:
            how = (f"nor found as {user}@{self.settings.email_domain}" if self.settings.email_domain
                   else "and slack.email_domain is not set")
            log.warning("no Slack id for scheduler user %s: not in slack.user_ids %s; DMs to them are skipped",
                        user, how)
        with self._lock:
            self._ids[user] = found
        return found

    def channel_for(self, audience: str) -> str:
        if audience == "admins":
            return self.settings.admin_channel
        if audience == "all":
            return self.settings.announce_channel
        with self._lock:
            got = self._dm.get(audience)
        if got:
            return got
        user = self.slack_id(audience)
        if not user:
            return ""
        resp = self.client.conversations_open(users=user)
        channel = str((resp.get("channel") or {}).get("id") or "")
        if channel:
            with self._lock:
                self._dm[audience] = channel
        return channel

    def notify(self, audience: str, text: str) -> None:
        try:
            channel = self.channel_for(audience)
            if not channel:
                if audience in ("admins", "all") or SLACK_USER_ID.fullmatch(audience):
                    log.warning("no channel for audience %s; message dropped", audience)
                return  # an unmapped scheduler user: slack_id logged it once
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
