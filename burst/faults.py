"""Test-only fault injection: named crash points inside the controller's risky windows.

A *risky window* is the gap between two side effects that must both happen, e.g. between
writing a launch intent and calling the cloud, or between the cloud accepting a launch and the
store recording it. Killing the process at a random wall-clock moment rarely lands inside such
a gap; :func:`crash_point` places the kill exactly there, so the chaos tests
(``tests/chaos/``) exercise every recovery path on every run.

It exists for those tests only and is **inert in production**: unless the environment variable
``BURST_CRASH_POINTS`` names the point, a call is a dictionary lookup and nothing else. The
variable lists ``name:probability`` pairs, comma-separated::

    BURST_CRASH_POINTS="after-intent:0.2,after-launch:0.2,before-terminate-call:0.2"

When a listed point fires, the process writes one line to stderr (``crash point <name> fired``,
so a harness can count it) and sends itself ``SIGKILL``: no ``finally`` blocks, no atexit
handlers, no flushed buffers, no released lease. Exactly what a power cut or the OOM killer
does.

The points (where burst/executor.py and burst/controller.py call them):

* ``after-intent``: the PLANNED intent row is committed; the provider's launch call is next.
* ``after-launch``: the provider accepted the launch; the LAUNCHING transition is not recorded.
* ``before-terminate-call``: TERMINATING is recorded; the provider's terminate call is next.
* ``after-terminate-call``: the provider accepted the terminate; node removal is not recorded.
* ``orphan-terminate``: inside orphan collection, between the terminate call and its audit row.

Grand challenges (where burst/grand_challenge.py calls them):

* ``after-preempted-recorded``: the preempted set and PREEMPTING are committed; no signal sent.
* ``between-signal-and-hold``: the checkpoint signals went out; the grace and the hold are next.
* ``after-hold``: the queue accepted the hold; the challenge job is not submitted.
* ``after-submit``: the queue accepted the challenge job; its id and RUNNING are not recorded.
* ``mid-release``: one job's ``released_at`` is recorded; its release call is next.
"""

from __future__ import annotations

import os
import random
import signal
import sys

ENV = "BURST_CRASH_POINTS"

# The names, for harnesses that list them (BURST_CRASH_POINTS accepts any string).
GRAND_CHALLENGE_POINTS = (
    "after-preempted-recorded",
    "between-signal-and-hold",
    "after-hold",
    "after-submit",
    "mid-release",
)

_parsed: tuple[str, dict[str, float]] | None = None


def _points() -> dict[str, float]:
    """``name -> probability`` from the environment, parsed once per distinct value."""
    global _parsed
    raw = os.environ.get(ENV, "")
    if _parsed is not None and _parsed[0] == raw:
        return _parsed[1]
    points: dict[str, float] = {}
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        name, _, p = item.partition(":")
        try:
            prob = float(p) if p else 1.0
        except ValueError:
            prob = 0.0  # a malformed entry never fires
        points[name.strip()] = min(1.0, max(0.0, prob))
    _parsed = (raw, points)
    return points


def crash_point(name: str) -> None:
    """SIGKILL this process here, with the probability ``BURST_CRASH_POINTS`` gives ``name``.
    A no-op when the variable is unset or does not name the point (always, in production)."""
    if ENV not in os.environ:
        return
    prob = _points().get(name, 0.0)
    if prob <= 0.0 or random.random() >= prob:
        return
    try:
        sys.stderr.write(f"crash point {name} fired\n")
        sys.stderr.flush()
    finally:
        os.kill(os.getpid(), signal.SIGKILL)
