"""The ``burst`` command.

Bad input (a trace row, a config key, an option value) ends with one line on stderr naming the
file, line or key, exit code 2, and nothing written.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from burst import cli_common as _common
from burst.errors import BurstError, ConfigError, InputError

if TYPE_CHECKING:
    from burst.budgets import BudgetBook, BudgetState
    from burst.domain import GrandChallenge
    from burst.ports import Store

app = typer.Typer(add_completion=False, no_args_is_help=True, help="burst: hybrid-cloud burst orchestrator for on-prem GPU clusters.")
config_app = typer.Typer(no_args_is_help=True, help="Configuration.")
app.add_typer(config_app, name="config")
gc_app = typer.Typer(no_args_is_help=True, help="Grand challenges: schedule, list, show, cancel, plan (admins).")
app.add_typer(gc_app, name="gc")
budget_app = typer.Typer(no_args_is_help=True, help="Site and team budgets: show, set (admins).")
app.add_typer(budget_app, name="budget")

# The consoles and the one-line error are shared with `burst status`'s fast path (cli_status).
console = _common.console
err_console = _common.err_console
_error_line = _common.error_line
_one_line = _common.one_line
_sqlite_file = _common.sqlite_file


def _fail(msg: str, code: int = 2) -> NoReturn:
    _error_line(msg)
    raise typer.Exit(code)


def _check_db_url(url: str, option: str) -> None:
    """Exit 2 with one line for a URL that cannot be burst's database (never showing its
    password)."""
    _common.check_db_url(url, option, _fail)


def _open_store(url: str, option: str = "database_url", *, read_only: bool = False) -> Store:
    """:func:`burst.cli_common.open_store`, ending the command through Typer."""
    return _common.open_store(url, option, _fail, read_only=read_only)


def _register_optional() -> None:
    """Sub-commands that live with their own issue's modules."""
    try:
        from burst.store.cli_db import app as db_app

        app.add_typer(db_app, name="db")
    except ImportError:  # pragma: no cover - the store always ships
        pass
    try:
        from burst.mirror_cli import mirror_command

        app.command("mirror")(mirror_command)
    except ImportError:
        pass
    from burst.bot_cli import bot_app

    app.add_typer(bot_app, name="bot")


# ---- simulate ---------------------------------------------------------------------------------


@app.command()
def simulate(
    trace: Annotated[Path | None, typer.Option(help="Trace file; default: the bundled ITP cluster04 trace.")] = None,
    format: Annotated[str, typer.Option("--format", help="itp or csv")] = "itp",
    nodes: Annotated[int, typer.Option(help="On-prem nodes.")] = 80,
    gpus_per_node: Annotated[int, typer.Option(help="GPUs per on-prem node.")] = 8,
    policy: Annotated[str, typer.Option(help="Comma-separated: burst,greedy,never,clairvoyant")] = "never,greedy,burst,clairvoyant",
    days: Annotated[float | None, typer.Option(help="Replay only the first D days.")] = None,
    report: Annotated[Path | None, typer.Option(help="Directory for summary.json and PNG plots.")] = None,
    config: Annotated[Path | None, typer.Option(help="burst config whose policy/offers settings to use for 'burst'.")] = None,
    spot: Annotated[bool, typer.Option(help="Allow spot offers.")] = False,
    capacity_error_rate: Annotated[float, typer.Option(help="Injected capacity error rate per launch, 0..1.")] = 0.0,
    spot_interrupt_hours: Annotated[float | None, typer.Option(help="Mean hours until a spot reclaim.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed for injected faults.")] = 0,
    store: Annotated[str | None, typer.Option(help="Store URL for the simulated controller (default: in memory).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON line at the end.")] = False,
    grand_challenge: Annotated[list[str] | None, typer.Option(
        "--grand-challenge", metavar="START,DURATION[,NODES]",
        help="What-if grand challenge (repeatable): START as a day offset into the trace (1.5), POSIX "
             "seconds or an ISO time; DURATION like 6h; NODES default: all on-prem nodes.")] = None,
) -> None:
    """Replay a job trace through the controller under each policy; compare waits and dollars."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from burst.config import load_config
    from burst.sim.challenges import challenges_for, parse_grand_challenge
    from burst.sim.compare import headline, parse_policies, run_policies
    from burst.sim.report import render_challenges, render_table, report_dir_problem, unfinished, write_report
    from burst.sim.runner import TRACE_EPOCH, SimSettings, b1_offers
    from burst.sim.trace import bundled_trace_path, load_trace
    from burst.wiring import offers_for

    try:
        names = parse_policies(policy)
    except ValueError as e:
        _fail(f"--policy: {e}")
    if nodes < 1 or nodes > 100_000:
        _fail(f"--nodes: must be between 1 and 100000, got {nodes}")
    if gpus_per_node < 1 or gpus_per_node > 64:
        _fail(f"--gpus-per-node: must be between 1 and 64, got {gpus_per_node}")
    if not 0.0 <= capacity_error_rate < 1.0:
        _fail(f"--capacity-error-rate: must be in [0, 1), got {capacity_error_rate}")
    if spot_interrupt_hours is not None and spot_interrupt_hours <= 0:
        _fail(f"--spot-interrupt-hours: must be positive, got {spot_interrupt_hours}")
    try:
        path = trace or bundled_trace_path()
        jobs = load_trace(path, format, gpus_per_node=gpus_per_node, days=days)
        burst_cfg = None
        challenge_settings = None
        offers = b1_offers(spot=spot)
        if config is not None:
            cfg = load_config(config)
            burst_cfg = cfg.policy_config()
            challenge_settings = cfg.grand_challenge.settings()
            offers = offers_for(cfg)
            if spot and not cfg.offers.allow_spot:
                offers = b1_offers(spot=True)
        if spot:
            from dataclasses import replace

            from policies import PolicyConfig
            from policies.model import SelectionConfig

            base = burst_cfg or PolicyConfig()
            burst_cfg = replace(base, selection=replace(base.selection if base else SelectionConfig(), allow_spot=True))
        # Checked like `burst gc schedule` checks a challenge, before anything runs.
        sim_start = TRACE_EPOCH + jobs[0].submit
        challenges = challenges_for(
            [(v, parse_grand_challenge(v, sim_start)) for v in grand_challenge or ()],
            sim_start=sim_start, onprem_nodes=nodes, settings=challenge_settings,
        )
    except InputError as e:
        _fail(str(e))
    if not offers:
        _fail("no offers match the configured clouds, regions and accelerators")
    # Outputs are checked before the replay, which may take minutes (nothing is created here).
    if report is not None and (problem := report_dir_problem(report)):
        _fail(f"--report: {problem}")
    if store is not None:
        _check_db_url(store, "--store")
    settings = SimSettings(
        nodes=nodes,
        gpus_per_node=gpus_per_node,
        capacity_error_rate=capacity_error_rate,
        spot_interrupt_mean_s=spot_interrupt_hours * 3600 if spot_interrupt_hours else None,
        seed=seed,
    )
    store_factory = None
    if store is not None:
        store_factory = lambda: _open_store(store, "--store")  # noqa: E731
    console.print(
        f"trace [bold]{path}[/bold]: {len(jobs):,} jobs over {(jobs[-1].submit - jobs[0].submit) / 86400:.1f} days; "
        f"on-prem {nodes} x {gpus_per_node} GPUs; {len(offers)} offers"
    )
    with Progress(TextColumn("{task.description:>12}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn(), console=err_console, transient=True) as prog:

        def factory(name: str) -> Callable[[float], None]:
            task = prog.add_task(name, total=1.0)
            return lambda frac: prog.update(task, completed=frac)

        runs = run_policies(jobs, names, settings=settings, offers=offers, burst_config=burst_cfg, progress=factory,
                            store_factory=store_factory, challenges=challenges, challenge_settings=challenge_settings)
    console.print(render_table(runs, f"{nodes} nodes x {gpus_per_node} GPUs, {len(jobs):,} jobs (waits in minutes)"))
    for table in render_challenges(runs):
        console.print(table)
    head = headline(runs)
    if head:
        console.print(" ".join(f"{k}={v:.3f}" for k, v in head.items()))
    if report is not None:
        files = write_report(report, runs, {"trace": str(path), "nodes": nodes, "gpus_per_node": gpus_per_node, "jobs": len(jobs), "spot": spot, **head})
        console.print(f"report: {', '.join(str(f) for f in files)}")
    if json_out:
        out: dict[str, object] = {"policies": {r.name: r.figures for r in runs}, **head}
        if challenges:
            # The challenges' figures under the burst policy (else the first replayed policy);
            # every replayed policy's own list is under challenges_by_policy.
            by = {r.name: r.extra["challenges"] for r in runs if "challenges" in r.extra}
            out["challenges"] = by.get("burst") or next(iter(by.values()), [])
            out["challenges_by_policy"] = by
        print(json.dumps(out, default=float))
    left = {r.name: unfinished(r) for r in runs if unfinished(r)}
    if left:
        # The waits and dollars above leave these jobs out: exit 1, so a script comparing
        # policies cannot take a run that never placed a job for a clean one.
        biggest = max(jobs, key=lambda j: j.gpus)
        hint = (f"; job {biggest.id} asks for {biggest.gpus} GPUs, the on-prem cluster has {nodes * gpus_per_node}"
                if biggest.gpus > nodes * gpus_per_node else "")
        _fail("unfinished jobs (not in the waits or costs above): "
              + ", ".join(f"{n} under {name}" for name, n in left.items()) + hint, 1)


# ---- run ----------------------------------------------------------------------------------------


@app.command()
def run(
    config: Annotated[Path | None, typer.Option(help="Config file; default: the embedded defaults.")] = None,
    once: Annotated[bool, typer.Option(help="Do a single tick and exit.")] = False,
    ticks: Annotated[int | None, typer.Option(help="Stop after this many ticks (demo/testing).")] = None,
    verbose: Annotated[bool, typer.Option("-v", help="Debug logging.")] = False,
    metrics_port: Annotated[int, typer.Option(help="Serve /metrics (Prometheus), /healthz and /readyz on 127.0.0.1:PORT (0: off).")] = 0,
    metrics_addr: Annotated[str, typer.Option(help="Address for the metrics endpoint.")] = "127.0.0.1",
    log_format: Annotated[str, typer.Option("--log-format", help="text, or json: one object per line (ts, level, logger, msg, fields).")] = "text",
) -> None:
    """The live controller daemon (APScheduler interval tick, leader election in the store).

    With --once or --ticks, exits 1 when a tick could not act (the queue unreadable, the tick
    failed); an unreachable database is one line and exit 1, a bad config or option exit 2."""
    from bot.notifier import slack_notifier
    from burst import logs
    from burst.config import load_config
    from burst.daemon import Daemon
    from burst.wiring import build_runtime, offers_for

    if log_format not in logs.FORMATS:
        _fail(f"--log-format: expected text or json, got {log_format!r}")
    if not 0 <= metrics_port <= 65535:
        _fail(f"--metrics-port: must be 0..65535, got {metrics_port}")
    logs.setup(logging.DEBUG if verbose else logging.INFO, log_format)
    from burst.logsafe import install_safe_logging

    install_safe_logging()  # control characters in any logged text are escaped (issue 12)
    try:
        cfg = load_config(config)
        offers_for(cfg)  # the price catalog is input too: refused before anything is created
        store = _open_store(cfg.database_url, f"{config}: database_url" if config else "database_url")
        # The CLI is the only importer of bot/: the Slack notifier is built here and handed in.
        rt = build_runtime(cfg, store=store, notifier=slack_notifier(cfg.slack))
    except InputError as e:
        _fail(str(e))
    except BurstError as e:
        _fail(f"cannot start: {e}", 1)
    daemon = Daemon(
        rt.controller, rt.clock, rt.store, lease_ttl_s=cfg.lease_ttl_s, before_tick=rt.before_tick,
        after_tick=rt.after_tick, metrics=bool(metrics_port),
        closeables=rt.closeables, prewarmer=rt.prewarmer,
    )
    if metrics_port:
        from burst.metrics import serve

        serve(metrics_port, metrics_addr, ready=daemon.readiness)  # /metrics, /healthz, /readyz
    if once or ticks:
        n = 1 if once else int(ticks or 1)
        daemon.install_signal_handlers()  # SIGTERM: stop after the current tick, release the lease
        failed: list[str] = []
        try:
            for k in range(n):
                res = daemon.run_once()
                if daemon.stop_requested:
                    break
                if res is None and daemon.leader:  # the leader's tick raised (logged by the daemon)
                    failed.append("the tick failed (see the log above)")
                elif res is None:
                    err_console.print("standby: another controller holds the lease")
                elif res.skipped:
                    failed.append(f"the tick did not act: {res.skipped}")
                if k + 1 < n:
                    time.sleep(rt.tick_every_wall_s)
        except KeyboardInterrupt:
            pass
        finally:
            daemon.stop()
        if failed:
            from burst.redact import redact

            _fail(redact(failed[-1]) + (f" ({len(failed)} of {n} ticks)" if n > 1 else ""), 1)
        return
    from burst.scheduling import run_forever

    run_forever(daemon, rt.tick_every_wall_s)


# ---- status -------------------------------------------------------------------------------------


@app.command()
def status(
    config: Annotated[Path | None, typer.Option(help="Config file (for the database URL).")] = None,
    database_url: Annotated[str | None, typer.Option(help="Overrides the config's database_url.")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Instances, spend and pending overflow, read from the store."""
    from burst.cli_status import run  # the body, shared with the fast path (burst/cli_status.py)

    run(config, database_url, json_out, _fail)


# ---- budgets ---------------------------------------------------------------------------------------


def _budget_dict(b: BudgetState) -> dict[str, object]:
    from burst.cli_status import budget_dict

    return budget_dict(b)


def _budget_book(config: Path | None, database_url: str | None) -> BudgetBook:
    from burst.budgets import budget_book
    from burst.config import load_config

    try:
        cfg = load_config(config)
    except InputError as e:
        _fail(str(e))
    store = _open_store(database_url or cfg.database_url, "--database-url" if database_url else "database_url")
    try:
        return budget_book(cfg, store)
    except BurstError as e:
        _fail(f"database: {e}", 1)


@budget_app.command("show")
def budget_show(
    config: Annotated[Path | None, typer.Option(help="Config file; default: the embedded defaults.")] = None,
    database_url: Annotated[str | None, typer.Option(help="Overrides the config's database_url.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as one JSON line.")] = False,
) -> None:
    """Every site and team budget: spent, committed (spent plus what running instances are
    expected to cost), soft level, hard cap, and whether the hard cap holds launches back."""
    from burst.budgets import format_states

    states = _budget_book(config, database_url).states(time.time())
    if json_out:
        print(json.dumps({"budgets": [_budget_dict(b) for b in states]}))
        return
    for line in format_states(states):
        console.print(line, highlight=False, soft_wrap=True)


@budget_app.command("set")
def budget_set(
    budget: Annotated[str, typer.Argument(help="site:month, site:day, team:<team>:month or team:<team>:day")],
    level: Annotated[str, typer.Argument(help="soft (admins told, on-demand needs approval) or hard (no new launch)")],
    usd: Annotated[str, typer.Argument(help="Dollars; 0 removes the level.")],
    as_user: Annotated[str | None, typer.Option("--as", help="Actor recorded in the audit log; default: the OS user.")] = None,
    config: Annotated[Path | None, typer.Option(help="Config file; default: the embedded defaults.")] = None,
    database_url: Annotated[str | None, typer.Option(help="Overrides the config's database_url.")] = None,
) -> None:
    """Set one level of one budget (audited). Takes effect on the controller's next tick:
    a raised hard cap lets held launches go ahead; running work is never stopped."""
    from burst.budgets import BudgetInputError

    actor = _actor(as_user)
    book = _budget_book(config, database_url)
    now = time.time()
    try:
        lim = book.set_limit(actor, budget, level, usd, now=now)
    except BudgetInputError as e:
        _fail(f"{e}; nothing was changed")
    for b in book.states(now, [lim]):
        console.print(f"set by {actor}: {b.line()}", highlight=False, soft_wrap=True)


# ---- grand challenges ---------------------------------------------------------------------------

ConfigOpt = Annotated[Path | None, typer.Option(help="Config file; default: the embedded defaults.")]
DbOpt = Annotated[str | None, typer.Option(help="Overrides the config's database_url.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as one JSON line.")]
AsOpt = Annotated[str | None, typer.Option("--as", help="Actor recorded in the audit log; default: the OS user.")]


def _actor(as_user: str | None) -> str:
    import getpass

    if as_user is not None:
        if not as_user.strip() or len(as_user) > 64:
            _fail("--as: give a user name of 1 to 64 characters")
        return as_user.strip()
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return "cli"


class _GcContext:
    """What the gc commands share: the config, the store, the clock the controller uses, and
    the live queue built from the config as `burst run` builds it (only when needed)."""

    def __init__(self, config: Path | None, database_url: str | None, *, need_queue: bool, read_only: bool = False) -> None:
        from burst.challenges import ChallengeDesk, LiveQueue, cheapest_gpu_hour
        from burst.config import load_config
        from burst.errors import QueueError
        from burst.wiring import build_runtime

        try:
            self.cfg = load_config(config)
        except InputError as e:
            _fail(str(e))
        try:
            self.store = _open_store(database_url or self.cfg.database_url,
                                     "--database-url" if database_url else "database_url", read_only=read_only)
        except BurstError as e:
            _fail(f"database: {e}", 1)
        self.queue: LiveQueue | None = None
        self.settings = self.cfg.grand_challenge.settings()
        price = 0.0
        if need_queue:
            try:
                rt = build_runtime(self.cfg, store=self.store)
                self.now = rt.clock.now()
                if rt.before_tick is not None:  # the simulated world: move it to now
                    rt.before_tick(self.now)
                self.queue = LiveQueue.of_snapshot(rt.queue.snapshot(), self.now, f"{self.cfg.queue.kind} queue")
                price = cheapest_gpu_hour(rt.controller.offers)
            except InputError as e:
                _fail(str(e))
            except QueueError as e:
                _fail(f"queue: {e}", 1)
            except BurstError as e:
                _fail(f"cannot build the queue: {e}", 1)
        else:
            self.now = time.time()
        queue = self.queue
        self.desk = ChallengeDesk(self.store, live_queue=lambda: queue, settings=self.settings, price_per_gpu_hour=price)


def _when(t: float) -> str:
    from policies.grand_challenge import fmt_time

    return fmt_time(t)


def _print_challenge(gc: GrandChallenge) -> None:
    from burst.challenges import counts
    from burst.domain import CHALLENGE_TERMINAL, ChallengeEnding

    c = counts(gc)
    console.print(
        f"{gc.id} {gc.name}: [bold]{gc.state}[/bold]"
        + (f" ({gc.ending} requested)" if gc.ending is not ChallengeEnding.DONE and gc.state not in CHALLENGE_TERMINAL else "")
        + f", {_when(gc.start_at)} for {gc.duration_s / 3600:g} h on "
        + (f"{gc.nodes} node(s)" if gc.nodes else "the whole on-prem cluster")
        + f"; preempted {c['preempted']}, released {c['released']}, restored {c['restored']}",
        highlight=False, soft_wrap=True,
    )


@gc_app.command("schedule")
def gc_schedule(
    start: Annotated[str, typer.Option(help="2026-05-01T09:00Z, POSIX seconds, or +2h from now.")],
    duration: Annotated[str, typer.Option(help="6h, 90m, 1d12h.")],
    nodes: Annotated[int, typer.Option(help="On-prem nodes to take; 0: the whole on-prem cluster.")] = 0,
    job: Annotated[Path | None, typer.Option(help="The challenge job: a Slurm batch script or a Kubernetes Job manifest.")] = None,
    job_text: Annotated[str | None, typer.Option(help="The challenge job, inline.")] = None,
    kind: Annotated[str | None, typer.Option(help="slurm or kubernetes; default: from the file name (.yaml/.yml/.json: kubernetes).")] = None,
    burst_preempted: Annotated[bool, typer.Option("--burst-preempted", help="Release preempted jobs that may burst at once, so overflow runs them in the cloud.")] = False,
    name: Annotated[str, typer.Option(help="A name; default: the job file's name.")] = "",
    note: Annotated[str, typer.Option(help="A note shown with the challenge.")] = "",
    as_user: AsOpt = None,
    config: ConfigOpt = None,
    database_url: DbOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Validate and store a grand challenge (the same checks and audit as Slack), and show its
    impact on the live queue."""
    from burst.challenges import (
        ChallengeRequest,
        challenge_dict,
        impact_dict,
        kind_for_path,
        parse_duration,
        parse_start,
    )
    from burst.domain import ChallengeJobKind

    if (job is None) == (job_text is None):
        _fail("give the challenge job with exactly one of --job PATH or --job-text TEXT")
    if kind is not None and kind not in ("slurm", "kubernetes"):
        _fail(f"--kind: must be slurm or kubernetes, got {kind!r}")
    if len(note) > 200 or len(name) > 100:
        _fail("--note is at most 200 characters and --name at most 100")
    actor = _actor(as_user)
    ctx = _GcContext(config, database_url, need_queue=True)
    try:
        req = ChallengeRequest(
            start_at=parse_start(start, ctx.now), duration_s=parse_duration(duration, "--duration"), nodes=nodes,
            job_path=str(job) if job is not None else "", job_text=job_text or "",
            job_kind=ChallengeJobKind(kind) if kind else (kind_for_path(str(job)) if job else ChallengeJobKind.SLURM),
            burst_preempted=burst_preempted, name=name, note=note,
        )
        assessed = ctx.desk.assess(req, ctx.now)
        gc = ctx.desk.schedule(actor, req, ctx.now)
    except InputError as e:
        _fail(str(e))
    if json_out:
        out = challenge_dict(gc)
        if assessed.impact is not None:
            out["impact"] = impact_dict(assessed.impact, assessed.price_per_gpu_hour)
        print(json.dumps(out, default=float))
        return
    console.print(f"scheduled {gc.id} by {actor}", highlight=False)
    _print_challenge(gc)
    if assessed.impact is not None:
        i = assessed.impact
        console.print(
            f"impact (from the {assessed.queue.source if assessed.queue else 'queue'}): {len(i.jobs)} running job(s) of "
            f"{len(i.users)} user(s), {i.gpu_hours:,.1f} GPU-hours since their last start at risk; "
            f"burst-preempted would run {len(i.burst_jobs)} of them in the cloud for up to ${i.burst_cost_usd:,.2f}",
            highlight=False, soft_wrap=True,
        )


@gc_app.command("list")
def gc_list(config: ConfigOpt = None, database_url: DbOpt = None, json_out: JsonOpt = False) -> None:
    """Grand challenges not yet finished, by start."""
    from burst.challenges import challenge_dict

    ctx = _GcContext(config, database_url, need_queue=False, read_only=True)
    rows = ctx.desk.listing()
    if json_out:
        print(json.dumps([challenge_dict(g) for g in rows], default=float))
        return
    if not rows:
        console.print("no grand challenges scheduled")
    for g in rows:
        _print_challenge(g)


@gc_app.command("show")
def gc_show(
    challenge_id: Annotated[str, typer.Argument(help="gc-xxxxxx")],
    config: ConfigOpt = None,
    database_url: DbOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """One challenge: its phase, preempted/released/restored counts, jobs and phase history."""
    from burst.challenges import challenge_dict

    ctx = _GcContext(config, database_url, need_queue=False, read_only=True)
    try:
        gc = ctx.desk.get(challenge_id)
    except InputError as e:
        _fail(str(e))
    if json_out:
        print(json.dumps(challenge_dict(gc), default=float))
        return
    _print_challenge(gc)
    for p in gc.preempted_jobs:
        state = "restored" if p.restored else ("released" if p.released else "held")
        console.print(f"  job {p.job_id} ({p.user}, {p.gpus} GPUs, priority {p.priority}): {state}", highlight=False)
    for phase, at in gc.phases:
        console.print(f"  {_when(at)}  {phase}", highlight=False)
    if gc.last_error:
        console.print(f"  last error: {gc.last_error}", highlight=False)


@gc_app.command("cancel")
def gc_cancel(
    challenge_id: Annotated[str, typer.Argument(help="gc-xxxxxx")],
    as_user: AsOpt = None,
    config: ConfigOpt = None,
    database_url: DbOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Cancel in any phase. Before draining nothing on the cluster is touched; after, the
    controller's next tick releases every preempted job and lifts the reservation."""
    from bot.notifier import slack_notifier
    from burst.challenges import cancel_outcome, challenge_dict

    actor = _actor(as_user)
    ctx = _GcContext(config, database_url, need_queue=False)
    try:
        # as from Slack: a cancel after the notice went out is announced (the runner never sees
        # a challenge cancelled before draining again, so nobody else would tell the channel)
        notifier = slack_notifier(ctx.cfg.slack)
    except OSError as e:
        _fail(f"SLACK_BOT_TOKEN_FILE: {e.strerror or e}")
    try:
        gc = ctx.desk.cancel(actor, challenge_id, ctx.now, notifier)
    except InputError as e:
        _fail(str(e))
    if json_out:
        print(json.dumps({**challenge_dict(gc), "outcome": cancel_outcome(gc)}, default=float))
        return
    console.print(f"{gc.id}: {cancel_outcome(gc)}", highlight=False, soft_wrap=True)


@gc_app.command("plan")
def gc_plan(
    duration: Annotated[str, typer.Option(help="6h, 90m, 1d12h.")],
    nodes: Annotated[int, typer.Option(help="On-prem nodes to take; 0: the whole on-prem cluster.")] = 0,
    within: Annotated[str, typer.Option(help="Look this far ahead.")] = "7d",
    step: Annotated[str, typer.Option(help="Candidate starts every STEP.")] = "1h",
    top: Annotated[int, typer.Option(help="How many candidates to show.")] = 10,
    config: ConfigOpt = None,
    database_url: DbOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Rank candidate start times by the work they would preempt (running GPU-hours since their
    last start, then users affected), from the live queue and its time limits."""
    from rich.table import Table

    from burst.challenges import parse_duration
    from burst.domain import CHALLENGE_ACTIVE
    from policies.grand_challenge import plan_slots

    try:
        dur = parse_duration(duration, "--duration")
        within_s = parse_duration(within, "--within")
        step_s = parse_duration(step, "--step")
    except InputError as e:
        _fail(str(e))
    if dur <= 0:
        _fail("--duration: must be more than 0")
    if within_s <= 0 or step_s <= 0 or within_s / step_s > 10_000:
        _fail("--within and --step must be more than 0, with at most 10000 candidates")
    if not 1 <= top <= 1000:
        _fail(f"--top: must be between 1 and 1000, got {top}")
    ctx = _GcContext(config, database_url, need_queue=True, read_only=True)
    q = ctx.queue
    assert q is not None
    if dur > ctx.settings.max_duration_s:
        _fail(f"--duration: {duration} is over the maximum of {ctx.settings.max_duration_s / 3600:g} h")
    if nodes < 0 or nodes > q.onprem_count:
        _fail(f"--nodes: it asks for {nodes} nodes; the on-prem cluster has {q.onprem_count}")
    slots = plan_slots(
        now=ctx.now, running=q.running, nodes=q.nodes, duration_s=dur, node_count=nodes, within_s=within_s,
        step_s=step_s, existing=ctx.store.challenges(states=sorted(CHALLENGE_ACTIVE)), limit=top,
    )
    rows = [
        {"start": s.start, "gpu_hours": s.gpu_hours, "jobs": list(s.jobs), "users": list(s.users), "nodes": len(s.nodes)}
        for s in slots
    ]
    if json_out:
        print(json.dumps({"as_of": ctx.now, "source": q.source, "duration_s": dur, "slots": rows}, default=float))
        return
    t = Table(title=f"least disruptive starts for {duration} on {nodes or q.onprem_count} node(s) (from the {q.source})")
    for col in ("rank", "start", "GPU-h at risk", "jobs", "users"):
        t.add_column(col, justify="left" if col == "start" else "right")
    for k, sl in enumerate(slots, 1):
        t.add_row(str(k), _when(sl.start), f"{sl.gpu_hours:,.1f}", str(len(sl.jobs)), str(len(sl.users)))
    console.print(t)
    if not rows:
        console.print("no free slot in that window (every candidate overlaps a scheduled challenge)")


# ---- config -------------------------------------------------------------------------------------


@config_app.command("check")
def config_check(file: Annotated[Path, typer.Argument(help="Config file to validate.")]) -> None:
    """Validate a config file; print every problem, one per line. A valid file gets one line per
    cloud: real, simulated, disabled or not configured."""
    from burst.config import CLOUD_NAMES, load_config

    try:
        cfg = load_config(file)
    except ConfigError as e:
        lines = getattr(e, "lines", None) or [str(e)]
        for line in lines:
            _error_line(line)
        raise typer.Exit(2) from None
    console.print(f"{file}: ok (cluster {cfg.cluster!r}, queue {cfg.queue.kind}, clouds {', '.join(cfg.enabled_clouds()) or 'none'})", markup=False, highlight=False)
    for name in CLOUD_NAMES:  # one line per cloud: real SDK, simulator, or none at all
        mode = cfg.cloud_mode(name)
        c = cfg.cloud(name)
        console.print(f"{name}: {mode if mode is not None else ('disabled' if c is not None else 'not configured')}", highlight=False)


@config_app.command("from-terraform")
def config_from_terraform(
    files: Annotated[list[Path] | None, typer.Argument(help="`terraform output -json` files (one per landing zone); none or '-': stdin.")] = None,
) -> None:
    """Render the clouds: and mirror: sections from Terraform outputs (terraform/README.md)."""
    from burst.terraform_config import read_documents, render_yaml

    try:
        text = render_yaml(read_documents(files or [Path("-")], sys.stdin))
    except InputError as e:
        _fail(str(e))  # _error_line escapes markup itself (the message quotes patterns such as [a-z0-9])
    sys.stdout.write(text)


_register_optional()


def main() -> None:
    from burst.cli_help import fast_top_help

    if fast_top_help():  # ``burst --help``: the kept text Typer would print (burst/cli_help.py)
        return
    try:
        app()
    except InputError as e:  # anything that escaped a command's own handling
        _error_line(str(e))
        sys.exit(2)


if __name__ == "__main__":
    main()
