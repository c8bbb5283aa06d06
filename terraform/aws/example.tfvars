# Copy to terraform.tfvars and edit. One copy of this root module per region.
cluster               = "ml-prod"
region                = "us-east-1"
availability_zone_ids = ["use1-az4", "use1-az6", "use1-az2"] # AZs that offer your GPU types
vpc_cidr              = "10.42.0.0/16"
egress                = "endpoints" # or "nat"
onprem_cidrs          = ["10.0.0.0/12"]
harbor_host           = "harbor.example.org"
harbor_credentials    = "harbor" # BURST_REGISTRY_HARBOR_USERNAME / _PASSWORD_FILE on the controller
instance_types        = ["p4d.24xlarge", "p5.48xlarge"]
user_data_template    = "builtin:slurm"
template_vars = {
  slurmctld_host      = "slurm-ctl.example.org"
  munge_key_ssm_param = "/burst/munge-key" # SecureString; the node role may read exactly this one
}

# Kubernetes instead of Slurm: the API server reaches the kubelet.
# scheduler_ports = [{ from_port = 10250, to_port = 10250, protocol = "tcp", description = "kubelet" }]

# The controller runs on-prem and assumes the controller role through this principal:
# controller_trusted_principals = ["arn:aws:iam::123456789012:role/burst-onprem"]

# A second region's copy attaches its policies to the first region's controller role:
# controller_role_name = "ml-prod-burst-controller"

vpn = {
  customer_gateway_ip = "203.0.113.10"
  bgp_asn             = 65000
}
