"""Views: the App Home tab (help), and the grand-challenge confirmation modal.

``/burst gc schedule`` does not record anything by itself: it checks the request (bad input is an
ephemeral one-line error), then opens a modal that shows the impact (jobs, users, GPU-hours at
risk, the cost of burst-preempted) and what will happen to the jobs, and records the challenge
only when an admin presses *Schedule*. The modal carries the parsed arguments in
``private_metadata``; on submit they are validated again, and the admin check is repeated.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from slack_bolt import App

from bot.common import BotDeps, guard
from bot.parse import HELP
from burst.challenges import Assessment, ChallengeRequest, kind_for_path, timeline_promise
from burst.domain import ChallengeJobKind
from burst.ondemand.errors import Denied, ServiceError
from burst.ondemand.messages import clean_text, fmt_hours, fmt_time, slack_escape
from policies.grand_challenge import ChallengeSettings, fmt_dur

log = logging.getLogger("burst.bot")

GC_CALLBACK = "burst_gc_confirm"
_JOB = re.compile(r"^[A-Za-z0-9/~.][A-Za-z0-9._:/@=+~-]{0,255}$")
_SLACK_USER = re.compile(r"[UW][A-Z0-9]{2,20}")


def home_view() -> dict[str, Any]:
    return {
        "type": "home",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "burst: cloud GPUs on demand"}},
            {"type": "section", "text": {"type": "mrkdwn", "text": HELP}},
        ],
    }


def mention(user: str) -> str:
    """A Slack user id as a mention; a scheduler user name escaped as it is."""
    return f"<@{user}>" if _SLACK_USER.fullmatch(user) else slack_escape(user)


def impact_text(a: Assessment, burst_preempted: bool) -> str:
    """The impact lines of the confirmation: jobs, users, GPU-hours at risk, burst cost."""
    impact = a.impact
    if impact is None:
        return "*Impact:* unknown (no controller tick recorded yet)."
    src = f" (from the {slack_escape(a.queue.source)})" if a.queue is not None else ""
    named = [u for u in impact.users if u]  # a job whose queue shows no owner has none to name
    users = ", ".join(mention(u) for u in named[:30])
    more = f" and {len(named) - 30} more" if len(named) > 30 else ""
    lines = [
        f"*Impact{src}:* {len(impact.jobs)} running job(s) of {len(impact.users)} user(s) would be preempted, "
        f"{impact.gpu_hours:,.1f} GPU-hours of work since their last start at risk (lost only where "
        "a job does not checkpoint).",
    ]
    if named:
        lines.append(f"Users affected: {users}{more}")
    n, cost = len(impact.burst_jobs), impact.burst_cost_usd
    price = f"${a.price_per_gpu_hour:,.2f} per GPU-hour, the cheapest offer"
    if burst_preempted:
        lines.append(f"*Cost of burst-preempted:* {n} of them may burst; running them in the cloud during the "
                     f"challenge costs up to ${cost:,.2f} ({price}), within the budget caps.")
    else:
        lines.append(f"With burst-preempted, {n} of them could run in the cloud meanwhile for up to ${cost:,.2f} ({price}).")
    return "\n".join(lines)


def gc_confirm_modal(req: ChallengeRequest, a: Assessment, settings: ChallengeSettings) -> dict[str, Any]:
    meta = json.dumps({
        "start_at": req.start_at, "duration_s": req.duration_s, "job": req.job_path, "note": req.note,
        "nodes": req.nodes, "burst_preempted": req.burst_preempted,
    })
    where = f"{req.nodes} on-prem node(s)" if req.nodes else "the whole on-prem cluster"
    kind = "Kubernetes Job" if req.job_kind is ChallengeJobKind.KUBERNETES else "Slurm batch script"
    text = (
        f"*Grand challenge* `{slack_escape(req.job_path)}` ({kind})\nstarts {fmt_time(req.start_at)}, runs "
        f"{fmt_hours(req.duration_s / 3600)} on {where}"
        + (f"\nnote: {slack_escape(req.note)}" if req.note else "")
        + "\n\n" + impact_text(a, req.burst_preempted)
        + "\n\n" + "\n".join(f"• {line}" for line in timeline_promise(settings, req.burst_preempted, fmt_dur))
    )
    return {
        "type": "modal",
        "callback_id": GC_CALLBACK,
        "private_metadata": meta,
        "title": {"type": "plain_text", "text": "Schedule challenge"},
        "submit": {"type": "plain_text", "text": "Schedule"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text[:2900]}}],
    }


def request_from(start_at: float, duration_s: float, job: str, note: str, nodes: int, burst_preempted: bool) -> ChallengeRequest:
    return ChallengeRequest(
        start_at=start_at, duration_s=duration_s, nodes=nodes, job_path=job, job_kind=kind_for_path(job),
        burst_preempted=burst_preempted, note=clean_text(note),
    )


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
            nodes, burst_preempted = int(meta.get("nodes") or 0), bool(meta.get("burst_preempted"))
            if not _JOB.match(job):
                raise ValueError("bad job path")
        except (ValueError, KeyError, TypeError):
            ack(response_action="update", view=_result_view(":warning: That dialog's data is not valid; nothing was scheduled."))
            return
        try:
            # Validated again (time passed, another challenge may have been scheduled): the same
            # path as the CLI; nothing is stored when it refuses.
            gc = deps.service.gc_schedule(user, request_from(start, duration, job, note, nodes, burst_preempted))
            text = (f":white_check_mark: Scheduled `{gc.id}` {slack_escape(gc.name)} at {fmt_time(gc.start_at)} "
                    f"for {fmt_hours(gc.duration_s / 3600)}.")
        except Denied as e:
            text = f":no_entry: {e}"
        except ServiceError as e:
            text = f":warning: {e} Nothing was scheduled."
        ack(response_action="update", view=_result_view(text))

    app.view(GC_CALLBACK)(on_gc_submit)
