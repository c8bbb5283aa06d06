"""A real Slurm 22.05 cluster on 127.0.0.1 in a temporary directory (RECIPES.md, "Slurm 22.05 from
Debian" and "Slurm burst nodes").

What it starts, all as root and all in the foreground so that teardown holds every pid:

* ``munged`` with its own key, socket, pid, log and seed files under the tmp dir;
* ``slurmctld`` on a free port;
* one ``slurmd -N gpuNN`` per on-prem node (``gpu01..gpu04``), 8 fake A100s each (character
  devices made with ``mknod``, gres.conf with ``File=`` and ``AutoDetect=off``);
* FUTURE placeholder nodes ``burst01..burst04`` (``Feature=cloud,aws``), never started: they make
  ``--constraint=cloud`` acceptable at submit before any burst node exists (see
  burst/queues/slurm/adapter.py). Burst nodes themselves are dynamic:
  :meth:`SlurmCluster.start_dynamic_node`.

Every client call goes through :meth:`SlurmCluster.run`, with ``SLURM_CONF`` exported and a
timeout. Waits poll with a deadline. Usable outside pytest too (``with SlurmCluster(dir) as c:``).

Hooks for an end-to-end harness (the controller test):

* ``cluster.conf`` / ``cluster.env`` - build a ``SlurmSettings(slurm_conf=cluster.conf)``;
* ``cluster.burst_nodes`` - the FUTURE placeholder names;
* ``cluster.start_dynamic_node(name, features)`` - play the booted instance: ``slurmd -Z``;
* ``cluster.stop_burst_node(name)`` - play the terminated instance: its slurmd stops;
* ``cluster.fill_onprem()`` - occupy every on-prem GPU with sleep jobs (waits until RUNNING);
* ``cluster.sbatch(...)``, ``cluster.job_state(id)``, ``cluster.wait_for(pred, timeout)``.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

SLURM_BINARIES = ("munged", "slurmctld", "slurmd", "squeue", "sinfo", "scontrol", "sbatch", "scancel")
GPUS_PER_NODE = 8
CLIENT_TIMEOUT_S = 15.0


def missing_binaries() -> list[str]:
    """The Slurm/munge programs that are not installed (empty when the cluster can start)."""
    found = []
    for b in SLURM_BINARIES:
        if shutil.which(b) is None and not Path("/usr/sbin", b).exists():
            found.append(b)
    return found


def skip_reason() -> str | None:
    """Why a real Slurm cluster cannot start here, or None."""
    miss = missing_binaries()
    if miss:
        return (
            f"Slurm/munge not installed (missing: {', '.join(miss)}); run scripts/install-system-deps.sh"
        )
    if os.geteuid() != 0:
        return "the real Slurm cluster fixture needs root (munged/slurmd run as root, mknod)"
    return None


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports that are free on 127.0.0.1 right now."""
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def port_bindable(port: int) -> bool:
    """Could a daemon bind 127.0.0.1:``port`` now? Probed as Slurm binds (SO_REUSEADDR: a
    TIME_WAIT left by an earlier daemon is no obstacle; a socket still bound to it is)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _which(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


def wait_for(pred: Callable[[], T], timeout: float, what: str, interval: float = 0.1) -> T:
    """Poll ``pred`` until it returns something truthy; raise TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            got = pred()
            if got:
                return got
        except Exception as e:  # noqa: BLE001 - keep polling; report the last failure
            last_exc = e
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {what}" + (
                f" (last error: {last_exc})" if last_exc else ""))
        time.sleep(interval)


class SlurmCluster:
    """A throw-away Slurm cluster; see the module docstring."""

    def __init__(
        self,
        root: Path,
        onprem: int = 4,
        burst: int = 4,
        gpus_per_node: int = GPUS_PER_NODE,
        gpu_type: str = "a100",
    ) -> None:
        self.root = Path(root)
        self.onprem_nodes = [f"gpu{i:02d}" for i in range(1, onprem + 1)]
        self.burst_nodes = [f"burst{i:02d}" for i in range(1, burst + 1)]
        self.gpus_per_node = gpus_per_node
        self.gpu_type = gpu_type
        self.conf = self.root / "etc" / "slurm.conf"
        self.munge_socket = self.root / "munge" / "munge.socket.2"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.ctld_port = 0
        self.node_ports: dict[str, int] = {}
        self.env = dict(os.environ)
        self.env["SLURM_CONF"] = str(self.conf)
        # A user's own environment must not leak into the test cluster.
        for k in list(self.env):
            if k.startswith(("SLURM_", "SBATCH_", "SQUEUE_", "SINFO_", "SALLOC_", "SRUN_")) and k != "SLURM_CONF":
                del self.env[k]

    # ---- lifecycle -----------------------------------------------------------------------

    def __enter__(self) -> SlurmCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 30.0) -> None:
        t0 = time.monotonic()
        try:
            self._layout()
            self._start_munge()
            self._write_conf()
            self.start_ctld()
            for n in self.onprem_nodes:
                self._start_slurmd(n)
            wait_for(lambda: self._all_idle(self.onprem_nodes), timeout, "on-prem nodes to be idle")
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - t0

    def stop(self) -> None:
        """Kill every daemon this cluster started (slurmds first, munged last), and every job step
        (``slurmstepd`` and job scripts detach from slurmd, so they are found by their environment)."""
        order = sorted(self.procs, key=lambda k: (k == "munged", k == "slurmctld"))
        for name in order:
            if name.startswith("slurmd-"):
                self._kill(name)
        self.kill_strays()
        for name in order:
            self._kill(name)
        self.procs.clear()
        self.kill_strays()

    def _own_pids(self, node: str | None = None) -> list[int]:
        """Processes started on behalf of this cluster (optionally: of one node), by environment."""
        mark = f"SLURM_CONF={self.conf}".encode()
        node_marks = (f"BURST_TEST_NODE={node}".encode(), f"SLURMD_NODENAME={node}".encode())
        me = os.getpid()
        pids = []
        for d in Path("/proc").iterdir():
            if not d.name.isdigit() or int(d.name) == me:
                continue
            try:
                env = (d / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if mark not in env:
                continue
            if node is not None and not any(m in env for m in node_marks):
                continue
            pids.append(int(d.name))
        return pids

    def kill_strays(self, node: str | None = None) -> None:
        """SIGKILL job steps and job scripts left behind by (a node of) this cluster."""
        daemon_pids = {p.pid for p in self.procs.values() if p.poll() is None}
        for pid in self._own_pids(node):
            if pid in daemon_pids:
                continue
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    def _kill(self, name: str, timeout: float = 5.0) -> None:
        p = self.procs.pop(name, None)
        if p is None or p.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                p.kill()
            p.wait(timeout)

    # ---- files ---------------------------------------------------------------------------

    def _layout(self) -> None:
        for d in ("etc", "state", "log", "spool", "dev", "jobs"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        munge = self.root / "munge"
        munge.mkdir(exist_ok=True)
        os.chmod(self.root, 0o755)
        os.chmod(munge, 0o755)  # munged insists on a socket dir that others cannot write
        for i in range(self.gpus_per_node):
            dev = self.root / "dev" / f"nvidia{i}"
            if not dev.exists():
                try:
                    os.mknod(dev, 0o600 | stat.S_IFCHR, os.makedev(195, i))
                except OSError:  # no CAP_MKNOD (some containers): slurmd only needs the path
                    dev.touch()

    def _start_munge(self) -> None:
        d = self.root / "munge"
        key = d / "munge.key"
        if not key.exists():
            key.write_bytes(secrets.token_bytes(1024))
        os.chmod(key, 0o600)
        log = open(d / "munged.out", "ab")  # noqa: SIM115 - owned by the process
        self.procs["munged"] = subprocess.Popen(
            [
                _which("munged"), "--foreground", "--force",
                f"--socket={self.munge_socket}", f"--key-file={key}",
                f"--pid-file={d / 'munged.pid'}", f"--log-file={d / 'munged.log'}",
                f"--seed-file={d / 'munged.seed'}",
            ],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        log.close()
        wait_for(lambda: self._munge_ok(), 10, "munged socket")

    def _munge_ok(self) -> bool:
        p = self.procs["munged"]
        if p.poll() is not None:
            raise RuntimeError(f"munged exited {p.returncode}: {self._tail(self.root / 'munge' / 'munged.log')}")
        return self.munge_socket.exists()

    def _write_conf(self) -> None:
        n_nodes = len(self.onprem_nodes) + len(self.burst_nodes)
        ports = free_ports(2 + n_nodes)
        self.ctld_port = ports[0]
        self.dynamic_port = ports[1]  # SlurmdPort: used only by a dynamic node (slurmd -Z), one per IP
        all_nodes = self.onprem_nodes + self.burst_nodes
        self.node_ports = dict(zip(all_nodes, ports[2:], strict=True))
        r = self.root
        node_common = (
            f"NodeHostname=localhost NodeAddr=127.0.0.1 CPUs=16 RealMemory=64000 "
            f"Gres=gpu:{self.gpu_type}:{self.gpus_per_node}"
        )
        lines = [
            "ClusterName=bursttest",
            f"SlurmctldHost={socket.gethostname().split('.')[0]}(127.0.0.1)",
            f"SlurmctldPort={self.ctld_port}",
            f"SlurmdPort={ports[1]}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={self.munge_socket},cred_expire=5",
            f"StateSaveLocation={r / 'state'}",
            f"SlurmdSpoolDir={r / 'spool'}/%n",
            f"SlurmctldPidFile={r / 'slurmctld.pid'}",
            f"SlurmdPidFile={r / 'spool'}/slurmd-%n.pid",
            f"SlurmctldLogFile={r / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={r / 'log'}/slurmd-%n.log",
            "SlurmctldDebug=info",
            "SlurmdDebug=info",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "MpiDefault=none",
            "SwitchType=switch/none",
            "MailProg=/bin/true",
            "SchedulerType=sched/backfill",
            "SchedulerParameters=bf_interval=1,sched_interval=1",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "GresTypes=gpu",
            "SlurmdParameters=config_overrides",
            "CommunicationParameters=NoInAddrAny,NoCtldInAddrAny",
            "ReturnToService=2",
            "MessageTimeout=5",
            "SlurmdTimeout=30",
            "InactiveLimit=0",
            "KillWait=2",
            "MinJobAge=300",
            "JobRequeue=1",
            "TreeWidth=65533",
            f"MaxNodeCount={n_nodes + 4}",  # room for dynamic nodes (slurmd -Z), RECIPES option 2
        ]
        for n in self.onprem_nodes:
            lines.append(f"NodeName={n} {node_common} Port={self.node_ports[n]} Feature=onprem")
        for n in self.burst_nodes:
            lines.append(f"NodeName={n} {node_common} Port={self.node_ports[n]} Feature=cloud,aws State=FUTURE")
        lines += [
            "PartitionName=gpu Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
            "PartitionName=burstable Nodes=ALL MaxTime=INFINITE State=UP",
        ]
        self.conf.write_text("\n".join(lines) + "\n")
        dev = r / "dev"
        last = self.gpus_per_node - 1
        gres = ["AutoDetect=off"]
        for n in all_nodes:
            gres.append(f"NodeName={n} Name=gpu Type={self.gpu_type} File={dev}/nvidia[0-{last}]")
        (self.conf.parent / "gres.conf").write_text("\n".join(gres) + "\n")

    # ---- daemons -------------------------------------------------------------------------

    def start_ctld(self, timeout: float = 20.0) -> None:
        """Start slurmctld (clean state) and wait until it answers."""
        if self.ctld_port:  # a restart: the port is the configured one, free it must be
            wait_for(lambda: port_bindable(self.ctld_port), 30, f"slurmctld's port {self.ctld_port} to be free")
        out = open(self.root / "log" / "slurmctld.out", "ab")  # noqa: SIM115
        self.procs["slurmctld"] = subprocess.Popen(
            [_which("slurmctld"), "-D", "-i", "-f", str(self.conf)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env,
        )
        out.close()

        def up() -> bool:
            p = self.procs["slurmctld"]
            if p.poll() is not None:
                raise RuntimeError(
                    f"slurmctld exited {p.returncode}: {self._tail(self.root / 'log' / 'slurmctld.log')}"
                )
            return self.run("scontrol", "ping", check=False, timeout=5).returncode == 0

        wait_for(up, timeout, "slurmctld to answer scontrol ping", interval=0.2)

    def stop_ctld(self) -> None:
        self._kill("slurmctld")

    def _start_slurmd(self, node: str) -> None:
        (self.root / "spool" / node).mkdir(parents=True, exist_ok=True)
        out = open(self.root / "log" / f"slurmd-{node}.out", "ab")  # noqa: SIM115
        env = dict(self.env, BURST_TEST_NODE=node)  # inherited by slurmstepd: lets teardown find it
        self.procs[f"slurmd-{node}"] = subprocess.Popen(
            [_which("slurmd"), "-D", "-N", node, "-f", str(self.conf)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
        )
        out.close()

    def stop_burst_node(self, node: str) -> None:
        """Play the instance going away: stop its slurmd and kill whatever ran on it (the
        scheduler's own state is not touched)."""
        self._kill(f"slurmd-{node}")
        self.kill_strays(node)

    def start_dynamic_node(self, node: str, features: str = "cloud,aws", timeout: float = 20.0) -> float:
        """Play an instance whose user data registers a *dynamic* node (``slurmd -Z``, RECIPES
        option 2). Only one at a time on 127.0.0.1 (``Port=`` is not allowed in ``--conf``)."""
        gres = self.conf.parent / "gres.conf"
        line = f"NodeName={node} Name=gpu Type={self.gpu_type} File={self.root / 'dev'}/nvidia[0-{self.gpus_per_node - 1}]"
        if line not in gres.read_text():
            with gres.open("a") as f:
                f.write(line + "\n")
        (self.root / "spool" / node).mkdir(parents=True, exist_ok=True)
        conf = f"CPUs=16 RealMemory=64000 Gres=gpu:{self.gpu_type}:{self.gpus_per_node} Feature={features}"
        log = self.root / "log" / f"slurmd-{node}.log"
        t0 = time.monotonic()
        # Every dynamic node listens on the one SlurmdPort: the last one's socket (a stray of it
        # still exiting) can hold it for a moment, and a slurmd that cannot bind it never
        # registers (a CI run waited 20 s for one so, 2026-12-03). Wait for the port; start again
        # if the bind still failed.
        for _ in range(3):
            wait_for(lambda: port_bindable(self.dynamic_port), 30, f"the dynamic nodes' port {self.dynamic_port} to be free")
            seen = log.stat().st_size if log.exists() else 0
            out = open(self.root / "log" / f"slurmd-{node}.out", "ab")  # noqa: SIM115
            self.procs[f"slurmd-{node}"] = subprocess.Popen(
                [_which("slurmd"), "-D", "-Z", "-N", node, "--conf", conf, "-f", str(self.conf)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=dict(self.env, BURST_TEST_NODE=node),
            )
            out.close()

            def up_or_unbound(seen: int = seen) -> str:
                if self._node_in_service(node):
                    return "up"
                if log.exists() and b"Unable to bind listen port" in log.read_bytes()[seen:]:
                    return "unbound"
                return ""

            got = wait_for(up_or_unbound, timeout, f"dynamic node {node} to register")
            if got == "up":
                return time.monotonic() - t0
            self._kill(f"slurmd-{node}")
            self.kill_strays(node)
        raise RuntimeError(f"dynamic node {node}: slurmd could not bind port {self.dynamic_port} in 3 attempts")

    def slurmd_running(self, node: str) -> bool:
        p = self.procs.get(f"slurmd-{node}")
        return p is not None and p.poll() is None

    # ---- client calls --------------------------------------------------------------------

    def run(
        self, *args: str, check: bool = True, timeout: float = CLIENT_TIMEOUT_S, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a Slurm client command with SLURM_CONF exported and a timeout."""
        cp = subprocess.run(
            list(args), env=self.env, capture_output=True, text=True, timeout=timeout, input=input,
            cwd=self.root / "jobs",
        )
        if check and cp.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} exited {cp.returncode}: {cp.stderr.strip()}")
        return cp

    def sbatch(self, *opts: str, script: str = "#!/bin/sh\nsleep 600\n") -> str:
        """Submit a batch script; returns the job id."""
        path = self.root / "jobs" / f"job-{secrets.token_hex(4)}.sh"
        path.write_text(script)
        cp = self.run("sbatch", "--parsable", f"--chdir={self.root / 'jobs'}",
                      f"--output={self.root / 'jobs'}/slurm-%j.out", *opts, str(path))
        return cp.stdout.strip().split(";")[0]

    def show_node(self, node: str) -> dict[str, str]:
        """``scontrol show node -o`` as a dict (empty when Slurm does not know the node)."""
        cp = self.run("scontrol", "show", "node", "-o", node, check=False)
        if cp.returncode != 0:
            return {}
        return dict(re.findall(r"(\w+)=(\S*)", cp.stdout))

    def node_state(self, node: str) -> str:
        return self.show_node(node).get("State", "")

    def show_job(self, job_id: str) -> dict[str, str]:
        cp = self.run("scontrol", "show", "job", "-o", job_id, check=False)
        if cp.returncode != 0:
            return {}
        return dict(re.findall(r"(\w+)=(\S*)", cp.stdout))

    def job_state(self, job_id: str) -> str:
        return self.show_job(job_id).get("JobState", "")

    def wait_job_state(self, job_id: str, state: str, timeout: float = 20.0) -> dict[str, str]:
        def reached() -> dict[str, str]:
            j = self.show_job(job_id)
            return j if j.get("JobState") == state else {}

        return wait_for(reached, timeout, f"job {job_id} to be {state}")

    def cancel_all(self, timeout: float = 20.0) -> None:
        """Cancel every job and wait until no job is left running or pending."""
        self.run("scancel", "--user=root", check=False)

        def empty() -> bool:
            cp = self.run("squeue", "-h", "-o", "%i %T", check=False)
            return cp.returncode == 0 and not cp.stdout.strip()

        wait_for(empty, timeout, "the queue to empty")

    def reset(self, timeout: float = 30.0) -> None:
        """Back to a clean cluster between tests: no jobs or reservations, burst pool FUTURE with
        no instance recorded and no slurmd, on-prem nodes undrained and idle."""
        if self.procs.get("slurmctld") is None or self.procs["slurmctld"].poll() is not None:
            self.start_ctld()
        for line in self.run("scontrol", "show", "reservation", "-o", check=False).stdout.splitlines():
            m = re.search(r"ReservationName=(\S+)", line)
            if m:
                self.run("scontrol", "delete", f"reservationname={m.group(1)}", check=False)
        self.run("scancel", "--user=root", check=False)
        self.run("scancel", "--user=root", "--state=PENDING", check=False)
        for n in self.burst_nodes:
            self.stop_burst_node(n)
        dynamic = [k.removeprefix("slurmd-") for k in self.procs
                   if k.startswith("slurmd-") and k.removeprefix("slurmd-") not in self.onprem_nodes + self.burst_nodes]
        for n in dynamic:
            self._kill(f"slurmd-{n}")
            self.kill_strays(n)
        wait_for(lambda: not self.run("squeue", "-h", "-o", "%i", check=False).stdout.strip(),
                 timeout, "the queue to empty")
        for n in self.burst_nodes:
            st = self.run("scontrol", "--future", "show", "node", "-o", n, check=False).stdout
            if "State=FUTURE " not in st + " " or "State=FUTURE+" in st:
                self.run("scontrol", "update", f"nodename={n}", "state=drain", "reason=reset", check=False)
                self.run("scontrol", "update", f"nodename={n}", "state=down", "reason=reset", check=False)
                self.run("scontrol", "update", f"nodename={n}", "state=future", check=False)
            if "Comment=" in st and "Comment=(null)" not in st:
                self.run("scontrol", "update", f"nodename={n}", "comment=", check=False)
        for line in self.run("scontrol", "show", "node", "-o", check=False).stdout.splitlines():
            m = re.search(r"NodeName=(\S+) .*State=\S*DYNAMIC", line)
            if m:
                self.run("scontrol", "delete", f"nodename={m.group(1)}", check=False)
        for n in self.onprem_nodes:
            if not self.slurmd_running(n):
                self._start_slurmd(n)
            if "DRAIN" in self.node_state(n):
                # undrain marks the node NOT_RESPONDING until slurmctld pings it (~0.2 s)
                self.run("scontrol", "update", f"nodename={n}", "state=undrain", check=False)
        wait_for(lambda: self._all_idle(self.onprem_nodes), timeout, "on-prem nodes to be idle")

    def fill_onprem(self, timeout: float = 30.0) -> list[str]:
        """Occupy every on-prem GPU with one whole-node sleep job per node; wait until all RUN."""
        ids = [
            self.sbatch(f"--nodelist={n}", "-N", "1", f"--gres=gpu:{self.gpus_per_node}",
                        "--job-name=filler", "-c", "1")
            for n in self.onprem_nodes
        ]
        for j in ids:
            self.wait_job_state(j, "RUNNING", timeout)
        return ids

    def wait_for(self, pred: Callable[[], T], timeout: float, what: str) -> T:
        return wait_for(pred, timeout, what)

    # ---- helpers -------------------------------------------------------------------------

    def _node_in_service(self, node: str) -> bool:
        st = self.node_state(node)
        base = st.split("+")[0]
        return base in {"IDLE", "MIXED", "ALLOCATED"} and "DRAIN" not in st and "NOT_RESPONDING" not in st

    def _all_idle(self, nodes: Sequence[str]) -> bool:
        for n, p in self.procs.items():
            if n.startswith("slurmd-") and p.poll() is not None:
                raise RuntimeError(
                    f"{n} exited {p.returncode}: {self._tail(self.root / 'log' / (n + '.log'))}"
                    f" {self._tail(self.root / 'log' / (n + '.out'))}"
                )
        return all(self.node_state(n) == "IDLE" for n in nodes)

    @staticmethod
    def _tail(path: Path, n: int = 15) -> str:
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return f"({path} unreadable)"

    def logs(self) -> dict[str, str]:
        """Last lines of every log, for failure messages."""
        out: dict[str, str] = {}
        for p in sorted((self.root / "log").glob("*")):
            out[p.name] = self._tail(p)
        return out


@contextlib.contextmanager
def slurm_cluster(root: Path, **kw: Any) -> Iterator[SlurmCluster]:
    c = SlurmCluster(root, **kw)
    c.start()
    try:
        yield c
    finally:
        c.stop()


def started_cluster(tmp_path_factory: Any, name: str, **kw: Any) -> Iterator[SlurmCluster]:
    """Body of a pytest fixture: skip without Slurm, start a cluster (failing with its daemons'
    logs when it will not come up), yield it, stop it. ``kw`` goes to :class:`SlurmCluster`
    (node counts)."""
    import pytest

    why = skip_reason()
    if why:
        pytest.skip(why)
    cluster = SlurmCluster(tmp_path_factory.mktemp(name), **kw)
    try:
        cluster.start()
    except Exception as e:
        logs = "\n".join(f"--- {k}\n{v}" for k, v in cluster.logs().items())
        pytest.fail(f"could not start the Slurm test cluster: {e}\n{logs}")
    print(f"\n[{name}] Slurm cluster up in {cluster.startup_s:.2f}s at {cluster.root}")
    yield cluster
    cluster.stop()


# ---- checkpointing jobs (grand challenges) ---------------------------------------------------

# A batch job that checkpoints on USR1 and resumes from its checkpoint when Slurm runs it again
# (SLURM_RESTART_COUNT >= 1). It counts steps (one per 0.2 s). Its marker directory
# ``<marks>/job-<id>/`` holds:
#   runs     one "start restart=R step=S at=T" line per run, "term ..." when stopped, "done ..." at the end
#   signals  one "signal restart=R step=S at=T" line per checkpoint signal received
#   ckpt     the step saved at the last signal
# The first run never ends by itself; a restarted run does ``extra`` more steps and ends.
# It exits on TERM, 1.5 s later (a job tidying up; under the cluster's KillWait=2): a held job
# stays COMPLETING that long, as a real one does. (Exiting 0 on USR1 would end it COMPLETED and
# it could not be requeued.)
CHECKPOINT_JOB = """#!/bin/bash
d={marks}/job-$SLURM_JOB_ID
mkdir -p $d
step=0
if [ -f $d/ckpt ]; then step=$(cat $d/ckpt); fi
r=${{SLURM_RESTART_COUNT:-0}}
echo "start restart=$r step=$step at=$(date +%s.%N)" >> $d/runs
trap 'echo $step > $d/ckpt; echo "signal restart=$r step=$step at=$(date +%s.%N)" >> $d/signals' USR1
trap 'sleep 1.5; echo "term restart=$r step=$step at=$(date +%s.%N)" >> $d/runs; exit 143' TERM
limit=100000000
if [ "$r" -ge 1 ]; then limit=$((step + {extra})); fi
while [ $step -lt $limit ]; do sleep 0.2; step=$((step + 1)); done
echo "done restart=$r step=$step at=$(date +%s.%N)" >> $d/runs
"""


def checkpoint_job(marks: Path, extra_steps: int = 10) -> str:
    """The script text of :data:`CHECKPOINT_JOB` writing its markers under ``marks``."""
    return CHECKPOINT_JOB.format(marks=marks, extra=extra_steps)


def job_marks(marks: Path, job_id: str) -> dict[str, list[dict[str, str]]]:
    """A checkpointing job's marker files, parsed: ``{"runs": [...], "signals": [...]}``, each line
    as a dict (``kind`` plus its ``key=value`` words); ``ckpt`` as ``[{"step": S}]`` when saved."""
    d = marks / f"job-{job_id}"
    out: dict[str, list[dict[str, str]]] = {"runs": [], "signals": [], "ckpt": []}
    for name in ("runs", "signals"):
        p = d / name
        if p.exists():
            for line in p.read_text().splitlines():
                kind, *words = line.split()
                out[name].append({"kind": kind, **dict(w.split("=", 1) for w in words)})
    if (d / "ckpt").exists():
        out["ckpt"].append({"step": (d / "ckpt").read_text().strip()})
    return out
