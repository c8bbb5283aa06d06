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

Grand challenges (:class:`~burst.ports.ChallengeQueue`, issue 10): a reservation on an explicit
list of on-prem nodes with ``flags=IGNORE_JOBS`` (never ``Nodes=ALL``, which takes burst nodes
too); ``USR1`` (``checkpoint_signal``) to the batch shell of running jobs; hold = ``requeue=1``
then ``requeuehold``; release, then an explicit priority; the challenge job submitted with
``sbatch`` into the reservation under its deterministic name (a second submit finds the first).
The Slurm behaviours these work around are listed above ``SlurmQueue._job_states`` and measured
in tests/slurm/test_challenge_queue.py.
"""

from __future__ import annotations

import getpass
import logging
import math
import os
import re
import subprocess
import time
from collections.abc import Sequence

from burst.domain import ChallengeJobKind, GrandChallenge, QueueSnapshot
from burst.errors import QueueError, QueueParseError, QueueUnavailable
from burst.queues.slurm.parse import (
    NodeRecord,
    expand_hostlist,
    natural_key,
    parse_gres,
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
# Running states a hold stops by requeue-hold; a COMPLETING job is already stopping.
_HOLD_BY_REQUEUE = frozenset({"RUNNING", "CONFIGURING", "SUSPENDED", "STOPPED", "RESIZING"})
_FINISHED_STATES = frozenset({
    "COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE",
    "OUT_OF_MEMORY", "REVOKED",
})


class SlurmQueue:
    """:class:`~burst.ports.QueueSource`, :class:`~burst.ports.PreemptionControl` and
    :class:`~burst.ports.ChallengeQueue` (grand challenges) on Slurm."""

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

    # ---- PreemptionControl and ChallengeQueue -------------------------------------------
    #
    # Measured on Debian's 22.05.8 (tests/slurm/test_challenge_queue.py holds each one):
    # * ``scancel --signal=.. --batch`` on a PENDING job does not fail: it blocks (retrying) until
    #   the client's timeout. Only jobs Slurm shows RUNNING are signalled.
    # * ``requeuehold`` of a job submitted with ``--no-requeue`` fails ("Requested operation is
    #   presently disabled") unless ``scontrol update jobid=N requeue=1`` comes first.
    # * ``requeue``/``requeuehold`` is allowed on a *finished* batch job still in slurmctld's memory
    #   (MinJobAge): it would run again. So hold looks at the job's state first and never holds a
    #   job that is not running or pending. (A job that ends in the few milliseconds between the
    #   look and the call is the window left; Slurm offers no conditional requeue.)
    # * ``scontrol update priority=`` on a held job fails ("Job is in held state, pending
    #   scheduler release"): the priority is set after the release.

    def _job_states(self, job_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        """``job id -> (state, reason)`` as squeue shows them (finished jobs included while Slurm
        keeps them); ids Slurm does not know are absent. One squeue call."""
        ids = [str(j) for j in job_ids if str(j)]
        if not ids:
            return {}
        try:
            out = self._run(["squeue", "-h", "--states=all", "-j", ",".join(ids), "-o", "%i|%T|%r"])
        except SlurmCommandError as e:
            if _GONE_JOB.search(e.stderr):
                return {}  # none of them exists
            raise
        states: dict[str, tuple[str, str]] = {}
        for line in out.splitlines():
            jid, _, rest = line.strip().partition("|")
            state, _, reason = rest.partition("|")
            if jid:
                states[jid] = (state.strip().upper(), reason.strip())
        return states

    def checkpoint(self, job_ids: Sequence[str]) -> None:
        """``scancel --signal=<checkpoint_signal> --batch``: the batch script gets the signal and
        checkpoints. Only jobs Slurm shows RUNNING are signalled (a pending job would block the
        call); finished or unknown jobs have nothing to checkpoint."""
        states = self._job_states(job_ids)
        for jid in job_ids:
            state = states.get(str(jid), ("", ""))[0]
            if state != "RUNNING":
                log.info("checkpoint %s skipped: %s", jid, state or "unknown to Slurm")
                continue
            try:
                self._run(["scancel", f"--signal={self.settings.checkpoint_signal}", "--batch", str(jid)])
            except SlurmCommandError as e:
                if _GONE_JOB.search(e.stderr) or re.search(r"pending|not running|can not be altered", e.stderr, re.I):
                    log.info("checkpoint %s skipped: %s", jid, e.stderr.strip())
                    continue
                raise

    def hold(self, job_ids: Sequence[str]) -> None:
        """Running job: make it requeueable (``scontrol update jobid=N requeue=1``), then
        ``scontrol requeuehold`` (GPUs freed at once; the job keeps its id and runs again with
        ``SLURM_RESTART_COUNT`` + 1 when released). Pending job: ``scontrol hold``. Already held,
        stopping (COMPLETING), finished or unknown: success, nothing is called."""
        states = self._job_states(job_ids)
        for jid in job_ids:
            state, reason = states.get(str(jid), ("", ""))
            try:
                if state in _HOLD_BY_REQUEUE:
                    self._run(["scontrol", "update", f"jobid={jid}", "requeue=1"])
                    self._run(["scontrol", "requeuehold", str(jid)])
                elif state == "PENDING" and not reason.startswith("JobHeld"):
                    self._run(["scontrol", "hold", str(jid)])
                else:
                    log.info("hold %s: nothing to do (%s %s)", jid, state or "unknown to Slurm", reason)
            except SlurmCommandError as e:
                if _GONE_JOB.search(e.stderr) or re.search(r"pending execution|held state", e.stderr, re.I):
                    continue  # it ended, or is already requeued/held, meanwhile
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

    def set_priority(self, job_id: str, priority: int) -> None:
        """``scontrol update jobid=N priority=P`` (an explicit priority, which Slurm then keeps:
        a requeued job got a new submit and eligible time, so this is what gives it its place
        back). Call it after :meth:`release`. A finished or unknown job is success."""
        try:
            self._run(["scontrol", "update", f"jobid={job_id}", f"priority={int(priority)}"])
        except SlurmCommandError as e:
            if not _GONE_JOB.search(e.stderr):
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

    def reservation(self, name: str) -> dict[str, str] | None:
        """``scontrol show reservation NAME -o`` as a dict; None when Slurm has no such reservation."""
        try:
            out = self._run(["scontrol", "show", "reservation", "-o", name])
        except SlurmCommandError as e:
            if re.search(r"not found|invalid", e.stderr, re.I):
                return None
            raise
        for line in out.splitlines():
            rec = parse_scontrol_line(line)
            if rec.get("ReservationName") == name:
                return rec
        return None

    def _check_onprem(self, what: str, nodes: Sequence[str]) -> list[str]:
        """The node names, checked: explicit, known to Slurm, and none a burst node (cloud
        feature, or dynamic). Raises QueueError naming the problem; nothing is changed."""
        names = [str(n) for n in nodes if str(n)]
        if not names or any(n.upper() == "ALL" for n in names):
            raise QueueError(f"{what}: needs an explicit list of on-prem nodes (never ALL: it takes burst nodes too)")
        known = {r.name: r for r in self._node_records()}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise QueueError(f"{what}: Slurm has no node {', '.join(unknown)}")
        burst = [n for n in names if known[n].is_dynamic or self.settings.cloud_feature in known[n].features]
        if burst:
            raise QueueError(f"{what}: {', '.join(burst)} are burst nodes; a grand challenge takes on-prem nodes only")
        return names

    def create_reservation(self, name: str, start: float | None, duration_s: float, *, nodes: Sequence[str]) -> str:
        """``scontrol create reservation reservationname=NAME starttime=.. duration=..
        nodes=<explicit on-prem list> users=<settings.user or this process's user>
        flags=IGNORE_JOBS``; ``start`` is POSIX seconds (None or past: now). The duration gets
        ``settings.reservation_slack_s`` more (burst deletes it when the challenge is over).

        ``IGNORE_JOBS``: without it Slurm refuses while jobs run on those nodes ("Requested nodes
        are busy"); jobs whose time limit ends before ``start`` may still start there. Never
        ``Nodes=ALL`` (burst nodes are refused, and so is an empty list). Idempotent on ``name``:
        a reservation of that name that exists is success and is left as it is (a second create
        would fail as an overlap)."""
        node_list = self._check_onprem(f"reservation {name}", nodes)
        if self.reservation(name) is not None:
            return name
        when = "now" if start is None or start <= time.time() + 1 else time.strftime(
            "%Y-%m-%dT%H:%M:%S", time.localtime(start))
        minutes = max(1, math.ceil((duration_s + self.settings.reservation_slack_s) / 60))
        try:
            self._run(["scontrol", "create", "reservation", f"reservationname={name}", f"starttime={when}",
                       f"duration={minutes}", f"nodes={','.join(node_list)}", f"users={self._user()}",
                       "flags=IGNORE_JOBS"])
        except SlurmCommandError as e:
            # A create whose answer was lost (timeout) and is now repeated: it exists after all.
            if re.search(r"overlaps|already exists|duplicate", e.stderr, re.I) and self.reservation(name) is not None:
                return name
            raise
        return name

    def _user(self) -> str:
        return self.settings.user or getpass.getuser()

    def delete_reservation(self, name: str) -> None:
        """``scontrol delete reservationname=NAME``; a reservation that is gone is success."""
        try:
            self._run(["scontrol", "delete", f"reservationname={name}"])
        except SlurmCommandError as e:
            if not re.search(r"not found|Invalid reservation|reservation is invalid|does not exist", e.stderr, re.I):
                raise

    def reservations(self) -> list[dict[str, str]]:
        out = self._run(["scontrol", "show", "reservation", "-o"])
        return [parse_scontrol_line(line) for line in out.splitlines() if "ReservationName=" in line]

    def jobs_named(self, name: str) -> list[tuple[str, str]]:
        """``(job id, state)`` of every job of that name Slurm still knows (finished ones too,
        for MinJobAge), oldest first."""
        out = self._run(["squeue", "-h", "--states=all", f"--name={name}", "-o", "%i|%T"])
        rows = []
        for line in out.splitlines():
            jid, _, state = line.strip().partition("|")
            if jid:
                rows.append((jid, state.strip().upper()))
        return sorted(rows, key=lambda r: natural_key(r[0]))

    def submit_challenge(self, gc: GrandChallenge, *, name: str, reservation: str, nodes: Sequence[str]) -> str:
        """``sbatch --job-name=NAME --reservation=RES --nodelist=<nodes> -N <n> --exclusive
        --gres=<gpu>:<per node> --time=<duration>`` with ``gc.job_text`` as the script; returns the
        job id. The GPUs are asked for so the job is a GPU job in the snapshot (burst reads only
        those), and whole nodes so it owns them.

        Idempotent on ``name``: a job of that name Slurm still knows (queued, running, or finished
        within MinJobAge) is returned and nothing is submitted; that covers a crash right after the
        submit. A job that is not a Slurm script, or a script sbatch refuses: QueueError.
        Slurm unreachable: QueueUnavailable (then nothing is known; the next call looks again)."""
        if gc.job_kind is not ChallengeJobKind.SLURM:
            raise QueueError(f"challenge job {name}: a {gc.job_kind} job cannot run on Slurm")
        if not gc.job_text.strip():
            raise QueueError(f"challenge job {name}: no batch script")
        known = self.jobs_named(name)
        if known:
            live = [jid for jid, st in known if st not in _FINISHED_STATES]
            return live[0] if live else known[-1][0]
        node_list = self._check_onprem(f"challenge job {name}", nodes)
        per_node = min(
            (parse_gres(r.fields.get("Gres"), self.settings.gpu_gres, f"node {r.name}.Gres")[0]
             for r in self._node_records() if r.name in node_list),
            default=0,
        )
        extra = [f"--nodelist={','.join(node_list)}", "--exclusive"]
        return self.submit(gc.job_text, job_name=name, nodes=len(node_list), gpus_per_node=per_node,
                           time_limit_s=gc.duration_s, reservation=reservation, extra_args=extra)

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

