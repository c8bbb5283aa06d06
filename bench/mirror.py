"""B3: image mirroring, burst's copy engine against ``skopeo copy`` (BENCHMARKS.md).

Two local docker-registry servers. Registry A holds an image of 10 layers of random bytes
(1 GiB in all, gzip-wrapped, incompressible). Each run copies A -> a *fresh* registry B (new
storage, new port, so neither tool can reuse or mount anything from an earlier run), alternating
``burst mirror`` (``python -m burst.mirror_cli``, a subprocess like skopeo), ``skopeo copy``, and
the same ``burst mirror`` command function called in-process (the engine without interpreter
start-up), ``--runs`` times each. The headline ratio is subprocess against subprocess. Then a
second image sharing 9 of the 10 layers is mirrored after the first into the same repository,
and the bytes uploaded are reported: only the new layer should travel.

Fairness: both tools copy the same image between the same two kinds of registry over plain http,
each into its own fresh registry, and verify digests (skopeo with ``--preserve-digests``). The
order of the three rotates every round, so no tool always follows the same one; before the first
timed round each tool copies once untimed (in an order that alternates between invocations), so
no tool's timed run is the cold first read of registry A; and dirty pages of the previous run are flushed (``sync``) before
each timed run, so its disk writeback does not land in the next one's time. Each tool runs with
its own default concurrency unless ``--parallel`` is given for burst. CPU seconds of the tool
and of the target registry are reported per run: on a shared machine they are steadier than
wall time.

    python bench/mirror.py [--size-mib 1024] [--layers 10] [--runs 3] [--parallel N]

The last line of output is one JSON object with the figures.
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.registry import (  # noqa: E402
    LayoutWriter,
    RegistryServer,
    inspect_digest,
    push_layout,
    skopeo,
    tools_available,
)


def burst_copy(src: str, dest_registry: str, parallel: int | None) -> dict[str, object]:
    extra = ["--parallel", str(parallel)] if parallel else []
    out = subprocess.run(
        [sys.executable, "-m", "burst.mirror_cli", src, "--to", dest_registry, "--insecure", "--json", *extra],
        capture_output=True, text=True, cwd=ROOT, check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"burst mirror failed: {out.stderr.strip()}")
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def burst_copy_in_process(src: str, dest_registry: str, parallel: int | None) -> dict[str, object]:
    """The same ``burst mirror`` command function, called in this process (no interpreter start)."""
    import contextlib
    import io

    from burst.mirror_cli import mirror_command

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        mirror_command(src, dest_registry, None, insecure=True, parallel=parallel, progress=False, json_out=True)
    result: dict[str, object] = json.loads(buf.getvalue().strip().splitlines()[-1])
    return result


def skopeo_copy(src: str, dest: str) -> None:
    skopeo("copy", "--quiet", "--preserve-digests", "--src-tls-verify=false", "--dest-tls-verify=false",
           f"docker://{src}", f"docker://{dest}", timeout=3600)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=10)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--parallel", type=int, default=None, help="burst's blobs at once (default: its own default)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = ap.parse_args()
    if not tools_available():
        print("docker-registry, skopeo and htpasswd are needed (scripts/install-system-deps.sh)", file=sys.stderr)
        return 2

    tmp = Path(tempfile.mkdtemp(prefix="burst-b3-"))
    servers: list[RegistryServer] = []
    try:
        t0 = time.monotonic()
        lw = LayoutWriter(tmp / "layout")
        per_layer = args.size_mib * (1 << 20) // args.layers
        layers = [lw.random_gzip_layer_file(per_layer) for _ in range(args.layers)]
        img1 = lw.image(layers)
        lw.tag(img1, "v1")
        extra = lw.random_gzip_layer_file(per_layer)
        img2 = lw.image([*layers[:-1], extra])
        lw.tag(img2, "v2")
        total = sum(d.size for d in layers)
        print(f"generated {args.layers} layers, {total / (1 << 20):.0f} MiB, in {time.monotonic() - t0:.1f}s")

        a = RegistryServer(tmp / "A", name="A").start()
        servers.append(a)
        push_layout(lw.root, "v1", f"{a.host}/bench/cuda:v1")
        push_layout(lw.root, "v2", f"{a.host}/bench/cuda:v2")
        src1, src2 = f"{a.host}/bench/cuda:v1", f"{a.host}/bench/cuda:v2"
        src_digest = inspect_digest(src1)

        tools = ("burst", "skopeo", "burst_in_process")
        # Untimed warm-up, every tool once, in an order that alternates between invocations
        # (by the clock's parity): the first copy out of registry A reads its blobs cold (disk,
        # page cache, the registry's own caches), and whichever tool took the first timed slot
        # used to pay that (burst did: its round-1 target registry used 1.7x the CPU).
        warm_order = tools if int(time.time()) % 2 == 0 else tuple(reversed(tools))
        for k, tool in enumerate(warm_order):
            w = RegistryServer(tmp / f"B-warm-{k}", name=f"B-warm-{k}").start()
            try:
                if tool == "skopeo":
                    skopeo_copy(src1, f"{w.host}/bench/cuda:v1")
                elif tool == "burst":
                    burst_copy(src1, w.host, args.parallel)
                else:
                    burst_copy_in_process(src1, w.host, args.parallel)
            finally:
                w.stop()
                shutil.rmtree(w.root, ignore_errors=True)
        print(f"warm-up (untimed): {', '.join(warm_order)}")
        times: dict[str, list[float]] = {t: [] for t in tools}
        cpu: dict[str, list[float]] = {t: [] for t in tools}  # the tool's CPU seconds
        reg_cpu: dict[str, list[float]] = {t: [] for t in tools}  # the target registry's
        for i in range(args.runs):
            for tool in tools[i % len(tools):] + tools[:i % len(tools)]:
                b = RegistryServer(tmp / f"B-{tool}-{i}", name=f"B-{tool}-{i}").start()
                try:
                    os.sync()
                    usage = resource.RUSAGE_SELF if tool == "burst_in_process" else resource.RUSAGE_CHILDREN
                    ru0, reg0 = resource.getrusage(usage), b.cpu_seconds()
                    start = time.monotonic()
                    if tool == "burst":
                        burst_copy(src1, b.host, args.parallel)
                    elif tool == "burst_in_process":
                        burst_copy_in_process(src1, b.host, args.parallel)
                    else:
                        skopeo_copy(src1, f"{b.host}/bench/cuda:v1")
                    elapsed = time.monotonic() - start
                    ru1, reg1 = resource.getrusage(usage), b.cpu_seconds()
                    tool_cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
                    dst = f"{b.host}/bench/cuda:v1"
                    ok = inspect_digest(dst) == src_digest
                    if not ok:
                        raise RuntimeError(f"{tool} run {i}: digest differs at the target")
                    times[tool].append(elapsed)
                    cpu[tool].append(tool_cpu)
                    reg_cpu[tool].append(reg1 - reg0)
                    print(f"run {i + 1} {tool:16s} {elapsed:6.2f}s  {total / elapsed / (1 << 20):7.1f} MiB/s  "
                          f"cpu {tool_cpu:5.2f}s  target registry cpu {reg1 - reg0:5.2f}s  digest ok")
                finally:
                    b.stop()
                    shutil.rmtree(b.root, ignore_errors=True)

        b = RegistryServer(tmp / "B-shared", name="B-shared").start()
        servers.append(b)
        first = burst_copy(src1, b.host, args.parallel)
        second = burst_copy(src2, b.host, args.parallel)
        assert inspect_digest(f"{b.host}/bench/cuda:v2") == inspect_digest(src2)
        new_layer_bytes = extra.size

        med_b, med_s = statistics.median(times["burst"]), statistics.median(times["skopeo"])
        med_i = statistics.median(times["burst_in_process"])
        print()
        print(f"median burst  {med_b:6.2f}s   (runs: {', '.join(f'{t:.2f}' for t in times['burst'])})")
        print(f"median skopeo {med_s:6.2f}s   (runs: {', '.join(f'{t:.2f}' for t in times['skopeo'])})")
        print(f"median burst in-process {med_i:6.2f}s (runs: {', '.join(f'{t:.2f}' for t in times['burst_in_process'])})")
        print(f"ratio burst/skopeo {med_b / med_s:.3f}  (< 1 means burst is faster; both are subprocesses)")
        print(f"ratio burst in-process/skopeo {med_i / med_s:.3f}  (the engine without interpreter start-up)")
        cpu_b, cpu_s = statistics.median(cpu["burst"]), statistics.median(cpu["skopeo"])
        print(f"median CPU seconds: burst {cpu_b:.2f}, skopeo {cpu_s:.2f} (ratio {cpu_b / cpu_s:.3f}); "
              f"target registry {statistics.median(reg_cpu['burst']):.2f} vs {statistics.median(reg_cpu['skopeo']):.2f}")
        print(f"second image: {second['bytes_uploaded']:,} bytes uploaded "
              f"(new layer {new_layer_bytes:,} bytes + config), {second['blobs_copied']} blobs copied, "
              f"{second['blobs_skipped']} present; first image uploaded {first['bytes_uploaded']:,}")
        figures = {
            "benchmark": "B3",
            "image_bytes": total,
            "layers": args.layers,
            "runs": args.runs,
            "parallel": args.parallel or "default",
            "burst_median_s": round(med_b, 3),
            "skopeo_median_s": round(med_s, 3),
            "burst_runs_s": [round(t, 3) for t in times["burst"]],
            "skopeo_runs_s": [round(t, 3) for t in times["skopeo"]],
            "ratio_burst_over_skopeo": round(med_b / med_s, 3),
            "burst_in_process_median_s": round(med_i, 3),
            "burst_in_process_runs_s": [round(t, 3) for t in times["burst_in_process"]],
            "ratio_burst_in_process_over_skopeo": round(med_i / med_s, 3),
            "burst_cpu_median_s": round(cpu_b, 3),
            "skopeo_cpu_median_s": round(cpu_s, 3),
            "ratio_cpu_burst_over_skopeo": round(cpu_b / cpu_s, 3),
            "target_registry_cpu_median_s": {t: round(statistics.median(v), 3) for t, v in reg_cpu.items()},
            "load_avg_1m": round(os.getloadavg()[0], 2),
            "second_image_bytes_uploaded": second["bytes_uploaded"],
            "second_image_new_layer_bytes": new_layer_bytes,
            "second_image_blobs_copied": second["blobs_copied"],
            "second_image_blobs_skipped": second["blobs_skipped"],
            "cpus": os.cpu_count(),
        }
        print(json.dumps(figures))
        return 0
    finally:
        for s in servers:
            s.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
