#!/bin/bash
# burst user data: join the on-prem Kubernetes cluster with kubeadm.
#
# Rendered by burst (providers/bootstrap.py, string.Template): $$name is burst's, $$$$ is a literal $$.
# Variables: cluster=$cluster instance_id=$instance_id node_name=$node_name provider=$provider
#            region=$region zone=$zone instance_type=$instance_type gpu_model=$gpu_model gpus=$gpus
#            harbor_host=$harbor_host mirror_host=$mirror_host mirror_registry=$mirror_registry
#            mirror_url=$mirror_url mirror_override_path=$mirror_override_path mirror_auth=$mirror_auth
#            gang_id=$gang_id
# From aws.template_vars: k8s_api_endpoint (host:port of the API server), k8s_ca_cert_hash
#            (sha256:...), bootstrap_token_ssm_param (SSM SecureString holding the bootstrap
#            token; read with the instance role at boot). The token is never put in user data:
#            BOOTSTRAP_TOKEN below stays a placeholder unless the parameter is set.
#
# The node registers with the taint burst.dev/cloud=true:NoSchedule, so only pods that tolerate
# it (jobs that opted in to bursting) land here, and with labels for provider, region, instance
# type, GPU model and burst's instance id.
set -euo pipefail
exec > >(tee -a /var/log/burst-userdata.log) 2>&1

NODE_NAME="$node_name"
HARBOR_HOST="$harbor_host"
MIRROR_REGISTRY="$mirror_registry"
BOOTSTRAP_TOKEN="__BURST_BOOTSTRAP_TOKEN__"
BOOTSTRAP_TOKEN_SSM_PARAM="$bootstrap_token_ssm_param"

hostnamectl set-hostname "$${NODE_NAME}" || hostname "$${NODE_NAME}"

# @include containerd-mirror.sh

# @include bootstrap-token-{cloud}.sh

# ---- kubeadm join ---------------------------------------------------------------------------
# A gang member registers held: the burst.dev/gang taint keeps every pod off it (the gang's own
# too) until all members have joined; then burst removes it from all of them at once. Without
# it the first members to join are taken, one by one, by whatever pod fits first.
GANG_ID="$gang_id"
GANG_TAINT=""
if [ -n "$${GANG_ID}" ]; then
  GANG_TAINT="    - {key: burst.dev/gang, value: \"$${GANG_ID}\", effect: NoSchedule}"
fi
mkdir -p /etc/burst
cat > /etc/burst/kubeadm-join.yaml <<YAML
apiVersion: kubeadm.k8s.io/v1beta3
kind: JoinConfiguration
discovery:
  bootstrapToken:
    apiServerEndpoint: "$k8s_api_endpoint"
    token: "$${BOOTSTRAP_TOKEN}"
    caCertHashes: ["$k8s_ca_cert_hash"]
nodeRegistration:
  name: "$node_name"
  taints:
    - key: burst.dev/cloud
      value: "true"
      effect: NoSchedule
$${GANG_TAINT}
  kubeletExtraArgs:
    node-labels: "burst.dev/provider=$provider,burst.dev/region=$region,burst.dev/zone=$zone,burst.dev/instance-type=$instance_type,burst.dev/gpu-model=$gpu_model,burst.dev/gpus=$gpus,burst.dev/instance-id=$instance_id,burst.dev/cluster=$cluster,topology.kubernetes.io/region=$region,node.kubernetes.io/instance-type=$instance_type"
YAML
kubeadm join --config /etc/burst/kubeadm-join.yaml
