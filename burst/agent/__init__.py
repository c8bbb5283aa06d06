"""The burst node agent: watches the cloud's spot interruption notice on the node itself and
reports it to the controller through the scheduler the node joined.

Run on every burst node (the bootstrap templates in ``providers/templates`` start it):
``python -m burst.agent --cloud aws|azure --node <scheduler node name>``.

* AWS (:class:`burst.agent.metadata.AwsImds`): IMDSv2, ``PUT /latest/api/token`` then
  ``GET /latest/meta-data/spot/instance-action`` (404: no notice; else
  ``{"action": "terminate"|"stop"|"hibernate", "time": "<UTC ISO>"}``, two minutes ahead).
* Azure (:class:`burst.agent.metadata.AzureScheduledEvents`): ``GET
  /metadata/scheduledevents?api-version=2020-07-01`` with ``Metadata: true``; an event with
  ``EventType == "Preempt"`` (about 30 s ahead, ``NotBefore`` in RFC 1123) is the notice.

**Why report through the scheduler, not to the controller directly.** Like the AWS Node
Termination Handler in IMDS mode (which cordons and drains its own Kubernetes node), the agent
only touches its own node: on Slurm ``scontrol update nodename=<node> state=drain
reason="burst:spot-reclaim at <time>"`` (:class:`burst.agent.report.SlurmDrain`). That needs no
controller address, no credentials beyond what the node already has to join (munge), no new port
open on the controller, and works while the controller is failing over: the drain stops new work
landing at once, and the controller finds the notice in its ordinary observation (the node's
drain reason) on its next tick, where :mod:`policies.spot` decides what to do. The reason format
lives in :func:`policies.spot.notice_reason` so both ends agree.

Kubernetes reporting (a taint or node condition written with the node's kubelet credentials) is
not built yet: the agent runs with ``--report slurm`` only. (Partial; see the issue 13 report.)

Failure rule: errors of the metadata endpoint (timeouts, refused connections, 5xx, garbage) never
stop the agent; each kind of failure is logged once until the endpoint answers again.
"""
