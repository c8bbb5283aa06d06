#!/bin/bash
# Included by userdata-k8s.sh on Azure (providers/bootstrap.py picks the part by cloud): the kubeadm
# bootstrap token from a Key Vault secret (azure.template_vars.bootstrap_token_secret_url), read
# with the VM's managed identity through IMDS.
# ---- bootstrap token from Key Vault (managed identity) --------------------------------------
BOOTSTRAP_TOKEN_SECRET_URL="$bootstrap_token_secret_url"
if [ -n "$${BOOTSTRAP_TOKEN_SECRET_URL}" ]; then
  TOKEN=$$(curl -sf -H Metadata:true \
      "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fvault.azure.net" \
      | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  BOOTSTRAP_TOKEN=$$(curl -sf -H "Authorization: Bearer $${TOKEN}" "$${BOOTSTRAP_TOKEN_SECRET_URL}?api-version=7.4" \
      | python3 -c 'import json,sys; print(json.load(sys.stdin)["value"])')
fi
