"""B4: Slack acknowledgement latency (BENCHMARKS.md).

The Bolt app from ``bot.app.create_app`` is served over real HTTP on 127.0.0.1 (bot/server.py:
Bolt's WSGI adapter behind the threaded wsgiref server) and receives ``--requests`` signed slash
commands, ``--concurrency`` at a time, each on its own connection. Measured: the time from
sending a request until its HTTP response (the ack) is read. Lazy work (the service call and the
reply to the response_url) runs concurrently, as in production, against a SQLite store and the
fake Slack Web API from tests/support/fake_slack.py. The command mix is realistic: status, list,
help, requests (spread over many users), and malformed text.

Prints a table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from slack_sdk import WebClient  # noqa: E402

from bot.app import create_app  # noqa: E402
from bot.server import HttpServer  # noqa: E402
from burst.catalog import Catalog, OfferFilter  # noqa: E402
from burst.ondemand import OnDemandService, OnDemandSettings, Quota  # noqa: E402
from burst.sim.clock import WallClock  # noqa: E402
from burst.store.sql import SqlStore  # noqa: E402
from tests.support.fake_slack import FakeSlack, command_body, sign  # noqa: E402

SECRET = "bench-signing-secret-not-real"
MIX = ["status", "list", "help", "request 1xA100 for 1h on aws", "request 2xH100 for -3h <!channel>", "budget",
       "show r-000000", "gc list"]


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    k = min(len(s) - 1, max(0, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


def serve(lazy_workers: int) -> None:
    """Child process: the fake Web API and the bot's HTTP server. Prints the port, then waits for
    stdin to close and prints how many lazy replies reached the response_url."""
    from concurrent.futures import ThreadPoolExecutor as Pool

    logging.basicConfig(level=logging.WARNING)
    sys.setswitchinterval(0.001)  # hand the GIL over often, so short acks are not stuck behind lazy work
    fake = FakeSlack.start()
    tmp = tempfile.mkdtemp(prefix="burst-b4-")
    store = SqlStore.from_url(f"sqlite:///{os.path.join(tmp, 'b4.db')}")
    settings = OnDemandSettings(admins=["UADMIN"], admin_channel="CADMINS", user_quota=Quota(max_gpus=64, gpu_hours_month=10**6),
                                team_quota=Quota(max_gpus=10**6, gpu_hours_month=10**9))
    offers = Catalog.bundled().offers(OfferFilter(clouds=("aws", "azure"), regions=("us-east-1", "us-west-2", "eastus", "westus2")))
    service = OnDemandService(store, settings, offers, WallClock())
    # The ack runs in the HTTP request's own thread (process_before_response): nothing queues in
    # front of it. Lazy work (service + Web API) runs in a small pool of its own.
    app = create_app(service, settings, client=WebClient(token="xoxb-bench", base_url=fake.api_url), signing_secret=SECRET,
                     process_before_response=True, listener_executor=Pool(max_workers=lazy_workers))
    server = HttpServer(app).start()
    print(json.dumps({"port": server.port, "path": server.path, "fake": fake.base_url}), flush=True)
    sys.stdin.read()
    deadline = time.monotonic() + 60
    want = int(os.environ.get("B4_EXPECTED", "0"))
    while time.monotonic() < deadline and len([c for c in fake.responses() if c.path.startswith("/response/b") and not c.path.startswith("/response/b-")]) < want:
        time.sleep(0.05)
    print(json.dumps({"replies": len([c for c in fake.responses() if c.path.startswith("/response/b") and not c.path.startswith("/response/b-")])}), flush=True)
    server.stop()
    fake.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--lazy-workers", type=int, default=1)
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.lazy_workers)
        return
    import subprocess

    expected = sum(1 for i in range(args.requests) if MIX[i % len(MIX)] != "help" and "<!channel>" not in MIX[i % len(MIX)])
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--lazy-workers", str(args.lazy_workers)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env={**os.environ, "B4_EXPECTED": str(expected)},
    )
    assert child.stdout is not None and child.stdin is not None
    info = json.loads(child.stdout.readline())
    host, port, path = "127.0.0.1", int(info["port"]), str(info["path"])
    fake_base = str(info["fake"])

    def one(i: int) -> tuple[float, int]:
        body = command_body(MIX[i % len(MIX)], user=f"U{i:08d}", response_url=f"{fake_base}/response/b{i}")
        headers = sign(SECRET, body)
        conn = http.client.HTTPConnection(host, port, timeout=30)
        try:
            conn.connect()
            t0 = time.perf_counter()
            conn.request("POST", path, body=body.encode(), headers=headers)
            resp = conn.getresponse()
            resp.read()
            return (time.perf_counter() - t0) * 1000.0, resp.status
        finally:
            conn.close()

    for i in range(5):  # warm-up: Bolt's first auth.test, imports, the SQLite connection
        one(-1 - i)  # keys b-1..b-5 are not counted below
    wall0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        results = list(pool.map(one, range(args.requests)))
    wall = time.perf_counter() - wall0
    child.stdin.close()
    replies = int(json.loads(child.stdout.readline())["replies"])
    child.wait(timeout=60)
    lat = [r[0] for r in results]
    statuses = {s: sum(1 for r in results if r[1] == s) for s in {r[1] for r in results}}
    out = {
        "benchmark": "B4",
        "requests": args.requests,
        "concurrency": args.concurrency,
        "p50_ms": round(statistics.median(lat), 2),
        "p99_ms": round(pct(lat, 99), 2),
        "max_ms": round(max(lat), 2),
        "mean_ms": round(statistics.fmean(lat), 2),
        "wall_s": round(wall, 2),
        "statuses": statuses,
        "lazy_replies": replies,
        "lazy_replies_expected": expected,
        "lazy_workers": args.lazy_workers,
        "goal_p99_ms": 100,
    }
    print(f"B4 slack ack latency: {args.requests} signed slash commands over HTTP, {args.concurrency} concurrent")
    print(f"  p50 {out['p50_ms']:.1f} ms   p99 {out['p99_ms']:.1f} ms   max {out['max_ms']:.1f} ms   (Slack's limit 3000 ms)")
    print(f"  statuses {statuses}; lazy replies {replies}/{expected}; wall {wall:.2f} s")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
