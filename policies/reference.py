"""Reference policies for benchmarks. These are yardsticks, not products.

* ``NEVER``: no bursting; the on-prem queue as it is.
* ``GREEDY``: modelled on Cluster Autoscaler's behaviour (BENCHMARKS.md B1): any job still
  pending 30 s after submission that existing and incoming capacity cannot take gets the
  cheapest instance (by hourly price) that fits it, one job per instance, and an instance is
  terminated after 10 minutes idle. It runs on the same machinery as ``burst``, configured so.
* The **clairvoyant** reference knows every arrival and duration and so cannot be a tick policy;
  it lives in :mod:`burst.sim.clairvoyant`.
"""

from __future__ import annotations

from policies.model import OverflowConfig, PolicyConfig, ScaleInConfig, SelectionConfig

NEVER = PolicyConfig(name="never", overflow=OverflowConfig(enabled=False))

GREEDY = PolicyConfig(
    name="greedy",
    overflow=OverflowConfig(wait_threshold_s=30.0),
    selection=SelectionConfig(pack=False),
    # Cluster Autoscaler does not cancel a scale-up whose pods found room elsewhere.
    scale_in=ScaleInConfig(idle_timeout_s=600.0, cancel_unneeded_launches=False),
)

BURST = PolicyConfig(name="burst")

BY_NAME = {"never": NEVER, "greedy": GREEDY, "burst": BURST}
