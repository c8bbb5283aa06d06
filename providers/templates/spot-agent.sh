# burst user-data part: the node agent that watches the spot interruption notice (burst/agent).
# Included by the Slurm template at its "# @include spot-agent.sh" line; same variables and $$ escaping.
# ---- burst node agent: spot interruption notices -------------------------------------------
# On a notice it drains this node with the reason "burst:spot-reclaim at <time>", which the
# controller reads on its next tick (checkpoint, requeue, replacement). Spot instances only. It
# needs the burst package in the node image (python3 -m burst.agent); without it the node runs as
# before and reclaims are left to Slurm's own requeue, which this says in the user-data log.
if [ "$market" = "spot" ] && python3 -c 'import burst.agent' 2>/dev/null; then
  cat > /etc/systemd/system/burst-agent.service <<UNIT
[Unit]
Description=burst node agent: spot interruption notices
After=slurmd.service

[Service]
ExecStart=/usr/bin/env python3 -m burst.agent --cloud $provider --node $node_name --resource $instance_id
Restart=always
RestartSec=5

[Install]
WantedBy=multi-user.target
UNIT
  systemctl daemon-reload
  systemctl enable --now burst-agent
else
  [ "$market" != "spot" ] || echo "burst: the burst package is not in this image; spot notices are not watched on $${NODE_NAME}"
fi
