"""Slurm as burst's on-prem queue, through the Slurm CLI (tested against Debian's Slurm 22.05.8).

Reading: ``squeue --json`` (pending and running jobs) and ``sinfo --json`` (nodes), parsed by the
pure functions in :mod:`burst.queues.slurm.parse`; ``scontrol --future show node -o`` where the
JSON is silent (node records, dynamic flag). Every call goes through :meth:`SlurmQueue._run`, with
``SLURM_CONF`` exported and a timeout: against a dead slurmctld the clients block for minutes, and
that becomes :class:`~burst.errors.QueueUnavailable`. Output that cannot be read raises
:class:`~burst.errors.QueueParseError` whose ``where`` names the command and the field.

How burst nodes join and leave: dynamic nodes, and why (the one place this is decided)
----------------------------------------------------------------------------------------

A burst instance registers itself as a **dynamic node named after its instance id** (RECIPES
"Slurm burst nodes", option 2). The shipped user data (``builtin:slurm``,
``burst/templates/userdata-slurm.sh``, rendered by the provider) runs::

    slurmd -Z -N <node_name_prefix + instance id> --conf "Gres=gpu:<type>:<n> Feature=cloud,<provider>,<region> Weight=1000"

:func:`~burst.queues.slurm.parse.node_name_for` / :func:`~burst.queues.slurm.parse.instance_id_for_node`
(``SlurmSettings.instance_node_prefix``, the providers' ``node_name_prefix``) are the whole
instance <-> node mapping, so ``snapshot()`` fills ``Node.instance_id`` from the name alone.

Why this and not the alternatives:

* It is the mechanism production runs end to end: the wiring hands ``SlurmQueue`` to the
  controller, the provider renders the template above, and nothing else is needed
  (``tests/e2e/test_slurm_overflow.py`` runs that whole cycle against real Slurm and moto).
* The node's name is the instance id, which is deterministic and written in the intent row
  before the launch: there is no reservation to make before boot, nothing to give back after a
  failed launch or a crash, and no burst state kept in Slurm.
* The node brings its own shape (GRES, features, region) from the offer that was launched: no
  slurm.conf line per shape or per instance, no pool size to outgrow.
* A FUTURE pool declared in slurm.conf (option 1) was carried here before and removed in issue 9:
  it needs a node reserved for the instance *before* boot (its name goes into the user data),
  that reservation must be released after every failed launch and crash, and each shape must be
  declared ahead. Production never wired the reservation step. CLOUD nodes with ResumeProgram
  (option 3) let Slurm decide to launch: the job never shows as pending, so burst's overflow
  policy cannot see the demand.

Limits of dynamic nodes, and what a site does about them:

* A job with ``--constraint=cloud`` is rejected at submit while no node has the feature. Jobs
  opt in through ``slurm.burstable`` (partition, QOS, account), or the site declares one
  placeholder node with ``Feature=cloud`` and ``State=FUTURE`` that is never started, so the
  constraint is accepted and the job pends visibly (the test cluster's ``burst[01-04]`` play this
  role; burst never assigns, drains or removes such a node).
* slurm.conf needs ``MaxNodeCount`` and ``TreeWidth=65533``; GPUs need a gres.conf line for the
  node (``AutoDetect=nvml`` on the instance).
* One dynamic node per IP (``Port=`` is not allowed in ``--conf``): one per instance in
  production; tests on one host run one at a time.

Leaving: ``drain_node`` (``state=drain``) -> the controller waits for it to be idle ->
``remove_node`` (drained first; refused with :class:`NodeBusy` while jobs run unless
``force=True``, which sets ``state=down`` to requeue them; then ``scontrol delete nodename=..``)
-> the instance is terminated. Trap kept in mind: with ``ReturnToService=2`` a DOWN node whose
slurmd still answers returns to service, so the node is always drained before anything else.

Slurm has no taint: keep jobs that did not opt in off burst nodes with a partition of their own
(:meth:`SlurmQueue.isolation_warnings`, docs/operations.md).

Which jobs may burst: a job matches any configured rule (partition, QOS, account, or a feature in
its constraint), or asks for the ``cloud`` feature itself (``--constraint=cloud``). Jobs that are
pending for reasons that more nodes cannot fix (held, dependency, begin time, partition down,
invalid account...) are reported with ``JobState.HELD``; the scheduler's reason is kept in
``Job.reason``. Jobs without GPUs are left out of the snapshot (burst rents GPU capacity only).
"""

from __future__ import annotations

import logging
import math
import os
import re
import subprocess
import time
from collections.abc import Iterable, Sequence

from burst.domain import QueueSnapshot
from burst.errors import QueueError, QueueParseError, QueueUnavailable
from burst.queues.slurm.parse import (
    NodeRecord,
    expand_hostlist,
    natural_key,
    parse_node_records,
    parse_scontrol_line,
    parse_sinfo,
    parse_squeue,
)
from burst.queues.slurm.settings import SlurmSettings

log = logging.getLogger(__name__)


class SlurmCommandError(QueueError):
    """A Slurm command answered with an error (it was reachable). ``stderr`` holds its words."""

    def __init__(self, command: str, returncode: int, stderr: str) -> None:
        super().__init__(f"{command} exited {returncode}: {stderr.strip() or '(no message)'}")
        self.command = command
        self.returncode = returncode
        self.stderr = stderr


class NodeBusy(QueueError):
    """The node still runs jobs; it cannot be removed yet."""

    def __init__(self, node_name: str, job_ids: Sequence[str]) -> None:
        super().__init__(f"node {node_name} still runs jobs {', '.join(job_ids) or '(completing)'}")
        self.node_name = node_name
        self.job_ids = tuple(job_ids)


_UNAVAILABLE = re.compile(
    r"Unable to contact slurm controller|Connection refused|Socket timed out|connect failure|"
    r"Communication connection failure|Zero Bytes were transmitted|Unable to establish|"
    r"Slurm backup controller in standby|Munge encode failed|Invalid authentication credential",
    re.I,
)
_GONE_JOB = re.compile(
    r"Invalid job id|already completing or completed|Job has already finished|"
    r"Job/step already completing|is finished",
    re.I,
)



class SlurmQueue:
    """:class:`~burst.ports.QueueSource` and :class:`~burst.ports.PreemptionControl` on Slurm."""

    name = "slurm"

    def __init__(self, settings: SlurmSettings) -> None:
        self.settings = settings
        self._env = dict(os.environ)
        self._env["SLURM_CONF"] = str(settings.slurm_conf)

    # ---- the one door to the CLI ---------------------------------------------------------

    def _run(self, args: Sequence[str], *, input: str | None = None, check: bool = True) -> str:
        """Run one Slurm client command; stdout on success.

        Timeout and connection failures -> QueueUnavailable; other failures -> SlurmCommandError.
        """
        prog = args[0]
        exe = str(self.settings.bin_dir / prog) if self.settings.bin_dir else prog
        cmd = " ".join(args[:3])
        t0 = time.monotonic()
        try:
            cp = subprocess.run(
                [exe, *args[1:]],
                env=self._env,
                capture_output=True,
                text=True,
                timeout=self.settings.timeout_s,
                input=input,
                stdin=None if input is not None else subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise QueueUnavailable(
                f"{cmd}: no answer within {self.settings.timeout_s:g}s (is slurmctld up and reachable? "
                f"SLURM_CONF={self.settings.slurm_conf})"
            ) from None
        except OSError as e:
            raise QueueUnavailable(f"{cmd}: cannot run {exe!r}: {e.strerror or e}") from None
        log.debug("%s rc=%s in %.3fs", cmd, cp.returncode, time.monotonic() - t0)
        if cp.returncode != 0 and check:
            err = (cp.stderr or "") + (cp.stdout if not cp.stderr else "")
            if _UNAVAILABLE.search(err):
                raise QueueUnavailable(f"{cmd}: {err.strip()}")
            raise SlurmCommandError(cmd, cp.returncode, err)
        return cp.stdout

    # ---- QueueSource ---------------------------------------------------------------------

    def snapshot(self) -> QueueSnapshot:
        # Nodes first, then jobs. The two calls are not one atomic read, and a job that Slurm
        # starts between them must not be counted twice: read jobs-then-nodes and it shows as
        # pending (demand) while its GPUs already show as used (no supply), so the overflow
        # policy launches an instance for a job that is running (seen end to end: a second
        # launch when the job started on the burst node that had just joined). Read in this
        # order, demand can only shrink after supply was read; a job starting in between shows
        # as running on a node with free GPUs (never idle: running_jobs counts it), and a job
        # ending in between leaves its GPUs used for one more tick. Both err on the safe side.
        sinfo = self._run(["sinfo", "--json"])
        pending, running = parse_squeue(self._run(["squeue", "--json", "--all"]), self.settings)
        nodes = parse_sinfo(sinfo, self.settings, running)
        pending.sort(key=lambda j: (-j.priority, j.submit_time, natural_key(j.id)))
        return QueueSnapshot(pending=tuple(pending), running=tuple(running), nodes=tuple(nodes))

    def _node_records(self) -> list[NodeRecord]:
        """Every node Slurm knows, FUTURE ones included (``sinfo`` hides those)."""
        return parse_node_records(self._run(["scontrol", "--future", "show", "node", "-o"]))

    def isolation_warnings(self) -> list[str]:
        """Partitions whose jobs could land on burst nodes without having opted in.

        Slurm has no taint: a burst node is usable by every job of every partition that holds
        it. Jobs opt in through ``burstable`` rules (partition, QOS, account, constraint), but a
        job in a non-burstable partition that holds burst nodes can be placed there by Slurm
        while on-prem is full, at cloud prices. The safe layout gives burst nodes their own
        partition (a NodeSet with ``Feature=<cloud_feature>`` for dynamic nodes)
        and lists on-prem nodes explicitly elsewhere. Read-only; the daemon logs the result at
        start (one ``scontrol`` call each for partitions and nodes)."""
        rules = self.settings.burstable
        if rules.all_jobs:
            return []
        burst_nodes = {
            n.name for n in self._node_records() if self.settings.cloud_feature in n.features or n.is_dynamic
        }
        out: list[str] = []
        for line in self._run(["scontrol", "show", "partition", "-o"]).splitlines():
            f = parse_scontrol_line(line)
            name = f.get("PartitionName", "")
            if not name or name in rules.partitions:
                continue
            nodes = f.get("Nodes", "")
            sets = f.get("NodeSets", "")
            if nodes.upper() == "ALL" or sets.upper() == "ALL":
                held = "all nodes (Nodes=ALL), burst nodes included"
            else:
                named = burst_nodes & set(expand_hostlist(nodes)) if nodes and nodes != "(null)" else set()
                if not named:
                    continue
                held = f"burst nodes {', '.join(sorted(named, key=natural_key)[:4])}{' ...' if len(named) > 4 else ''}"
            out.append(
                f"partition {name} holds {held}: its jobs that did not opt in "
                f"(constraint {self.settings.cloud_feature!r}, or a burstable QOS/account) can run on cloud "
                f"capacity. Give burst nodes a partition of their own and list on-prem nodes explicitly, "
                f"or add {name!r} to slurm.burstable.partitions"
            )
        return out

    def node_info(self, node_name: str) -> NodeRecord | None:
        """One node (FUTURE included), or None when Slurm does not know it."""
        try:
            out = self._run(["scontrol", "--future", "show", "node", "-o", node_name])
        except SlurmCommandError as e:
            if re.search(r"not found|Invalid node name", e.stderr, re.I):
                return None
            raise
        nodes = [n for n in parse_node_records(out) if n.name == node_name]
        return nodes[0] if nodes else None

    def drain_node(self, node_name: str, reason: str) -> None:
        """``state=drain``. Idempotent; an unknown node (or a FUTURE placeholder) has nothing to drain."""
        info = self.node_info(node_name)
        if info is None or info.is_future:
            log.info("drain %s: node is %s, nothing to drain", node_name, "unknown" if info is None else "FUTURE")
            return
        self._update_node(node_name, "state=drain", f"reason={_reason(reason)}")

    def undrain_node(self, node_name: str, reason: str) -> None:
        """``state=undrain`` (clears DRAIN only; never ``resume``, which would bring a FUTURE node to
        IDLE+NOT_RESPONDING). Raises :class:`QueueError` for a node that is not in service."""
        info = self.node_info(node_name)
        if info is None or info.is_future:
            raise QueueError(f"undrain {node_name}: node is {'unknown' if info is None else 'FUTURE (not joined)'}")
        if "DRAIN" not in info.state.upper():
            return
        log.info("undrain %s: %s", node_name, reason)
        self._update_node(node_name, "state=undrain")

    def remove_node(self, node_name: str, force: bool = False) -> None:
        """Take a burst (dynamic) node out of Slurm: ``scontrol delete nodename=..``.

        Unknown node: success (idempotent). The node is drained first (so nothing lands on it
        meanwhile). If jobs still run there: :class:`NodeBusy`, unless ``force``, which sets
        ``state=down`` (Slurm requeues them) and then still raises :class:`NodeBusy` while they
        are completing; call again on a later tick. A node that is not dynamic was not
        registered by a burst instance: :class:`QueueError`, and nothing is changed.
        """
        info = self.node_info(node_name)
        if info is None:
            return
        if not info.is_dynamic:
            raise QueueError(
                f"remove {node_name}: not a dynamic node (state {info.state}); burst removes only the "
                "dynamic nodes its instances register"
            )
        if "DRAIN" not in info.state.upper():
            self._update_node(node_name, "state=drain", "reason=burst:removing")
        jobs = self.jobs_on_node(node_name)
        if jobs:
            if not force:
                raise NodeBusy(node_name, jobs)
            self._update_node(node_name, "state=down", "reason=burst:removing(forced)")
        try:
            self._run(["scontrol", "delete", f"nodename={node_name}"])
        except SlurmCommandError as e:
            if re.search(r"Invalid node name|not found", e.stderr, re.I):
                return
            if re.search(r"busy", e.stderr, re.I):
                raise NodeBusy(node_name, self.jobs_on_node(node_name)) from e
            raise

    def jobs_on_node(self, node_name: str) -> list[str]:
        """Ids of jobs allocated on the node (running, completing, suspended...)."""
        out = self._run(["squeue", "-h", "--all", f"--nodelist={node_name}", "-o", "%i"])
        return [x.strip() for x in out.split() if x.strip()]

    def _update_node(self, node_name: str, *settings: str) -> None:
        self._run(["scontrol", "update", f"nodename={node_name}", *settings])

    # ---- PreemptionControl ---------------------------------------------------------------

    def checkpoint(self, job_ids: Sequence[str]) -> None:
        """``scancel --signal=USR1 --batch``: the batch script gets the signal and checkpoints.
        Jobs that finished or are not running (nothing to checkpoint) are skipped."""
        for jid in job_ids:
            try:
                self._run(["scancel", f"--signal={self.settings.checkpoint_signal}", "--batch", str(jid)])
            except SlurmCommandError as e:
                if _GONE_JOB.search(e.stderr) or re.search(r"pending|not running|can not be altered", e.stderr, re.I):
                    log.info("checkpoint %s skipped: %s", jid, e.stderr.strip())
                    continue
                raise

    def hold(self, job_ids: Sequence[str]) -> None:
        """Running job: ``scontrol requeuehold`` (GPUs freed at once, the job keeps its id).
        Pending job: ``scontrol hold``. Finished or unknown job: success."""
        for jid in job_ids:
            try:
                self._run(["scontrol", "requeuehold", str(jid)])
            except SlurmCommandError as e:
                if _GONE_JOB.search(e.stderr):
                    continue
                if re.search(r"pending execution", e.stderr, re.I):
                    try:
                        self._run(["scontrol", "hold", str(jid)])
                    except SlurmCommandError as e2:
                        if not _GONE_JOB.search(e2.stderr):
                            raise
                    continue
                raise

    def release(self, job_ids: Sequence[str]) -> None:
        """``scontrol release``, in the order given. A job not held, or gone, is success."""
        for jid in job_ids:
            try:
                self._run(["scontrol", "release", str(jid)])
            except SlurmCommandError as e:
                if _GONE_JOB.search(e.stderr) or re.search(r"not held|no longer pending", e.stderr, re.I):
                    continue
                raise

    def cancel(self, job_ids: Sequence[str]) -> None:
        """``scancel``; gone jobs are success."""
        for jid in job_ids:
            try:
                self._run(["scancel", str(jid)])
            except SlurmCommandError as e:
                if not _GONE_JOB.search(e.stderr):
                    raise

    # ---- grand challenges: reservations and submission -----------------------------------

    def create_reservation(
        self,
        name: str,
        start: float | None,
        duration_s: float,
        *,
        nodes: Sequence[str] | str = "ALL",
        users: Iterable[str] = ("root",),
        flags: Iterable[str] = ("IGNORE_JOBS",),
    ) -> str:
        """``scontrol create reservation``; ``start`` is POSIX seconds (None: now). Idempotent on
        ``name``: an existing reservation of that name is updated to these times."""
        when = "now" if start is None else time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(start))
        minutes = max(1, math.ceil(duration_s / 60))
        node_arg = nodes if isinstance(nodes, str) else ",".join(nodes)
        args = [f"reservationname={name}", f"starttime={when}", f"duration={minutes}",
                f"nodes={node_arg}", f"users={','.join(users)}"]
        flag_list = ",".join(flags)
        if flag_list:
            args.append(f"flags={flag_list}")
        if any(r.get("ReservationName") == name for r in self.reservations()):
            try:
                self._run(["scontrol", "update", f"reservationname={name}", f"starttime={when}",
                           f"duration={minutes}"])
            except SlurmCommandError as e:
                if not re.search(r"already started", e.stderr, re.I):
                    raise
                self._run(["scontrol", "update", f"reservationname={name}", f"duration={minutes}"])
            return name
        self._run(["scontrol", "create", "reservation", *args])
        return name

    def delete_reservation(self, name: str) -> None:
        try:
            self._run(["scontrol", "delete", f"reservationname={name}"])
        except SlurmCommandError as e:
            if not re.search(r"not found|Invalid reservation|reservation is invalid|does not exist", e.stderr, re.I):
                raise

    def reservations(self) -> list[dict[str, str]]:
        out = self._run(["scontrol", "show", "reservation", "-o"])
        return [parse_scontrol_line(line) for line in out.splitlines() if "ReservationName=" in line]

    def submit(
        self,
        script: str,
        *,
        job_name: str = "burst",
        partition: str = "",
        nodes: int = 0,
        gpus_per_node: int = 0,
        time_limit_s: float = 0,
        reservation: str = "",
        account: str = "",
        qos: str = "",
        workdir: str = "",
        output: str = "",
        extra_args: Sequence[str] = (),
    ) -> str:
        """``sbatch --parsable`` with the script on stdin; returns the job id."""
        if not script.startswith("#!"):
            script = "#!/bin/sh\n" + script
        args = ["sbatch", "--parsable", f"--job-name={job_name}"]
        if partition:
            args.append(f"--partition={partition}")
        if nodes:
            args.append(f"--nodes={nodes}")
        if gpus_per_node:
            args.append(f"--gres={self.settings.gpu_gres}:{gpus_per_node}")
        if time_limit_s:
            args.append(f"--time={max(1, math.ceil(time_limit_s / 60))}")
        if reservation:
            args.append(f"--reservation={reservation}")
        if account:
            args.append(f"--account={account}")
        if qos:
            args.append(f"--qos={qos}")
        if workdir:
            args.append(f"--chdir={workdir}")
        if output:
            args.append(f"--output={output}")
        args += list(extra_args)
        out = self._run(args, input=script).strip()
        jid = out.split(";")[0].strip()
        if not jid.isdigit():
            raise QueueParseError("sbatch --parsable", f"expected a job id, got {out!r}")
        return jid


def _reason(text: str) -> str:
    """Slurm takes the reason as one argv word; keep it printable and short."""
    cleaned = re.sub(r"[\r\n\t]+", " ", text).strip() or "burst"
    return cleaned[:200]

