#!/bin/bash
# Included by userdata-slurm.sh on Azure (providers/bootstrap.py picks the part by cloud): the munge
# key from a Key Vault secret (azure.template_vars.munge_key_secret_url, the secret's URL holding
# the base64 key), read with the VM's managed identity through IMDS.
# ---- munge key from Key Vault (managed identity), never from custom data -------------------
MUNGE_KEY_SECRET_URL="$munge_key_secret_url"
if [ -n "$${MUNGE_KEY_SECRET_URL}" ]; then
  TOKEN=$$(curl -sf -H Metadata:true \
      "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fvault.azure.net" \
      | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  curl -sf -H "Authorization: Bearer $${TOKEN}" "$${MUNGE_KEY_SECRET_URL}?api-version=7.4" \
      | python3 -c 'import json,sys; print(json.load(sys.stdin)["value"])' | base64 -d > /etc/munge/munge.key
  chown munge:munge /etc/munge/munge.key && chmod 0600 /etc/munge/munge.key
  systemctl restart munge
fi
