#!/bin/bash
# burst user data: join the on-prem Slurm cluster as a dynamic node.
#
# Rendered by burst (providers/bootstrap.py, string.Template): $$name is burst's, $$$$ is a literal $$.
# Variables: cluster=$cluster instance_id=$instance_id node_name=$node_name provider=$provider
#            region=$region zone=$zone instance_type=$instance_type gpu_model=$gpu_model gpus=$gpus
#            gpu_gres_type=$gpu_gres_type (lower case, for Slurm's case-sensitive GRES types)
#            harbor_host=$harbor_host mirror_host=$mirror_host mirror_registry=$mirror_registry
#            mirror_url=$mirror_url mirror_override_path=$mirror_override_path mirror_auth=$mirror_auth
# From aws.template_vars: slurmctld_host (configless "--conf-server" host[:port]) and
#            munge_key_ssm_param (SSM SecureString holding the base64 munge key; read with the
#            instance role, so no secret ever sits in user data).
#
# The node joins as a dynamic node (slurmd -Z) named after the instance. Why this mechanism, and
# what slurm.conf needs for it: the docstring of burst/queues/slurm/adapter.py.
# Jobs reach this node with --constraint=cloud (or =$provider / =$region) or a burstable partition.
set -euo pipefail
exec > >(tee -a /var/log/burst-userdata.log) 2>&1

BURST_CLUSTER="$cluster"
BURST_INSTANCE_ID="$instance_id"
NODE_NAME="$node_name"
HARBOR_HOST="$harbor_host"
MIRROR_HOST="$mirror_host"
MIRROR_REGISTRY="$mirror_registry"
SLURMCTLD_HOST="$slurmctld_host"
MUNGE_KEY_SSM_PARAM="$munge_key_ssm_param"

hostnamectl set-hostname "$${NODE_NAME}" || hostname "$${NODE_NAME}"

# @include containerd-mirror.sh

# @include munge-key-{cloud}.sh

# ---- slurmd as a dynamic node ---------------------------------------------------------------
# Weight=1000 makes Slurm prefer on-prem nodes (lower weight) when both fit.
mkdir -p /etc/systemd/system/slurmd.service.d
cat > /etc/systemd/system/slurmd.service.d/burst.conf <<CONF
[Service]
ExecStart=
ExecStart=/usr/sbin/slurmd -D -s -Z -N $node_name --conf-server $slurmctld_host --conf "Gres=gpu:$gpu_gres_type:$gpus Feature=cloud,$provider,$region Weight=1000"
CONF
echo "burst: cluster=$${BURST_CLUSTER} instance=$${BURST_INSTANCE_ID} node=$${NODE_NAME} ctld=$${SLURMCTLD_HOST} mirror=$${MIRROR_HOST}"
systemctl daemon-reload
systemctl enable --now slurmd

# @include spot-agent.sh
