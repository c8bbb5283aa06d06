"""Approve / Reject buttons on the approval message in the admins' channel.

Pressing a button is acked at once; the lazy listener checks that the presser is an admin (a
non-admin gets an ephemeral denial and the attempt is audited), records the decision through the
service, and updates the message with the outcome so nobody presses twice.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from slack_bolt import App

from bot.common import BotDeps, guard, safe_respond
from burst.domain import Offer, OnDemandRequest
from burst.ondemand.errors import Denied, ServiceError
from burst.ondemand.messages import fmt_hours, slack_escape

log = logging.getLogger("burst.bot")

APPROVE = "burst_approve"
REJECT = "burst_reject"
_RID = re.compile(r"^r-[0-9a-f]{6}$")


def approval_blocks(req: OnDemandRequest, reasons: list[str], estimate_usd: float, offer: Offer) -> list[dict[str, Any]]:
    where = "/".join(x for x in (req.cloud, req.region) if x) or "any cloud"
    lines = [
        f"*On-demand request `{req.id}`* from <@{req.user}> (team {slack_escape(req.team)})",
        f"{req.gpus}x {slack_escape(req.gpu_model)} for {fmt_hours(req.hours)} on {slack_escape(where)}"
        f"{' (spot)' if req.spot else ''}, about ${estimate_usd:,.2f} "
        f"({offer.instance_type} at ${offer.price_per_hour:.2f}/h)",
    ]
    if req.note:
        lines.append(f"note: {slack_escape(req.note)}")
    lines.append("Over quota:\n" + "\n".join(f"• {slack_escape(r)}" for r in reasons))
    return [
        {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}},
        {
            "type": "actions",
            "block_id": f"decide_{req.id}",
            "elements": [
                {"type": "button", "action_id": APPROVE, "style": "primary", "value": req.id,
                 "text": {"type": "plain_text", "text": "Approve"}},
                {"type": "button", "action_id": REJECT, "style": "danger", "value": req.id,
                 "text": {"type": "plain_text", "text": "Reject"}},
            ],
        },
    ]


def _outcome_blocks(body: dict[str, Any], outcome: str) -> list[dict[str, Any]]:
    """The original message without its buttons, plus the outcome."""
    blocks = [b for b in ((body.get("message") or {}).get("blocks") or []) if b.get("type") != "actions"]
    return [*blocks, {"type": "context", "elements": [{"type": "mrkdwn", "text": outcome}]}]


def register_actions(app: App, deps: BotDeps) -> None:
    @guard
    def ack_only(ack: Any) -> None:
        ack()

    def decide(body: dict[str, Any], respond: Any, client: Any, approve: bool) -> None:
        user = str((body.get("user") or {}).get("id") or "")
        actions = body.get("actions") or [{}]
        rid = str(actions[0].get("value") or "")
        if not user or not _RID.match(rid):
            safe_respond(respond, ":warning: That button does not name a request.", replace_original=False)
            return
        svc = deps.service
        try:
            if approve:
                svc.approve(user, rid)
                outcome = f":white_check_mark: Approved by <@{user}>."
            else:
                svc.reject(user, rid, "rejected from the approval message")
                outcome = f":x: Rejected by <@{user}>."
        except Denied as e:
            safe_respond(respond, f":no_entry: {e}", replace_original=False)
            return
        except ServiceError as e:
            outcome = f":information_source: {e}"
        channel = str((body.get("channel") or body.get("container") or {}).get("id") or (body.get("container") or {}).get("channel_id") or "")
        ts = str((body.get("message") or {}).get("ts") or (body.get("container") or {}).get("message_ts") or "")
        if channel and ts:
            client.chat_update(
                channel=channel, ts=ts, text=f"Request {rid}: {outcome}", blocks=_outcome_blocks(body, outcome)
            )
        else:
            safe_respond(respond, outcome, replace_original=False)

    @guard
    def run_approve(body: dict[str, Any], respond: Any, client: Any) -> None:
        decide(body, respond, client, True)

    @guard
    def run_reject(body: dict[str, Any], respond: Any, client: Any) -> None:
        decide(body, respond, client, False)

    app.action(APPROVE)(ack=ack_only, lazy=[run_approve])
    app.action(REJECT)(ack=ack_only, lazy=[run_reject])
