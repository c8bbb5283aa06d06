"""The one slash command, ``/burst``, and its subcommands (grammar in bot/parse.py).

Ack first, always: :func:`ack_burst` parses (pure, microseconds) and acknowledges. Malformed
text is answered in the ack itself with the error and the usage line, and nothing else happens.
``help`` is answered in the ack too. Everything else is acknowledged empty and carried out by
:func:`run_burst` on the lazy executor (bot/lazy.py: it yields to acks), which answers
ephemerally through the ``response_url``.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import App

from bot import parse as p
from bot.actions import approval_blocks
from bot.common import BotDeps, guard, safe_respond
from bot.format import (
    describe_challenge,
    describe_request,
    format_budget,
    format_challenge_detail,
    format_request_detail,
    format_status,
)
from bot.frontdoor import DIGEST_HEADER_NAME
from bot.notifier import SlackNotifier
from bot.views import gc_confirm_modal, request_from
from burst.challenges import cancel_outcome
from burst.ondemand.errors import Denied, ServiceError
from burst.ondemand.messages import fmt_hours, fmt_time, slack_escape

log = logging.getLogger("burst.bot")


def _text(body: dict[str, Any]) -> str:
    t = body.get("text")
    return t if isinstance(t, str) else ""


def register_commands(app: App, deps: BotDeps) -> None:
    @guard
    def ack_burst(ack: Any, body: dict[str, Any], respond: Any, client: Any, request: Any) -> None:
        try:
            cmd = p.parse(_text(body))
        except p.ParseError as e:
            ack(text=e.render(), response_type="ephemeral")
            return
        if isinstance(cmd, p.Help):
            ack(text=p.HELP, response_type="ephemeral")
            return
        user = str(body.get("user_id") or "")
        ack()
        if user:
            # The slow half, handed straight to the lazy executor with the command already parsed:
            # cheaper in the ack path than a Bolt lazy listener, which deep-copies the whole
            # request and parses its body again before the ack's HTTP response can go out.
            deps.defer(run_burst, cmd, user, body, respond=respond, client=client, key=request_digest(request))

    @guard
    def run_burst(cmd: p.Command, user: str, body: dict[str, Any], respond: Any, client: Any, key: str = "") -> None:
        try:
            reply = execute(deps, cmd, user, body, client, key)
        except Denied as e:
            reply = f":no_entry: {e}"
        except ServiceError as e:
            reply = f":warning: {e}"
        if reply:
            safe_respond(respond, reply)

    app.command("/burst")(ack_burst)


def request_digest(request: Any) -> str:
    """The digest the front door (bot/frontdoor.py) computed over the signed HTTP request; "" when
    none (Socket Mode, a direct dispatch). The front door replaces any such header a client sent."""
    headers = getattr(request, "headers", None) or {}
    got = headers.get(DIGEST_HEADER_NAME) or [""]
    value = got[0] if isinstance(got, list | tuple) else got
    return value if isinstance(value, str) and len(value) == 64 else ""


def execute(deps: BotDeps, cmd: p.Command, user: str, body: dict[str, Any], client: Any, key: str = "") -> str:
    """Carry out one parsed command for ``user``; return the ephemeral reply ("" for none).
    ``key``: the signed request's digest; a request recorded under it before is not recorded or
    announced again."""
    svc = deps.service
    if isinstance(cmd, p.Request):
        res = svc.request(user, cmd.args, idempotency_key=key)
        r, o = res.request, res.offer
        head = (
            f"Request `{r.id}`: {r.gpus}x {r.gpu_model} for {fmt_hours(r.hours)}, about ${res.estimate_usd:,.2f} "
            f"(cheapest now: {o.instance_type} in {o.cloud}/{o.region} at ${o.price_per_hour:.2f}/h)."
        )
        if not res.needs_approval:
            return f":white_check_mark: {head}\nWithin your quota, so it is approved. I will DM you when the instance is ready."
        channel = deps.settings.admin_channel
        if channel and not res.replayed:
            client.chat_postMessage(
                channel=channel,
                text=f"On-demand request {r.id} from <@{user}> needs approval",
                blocks=approval_blocks(r, res.verdict.reasons, res.estimate_usd, o),
                unfurl_links=False,
            )
        reasons = "\n".join(f"• {slack_escape(x)}" for x in res.verdict.reasons)
        return f":hourglass: {head}\nIt needs an admin's approval:\n{reasons}\nThe admins have been asked; I will DM you."
    if isinstance(cmd, p.Extend):
        r = svc.extend(user, cmd.request_id, cmd.hours)
        return f":white_check_mark: Request `{r.id}` extended by {fmt_hours(cmd.hours)}; it now ends at {fmt_time(r.expires_at)}."
    if isinstance(cmd, p.Release):
        r = svc.release(user, cmd.request_id)
        return f":wave: Request `{r.id}` released. Its instance, if any, is terminated on the next controller tick."
    if isinstance(cmd, p.List):
        rows = svc.list_requests(user, all_users=cmd.all_users)
        if not rows:
            return "No requests."
        return "\n".join(describe_request(r) for r in rows)
    if isinstance(cmd, p.Show):
        return format_request_detail(svc.request_detail(user, cmd.request_id))
    if isinstance(cmd, p.KeySet):
        fp = svc.set_ssh_key(user, cmd.key)
        return f":key: Saved your SSH public key ({fp}). New instances will accept it."
    if isinstance(cmd, p.Status):
        return format_status(svc.status())
    if isinstance(cmd, p.Budget):
        return format_budget(svc.budget())
    if isinstance(cmd, p.BudgetSet):
        line = svc.budget_set(user, cmd.budget, cmd.level, cmd.amount)
        return f":white_check_mark: Budget set (recorded in the audit): {slack_escape(line)}"
    if isinstance(cmd, p.Approve):
        r = svc.approve(user, cmd.request_id)
        return f":white_check_mark: Approved `{r.id}`."
    if isinstance(cmd, p.Reject):
        r = svc.reject(user, cmd.request_id, cmd.reason)
        return f":x: Rejected `{r.id}`."
    if isinstance(cmd, p.GcSchedule):
        now = svc.clock.now()
        start = cmd.start_at if cmd.start_at is not None else now + (cmd.start_in_s or 0.0)
        req = request_from(start, cmd.duration_s, cmd.job, cmd.note, cmd.nodes, cmd.burst_preempted)
        assessed = svc.gc_assess(user, req)
        if assessed.errors:
            raise ServiceError(slack_escape("Cannot schedule: " + "; ".join(assessed.errors) + ". Nothing was scheduled."))
        trigger = str(body.get("trigger_id") or "")
        if not trigger:
            raise ServiceError("Slack sent no trigger for the confirmation dialog; try again.")
        client.views_open(trigger_id=trigger, view=gc_confirm_modal(req, assessed, svc.challenges.settings))
        return ""
    if isinstance(cmd, p.GcList):
        gcs = svc.gc_list()
        return "\n".join(describe_challenge(g) for g in gcs) if gcs else "No grand challenges scheduled."
    if isinstance(cmd, p.GcShow):
        return format_challenge_detail(svc.gc_get(cmd.challenge_id))
    if isinstance(cmd, p.GcCancel):
        g = svc.gc_cancel(user, cmd.challenge_id, SlackNotifier(client, deps.settings))
        return f":x: Grand challenge `{g.id}`: {cancel_outcome(g)}."
    return ""
