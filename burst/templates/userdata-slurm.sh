#!/bin/bash
# burst user data: join the on-prem Slurm cluster as a dynamic node.
#
# Rendered by burst (providers/aws.py, string.Template): $$name is burst's, $$$$ is a literal $$.
# Variables: cluster=$cluster instance_id=$instance_id node_name=$node_name provider=$provider
#            region=$region zone=$zone instance_type=$instance_type gpu_model=$gpu_model gpus=$gpus
#            gpu_gres_type=$gpu_gres_type (lower case, for Slurm's case-sensitive GRES types)
#            harbor_host=$harbor_host mirror_host=$mirror_host mirror_registry=$mirror_registry
#            mirror_url=$mirror_url mirror_override_path=$mirror_override_path mirror_auth=$mirror_auth
# From aws.template_vars: slurmctld_host (configless "--conf-server" host[:port]) and
#            munge_key_ssm_param (SSM SecureString holding the base64 munge key; read with the
#            instance role, so no secret ever sits in user data).
#
# Why dynamic nodes (slurmd -Z) rather than a FUTURE pool: a cloud node's name, GPU count and
# address are only known at launch, and dynamic nodes need no slurm.conf edit per instance.
# slurm.conf needs MaxNodeCount and TreeWidth=65533; gres.conf uses AutoDetect=nvml on the node.
# Jobs reach this node with --constraint=cloud (or =$provider / =$region).
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

# ---- containerd: pull Harbor images through this region's mirror ---------------------------
# Tags and blobs come from the regional mirror (burst copied the image there before launch);
# containerd falls back to Harbor when the mirror fails. ECR and ACR want a short-lived token:
# burst-mirror-auth fetches one with the instance's own identity (instance profile or managed
# identity; no secret in user data) and writes it as the mirror's Authorization header in the
# root-only hosts.toml; a timer refreshes it hourly (ECR tokens last 12 h, ACR ones 3 h).
# containerd reads hosts.toml on every pull, so a refresh needs no restart.
if [ -n "$${MIRROR_REGISTRY}" ]; then
  mkdir -p "/etc/containerd/certs.d/$${HARBOR_HOST}" /etc/burst
  cat > /etc/burst/hosts.toml.base <<'TOML'
server = "https://$harbor_host"

[host."$mirror_url"]
  capabilities = ["pull", "resolve"]
  override_path = $mirror_override_path
TOML
  install -m 0600 /etc/burst/hosts.toml.base "/etc/containerd/certs.d/$${HARBOR_HOST}/hosts.toml"
  cat > /etc/burst/mirror-auth.env <<'ENV'
MIRROR_AUTH=$mirror_auth
MIRROR_REGISTRY=$mirror_registry
MIRROR_URL=$mirror_url
REGION=$region
HOSTS_BASE=/etc/burst/hosts.toml.base
HOSTS_FILE=/etc/containerd/certs.d/$harbor_host/hosts.toml
ENV
  cat > /usr/local/sbin/burst-mirror-auth <<'SH'
#!/bin/bash
# Refresh the registry mirror's pull token. Never prints the token.
set -euo pipefail
. "$${BURST_MIRROR_AUTH_ENV:-/etc/burst/mirror-auth.env}"
IMDS="$${IMDS:-http://169.254.169.254}"
json() { python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$$1"; }
case "$${MIRROR_AUTH}" in
  ecr)
    PASSWORD=$$(aws ecr get-login-password --region "$${REGION}")
    CRED=$$(printf 'AWS:%s' "$${PASSWORD}" | base64 -w0) ;;
  acr)
    # AAD token of the VM's managed identity, exchanged for an ACR refresh token (the
    # documented /oauth2/exchange flow); ACR takes it as the password of the null-GUID user.
    AAD=$$(curl -sf -H Metadata:true \
      "$${IMDS}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fmanagement.azure.com%2F" | json access_token)
    REFRESH=$$(curl -sf -X POST --data-urlencode grant_type=access_token \
      --data-urlencode "service=$${MIRROR_REGISTRY}" --data-urlencode "access_token=$${AAD}" \
      "$${ACR_EXCHANGE_URL:-https://$${MIRROR_REGISTRY}/oauth2/exchange}" | json refresh_token)
    CRED=$$(printf '00000000-0000-0000-0000-000000000000:%s' "$${REFRESH}" | base64 -w0) ;;
  *) exit 0 ;;
esac
TMP=$$(mktemp "$${HOSTS_FILE}.XXXXXX")
chmod 0600 "$${TMP}"
{ cat "$${HOSTS_BASE}"; printf '\n[host."%s".header]\n  Authorization = "Basic %s"\n' "$${MIRROR_URL}" "$${CRED}"; } > "$${TMP}"
mv -f "$${TMP}" "$${HOSTS_FILE}"
SH
  chmod 0755 /usr/local/sbin/burst-mirror-auth
  if [ "$mirror_auth" != none ]; then
    cat > /etc/systemd/system/burst-mirror-auth.service <<'UNIT'
[Unit]
Description=burst: refresh the registry mirror token
After=network-online.target
[Service]
Type=oneshot
ExecStart=/usr/local/sbin/burst-mirror-auth
UNIT
    cat > /etc/systemd/system/burst-mirror-auth.timer <<'UNIT'
[Timer]
OnActiveSec=1h
OnUnitActiveSec=1h
[Install]
WantedBy=timers.target
UNIT
    /usr/local/sbin/burst-mirror-auth || echo "burst: no mirror token yet; pulls fall back to Harbor"
    systemctl daemon-reload && systemctl enable --now burst-mirror-auth.timer || true
  fi
fi
if [ -f /etc/containerd/config.toml ] && ! grep -q 'config_path *= *"/etc/containerd/certs.d"' /etc/containerd/config.toml; then
  sed -i 's#config_path = ""#config_path = "/etc/containerd/certs.d"#' /etc/containerd/config.toml
fi
systemctl restart containerd 2>/dev/null || true

# ---- munge key from SSM (instance role), never from user data ------------------------------
if [ -n "$${MUNGE_KEY_SSM_PARAM}" ]; then
  TOKEN=$$(curl -sfX PUT http://169.254.169.254/latest/api/token -H 'X-aws-ec2-metadata-token-ttl-seconds: 300')
  REGION=$$(curl -sf -H "X-aws-ec2-metadata-token: $${TOKEN}" http://169.254.169.254/latest/meta-data/placement/region)
  aws ssm get-parameter --region "$${REGION}" --with-decryption --name "$${MUNGE_KEY_SSM_PARAM}" \
      --query Parameter.Value --output text | base64 -d > /etc/munge/munge.key
  chown munge:munge /etc/munge/munge.key && chmod 0600 /etc/munge/munge.key
  systemctl restart munge
fi

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
