# burst user-data part: containerd pulls Harbor images through this region's mirror.
# Included by the builtin templates at their "# @include containerd-mirror.sh" line (providers/bootstrap.py
# load_template), then rendered with them: same variables, same $$ escaping.
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
    # the AAD token goes to curl on stdin, not in its argv (other local users can read argv)
    REFRESH=$$(printf %s "$${AAD}" | curl -sf -X POST --data-urlencode grant_type=access_token \
      --data-urlencode "service=$${MIRROR_REGISTRY}" --data-urlencode "access_token@-" \
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
    # The instance role may not be usable yet this early in boot: retry in the background
    # (10, 20, 40, 80 s) rather than leave the first, largest pull to Harbor for an hour.
    ( for wait in 10 20 40 80 0; do
        /usr/local/sbin/burst-mirror-auth && exit 0
        [ "$$wait" -gt 0 ] && sleep "$$wait"
      done
      echo "burst: no mirror token yet; pulls fall back to Harbor until the hourly timer" ) &
    systemctl daemon-reload && systemctl enable --now burst-mirror-auth.timer || true
  fi
fi
if [ -f /etc/containerd/config.toml ] && ! grep -q 'config_path *= *"/etc/containerd/certs.d"' /etc/containerd/config.toml; then
  sed -i 's#config_path = ""#config_path = "/etc/containerd/certs.d"#' /etc/containerd/config.toml
fi
systemctl restart containerd 2>/dev/null || true
