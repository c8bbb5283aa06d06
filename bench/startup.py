"""Start-up time of short ``burst`` commands, side by side with another checkout.

Each command runs as a fresh interpreter doing what the checkout's ``burst`` console script does
(``python -c 'from MODULE import FUNC; FUNC()' ...``, the target named in its pyproject.toml,
with PYTHONPATH set to the checkout; stdout not a terminal), ``--runs`` times per side, old and new interleaved (and
which goes first alternating), on the embedded default configuration:

* ``burst --help``;
* ``burst status`` with a store already at the newest revision (``.burst/burst.db`` in the
  working directory, made once before timing);
* ``burst status`` in an empty directory (what a first run pays; the directory is emptied
  before every run).

Prints medians and old/new ratios, of wall time and of the process's CPU time (user + system:
less swayed by other load on a shared machine, though not immune to it); last line JSON. A
``status`` run in the empty directory that leaves anything behind stops the bench (read-only
commands create nothing).

    python bench/startup.py --old /tmp/old [--runs 10]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
CASES = {"help": ["--help"], "status (store current)": ["status"], "status (empty dir)": ["status"]}


def entry_point(root: Path) -> tuple[str, str]:
    """The checkout's ``burst`` console script target (module, function), from its pyproject:
    what an installed ``burst`` runs."""
    import tomllib

    target = tomllib.loads((root / "pyproject.toml").read_text())["project"]["scripts"]["burst"]
    module, func = target.split(":")
    return module, func


def run(root: Path, args: list[str], cwd: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one run."""
    env = dict(os.environ, PYTHONPATH=str(root))
    module, func = entry_point(root)
    # What the console script does (with argv[0] the script's name), timed from outside.
    code = f"import sys; sys.argv[0] = 'burst'; from {module} import {func}; {func}()"
    cmd = [sys.executable, "-c", code, *args]
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", default=None, metavar="DIR", help="the checkout to compare with")
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    sides = {"new": HERE} | ({"old": Path(args.old).resolve()} if args.old else {})
    tmp = Path(tempfile.mkdtemp(prefix="burst-startup-"))
    try:
        current = {s: tmp / f"current-{s}" for s in sides}
        for s, d in current.items():
            d.mkdir()
            run(sides[s], ["db", "upgrade"], d)  # .burst/burst.db at the newest revision (status creates nothing)
        times: dict[str, dict[str, list[float]]] = {c: {s: [] for s in sides} for c in CASES}
        cpu: dict[str, dict[str, list[float]]] = {c: {s: [] for s in sides} for c in CASES}
        for k in range(args.runs):
            for case, argv in CASES.items():
                order = list(sides) if k % 2 == 0 else list(reversed(sides))
                for s in order:
                    if case == "status (empty dir)":
                        cwd = tmp / f"empty-{s}"
                        shutil.rmtree(cwd, ignore_errors=True)
                        cwd.mkdir()
                    elif case == "help":
                        cwd = tmp
                    else:
                        cwd = current[s]
                    wall, used = run(sides[s], argv, cwd)
                    times[case][s].append(wall)
                    cpu[case][s].append(used)
                    if case == "status (empty dir)" and any(cwd.iterdir()):
                        raise SystemExit(f"{s}: `burst status` in an empty directory created {sorted(p.name for p in cwd.iterdir())}")
        print(f"median of {args.runs} (s), load {os.getloadavg()[0]:.1f}")
        out: dict[str, dict[str, float]] = {}
        out_cpu: dict[str, dict[str, float]] = {}
        for case in CASES:
            med = {s: statistics.median(times[case][s]) for s in sides}
            med_cpu = {s: statistics.median(cpu[case][s]) for s in sides}
            out[case], out_cpu[case] = med, med_cpu
            line = "  ".join(f"{s} {med[s]:.3f}" for s in sides)
            if "old" in med:
                line += f"  old/new {med['old'] / med['new']:.2f}x"
            line += "  | cpu " + "  ".join(f"{s} {med_cpu[s]:.3f}" for s in sides)
            print(f"  {case:24s} {line}")
        print(json.dumps({"bench": "startup", "runs": args.runs, "medians_s": out, "cpu_medians_s": out_cpu}))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
