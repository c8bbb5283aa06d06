#!/bin/bash
# Included by userdata-slurm.sh on AWS (providers/bootstrap.py picks the part by cloud): the munge
# key from an SSM SecureString (aws.template_vars.munge_key_ssm_param), read with the instance role.
# ---- munge key from SSM (instance role), never from user data ------------------------------
if [ -n "$${MUNGE_KEY_SSM_PARAM}" ]; then
  TOKEN=$$(curl -sfX PUT http://169.254.169.254/latest/api/token -H 'X-aws-ec2-metadata-token-ttl-seconds: 300')
  REGION=$$(curl -sf -H "X-aws-ec2-metadata-token: $${TOKEN}" http://169.254.169.254/latest/meta-data/placement/region)
  aws ssm get-parameter --region "$${REGION}" --with-decryption --name "$${MUNGE_KEY_SSM_PARAM}" \
      --query Parameter.Value --output text | base64 -d > /etc/munge/munge.key
  chown munge:munge /etc/munge/munge.key && chmod 0600 /etc/munge/munge.key
  systemctl restart munge
fi
