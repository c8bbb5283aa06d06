"""Job traces for the simulator.

Two formats:

``itp``: the Microsoft ITP 2021 release (``job_id,submission_time,duration,num_gpu``), seconds
relative to the start of collection. A job of more than ``gpus_per_node`` GPUs is a gang of
``ceil(gpus / gpus_per_node)`` whole nodes (BENCHMARKS.md B1).

``csv``: burst's generic format. Required columns ``id,submit_time,duration,gpus``; optional
``nodes`` (gang size, default: whole nodes as for itp), ``team``, ``owner``, ``may_burst``
(true/false, default true), ``image``, ``gpu_model``. Times in seconds, any origin.

Every bad row is refused with ``InputError("<file>:<line>", "...")`` naming the column; nothing
is loaded from a file that has one.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from burst.errors import InputError

ITP_COLUMNS = ("job_id", "submission_time", "duration", "num_gpu")
CSV_COLUMNS = ("id", "submit_time", "duration", "gpus")
MAX_GPUS = 100_000
MAX_SECONDS = 10 * 365 * 86400.0


@dataclass(frozen=True, slots=True)
class TraceJob:
    id: str
    submit: float
    duration: float
    gpus: int
    nodes: int = 1
    per_node: int = 0
    may_burst: bool = True
    team: str = ""
    owner: str = ""
    image: str = ""
    gpu_model: str = ""


def _show(raw: str) -> str:
    """A value for an error message: quoted, escaped, at most ~40 characters."""
    return repr(raw) if len(raw) <= 40 else repr(raw[:37]) + "..."


def _num(row: dict[str, str], col: str, where: str, *, integer: bool = False, minimum: float = 0.0) -> float:
    raw = (row.get(col) or "").strip()
    if not raw:
        raise InputError(where, f"column {col!r} is empty")
    try:
        v = float(raw)
    except ValueError:
        raise InputError(where, f"column {col!r}: {_show(raw)} is not a number") from None
    if not math.isfinite(v):
        raise InputError(where, f"column {col!r}: {_show(raw)} is not finite")
    if v < minimum:
        raise InputError(where, f"column {col!r}: {_show(raw)} must be >= {minimum:g}")
    if integer and v != int(v):
        raise InputError(where, f"column {col!r}: {_show(raw)} must be a whole number")
    limit = MAX_GPUS if integer else MAX_SECONDS
    if v > limit:
        raise InputError(where, f"column {col!r}: {_show(raw)} is implausibly large (max {limit:g})")
    return v


def _bool(raw: str, where: str, col: str) -> bool:
    v = raw.strip().lower()
    if v in ("", "1", "true", "yes", "y"):
        return True
    if v in ("0", "false", "no", "n"):
        return False
    raise InputError(where, f"column {col!r}: {_show(raw)} is not true/false")


def _rows(path: Path, required: tuple[str, ...]) -> Iterator[tuple[str, dict[str, str]]]:
    try:
        # utf-8-sig: a byte-order mark (what spreadsheet exports write) is not part of the header
        fh = path.open(newline="", encoding="utf-8-sig")
    except OSError as e:
        raise InputError(str(path), f"cannot read trace: {e.strerror}") from None
    with fh:
        reader = csv.DictReader(_bounded_lines(fh, path))
        try:
            header = reader.fieldnames or []  # reads (and decodes) the first buffer of the file
        except UnicodeDecodeError as e:
            raise InputError(f"{path}:{_bad_utf8_line(path)}", f"not UTF-8 text ({e.reason})") from None
        except csv.Error as e:
            raise InputError(f"{path}:1", f"malformed CSV header: {e}") from None
        header = [h.strip() for h in header]
        reader.fieldnames = header
        missing = [c for c in required if c not in header]
        if missing:
            shown = ",".join(header)
            shown = shown if len(shown) <= 120 else shown[:117] + "..."
            raise InputError(f"{path}:1", f"missing column(s) {', '.join(missing)} (header: {shown or 'empty'})")
        try:
            for row in reader:
                where = f"{path}:{reader.line_num}"
                if None in row:
                    raise InputError(where, "row has more fields than the header")
                if any(v is None for v in row.values()):
                    raise InputError(where, "row has fewer fields than the header")
                yield where, row
        except UnicodeDecodeError as e:  # decoding runs a buffer ahead of the csv reader's line
            raise InputError(f"{path}:{_bad_utf8_line(path)}", f"not UTF-8 text ({e.reason})") from None
        except csv.Error as e:
            raise InputError(f"{path}:{reader.line_num}", f"malformed CSV: {e}") from None


MAX_LINE_CHARS = 1 << 20  # a trace row is a few dozen characters; /dev/zero is endless


def _bounded_lines(fh: TextIO, path: Path) -> Iterator[str]:
    """The file's lines for the csv reader, each read with a bound: one endless line (a device,
    a binary file) is refused instead of filling memory."""
    n = 0
    while True:
        line = fh.readline(MAX_LINE_CHARS + 1)
        if not line:
            return
        n += 1
        if len(line) > MAX_LINE_CHARS:
            raise InputError(f"{path}:{n}", f"line longer than {MAX_LINE_CHARS:,} characters; not a trace")
        yield line


def _bad_utf8_line(path: Path) -> int:
    """The line of the first byte that is not UTF-8 (error path only). Read in chunks up to that
    byte, so a device or an endless binary stream is not read whole."""
    import codecs

    dec = codecs.getincrementaldecoder("utf-8")()
    line = 1
    with path.open("rb") as f:
        while chunk := f.read(1 << 16):
            pending = len(dec.getstate()[0])  # an unfinished character (no newline in it)
            try:
                dec.decode(chunk)
            except UnicodeDecodeError as e:
                return line + chunk[: max(0, e.start - pending)].count(b"\n")
            line += chunk.count(b"\n")
    return line


def _gang(gpus: int, gpus_per_node: int) -> tuple[int, int]:
    if gpus <= gpus_per_node:
        return 1, gpus
    return math.ceil(gpus / gpus_per_node), gpus_per_node


def load_trace(
    path: Path | str, fmt: str = "itp", *, gpus_per_node: int = 8, days: float | None = None
) -> list[TraceJob]:
    """Load, validate and sort a trace by submit time (then id). ``days`` keeps the first D days."""
    path = Path(path)
    if fmt not in ("itp", "csv"):
        raise InputError("--format", f"unknown trace format {fmt!r} (itp or csv)")
    jobs: list[TraceJob] = []
    seen: set[str] = set()
    if fmt == "itp":
        for where, row in _rows(path, ITP_COLUMNS):
            jid = row["job_id"].strip()
            if not jid:
                raise InputError(where, "column 'job_id' is empty")
            gpus = int(_num(row, "num_gpu", where, integer=True, minimum=1))
            nodes, per = _gang(gpus, gpus_per_node)
            jobs.append(
                TraceJob(
                    id=jid,
                    submit=_num(row, "submission_time", where),
                    duration=_num(row, "duration", where, minimum=1),
                    gpus=gpus,
                    nodes=nodes,
                    per_node=per,
                )
            )
            if jid in seen:
                raise InputError(where, f"duplicate job_id {_show(jid)}")
            seen.add(jid)
    else:
        for where, row in _rows(path, CSV_COLUMNS):
            jid = row["id"].strip()
            if not jid:
                raise InputError(where, "column 'id' is empty")
            gpus = int(_num(row, "gpus", where, integer=True, minimum=1))
            if (row.get("nodes") or "").strip():
                nodes = int(_num(row, "nodes", where, integer=True, minimum=1))
                per = math.ceil(gpus / nodes)
                if per > gpus_per_node:
                    raise InputError(where, f"column 'nodes': {gpus} GPUs on {nodes} node(s) exceeds {gpus_per_node} per node")
            else:
                nodes, per = _gang(gpus, gpus_per_node)
            jobs.append(
                TraceJob(
                    id=jid,
                    submit=_num(row, "submit_time", where),
                    duration=_num(row, "duration", where, minimum=1),
                    gpus=gpus,
                    nodes=nodes,
                    per_node=per,
                    may_burst=_bool(row.get("may_burst") or "", where, "may_burst"),
                    team=(row.get("team") or "").strip(),
                    owner=(row.get("owner") or "").strip(),
                    image=(row.get("image") or "").strip(),
                    gpu_model=(row.get("gpu_model") or "").strip(),
                )
            )
            if jid in seen:
                raise InputError(where, f"duplicate id {_show(jid)}")
            seen.add(jid)
    if not jobs:
        raise InputError(str(path), "trace has no jobs")
    jobs.sort(key=lambda j: (j.submit, j.id))
    if days is not None:
        if days <= 0:
            raise InputError("--days", f"must be positive, got {days:g}")
        end = jobs[0].submit + days * 86400.0
        jobs = [j for j in jobs if j.submit < end]
    return jobs


def bundled_trace_path() -> Path:
    """The ITP cluster04 trace shipped with burst (MIT licence; see burst/data/TRACES_SOURCE.md)."""
    from importlib import resources

    return Path(str(resources.files("burst") / "data" / "itp_cluster04.csv"))
