"""Pure parsers for the Slurm adapter: Slurm CLI output -> burst's domain (no I/O).

``squeue --json`` -> jobs (:func:`parse_squeue`), ``sinfo --json`` -> nodes (:func:`parse_sinfo`),
``scontrol show ... -o`` -> records (:func:`parse_scontrol_line`, :func:`parse_node_records`),
plus the naming rule that ties a burst node to its instance (:func:`node_name_for`). Output that
cannot be read raises :class:`~burst.errors.QueueParseError` whose ``where`` names the command
and the field. GPU use is judged by GRES (``gres_used``), never by the node's state word: a node
whose 8 GPUs are all allocated but whose CPUs are not shows ``mixed``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from burst.domain import Job, JobState, Node
from burst.errors import QueueParseError, QueueUnavailable
from burst.queues.slurm.settings import BurstRules, SlurmSettings


def node_name_for(instance_id: str, prefix: str = "") -> str:
    """Name of the dynamic node an instance registers as (``slurmd -Z -N <name>``)."""
    return f"{prefix}{instance_id}"


def instance_id_for_node(node_name: str, prefix: str = "", pattern: str = r"b-[0-9a-f]{16}") -> str:
    """Inverse of :func:`node_name_for`: the instance id, or ``""`` for any other node name."""
    if not node_name.startswith(prefix):
        return ""
    rest = node_name[len(prefix):]
    return rest if re.fullmatch(pattern, rest) else ""



def natural_key(name: str) -> tuple[Any, ...]:
    """Sort key that orders ``burst2`` before ``burst10`` and job ``9`` before ``10``."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))


@dataclass(frozen=True, slots=True)
class NodeRecord:
    """A node as ``scontrol --future show node -o`` shows it (the part the adapter needs)."""

    name: str
    state: str  # e.g. IDLE+DYNAMIC_NORM, MIXED+DRAIN, FUTURE
    features: tuple[str, ...] = ()
    fields: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def is_future(self) -> bool:
        return "FUTURE" in self.state.upper().split("+")

    @property
    def is_dynamic(self) -> bool:
        """Registered with ``slurmd -Z``: leaves with ``scontrol delete``."""
        return any(w.startswith("DYNAMIC") for w in self.state.upper().split("+"))


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


# Slurm's "no limit" sentinels in a uint32 field (22.05 prints them as plain numbers): INFINITE
# (0xffffffff) and NO_VAL (0xfffffffe).
_NO_LIMIT = 4294967294


def parse_time_limit(v: Any, where: str) -> float | None:
    """``squeue --json`` ``time_limit`` (minutes) -> seconds; None when the job has no limit.

    22.05 prints a plain number, or null for ``--time=UNLIMITED``; later versions an object
    ``{"set", "infinite", "number"}``. Unset, infinite, the NO_VAL/INFINITE sentinels and 0 (which
    Slurm never stores as a real limit) are all "no limit": the job may run forever. A job without
    ``--time`` in a partition with ``MaxTime=INFINITE`` shows 525600 (a year) on 22.05: a real
    number, kept (it never ends before any challenge start that matters)."""
    minutes = _num(v, where, optional=True)
    if minutes is None or minutes <= 0 or minutes >= _NO_LIMIT:
        return None
    return minutes * 60.0


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
        if is_running and state_set <= {"COMPLETING", "REQUEUED"} and _str(
                j.get("state_reason"), f"{cmd}: jobs[{i}].state_reason").startswith("JobHeld"):
            # Requeued in held state (a grand challenge's hold) and still winding down: its
            # future is held, and that is what it is (its GPUs show used in sinfo until it is
            # gone). Seen as running, a restarted controller would hold it again, and Slurm may
            # already have cleared its start time.
            is_running = False
            state_set.add("REQUEUE_HOLD")
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
                if "COMPLETING" not in state_set:
                    raise QueueParseError(f"{where}.start_time", "a running job has no start time")
                start = None  # a requeued job winding down: Slurm cleared its start time
        reason = _str(j.get("state_reason"), f"{where}.state_reason")
        reason = "" if reason == "None" else reason
        partition = _str(j.get("partition"), f"{where}.partition")
        qos = _str(j.get("qos"), f"{where}.qos")
        account = _str(j.get("account"), f"{where}.account")
        constraint = _str(j.get("features"), f"{where}.features")
        prio = _num(j.get("priority", 0), f"{where}.priority", optional=True) or 0
        if prio >= _NO_LIMIT:  # NO_VAL: a priority not computed yet
            prio = 0
        time_limit = parse_time_limit(j.get("time_limit"), f"{where}.time_limit")
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
            time_limit_s=time_limit,
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
        iid = instance_id_for_node(name, settings.instance_node_prefix, settings.instance_id_pattern)
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




def parse_node_records(text: str) -> list[NodeRecord]:
    """``scontrol --future show node -o`` -> every node, FUTURE ones included."""
    out: list[NodeRecord] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("No nodes"):
            continue
        f = parse_scontrol_line(line)
        name = f.get("NodeName")
        if not name:
            raise QueueParseError(f"scontrol show node: line {lineno}.NodeName", f"missing in {line[:80]!r}")
        feats = tuple(x for x in (f.get("AvailableFeatures") or "").split(",") if x and x != "(null)")
        out.append(NodeRecord(name=name, state=f.get("State", ""), features=feats, fields=MappingProxyType(f)))
    return out
