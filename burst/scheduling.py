"""APScheduler wiring for the daemon, and nothing else.

The tick is an interval job. APScheduler jobs must be module-level functions (not lambdas or
bound methods) to be storable, so the job calls :func:`_tick_job`, which finds the daemon in
this module's registry. ``max_instances=1`` and ``coalesce=True``: a slow tick is never run
twice at once, and missed runs collapse into one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from burst.daemon import Daemon

log = logging.getLogger("burst.scheduling")

_DAEMONS: dict[str, Daemon] = {}


def _tick_job(name: str) -> None:
    daemon = _DAEMONS.get(name)
    if daemon is not None:
        daemon.run_once()


def _prewarm_job(name: str) -> None:
    """Mirror the most used images of the last 30 days to every mirror target (leader only)."""
    daemon = _DAEMONS.get(name)
    if daemon is None or not daemon.leader:
        return
    prewarmer = daemon.prewarmer
    if prewarmer is None:
        return
    now = daemon.clock.now()
    uses: dict[str, int] = {}
    for inst in daemon.store.instances(since=now - 30 * 86400):
        if inst.image:
            uses[inst.image] = uses.get(inst.image, 0) + 1
    if uses:
        results = prewarmer.prewarm(uses)
        log.info("prewarm: %d image copies ensured", len(results))


def run_forever(daemon: Daemon, every_s: float, name: str = "controller", prewarm_every_s: float = 6 * 3600) -> None:
    from apscheduler.schedulers.blocking import BlockingScheduler

    _DAEMONS[name] = daemon
    sched = BlockingScheduler()

    def every(fn: Callable[[str], None], seconds: float, job_id: str) -> None:
        # Date-less interval job; misfire_grace_time=None so a run due while the process was down
        # is still made on start instead of being silently dropped (RECIPES: APScheduler traps).
        sched.add_job(fn, "interval", args=[name], seconds=seconds, id=job_id, max_instances=1, coalesce=True,
                      replace_existing=True, misfire_grace_time=None)

    every(_tick_job, every_s, f"tick-{name}")
    every(_prewarm_job, prewarm_every_s, f"prewarm-{name}")
    log.info("ticking every %.3g s", every_s)
    daemon.tick_every_s = every_s
    # SIGTERM/SIGINT end the scheduler's wait (Daemon.install_signal_handlers); the tick in
    # flight, if any, finishes (shutdown waits for the worker) before the lease is released.
    daemon.install_signal_handlers()
    try:
        daemon.run_once()
        if not daemon.stop_requested:
            sched.start()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        daemon.stop_requested = True  # no tick starts from here on
        daemon.stopping = True  # a second signal must not cut the wait for the tick short
        if sched.running:
            sched.shutdown(wait=True)
        daemon.stop()
        _DAEMONS.pop(name, None)
