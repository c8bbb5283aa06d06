"""Two real ``burst run`` processes on one store, against EC2 in moto and a JSON queue document
(the chaos harness, tests/chaos/harness.py): the pieces tests/daemon/test_signals.py and
tests/daemon/test_fencing_postgres.py share."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import yaml

from burst.daemon import LEASE
from burst.ports import Lease
from burst.queues.jsonfile import update_doc, write_doc
from burst.store.sql import SqlStore
from tests.chaos.harness import ControllerProcess, write_config
from tests.support.moto_server import MotoServer

TICK_S = 1.0


class Controller(ControllerProcess):
    """``burst run`` under a holder id of its own, logging to ``<log_dir>/<holder>/``."""

    def __init__(self, config: Path, log_dir: Path, holder: str) -> None:
        (log_dir / holder).mkdir(parents=True, exist_ok=True)
        super().__init__(config, log_dir / holder)
        self.holder = holder

    def env(self, crash_points: str) -> dict[str, str]:
        env = super().env(crash_points)
        env["BURST_HOLDER_ID"] = self.holder
        return env

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid


def wait_for(what: str, cond: Callable[[], bool], timeout: float = 60.0, every: float = 0.02) -> float:
    """Poll ``cond`` until true; the monotonic time it first held."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return time.monotonic()
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def configure(tmp: Path, moto: MotoServer, *, lease_ttl_s: float, database_url: str | None = None) -> tuple[Path, Path, str]:
    config, queue, db_url = write_config(tmp, moto, accelerators=["L4"])
    cfg = yaml.safe_load(config.read_text(encoding="utf-8"))
    cfg["lease_ttl_s"] = lease_ttl_s
    cfg["tick_interval_s"] = TICK_S
    if database_url is not None:
        cfg["database_url"] = db_url = database_url
    config.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    now = time.time()
    # One on-prem node, busy: a pending job that may burst needs cloud capacity.
    write_doc(queue, {
        "pending": [],
        "running": [{"id": "hog", "gpus": 8, "submit_time": now - 7200, "start_time": now - 7000,
                     "node_names": ["onprem-0"], "may_burst": False}],
        "nodes": [{"name": "onprem-0", "gpus": 8, "gpus_used": 8, "running_jobs": 1}],
    })
    return config, queue, db_url


def lease_of(url: str) -> Callable[[], Lease | None]:
    holder: list[SqlStore] = []

    def read() -> Lease | None:
        if not holder:
            try:
                holder.append(SqlStore.from_url(url, upgrade=False))
            except Exception:  # noqa: BLE001 - not created yet
                return None
        try:
            return holder[0].lease(LEASE)
        except Exception:  # noqa: BLE001 - the first controller is still migrating
            return None

    return read


def start_pair(config: Path, tmp: Path, url: str, started: list[Controller]) -> tuple[Controller, Controller]:
    a, b = Controller(config, tmp / "logs", "ctl-a"), Controller(config, tmp / "logs", "ctl-b")
    started += [a, b]
    lease = lease_of(url)
    a.start()
    wait_for("ctl-a to lead", lambda: (lease() or Lease("", "", 0, 0)).holder == "ctl-a" or a.exit_code() is not None)
    assert a.exit_code() is None, a.text()[-3000:]
    b.start()
    wait_for("ctl-b to stand by", lambda: "standby: lease held by ctl-a until " in b.text() or b.exit_code() is not None)
    assert b.exit_code() is None, b.text()[-3000:]
    return a, b


def takeover_after(signum: signal.Signals, a: Controller, url: str, timeout: float) -> float:
    lease = lease_of(url)
    time.sleep(2.5 * TICK_S)  # both in their steady rhythm
    t0 = time.monotonic()
    os.kill(a.pid, signum)
    t1 = wait_for("ctl-b to take the lease", lambda: (lease() or Lease("", "", 0, 0)).holder == "ctl-b", timeout)
    return t1 - t0


def signal_at_first_launch(
    moto: MotoServer, pid: Callable[[], int], sent: list[float], signum: signal.Signals = signal.SIGSTOP
) -> Callable[[], None]:
    """Wrap moto's app: the first RunInstances is carried out (EC2 accepted it), then the caller
    is sent ``signum`` before it gets the answer, i.e. in the middle of its tick (the time it was
    sent is appended to ``sent``). Returns the undo."""
    mw = moto.middleware
    inner = mw.app

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        body = list(inner(environ, start_response))
        raw = environ["wsgi.input"].getvalue() if hasattr(environ["wsgi.input"], "getvalue") else b""
        if b"Action=RunInstances" in raw and not sent:
            os.kill(pid(), signum)
            sent.append(time.monotonic())
        return body

    mw.app = app

    def undo() -> None:
        mw.app = inner

    return undo


def submit_burstable_job(queue: Path, job_id: str = "j1") -> None:
    """A one-GPU job that has waited an hour and may burst: the leader launches for it."""

    def add(doc: dict[str, Any]) -> None:
        doc["pending"].append({"id": job_id, "gpus": 1, "submit_time": time.time() - 3600, "may_burst": True,
                               "team": "t", "owner": "ada"})

    update_doc(queue, add)
