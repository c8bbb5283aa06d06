"""``python -m burst.agent --cloud aws|azure --node NAME``: the node agent (see burst/agent)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from burst.agent.metadata import AWS_BASE, AwsImds, AzureScheduledEvents, NoticeSource
from burst.agent.report import KubeNodeTaint, Reporter, ReportError, SlurmDrain
from burst.agent.runner import Agent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="burst agent", description="Watch the spot interruption notice and drain this node.")
    ap.add_argument("--cloud", required=True, choices=("aws", "azure"))
    ap.add_argument("--node", required=True, help="this node's scheduler name")
    ap.add_argument("--metadata-url", default=AWS_BASE, help="metadata service base URL (default %(default)s)")
    ap.add_argument("--interval", type=float, default=5.0, help="seconds between polls (AWS advises 5)")
    ap.add_argument("--resource", default="", help="Azure: only Preempt events naming this VM")
    ap.add_argument("--report", default="slurm", choices=("slurm", "kubernetes"),
                    help="how to report: drain the Slurm node, or cordon and taint the Kubernetes Node")
    ap.add_argument("--kube-host", default=None,
                    help="Kubernetes API URL (default: in-cluster, with the pod's service account)")
    args = ap.parse_args(argv)
    if args.interval <= 0:
        print(f"burst agent: --interval must be positive, got {args.interval}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    source: NoticeSource = (
        AwsImds(args.metadata_url) if args.cloud == "aws" else AzureScheduledEvents(args.metadata_url, resource=args.resource)
    )
    reporter: Reporter
    if args.report == "kubernetes":
        try:
            reporter = KubeNodeTaint(args.node, host=args.kube_host)
        except ReportError as e:
            print(f"burst agent: {e}", file=sys.stderr)
            return 2
    else:
        reporter = SlurmDrain(args.node)
    agent = Agent(source, reporter)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    agent.run(args.interval, stop)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
