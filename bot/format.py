"""Slack renderings of on-demand requests, grand challenges, status and budget.

Only the bot shows these; the service returns data (``burst.ondemand.service``). Texts are Slack
mrkdwn, and everything a user typed goes through :func:`slack_escape`.
"""

from __future__ import annotations

from burst.challenges import counts
from burst.domain import (
    CHALLENGE_TERMINAL,
    ChallengeEnding,
    GrandChallenge,
    Instance,
    OnDemandRequest,
    RequestState,
)
from burst.ondemand.messages import fmt_hours, fmt_time, slack_escape
from burst.ondemand.service import BudgetReport, RequestDetail, StatusReport


def describe_request(r: OnDemandRequest) -> str:
    where = "/".join(x for x in (r.cloud, r.region) if x) or "any cloud"
    bits = [
        f"`{r.id}` {r.gpus}x {slack_escape(r.gpu_model)} for {fmt_hours(r.hours)} on {slack_escape(where)}"
        f"{' (spot)' if r.spot else ''}: *{r.state}*"
    ]
    if r.expires_at is not None and r.state in (RequestState.READY, RequestState.EXPIRING):
        bits.append(f"until {fmt_time(r.expires_at)}")
    return " ".join(bits)


def describe_challenge(gc: GrandChallenge) -> str:
    c = counts(gc)
    jobs = f", {c['preempted']} preempted, {c['restored']} restored" if c["preempted"] else ""
    ending = f" ({gc.ending} requested)" if gc.ending is not ChallengeEnding.DONE and gc.state not in CHALLENGE_TERMINAL else ""
    return (
        f"`{gc.id}` {slack_escape(gc.name)} at {fmt_time(gc.start_at)} for {fmt_hours(gc.duration_s / 3600)}: "
        f"*{gc.state}*{ending}{jobs} (by <@{gc.created_by}>){' — ' + slack_escape(gc.note) if gc.note else ''}"
    )


def format_challenge_detail(gc: GrandChallenge) -> str:
    """``/burst gc show``: the phase, the preempted/released/restored counts, and the jobs."""
    c = counts(gc)
    where = f"{len(gc.node_names)} node(s)" if gc.node_names else (f"{gc.nodes} node(s)" if gc.nodes else "the whole on-prem cluster")
    lines = [
        describe_challenge(gc),
        f"phase: *{gc.state}*; nodes: {where}; job: {slack_escape(gc.job_path or '(inline)')} ({gc.job_kind})"
        + ("; burst-preempted" if gc.burst_preempted else ""),
        f"preempted: {c['preempted']}, released: {c['released']}, restored: {c['restored']}",
    ]
    if gc.preempted_jobs:
        ids = ", ".join(f"`{slack_escape(p.job_id)}`{' (back)' if p.restored else ''}" for p in gc.preempted_jobs[:40])
        more = f" and {len(gc.preempted_jobs) - 40} more" if len(gc.preempted_jobs) > 40 else ""
        lines.append(f"preempted jobs: {ids}{more}")
    if gc.challenge_job_id:
        lines.append(f"challenge job: `{slack_escape(gc.challenge_job_id)}`")
    if gc.notices:
        lines.append(f"notices sent: {', '.join(gc.notices)}")
    if gc.last_error:
        lines.append(f"last error: {slack_escape(gc.last_error[:300])}")
    return "\n".join(lines)


def format_request_detail(d: RequestDetail) -> str:
    """``/burst show <id>``: the request, who asked and decided, and its instance."""
    r = d.request
    lines = [
        describe_request(r),
        f"requested by <@{r.user}> (team {slack_escape(r.team)}) at {fmt_time(r.created_at)}",
    ]
    if r.approver:
        lines.append(f"decided by <@{r.approver}>")
    if r.note:
        lines.append(f"note: {slack_escape(r.note)}")
    if d.instance is not None:
        lines.append(_instance_line(d.instance, d.ssh_user))
    return "\n".join(lines)


def _instance_line(inst: Instance, ssh_user: str) -> str:
    return (
        f"instance `{inst.id}` ({inst.instance_type}, {inst.cloud}/{inst.region}, {inst.state})"
        f"{', address ' + inst.address if inst.address else ''}, ${inst.price_per_hour:.2f}/h, "
        f"ssh user `{ssh_user}`"
    )


def format_status(s: StatusReport) -> str:
    """``/burst status``: on-prem (last controller tick), cloud fleet, spend, next challenge."""
    lines: list[str] = []
    t = s.last_tick
    if t:
        used, total = t.get("onprem_gpus_used"), t.get("onprem_gpus")
        wait = t.get("longest_wait_s")
        wait_min = f"{float(wait) / 60:.0f} min" if isinstance(wait, int | float) else "-"
        at = t.get("at")
        lines.append(
            f"*On-prem:* {used if used is not None else '-'}/{total if total is not None else '-'} GPUs used, "
            f"{t.get('pending', '-')} pending jobs, longest wait {wait_min}"
            f" (controller tick at {fmt_time(float(at)) if isinstance(at, int | float) else '-'})"
        )
    else:
        lines.append("*On-prem:* no controller tick recorded yet")
    live = s.live
    if live:
        groups: dict[tuple[str, str, str], list[Instance]] = {}
        for i in live:
            groups.setdefault((str(i.purpose), i.cloud, i.region), []).append(i)
        parts = [
            f"{p} {c}/{r}: {len(v)} ({sum(i.gpus for i in v)} GPUs)" for (p, c, r), v in sorted(groups.items())
        ]
        lines.append(f"*Cloud fleet:* {len(live)} instances, {sum(i.gpus for i in live)} GPUs; " + "; ".join(parts))
    else:
        lines.append("*Cloud fleet:* none")
    day, month = s.spend_day_usd, s.spend_month_usd
    lines.append(
        f"*Spend:* today ${day:,.2f}{f' of ${s.budget_day_usd:,.2f}' if s.budget_day_usd else ''}, "
        f"this month ${month:,.2f}{f' of ${s.budget_month_usd:,.2f}' if s.budget_month_usd else ''}"
    )
    if s.budgets_blocked:
        lines.append("*Budget:* " + "; ".join(slack_escape(x) for x in s.budgets_blocked))
    gc = s.next_challenge
    if gc is not None:
        lines.append(
            f"*Next grand challenge:* `{gc.id}` {slack_escape(gc.name)} at {fmt_time(gc.start_at)} "
            f"for {fmt_hours(gc.duration_s / 3600)}"
        )
    else:
        lines.append("*Next grand challenge:* none scheduled")
    return "\n".join(lines)


def format_budget(b: BudgetReport) -> str:
    """``/burst budget``: spend this month, all teams, then per team with GPU-hours booked."""
    lines = [f"*Budget this month* (since {fmt_time(b.since)}):"]
    lines.append(f"all teams: ${b.total_usd:,.2f}" + (f" of ${b.budget_month_usd:,.2f}" if b.budget_month_usd else ""))
    for row in b.teams:
        lines.append(
            f"{slack_escape(row.team)}: ${row.spent_usd:,.2f}"
            + (f" of ${row.budget_month_usd:,.2f}" if row.budget_month_usd is not None else "")
            + f", on-demand {row.gpu_hours:.1f}"
            + (f" of {row.gpu_hours_month:.0f}" if row.gpu_hours_month is not None else "")
            + " GPU-hours"
        )
    if b.budgets:
        lines.append("*Budgets* (committed: spent plus what running instances are expected to cost):")
        lines.extend(slack_escape(x) for x in b.budgets)
    return "\n".join(lines)
