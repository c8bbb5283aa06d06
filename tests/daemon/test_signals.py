"""Leader failover after a signal, between two real ``burst run`` processes on one SQLite store
(tests/daemon/harness.py).

* SIGTERM: the leader finishes its tick, releases the lease and exits 0; the standby takes over
  on its next tick (within 2 ticks), not after a TTL.
* SIGKILL: nothing is released; the standby takes over once the TTL has run out.

Each test prints the failover time it measured (``-s`` shows it).
"""

from __future__ import annotations

import signal
from pathlib import Path

from tests.daemon.harness import TICK_S, Controller, configure, start_pair, takeover_after, wait_for
from tests.support.moto_server import MotoServer


def test_sigterm_releases_the_lease_and_the_standby_takes_over_within_two_ticks(
    tmp_path: Path, moto: MotoServer, controllers: list[Controller]
) -> None:
    config, _, url = configure(tmp_path, moto, lease_ttl_s=60.0)  # a TTL far longer than 2 ticks
    a, b = start_pair(config, tmp_path, url, controllers)
    failover = takeover_after(signal.SIGTERM, a, url, timeout=30.0)
    print(f"\nfailover after SIGTERM: {failover:.2f} s (tick {TICK_S:.0f} s, lease TTL 60 s)")
    assert failover <= 2 * TICK_S + 0.5, failover
    assert a.proc is not None and a.proc.wait(timeout=30) == 0
    log = a.text()
    assert "SIGTERM: stopping after the current tick" in log and "ctl-a released the lease" in log
    assert "Traceback" not in log
    wait_for("ctl-b's takeover line", lambda: "ctl-b is now the leader (lease epoch 2)" in b.text(), 10.0)


def test_sigkill_leaves_the_lease_to_expire_and_the_standby_takes_over_after_the_ttl(
    tmp_path: Path, moto: MotoServer, controllers: list[Controller]
) -> None:
    ttl = 5.0
    config, _, url = configure(tmp_path, moto, lease_ttl_s=ttl)
    a, b = start_pair(config, tmp_path, url, controllers)
    failover = takeover_after(signal.SIGKILL, a, url, timeout=30.0)
    print(f"\nfailover after SIGKILL: {failover:.2f} s (tick {TICK_S:.0f} s, lease TTL {ttl:.0f} s)")
    # the lease was renewed at most one tick before the kill, and b looks once per tick
    assert ttl - TICK_S - 0.5 <= failover <= ttl + 2 * TICK_S + 0.5, failover
    wait_for("ctl-b's takeover line", lambda: "ctl-b is now the leader (lease epoch 2)" in b.text(), 10.0)
