"""B4: Slack acknowledgement latency (BENCHMARKS.md).

Three processes, as in production where Slack is elsewhere:

* the **bot**, started the way production starts it: ``python -m burst.bot_cli serve`` (gunicorn,
  ``--workers`` processes x ``--threads`` threads, the app built per worker over a SQLite store
  named by a burst config, secrets from the environment). ``--server wsgiref`` instead serves the
  same app from one process with the threaded stdlib server (bot/server.py ``HttpServer``), for
  comparison;
* the **fake Slack Web API** (tests/support/fake_slack.py), which also takes the lazy replies POSTed
  to each command's response_url, and counts them;
* the **load generator**: ``--requests`` signed slash commands, ``--concurrency`` at a time, each
  on its own connection, sent from a pool of ``--procs`` processes of its own (threads in each),
  started and warmed before the clock starts, so the generator does not starve on one
  interpreter's lock while the bot shares the cores. Measured: from opening the connection
  (connect counts: a real client pays it) until the HTTP response (the ack) has been read. The
  concurrency actually achieved is reported (time-weighted mean and peak of requests in flight),
  since a load generator that cannot keep up silently measures a lighter load. Lazy work (the
  service call and the reply to the response_url) runs in the bot as in production, and the run
  only counts if every expected reply arrived.

The command mix is realistic: status, list, help, requests (spread over many users), budget,
show, gc list, and malformed text. Each of ``--runs`` starts all three processes afresh.

Prints one line per run, a summary with the medians over the runs, and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.fake_slack import FakeSlack, command_body, sign  # noqa: E402

SECRET = "bench-signing-secret-not-real"
TOKEN = "xoxb-bench-not-real"
MIX = ["status", "list", "help", "request 1xA100 for 1h on aws", "request 2xH100 for -3h <!channel>", "budget",
       "show r-000000", "gc list"]
CONFIG = """\
database_url: sqlite:///{db}
offers:
  accelerators: []
slack:
  admins: [UADMIN]
  admin_channel: CADMINS
  user_quota: {{max_gpus: 64, gpu_hours_month: 1000000}}
  team_quota: {{max_gpus: 1000000, gpu_hours_month: 1000000000}}
"""


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    k = min(len(s) - 1, max(0, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


def is_counted_reply(path: str) -> bool:
    return path.startswith("/response/b") and not path.startswith("/response/b-")


# ---- child: the fake Slack Web API -------------------------------------------------------------


def run_fake() -> None:
    """Prints its base URL; reads the number of replies to wait for from stdin, waits (60 s at
    most), prints how many arrived."""
    logging.basicConfig(level=logging.WARNING)
    fake = FakeSlack.start()
    print(json.dumps({"base": fake.base_url}), flush=True)
    want = int(sys.stdin.readline() or 0)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and sum(is_counted_reply(c.path) for c in fake.responses()) < want:
        time.sleep(0.05)
    got = [c for c in fake.responses() if is_counted_reply(c.path)]
    print(json.dumps({"replies": len(got), "last_at": max((c.at for c in got), default=0.0)}), flush=True)
    fake.stop()


# ---- child: the bot on the stdlib server (comparison) ------------------------------------------


def run_wsgiref(config: str, port: int, api_url: str, lazy_workers: int) -> None:
    from bot.runtime import BotFactory, Secret, fetch_identity, prepare_store
    from bot.server import HttpServer

    logging.basicConfig(level=logging.WARNING)
    sys.setswitchinterval(0.001)  # hand the GIL over often, so short acks are not stuck behind lazy work
    prepare_store(config)
    factory = BotFactory(config, Secret(SECRET), Secret(TOKEN), api_url=api_url, lazy_workers=lazy_workers)
    factory = BotFactory(config, Secret(SECRET), Secret(TOKEN), identity=fetch_identity(factory.client()),
                         api_url=api_url, lazy_workers=lazy_workers)
    server = HttpServer(factory(), port=port)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.serve_forever()


# ---- one run -------------------------------------------------------------------------------------


def tree_cpu_s(pid: int) -> float:
    """User+system CPU seconds of ``pid`` and its live descendants (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for t in Path(f"/proc/{p}/task").iterdir():
                kids = Path(f"/proc/{p}/task/{t.name}/children")
                todo.extend(int(k) for k in kids.read_text().split())
        except (OSError, ValueError, IndexError):
            continue
    return total


def self_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_bot(args: argparse.Namespace, config: str, port: int, api_url: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "SLACK_SIGNING_SECRET": SECRET, "SLACK_BOT_TOKEN": TOKEN, "PYTHONPATH": str(ROOT)}
    if args.server == "wsgiref":
        cmd = [sys.executable, __file__, "--child", "wsgiref", "--child-config", config, "--child-port", str(port),
               "--child-api", api_url, "--lazy-workers", str(args.lazy_workers)]
    else:
        cmd = [sys.executable, "-m", "burst.bot_cli", "serve", "--config", config, "--host", "127.0.0.1",
               "--port", str(port), "--workers", str(args.workers), "--threads", str(args.threads),
               "--lazy-workers", str(args.lazy_workers), "--slack-api-url", api_url, "--log-level", "warning"]
    return subprocess.Popen(cmd, env=env, cwd=str(ROOT))


def post(port: int, path: str, text: str, key: str, user: str, fake_base: str) -> tuple[float, int]:
    ms, status, _, _ = timed_post(port, path, text, key, user, fake_base)
    return ms, status


def timed_post(port: int, path: str, text: str, key: str, user: str, fake_base: str) -> tuple[float, int, float, float]:
    """(ms from connect to the response read, status, start, end); start and end on the
    system-wide monotonic clock, so intervals from several processes can be overlaid."""
    body = command_body(text, user=user, response_url=f"{fake_base}/response/{key}")
    headers = sign(SECRET, body)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    t0 = time.monotonic()
    try:
        conn.connect()  # counted: a client pays the connection too
        conn.request("POST", path, body=body.encode(), headers=headers)
        resp = conn.getresponse()
        resp.read()
        t1 = time.monotonic()
        return (t1 - t0) * 1000.0, resp.status, t0, t1
    finally:
        conn.close()


def _gen_warm(_: int) -> int:
    return os.getpid()


def _gen_batch(port: int, fake_base: str, indices: list[int], threads: int, start_at: float) -> tuple[list[tuple[float, int, float, float]], float]:
    """One load-generator process: its share of the requests on ``threads`` threads, all
    starting at ``start_at``. Returns the results and the CPU seconds it used."""
    cpu0 = self_cpu_s()
    time.sleep(max(0.0, start_at - time.monotonic()))
    with ThreadPoolExecutor(max_workers=threads) as pool:
        out = list(pool.map(lambda i: timed_post(port, "/slack/events", MIX[i % len(MIX)], f"b{i}", f"U{i:08d}", fake_base), indices))
    return out, self_cpu_s() - cpu0


def achieved_concurrency(spans: list[tuple[float, float]]) -> tuple[float, int]:
    """Time-weighted mean and peak of requests in flight over the run."""
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans], key=lambda x: (x[0], x[1]))
    if not events:
        return 0.0, 0
    area, live, peak, last = 0.0, 0, 0, events[0][0]
    for t, d in events:
        area += live * (t - last)
        last = t
        live += d
        peak = max(peak, live)
    span = events[-1][0] - events[0][0]
    return (area / span if span > 0 else float(peak)), peak


def wait_ready(bot: subprocess.Popen[bytes], port: int, fake_base: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if bot.poll() is not None:
            raise SystemExit(f"the bot exited with {bot.returncode} before it served")
        try:
            if post(port, "/slack/events", "help", "b-0", "UWARM", fake_base)[1] == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit("the bot did not answer within 60 s")
        time.sleep(0.1)


def one_run(args: argparse.Namespace) -> dict[str, Any]:
    expected = sum(1 for i in range(args.requests) if MIX[i % len(MIX)] != "help" and "<!channel>" not in MIX[i % len(MIX)])
    tmp = tempfile.mkdtemp(prefix="burst-b4-")
    config = os.path.join(tmp, "burst.yaml")
    Path(config).write_text(CONFIG.format(db=os.path.join(tmp, "b4.db")), encoding="utf-8")
    fake = subprocess.Popen([sys.executable, __file__, "--child", "fake"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, cwd=str(ROOT))
    assert fake.stdout is not None and fake.stdin is not None
    fake_base = str(json.loads(fake.stdout.readline())["base"])
    port = free_port()
    bot = start_bot(args, config, port, f"{fake_base}/api/")
    try:
        wait_ready(bot, port, fake_base)
        # warm-up: imports, the first SQLite connection of each worker (keys b-1.. are not counted)
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda i: post(port, "/slack/events", MIX[i % len(MIX)], f"b-{i + 1}", "UWARM", fake_base),
                          range(4 * max(1, args.workers))))
        time.sleep(0.5)

        procs = max(1, min(args.procs, args.concurrency))
        threads = -(-args.concurrency // procs)
        with ProcessPoolExecutor(max_workers=procs) as gen:
            list(gen.map(_gen_warm, range(procs)))  # every generator process started before the clock
            bot_cpu0 = tree_cpu_s(bot.pid)
            start_at, begin = time.time() + 0.3, time.monotonic() + 0.3
            shares = [list(range(k, args.requests, procs)) for k in range(procs)]
            futs = [gen.submit(_gen_batch, port, fake_base, share, threads, begin) for share in shares]
            parts = [f.result() for f in futs]
        results = [r for part, _ in parts for r in part]
        wall = max(r[3] for r in results) - min(r[2] for r in results)
        bot_cpu, gen_cpu = tree_cpu_s(bot.pid) - bot_cpu0, sum(c for _, c in parts)
        mean_live, peak_live = achieved_concurrency([(r[2], r[3]) for r in results])
        fake.stdin.write(f"{expected}\n")
        fake.stdin.flush()
        got = json.loads(fake.stdout.readline())
        replies, last_reply_s = int(got["replies"]), float(got["last_at"]) - start_at
    finally:
        bot.send_signal(signal.SIGTERM)
        try:
            bot.wait(timeout=30)
        except subprocess.TimeoutExpired:
            bot.kill()
        fake.stdin.close()
        fake.wait(timeout=30)
    lat = [r[0] for r in results]
    if os.environ.get("B4_DUMP"):
        Path(os.environ["B4_DUMP"]).write_text(json.dumps(lat))
    return {
        "p50_ms": round(statistics.median(lat), 2),
        "p99_ms": round(pct(lat, 99), 2),
        "max_ms": round(max(lat), 2),
        "mean_ms": round(statistics.fmean(lat), 2),
        "wall_s": round(wall, 2),
        "bot_cpu_ms_per_req": round(bot_cpu * 1000 / args.requests, 2),
        "loadgen_cpu_ms_per_req": round(gen_cpu * 1000 / args.requests, 2),
        "statuses": {str(s): sum(1 for r in results if r[1] == s) for s in sorted({r[1] for r in results})},
        "concurrency_mean": round(mean_live, 1),
        "concurrency_peak": peak_live,
        "lazy_replies": replies,
        "last_reply_s": round(last_reply_s, 2),
        "lazy_replies_expected": expected,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--procs", type=int, default=max(2, os.cpu_count() or 2), help="load-generator processes")
    ap.add_argument("--runs", type=int, default=3, help="independent runs (fresh processes each); medians reported")
    ap.add_argument("--server", choices=("gunicorn", "wsgiref"), default="gunicorn")
    ap.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    ap.add_argument("--threads", type=int, default=16, help="gunicorn threads per worker")
    ap.add_argument("--lazy-workers", type=int, default=4, help="lazy-listener threads per worker")
    ap.add_argument("--child", choices=("fake", "wsgiref"), help=argparse.SUPPRESS)
    ap.add_argument("--child-config", help=argparse.SUPPRESS)
    ap.add_argument("--child-port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--child-api", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child == "fake":
        run_fake()
        return
    if args.child == "wsgiref":
        run_wsgiref(args.child_config, args.child_port, args.child_api, args.lazy_workers)
        return

    setup = (f"{args.server}" + (f" {args.workers} workers x {args.threads} threads" if args.server == "gunicorn" else "")
             + f", {args.lazy_workers} lazy thread(s) per worker")
    print(f"B4 slack ack latency: {args.requests} signed slash commands over HTTP, {args.concurrency} concurrent; "
          f"{setup}; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start")
    runs = []
    for k in range(args.runs):
        r = one_run(args)
        runs.append(r)
        print(f"  run {k + 1}: p50 {r['p50_ms']:.1f} ms   p99 {r['p99_ms']:.1f} ms   max {r['max_ms']:.1f} ms   "
              f"wall {r['wall_s']:.2f} s   in flight mean {r['concurrency_mean']:.1f} peak {r['concurrency_peak']}   cpu/req bot {r['bot_cpu_ms_per_req']:.2f} ms, load generator {r['loadgen_cpu_ms_per_req']:.2f} ms   statuses {r['statuses']}   lazy replies {r['lazy_replies']}/{r['lazy_replies_expected']}, the last {r['last_reply_s']:.2f} s after the first request",
              flush=True)
    med = {k: round(statistics.median(r[k] for r in runs), 2) for k in ("p50_ms", "p99_ms", "max_ms", "mean_ms", "wall_s", "concurrency_mean")}
    complete = all(r["lazy_replies"] == r["lazy_replies_expected"] and r["statuses"] == {"200": args.requests} for r in runs)
    print(f"  median of {args.runs}: p50 {med['p50_ms']:.1f} ms   p99 {med['p99_ms']:.1f} ms   max {med['max_ms']:.1f} ms"
          f"   in flight {med['concurrency_mean']:.1f} of {args.concurrency} asked"
          f"   (goal p99 < 100 ms; Slack's limit 3000 ms); every ack 200 and every lazy reply delivered: {complete}")
    out = {
        "benchmark": "B4",
        "requests": args.requests,
        "concurrency": args.concurrency,
        "server": args.server,
        "workers": args.workers if args.server == "gunicorn" else 1,
        "threads": args.threads if args.server == "gunicorn" else None,
        "lazy_workers": args.lazy_workers,
        **med,
        "runs": runs,
        "complete": complete,
        "goal_p99_ms": 100,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
