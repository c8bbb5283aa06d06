"""Views: the App Home tab (help), and the grand-challenge confirmation modal.

``/burst gc schedule`` does not record anything by itself: it opens a modal that shows the impact
(how many jobs, and which users, the challenge would preempt) and records the challenge only when
an admin presses *Schedule*. The modal carries the parsed arguments in ``private_metadata``; on
submit they are validated again, and the admin check is repeated.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from slack_bolt import App

from bot.common import BotDeps, guard
from bot.parse import HELP
from burst.challenges import Impact
from burst.ondemand.errors import Denied, ServiceError
from burst.ondemand.messages import fmt_hours, fmt_time, slack_escape

log = logging.getLogger("burst.bot")

GC_CALLBACK = "burst_gc_confirm"
_JOB = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@=+-]{0,127}$")


def home_view() -> dict[str, Any]:
    return {
        "type": "home",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "burst: cloud GPUs on demand"}},
            {"type": "section", "text": {"type": "mrkdwn", "text": HELP}},
        ],
    }


def _impact_text(impact: Impact) -> str:
    users = ", ".join(f"<@{u}>" if re.fullmatch(r"[UW][A-Z0-9]{2,20}", u) else slack_escape(u) for u in impact.users[:30])
    more = f" and {len(impact.users) - 30} more" if len(impact.users) > 30 else ""
    who = f"\nUsers affected: {users}{more}" if impact.users else "\nUsers affected: not known from this source"
    src = f" (from the {slack_escape(impact.source)})" if impact.source else ""
    return f"*Impact:* {impact.jobs} running job(s) would be preempted{src}.{who}"


def gc_confirm_modal(start_at: float, duration_s: float, job: str, note: str, impact: Impact) -> dict[str, Any]:
    meta = json.dumps({"start_at": start_at, "duration_s": duration_s, "job": job, "note": note})
    text = (
        f"*Grand challenge* `{slack_escape(job)}`\nstarts {fmt_time(start_at)}, runs {fmt_hours(duration_s / 3600)}"
        + (f"\nnote: {slack_escape(note)}" if note else "")
        + "\n\n" + _impact_text(impact)
        + "\n\nThe whole cluster runs the challenge; preempted jobs are checkpointed, held, and released afterwards."
    )
    return {
        "type": "modal",
        "callback_id": GC_CALLBACK,
        "private_metadata": meta,
        "title": {"type": "plain_text", "text": "Schedule challenge"},
        "submit": {"type": "plain_text", "text": "Schedule"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}],
    }


def _result_view(text: str) -> dict[str, Any]:
    return {
        "type": "modal",
        "title": {"type": "plain_text", "text": "Grand challenge"},
        "close": {"type": "plain_text", "text": "Close"},
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}],
    }


def register_views(app: App, deps: BotDeps) -> None:
    @guard
    def on_gc_submit(ack: Any, body: dict[str, Any], view: dict[str, Any]) -> None:
        # A store write and no network: fast enough to do before the ack, which carries the result.
        user = str((body.get("user") or {}).get("id") or "")
        try:
            meta = json.loads(view.get("private_metadata") or "{}")
            start, duration = float(meta["start_at"]), float(meta["duration_s"])
            job, note = str(meta["job"]), str(meta.get("note") or "")
            if not _JOB.match(job):
                raise ServiceError("The job name is not valid.")
        except (ValueError, KeyError, TypeError):
            ack(response_action="update", view=_result_view(":warning: That dialog's data is not valid; nothing was scheduled."))
            return
        try:
            gc = deps.service.challenges.gc_schedule(user, start, duration, job, note)
            text = f":white_check_mark: Scheduled `{gc.id}` {slack_escape(gc.name)} at {fmt_time(gc.start_at)}."
        except Denied as e:
            text = f":no_entry: {e}"
        except ServiceError as e:
            text = f":warning: {e} Nothing was scheduled."
        ack(response_action="update", view=_result_view(text))

    app.view(GC_CALLBACK)(on_gc_submit)
