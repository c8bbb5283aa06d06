"""Slurm as burst's on-prem queue, through the Slurm CLI (tested against Debian's Slurm 22.05.8).

Reading: ``squeue --json`` (pending and running jobs) and ``sinfo --json`` (nodes). ``scontrol
--future show node -o`` is used where the JSON is silent: ``sinfo`` does not list FUTURE nodes, so
the burst pool is read from ``scontrol``. Every call goes through :meth:`SlurmQueue._run`, with
``SLURM_CONF`` exported and a timeout: against a dead slurmctld the clients block for minutes, and
that becomes :class:`~burst.errors.QueueUnavailable`. Output that cannot be read raises
:class:`~burst.errors.QueueParseError` whose ``where`` names the command and the field.

GPU use is judged by GRES (``gres_used``), never by the node's state word: a node whose 8 GPUs
are all allocated but whose CPUs are not shows ``mixed``.

How burst nodes join and leave (one mechanism, chosen on purpose)
-----------------------------------------------------------------

burst uses **a pool of nodes declared ahead in slurm.conf with ``State=FUTURE``**::

    NodeName=burst[01-08] NodeAddr=127.0.0.1 NodeHostname=localhost Port=... CPUs=96 \\
        RealMemory=... Gres=gpu:a100:8 Feature=cloud,aws State=FUTURE

and not dynamic nodes or Slurm's own CLOUD power saving, because:

* A pending job that asks for ``--constraint=cloud`` is accepted at submit time (the feature
  exists in the pool) and waits visibly in the queue, where burst's overflow policy can see it.
  With dynamic nodes such a job is rejected at submit while no cloud node exists; with CLOUD
  nodes + ResumeProgram Slurm decides to launch by itself and the job never shows as pending
  (burst would have to *be* the ResumeProgram, and readiness is polled on a fixed 30 s tick).
* Nodes are known to the scheduler in advance (GRES, features, partitions, limits): the admin
  controls exactly which shapes may appear and how many (the pool size is a hard cap).
* Joining is just ``slurmd -N burstNN`` on the instance (idle in ~0.05 s, jobs start ~1 s later);
  leaving needs no slurm.conf change and no ``scontrol reconfigure``.
* It works with many nodes per IP (tests) and one per IP (production) alike.

Mapping instance <-> node. Pool names cannot be derived from instance ids, and Slurm features
cannot hold ``=``. The mapping therefore lives in Slurm itself, in the node's ``Comment``
(:func:`comment_for` / :func:`instance_id_from_comment`, e.g. ``burst-instance=b-1a2b3c4d5e6f7a8b``):

1. ``assign_node(instance_id, provider, region)`` picks a free FUTURE node deterministically
   (:func:`pick_pool_node`: the lowest-sorted free pool node whose features include ``cloud`` and
   the provider, preferring one tagged with the region) and reserves it by writing the comment
   while the node is still FUTURE. Calling it again for the same instance returns the same node,
   so it is safe after a crash. The controller puts the node name in the instance's user data.
2. The instance boots and runs ``slurmd -N <node>`` (the user-data template's job). Production
   also sets the real address: :meth:`SlurmQueue.set_node_address` (``scontrol update
   nodename=.. nodeaddr=.. nodehostname=..``) once the provider reports the instance's IP.
3. ``snapshot()`` shows the node with ``Node.instance_id`` read back from its comment.
4. Leaving: ``drain_node`` (``state=drain``) -> the controller waits for it to be idle ->
   ``remove_node`` (``state=future`` and the comment cleared; refused with :class:`NodeBusy` while
   jobs run there unless ``force=True``, which sets ``state=down`` to requeue them first) -> the
   instance is terminated (its slurmd dies with it; a FUTURE node is never pinged). Trap kept in
   mind: with ``ReturnToService=2`` a DOWN node whose slurmd still answers returns to service, so
   the node is always drained before anything else.
   A launch that failed is undone with ``remove_node`` too (the node is FUTURE: only the comment
   is cleared).

Dynamic nodes are understood too. The user-data template may register an instance as a dynamic
node (``slurmd -Z -N <node_name_for(instance_id)>``, RECIPES option 2); such a node's instance id
comes from its name (:func:`instance_id_for_node`, ``SlurmSettings.instance_node_prefix``), and
``remove_node`` deletes it (``scontrol delete nodename=..``, refused while jobs run) instead of
returning it to FUTURE. Both kinds can coexist; ``Node.instance_id`` is filled for both.

Which jobs may burst: a job matches any configured rule (partition, QOS, account, or a feature in
its constraint), or asks for the ``cloud`` feature itself (``--constraint=cloud``). Jobs that are
pending for reasons that more nodes cannot fix (held, dependency, begin time, partition down,
invalid account...) are reported with ``JobState.HELD``; the scheduler's reason is kept in
``Job.reason``. Jobs without GPUs are left out of the snapshot (burst rents GPU capacity only).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from burst.domain import Job, JobState, Node, QueueSnapshot
from burst.errors import QueueError, QueueParseError, QueueUnavailable

log = logging.getLogger(__name__)

COMMENT_KEY = "burst-instance"


# --------------------------------------------------------------------------------------------
# Settings and errors
# --------------------------------------------------------------------------------------------


class BurstRules(BaseModel):
    """Which jobs may run in the cloud. A job may burst if it matches ANY rule."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    partitions: list[str] = Field(default_factory=list)
    qos: list[str] = Field(default_factory=list)
    accounts: list[str] = Field(default_factory=list)
    constraints: list[str] = Field(default_factory=list)  # features in the job's --constraint
    all_jobs: bool = False  # every job may burst (a site that trusts the cloud with everything)


class SlurmSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    slurm_conf: Path  # exported as SLURM_CONF to every client call
    bin_dir: Path | None = None  # where squeue/sinfo/scontrol/... live; None: PATH
    timeout_s: float = Field(default=10.0, gt=0)
    burstable: BurstRules = Field(default_factory=BurstRules)
    cloud_feature: str = "cloud"  # the pool's feature; a job constraining on it opts in
    burst_node_prefix: str = "burst"  # names of the FUTURE pool (only pool nodes are assigned)
    # Dynamic nodes (slurmd -Z) named after their instance: node name = prefix + instance id
    # (providers' ``node_name_prefix``; "" by default). Recognised in snapshots and removed with
    # ``scontrol delete``; see the module docstring.
    instance_node_prefix: str = ""
    instance_id_pattern: str = r"b-[0-9a-f]{16}"  # burst.domain.deterministic_id
    gpu_gres: str = "gpu"  # GRES name that counts as GPUs
    checkpoint_signal: str = "USR1"
    user: str = ""  # reserved for reservations/submits made by burst ("" = the caller)


class SlurmCommandError(QueueError):
    """A Slurm command answered with an error (it was reachable). ``stderr`` holds its words."""

    def __init__(self, command: str, returncode: int, stderr: str) -> None:
        super().__init__(f"{command} exited {returncode}: {stderr.strip() or '(no message)'}")
        self.command = command
        self.returncode = returncode
        self.stderr = stderr


class NodeBusy(QueueError):
    """The node still runs jobs; it cannot be returned to the pool yet."""

    def __init__(self, node_name: str, job_ids: Sequence[str]) -> None:
        super().__init__(f"node {node_name} still runs jobs {', '.join(job_ids) or '(completing)'}")
        self.node_name = node_name
        self.job_ids = tuple(job_ids)


class PoolExhausted(QueueError):
    """No free FUTURE node in the burst pool matches the instance."""


# --------------------------------------------------------------------------------------------
# Pure helpers (parsers and naming): no I/O, unit-tested with malformed input
# --------------------------------------------------------------------------------------------


def comment_for(instance_id: str) -> str:
    """The node Comment that records which instance stands behind a pool node."""
    if not instance_id or any(c.isspace() for c in instance_id):
        raise ValueError(f"bad instance id {instance_id!r}")
    return f"{COMMENT_KEY}={instance_id}"


_COMMENT_RE = re.compile(rf"(?:^|[\s,;]){re.escape(COMMENT_KEY)}=([^\s,;]+)")


def instance_id_from_comment(comment: str | None) -> str:
    """Inverse of :func:`comment_for`; ``""`` when the comment names no instance."""
    if not comment:
        return ""
    m = _COMMENT_RE.search(comment)
    return m.group(1) if m else ""


def node_name_for(instance_id: str, prefix: str = "") -> str:
    """Name of the dynamic node an instance registers as (``slurmd -Z -N <name>``)."""
    return f"{prefix}{instance_id}"


def instance_id_for_node(node_name: str, prefix: str = "", pattern: str = r"b-[0-9a-f]{16}") -> str:
    """Inverse of :func:`node_name_for`: the instance id, or ``""`` for any other node name."""
    if not node_name.startswith(prefix):
        return ""
    rest = node_name[len(prefix):]
    return rest if re.fullmatch(pattern, rest) else ""


def _natural_key(name: str) -> tuple[Any, ...]:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))


@dataclass(frozen=True, slots=True)
class PoolNode:
    """A node as ``scontrol --future show node -o`` shows it (the part assignment needs)."""

    name: str
    state: str  # e.g. FUTURE, IDLE, MIXED+DRAIN
    features: tuple[str, ...] = ()
    instance_id: str = ""
    comment: str = ""
    fields: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def is_future(self) -> bool:
        return "FUTURE" in self.state.upper().split("+")

    @property
    def is_dynamic(self) -> bool:
        """Registered with ``slurmd -Z``: leaves with ``scontrol delete``, not ``state=future``."""
        return any(w.startswith("DYNAMIC") for w in self.state.upper().split("+"))


def pick_pool_node(
    instance_id: str,
    pool: Sequence[PoolNode],
    provider: str = "",
    region: str = "",
    *,
    cloud_feature: str = "cloud",
    prefix: str = "",
) -> str | None:
    """Deterministic choice of the pool node for ``instance_id`` (pure).

    1. A node that already records this instance (any state) is its node: idempotent after a crash.
    2. Otherwise the free candidates are FUTURE nodes that record no instance, carry
       ``cloud_feature`` and, when ``provider`` is given, the provider's feature, and whose name
       starts with ``prefix``. Nodes that also carry ``region`` as a feature are preferred.
    3. The lowest in natural name order wins (``burst2`` before ``burst10``).
    """
    for n in pool:
        if n.instance_id == instance_id:
            return n.name
    cands = [
        n
        for n in pool
        if n.is_future
        and not n.instance_id
        and n.name.startswith(prefix)
        and cloud_feature in n.features
        and (not provider or provider in n.features)
    ]
    if region:
        in_region = [n for n in cands if region in n.features]
        cands = in_region or cands
    if not cands:
        return None
    return min(cands, key=lambda n: _natural_key(n.name)).name


_HOSTLIST_PART = re.compile(r"([^,\[]+)(?:\[([^\]]*)\])?([^,\[]*)")


def expand_hostlist(expr: str) -> list[str]:
    """``gpu[01-03,07],burst01`` -> ``[gpu01, gpu02, gpu03, gpu07, burst01]`` (one bracket level,
    as Slurm prints node lists). Raises ``ValueError`` on anything else."""
    out: list[str] = []
    expr = (expr or "").strip()
    pos = 0
    while pos < len(expr):
        m = _HOSTLIST_PART.match(expr, pos)
        if not m or m.end() == pos:
            raise ValueError(f"bad host list {expr!r}")
        prefix, ranges, suffix = m.group(1), m.group(2), m.group(3)
        if ranges is None:
            out.append(prefix + suffix)
        else:
            for r in ranges.split(","):
                lo, _, hi = r.partition("-")
                if not lo.isdigit() or (hi and not hi.isdigit()):
                    raise ValueError(f"bad range {r!r} in host list {expr!r}")
                width = len(lo)
                for i in range(int(lo), int(hi or lo) + 1):
                    out.append(f"{prefix}{i:0{width}d}{suffix}")
        pos = m.end()
        if pos < len(expr):
            if expr[pos] != ",":
                raise ValueError(f"bad host list {expr!r}")
            pos += 1
    return out


def _split_top(s: str) -> list[str]:
    """Split on commas that are not inside parentheses: ``gpu:a100:2(IDX:0,3),gpu:v100:1``."""
    parts: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in s:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth = max(0, depth - 1)
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip() and p.strip() not in ("(null)", "N/A")]


def parse_tres_gpus(spec: str | None, gres_name: str = "gpu", where: str = "tres") -> tuple[int, str]:
    """GPU count and model from a TRES request string.

    Accepts Slurm 22.05's ``gres:gpu:a100:8``, ``gres:gpu:8``, ``gres:gpu`` (one) and later
    versions' ``gres/gpu:8``; other TRES in a comma list are ignored. Returns ``(0, "")`` when no
    GPU is asked for. Raises :class:`QueueParseError` naming ``where`` on a malformed count.
    """
    if spec is None or spec == "":
        return 0, ""
    if not isinstance(spec, str):
        raise QueueParseError(where, f"expected a TRES string, got {type(spec).__name__} {spec!r}")
    total, model = 0, ""
    for item in _split_top(spec):
        item = item.split("(")[0]
        if item.startswith(("gres:", "gres/")):
            item = item[5:]
        elif item.startswith(("license", "cpu", "mem", "node", "billing", "energy", "fs/", "bb/")):
            continue
        parts = item.split(":")
        if parts[0] != gres_name:
            continue
        if len(parts) == 1:
            count, typ = "1", ""
        elif len(parts) == 2:
            typ, count = ("", parts[1]) if parts[1].isdigit() else (parts[1], "1")
        elif len(parts) == 3:
            typ, count = parts[1], parts[2]
        else:
            raise QueueParseError(where, f"cannot read GPU request {item!r} in {spec!r}")
        if not count.isdigit():
            raise QueueParseError(where, f"GPU count {count!r} is not a number in {spec!r}")
        total += int(count)
        model = model or typ
    return total, model


def parse_gres(spec: str | None, gres_name: str = "gpu", where: str = "gres") -> tuple[int, str]:
    """GPU count and model from a node's ``gres`` / ``gres_used`` (``gpu:a100:8(S:0-1)``,
    ``gpu:a100:3(IDX:0-2)``, ``gpu:8``, ``gpu:a100:0(IDX:N/A)``; several types comma-separated)."""
    if spec is None or spec == "" or spec == "(null)":
        return 0, ""
    if not isinstance(spec, str):
        raise QueueParseError(where, f"expected a GRES string, got {type(spec).__name__} {spec!r}")
    total, model = 0, ""
    for item in _split_top(spec):
        item = item.split("(")[0]
        parts = item.split(":")
        if parts[0] != gres_name:
            continue
        if len(parts) == 2:
            typ, count = "", parts[1]
        elif len(parts) == 3:
            typ, count = parts[1], parts[2]
        else:
            raise QueueParseError(where, f"cannot read GRES {item!r} in {spec!r}")
        if not count.isdigit():
            raise QueueParseError(where, f"GRES count {count!r} is not a number in {spec!r}")
        total += int(count)
        model = model or typ
    return total, model


def constraint_features(constraint: str | None) -> frozenset[str]:
    """Features a constraint expression asks for (``cloud&aws``, ``[r1|r2]``, ``a100*2``).
    Negated features (``!cloud``) and counts are left out."""
    if not constraint:
        return frozenset()
    toks = re.findall(r"!?[A-Za-z_][A-Za-z0-9_.\-]*", constraint)
    return frozenset(t for t in toks if not t.startswith("!"))


def job_may_burst(
    rules: BurstRules, cloud_feature: str, partition: str, qos: str, account: str, constraint: str
) -> bool:
    """True when the job matches any bursting rule, or asks for the cloud feature itself."""
    feats = constraint_features(constraint)
    if rules.all_jobs or cloud_feature in feats:
        return True
    parts = {p for p in partition.split(",") if p}  # a job may name several partitions
    return bool(
        parts & set(rules.partitions)
        or (qos and qos in rules.qos)
        or (account and account in rules.accounts)
        or feats & set(rules.constraints)
    )


# Pending reasons that more nodes cannot fix: reported as HELD (not schedulable now).
NOT_ELIGIBLE_REASONS = frozenset(
    {
        "JobHeldAdmin", "JobHeldUser", "Dependency", "DependencyNeverSatisfied", "BeginTime",
        "PartitionDown", "PartitionInactive", "InvalidAccount", "InvalidQOS", "BadConstraints",
        "FrontEndDown", "JobArrayTaskLimit", "QOSNotAllowed", "AccountNotAllowed", "Held",
    }
)
_RUNNING_STATES = frozenset(
    {"RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED", "SIGNALING", "STAGE_OUT", "RESIZING", "STOPPED"}
)
_PENDING_STATES = frozenset({"PENDING", "REQUEUED", "REQUEUE_FED"})
_HELD_STATES = frozenset({"REQUEUE_HOLD", "SPECIAL_EXIT"})
_UNSCHEDULABLE_FLAGS = frozenset(
    {
        "DRAIN", "DRAINING", "DRAINED", "NOT_RESPONDING", "FAIL", "MAINTENANCE", "POWERED_DOWN",
        "POWERING_DOWN", "POWER_DOWN", "POWERING_UP", "REBOOT_REQUESTED", "REBOOT_ISSUED",
        "RESERVED", "NO_RESPOND", "PLANNED_DOWN", "INVALID_REG",
    }
)
_SCHEDULABLE_BASES = frozenset({"IDLE", "MIXED", "ALLOCATED", "COMPLETING"})
# A node in these states does not answer: undraining it cannot bring its GPUs back.
_NOT_READY_BASES = frozenset({"DOWN", "FUTURE", "UNKNOWN", "POWERED_DOWN", "POWERING_DOWN", "FAIL"})
_NOT_READY_FLAGS = frozenset({"NOT_RESPONDING", "NO_RESPOND", "FAIL", "POWERED_DOWN", "POWERING_DOWN", "INVALID_REG"})


def _num(v: Any, where: str, *, optional: bool = False) -> float | None:
    """A number from 22.05 (plain) or later (``{"set": .., "number": ..}``) JSON."""
    if isinstance(v, dict):
        if not v.get("set", True) or v.get("infinite"):
            return None
        v = v.get("number")
    if v is None and optional:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise QueueParseError(where, f"expected a number, got {v!r}")
    return float(v)


def _str(v: Any, where: str) -> str:
    if v is None:
        return ""
    if isinstance(v, list):  # later versions: job_state / state are lists
        if not all(isinstance(x, str) for x in v):
            raise QueueParseError(where, f"expected text, got {v!r}")
        return ",".join(v)
    if not isinstance(v, str):
        raise QueueParseError(where, f"expected text, got {type(v).__name__} {v!r}")
    return v


def _load_json(text: str, command: str, key: str) -> list[dict[str, Any]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise QueueParseError(command, f"output is not JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(data, dict):
        raise QueueParseError(command, f"expected a JSON object, got {type(data).__name__}")
    errors = data.get("errors") or []
    if errors:
        msg = "; ".join(str(e.get("error", e) if isinstance(e, dict) else e) for e in errors)
        if re.search(r"contact|connect|timed out|refused", msg, re.I):
            raise QueueUnavailable(f"{command}: {msg}")
        raise QueueParseError(f"{command}: errors", msg)
    items = data.get(key)
    if not isinstance(items, list):
        raise QueueParseError(f"{command}: {key}", f"missing or not a list (got {type(items).__name__})")
    for i, it in enumerate(items):
        if not isinstance(it, dict):
            raise QueueParseError(f"{command}: {key}[{i}]", f"expected an object, got {it!r}")
    return items


def _job_id(j: Mapping[str, Any], where: str) -> str:
    jid = _num(j.get("job_id"), f"{where}.job_id")
    array_job = _num(j.get("array_job_id"), f"{where}.array_job_id", optional=True) or 0
    task = j.get("array_task_id")
    task_n = _num(task, f"{where}.array_task_id", optional=True) if task not in (None, "") else None
    if array_job and task_n is not None and task_n < 4294967294:  # NO_VAL sentinels
        return f"{int(array_job)}_{int(task_n)}"
    tasks = j.get("array_task_string") or ""
    if array_job and tasks:
        return f"{int(array_job)}_[{tasks}]"
    return str(int(jid or 0))


def parse_squeue(text: str, settings: SlurmSettings) -> tuple[list[Job], list[Job]]:
    """``squeue --json`` -> (pending, running) GPU jobs. Pure; raises QueueParseError."""
    cmd = "squeue --json"
    pending: list[Job] = []
    running: list[Job] = []
    for i, j in enumerate(_load_json(text, cmd, "jobs")):
        where = f"{cmd}: jobs[{i}]"
        state = _str(j.get("job_state"), f"{where}.job_state").upper()
        if not state:
            raise QueueParseError(f"{where}.job_state", "missing")
        state_set = set(state.split(","))
        is_running = bool(state_set & _RUNNING_STATES)
        is_pending = not is_running and bool(state_set & (_PENDING_STATES | _HELD_STATES))
        if not (is_running or is_pending):
            continue  # finished jobs linger for MinJobAge
        jid = _job_id(j, where)
        where = f"{cmd}: job {jid}"
        node_count = int(_num(j.get("node_count", 1), f"{where}.node_count", optional=True) or 1)
        node_count = max(1, node_count)
        tasks = int(_num(j.get("tasks", 1), f"{where}.tasks", optional=True) or 1)
        g = settings.gpu_gres
        per_node, model_n = parse_tres_gpus(j.get("tres_per_node"), g, f"{where}.tres_per_node")
        per_job, model_j = parse_tres_gpus(j.get("tres_per_job"), g, f"{where}.tres_per_job")
        per_task, model_t = parse_tres_gpus(j.get("tres_per_task"), g, f"{where}.tres_per_task")
        if per_node:
            gpus, gpn = per_node * node_count, per_node
        elif per_job:
            gpus, gpn = per_job, math.ceil(per_job / node_count)
        elif per_task:
            gpus, gpn = per_task * max(1, tasks), math.ceil(per_task * max(1, tasks) / node_count)
        else:
            continue  # not a GPU job
        model = model_n or model_j or model_t
        submit = _num(j.get("submit_time"), f"{where}.submit_time")
        start = None
        if is_running:
            start = _num(j.get("start_time"), f"{where}.start_time", optional=True)
            if not start:
                raise QueueParseError(f"{where}.start_time", "a running job has no start time")
        reason = _str(j.get("state_reason"), f"{where}.state_reason")
        reason = "" if reason == "None" else reason
        partition = _str(j.get("partition"), f"{where}.partition")
        qos = _str(j.get("qos"), f"{where}.qos")
        account = _str(j.get("account"), f"{where}.account")
        constraint = _str(j.get("features"), f"{where}.features")
        prio = _num(j.get("priority", 0), f"{where}.priority", optional=True) or 0
        nodes: tuple[str, ...] = ()
        if is_running:
            nodes = _job_nodes(j, where)
        if is_running:
            jstate = JobState.RUNNING
        elif state_set & _HELD_STATES or reason in NOT_ELIGIBLE_REASONS or reason.startswith("JobHeld"):
            jstate = JobState.HELD
        else:
            jstate = JobState.PENDING
        labels = {
            k: v
            for k, v in {
                "partition": partition,
                "qos": qos,
                "account": account,
                "constraint": constraint,
                "name": _str(j.get("name"), f"{where}.name"),
                "slurm_state": state,
                "state_description": _str(j.get("state_description"), f"{where}.state_description"),
                "restart_count": str(int(_num(j.get("restart_cnt", 0), f"{where}.restart_cnt",
                                              optional=True) or 0)),
            }.items()
            if v
        }
        job = Job(
            id=jid,
            gpus=gpus,
            submit_time=float(submit or 0.0),
            state=jstate,
            owner=_str(j.get("user_name"), f"{where}.user_name"),
            team=account,
            gpus_per_node=gpn if node_count > 1 else 0,
            nodes=node_count,
            labels=MappingProxyType(labels),
            image=_str(j.get("container"), f"{where}.container"),
            may_burst=job_may_burst(settings.burstable, settings.cloud_feature, partition, qos, account,
                                    constraint),
            gpu_model=model,
            start_time=start,
            node_names=nodes,
            reason=reason,
            priority=int(prio),
        )
        (running if is_running else pending).append(job)
    return pending, running


def _job_nodes(j: Mapping[str, Any], where: str) -> tuple[str, ...]:
    res = j.get("job_resources")
    if isinstance(res, dict) and isinstance(res.get("allocated_nodes"), list):
        names = [n.get("nodename") for n in res["allocated_nodes"] if isinstance(n, dict)]
        if names and all(isinstance(n, str) and n for n in names):
            return tuple(names)  # type: ignore[arg-type]
    expr = _str(j.get("nodes"), f"{where}.nodes")
    try:
        return tuple(expand_hostlist(expr))
    except ValueError as e:
        raise QueueParseError(f"{where}.nodes", str(e)) from None


def parse_sinfo(text: str, settings: SlurmSettings, running: Sequence[Job] = ()) -> list[Node]:
    """``sinfo --json`` -> nodes with GPU capacity and use (from GRES). Pure.

    ``running`` (from :func:`parse_squeue`) supplies the running-job count per node."""
    cmd = "sinfo --json"
    per_node: dict[str, int] = {}
    for job in running:
        for node_name in job.node_names:
            per_node[node_name] = per_node.get(node_name, 0) + 1
    nodes: dict[str, Node] = {}
    for i, n in enumerate(_load_json(text, cmd, "nodes")):
        name = n.get("name")
        if not isinstance(name, str) or not name:
            raise QueueParseError(f"{cmd}: nodes[{i}].name", f"missing or not text: {name!r}")
        where = f"{cmd}: node {name}"
        if name in nodes:
            continue  # one entry per node and partition in some versions
        gpus, model = parse_gres(n.get("gres"), settings.gpu_gres, f"{where}.gres")
        used, _ = parse_gres(n.get("gres_used"), settings.gpu_gres, f"{where}.gres_used")
        state_words = _str(n.get("state"), f"{where}.state").upper().replace("+", ",").split(",")
        flags_raw = n.get("state_flags") or []
        if not isinstance(flags_raw, list) or not all(isinstance(f, str) for f in flags_raw):
            raise QueueParseError(f"{where}.state_flags", f"expected a list of text, got {flags_raw!r}")
        words = {w.strip("*~#!%$@^-") for w in state_words if w} | {f.upper() for f in flags_raw}
        if not words:
            raise QueueParseError(f"{where}.state", "missing")
        base = state_words[0].strip("*~#!%$@^-")
        schedulable = base in _SCHEDULABLE_BASES and not (words & _UNSCHEDULABLE_FLAGS)
        if base == "DRAINED" or base == "DRAINING":
            schedulable = False
        ready = base not in _NOT_READY_BASES and not (words & _NOT_READY_FLAGS)
        features = _str(n.get("active_features") or n.get("features"), f"{where}.features")
        comment = _str(n.get("comment"), f"{where}.comment")
        iid = instance_id_from_comment(comment) or instance_id_for_node(
            name, settings.instance_node_prefix, settings.instance_id_pattern
        )
        feats = [f for f in features.split(",") if f]
        labels = {
            "features": features,
            "partitions": ",".join(p for p in (n.get("partitions") or []) if isinstance(p, str)),
            "state": "+".join([base] + sorted(words - {base})),
            "reason": _str(n.get("reason"), f"{where}.reason"),
            "address": _str(n.get("address"), f"{where}.address"),
        }
        if settings.cloud_feature in feats:
            labels["cloud"] = "true"
        nodes[name] = Node(
            name=name,
            gpus=gpus,
            gpus_used=min(used, gpus) if gpus else used,
            gpu_model=model,
            schedulable=schedulable,
            ready=ready,
            instance_id=iid,
            labels=MappingProxyType({k: v for k, v in labels.items() if v}),
            running_jobs=per_node.get(name, 0),
        )
    return list(nodes.values())


_KV_SPLIT = re.compile(r"\s+(?=[A-Za-z_][A-Za-z0-9_:/]*=)")


def parse_scontrol_line(line: str) -> dict[str, str]:
    """One ``scontrol show ... -o`` record as a dict. Values may hold spaces (``OS=Linux 6.1 #1``,
    ``Reason=not responding [slurm@...]``): a new field starts only where ``Key=`` follows."""
    out: dict[str, str] = {}
    for tok in _KV_SPLIT.split(line.strip()):
        k, sep, v = tok.partition("=")
        if sep:
            out[k] = v
    return out


def parse_pool(text: str, cloud_feature: str = "cloud") -> list[PoolNode]:
    """``scontrol --future show node -o`` -> every node, FUTURE ones included."""
    pool: list[PoolNode] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("No nodes"):
            continue
        f = parse_scontrol_line(line)
        name = f.get("NodeName")
        if not name:
            raise QueueParseError(f"scontrol show node: line {lineno}.NodeName", f"missing in {line[:80]!r}")
        comment = f.get("Comment", "")
        comment = "" if comment in ("(null)", "N/A") else comment
        feats = tuple(x for x in (f.get("AvailableFeatures") or "").split(",") if x and x != "(null)")
        pool.append(
            PoolNode(
                name=name,
                state=f.get("State", ""),
                features=feats,
                instance_id=instance_id_from_comment(comment),
                comment=comment,
                fields=MappingProxyType(f),
            )
        )
    return pool


# --------------------------------------------------------------------------------------------
# The queue
# --------------------------------------------------------------------------------------------

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
        pending.sort(key=lambda j: (-j.priority, j.submit_time, _natural_key(j.id)))
        return QueueSnapshot(pending=tuple(pending), running=tuple(running), nodes=tuple(nodes))

    def pool(self) -> list[PoolNode]:
        """Every node, FUTURE pool included, with the instance each pool node is reserved for."""
        return parse_pool(self._run(["scontrol", "--future", "show", "node", "-o"]), self.settings.cloud_feature)

    def isolation_warnings(self) -> list[str]:
        """Partitions whose jobs could land on burst nodes without having opted in.

        Slurm has no taint: a burst node is usable by every job of every partition that holds
        it. Jobs opt in through ``burstable`` rules (partition, QOS, account, constraint), but a
        job in a non-burstable partition that holds burst nodes can be placed there by Slurm
        while on-prem is full, at cloud prices. The safe layout gives burst nodes their own
        partition (pool nodes, or a NodeSet with ``Feature=<cloud_feature>`` for dynamic nodes)
        and lists on-prem nodes explicitly elsewhere. Read-only; the daemon logs the result at
        start (one ``scontrol`` call each for partitions and nodes)."""
        rules = self.settings.burstable
        if rules.all_jobs:
            return []
        burst_nodes = {
            n.name for n in self.pool() if self.settings.cloud_feature in n.features or n.is_dynamic
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
                held = f"burst nodes {', '.join(sorted(named, key=_natural_key)[:4])}{' ...' if len(named) > 4 else ''}"
            out.append(
                f"partition {name} holds {held}: its jobs that did not opt in "
                f"(constraint {self.settings.cloud_feature!r}, or a burstable QOS/account) can run on cloud "
                f"capacity. Give burst nodes a partition of their own and list on-prem nodes explicitly, "
                f"or add {name!r} to slurm.burstable.partitions"
            )
        return out

    def node_info(self, node_name: str) -> PoolNode | None:
        """One node (FUTURE included), or None when Slurm does not know it."""
        try:
            out = self._run(["scontrol", "--future", "show", "node", "-o", node_name])
        except SlurmCommandError as e:
            if re.search(r"not found|Invalid node name", e.stderr, re.I):
                return None
            raise
        nodes = [n for n in parse_pool(out, self.settings.cloud_feature) if n.name == node_name]
        return nodes[0] if nodes else None

    def drain_node(self, node_name: str, reason: str) -> None:
        """``state=drain``. Idempotent; a FUTURE or unknown node has nothing to drain."""
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
        """Return a burst node to the FUTURE pool and forget its instance.

        Unknown or already-FUTURE node: success (the comment is cleared). The node is drained
        first (so nothing lands on it meanwhile). If jobs still run there: :class:`NodeBusy`,
        unless ``force``, which sets ``state=down`` (Slurm requeues them) and then still raises
        :class:`NodeBusy` while they are completing; call again on a later tick.
        """
        info = self.node_info(node_name)
        if info is None:
            return
        if info.is_future:
            if info.comment:
                self._update_node(node_name, "comment=")
            return
        if "DRAIN" not in info.state.upper():
            self._update_node(node_name, "state=drain", "reason=burst:removing")
        jobs = self.jobs_on_node(node_name)
        if jobs:
            if not force:
                raise NodeBusy(node_name, jobs)
            self._update_node(node_name, "state=down", "reason=burst:removing(forced)")
        if info.is_dynamic:
            try:
                self._run(["scontrol", "delete", f"nodename={node_name}"])
            except SlurmCommandError as e:
                if re.search(r"Invalid node name|not found", e.stderr, re.I):
                    return
                if re.search(r"busy", e.stderr, re.I):
                    raise NodeBusy(node_name, self.jobs_on_node(node_name)) from e
                raise
            return
        try:
            self._update_node(node_name, "state=future")
        except SlurmCommandError as e:
            raise NodeBusy(node_name, self.jobs_on_node(node_name)) from e
        self._update_node(node_name, "comment=")

    def jobs_on_node(self, node_name: str) -> list[str]:
        """Ids of jobs allocated on the node (running, completing, suspended...)."""
        out = self._run(["squeue", "-h", "--all", f"--nodelist={node_name}", "-o", "%i"])
        return [x.strip() for x in out.split() if x.strip()]

    def _update_node(self, node_name: str, *settings: str) -> None:
        self._run(["scontrol", "update", f"nodename={node_name}", *settings])

    # ---- burst pool ----------------------------------------------------------------------

    def assign_node(self, instance_id: str, provider: str = "", region: str = "") -> str:
        """Reserve a FUTURE pool node for ``instance_id``; returns its name. Idempotent.

        The reservation is the node's comment (:func:`comment_for`), written while the node is
        still FUTURE, so it survives a controller crash and is visible to the next assignment.
        Raises :class:`PoolExhausted` when no free node matches.
        """
        comment_for(instance_id)  # validates
        pool = self.pool()
        name = pick_pool_node(
            instance_id, pool, provider, region,
            cloud_feature=self.settings.cloud_feature, prefix=self.settings.burst_node_prefix,
        )
        if name is None:
            free = [n.name for n in pool if n.is_future and not n.instance_id]
            raise PoolExhausted(
                f"no free FUTURE node with features {self.settings.cloud_feature!r}"
                f"{' and ' + repr(provider) if provider else ''} for {instance_id} (free pool: {free or 'none'})"
            )
        current = next(n for n in pool if n.name == name)
        if current.instance_id != instance_id:
            self._update_node(name, f"comment={comment_for(instance_id)}")
        return name

    def node_reservations(self) -> dict[str, str]:
        """FUTURE pool nodes reserved for an instance that has not joined yet (ReservingQueue)."""
        return {n.name: n.instance_id for n in self.pool() if n.is_future and n.instance_id}

    def release_node_reservation(self, node_name: str) -> None:
        """Give a reserved FUTURE node back to the pool (clears its comment). Idempotent."""
        info = self.node_info(node_name)
        if info is not None and info.is_future and info.comment:
            self._update_node(node_name, "comment=")

    def instance_node(self, instance_id: str) -> str | None:
        """The node reserved for (or joined by) ``instance_id``, if any."""
        for n in self.pool():
            if n.instance_id == instance_id:
                return n.name
        return None

    def set_node_address(self, node_name: str, address: str, hostname: str = "") -> None:
        """Point slurmctld at the instance (production: its private IP and hostname)."""
        args = [f"nodeaddr={address}"]
        if hostname:
            args.append(f"nodehostname={hostname}")
        self._update_node(node_name, *args)

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
