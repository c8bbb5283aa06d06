#!/bin/bash
# Included by userdata-k8s.sh on AWS (providers/bootstrap.py picks the part by cloud): the kubeadm
# bootstrap token from an SSM SecureString (aws.template_vars.bootstrap_token_ssm_param).
# ---- bootstrap token from SSM (instance role) ------------------------------------------------
if [ -n "$${BOOTSTRAP_TOKEN_SSM_PARAM}" ]; then
  TOKEN=$$(curl -sfX PUT http://169.254.169.254/latest/api/token -H 'X-aws-ec2-metadata-token-ttl-seconds: 300')
  REGION=$$(curl -sf -H "X-aws-ec2-metadata-token: $${TOKEN}" http://169.254.169.254/latest/meta-data/placement/region)
  BOOTSTRAP_TOKEN=$$(aws ssm get-parameter --region "$${REGION}" --with-decryption \
      --name "$${BOOTSTRAP_TOKEN_SSM_PARAM}" --query Parameter.Value --output text)
fi
