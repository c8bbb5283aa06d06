# Inputs of the AWS landing zone for one burst cluster in one region.
# Run one copy of this root module per region burst may launch in (each with its own state).

variable "cluster" {
  description = "burst's cluster name (config key `cluster`). Every resource is tagged burst:cluster with it, and the controller may only launch and terminate instances that carry it."
  type        = string
  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{0,62}$", var.cluster))
    error_message = "cluster must be 1-63 characters of a-z, 0-9 and '-', starting with a letter or digit (burst's own rule)."
  }
}

variable "region" {
  description = "The EC2 region of this landing zone, e.g. us-east-1."
  type        = string
}

variable "availability_zone_ids" {
  description = "AZ ids (use1-az4, not us-east-1a: names differ between accounts, ids do not), one private subnet each. Pick the AZs that offer your GPU types (`aws ec2 describe-instance-type-offerings --location-type availability-zone-id`). A fixed list, so a new AZ never appears in the landing zone by itself."
  type        = list(string)
  validation {
    condition     = length(var.availability_zone_ids) >= 2 && length(var.availability_zone_ids) <= 16 && length(distinct(var.availability_zone_ids)) == length(var.availability_zone_ids)
    error_message = "availability_zone_ids must list 2 to 16 distinct AZ ids (several AZs: GPU capacity runs out one AZ at a time)."
  }
}

variable "vpc_cidr" {
  description = "The VPC's address range. Must not overlap the on-prem ranges."
  type        = string
  default     = "10.42.0.0/16"
}

variable "egress" {
  description = "How private subnets reach AWS APIs and ECR: \"nat\" (a NAT gateway, internet egress on 443 only) or \"endpoints\" (VPC endpoints for ECR, EC2 and S3, no internet path at all). Burst nodes never get a public IPv4 address either way."
  type        = string
  default     = "endpoints"
  validation {
    condition     = contains(["nat", "endpoints"], var.egress)
    error_message = "egress must be \"nat\" or \"endpoints\"."
  }
}

variable "onprem_cidrs" {
  description = "The on-prem network ranges (the scheduler, Harbor, the controller). Only these may reach the scheduler ports of burst nodes."
  type        = list(string)
  validation {
    condition     = length(var.onprem_cidrs) > 0 && alltrue([for c in var.onprem_cidrs : can(cidrhost(c, 0))])
    error_message = "onprem_cidrs must be a non-empty list of CIDR ranges."
  }
}

variable "scheduler_ports" {
  description = "Ports on burst nodes that the on-prem scheduler opens connections to. Default: Slurm (slurmd 6818, and the srun port range of slurm.conf SrunPortRange). For Kubernetes use the kubelet: [{ from_port = 10250, to_port = 10250, protocol = \"tcp\", description = \"kubelet\" }]."
  type = list(object({
    from_port   = number
    to_port     = number
    protocol    = string
    description = string
  }))
  default = [
    { from_port = 6818, to_port = 6818, protocol = "tcp", description = "slurmd" },
    { from_port = 60001, to_port = 63000, protocol = "tcp", description = "srun (SrunPortRange)" },
  ]
}

variable "ami" {
  description = "The GPU node image (config key aws.regions.<region>.ami): an ami-... id or a public SSM parameter. Default: the AWS Deep Learning Base AMI with the NVIDIA driver."
  type        = string
  default     = "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id"
  validation {
    condition     = startswith(var.ami, "ami-") || startswith(var.ami, "/") || startswith(var.ami, "resolve:ssm:/")
    error_message = "ami must be an ami-... id or an SSM parameter ('/...' or 'resolve:ssm:/...')."
  }
}

variable "instance_types" {
  description = "GPU instance types burst may launch here (config key aws.regions.<region>.instance_types); `burst run` checks each is offered in a subnet's AZ."
  type        = list(string)
  default     = ["p4d.24xlarge", "p5.48xlarge", "g5.12xlarge"]
}

variable "key_name" {
  description = "An existing EC2 key pair for the nodes (config key aws.regions.<region>.key_name); empty for none. Access through the on-prem network only."
  type        = string
  default     = ""
}

variable "placement_groups" {
  description = "Let the controller create a cluster placement group per gang (named <cluster>-<gang>) and launch into it, for multi-node jobs over EFA. false drops both permissions: burst then must not burst gangs in this region."
  type        = bool
  default     = true
}

variable "mirror_repository_prefix" {
  description = "The ECR repository prefix the image mirror copies Harbor images under (config key mirror.targets.aws:<region>.repository_prefix). Nodes may pull from it only; the controller may create and push only under it."
  type        = string
  default     = "burst"
  validation {
    condition     = can(regex("^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$", var.mirror_repository_prefix))
    error_message = "mirror_repository_prefix must be lower-case path components, e.g. burst or mirror/harbor."
  }
}

variable "harbor_host" {
  description = "The on-prem Harbor host[:port] the mirror copies from (config key mirror.source.registry)."
  type        = string
}

variable "harbor_credentials" {
  description = "NAME of the Harbor robot credentials (config key mirror.source.auth.credentials): the controller reads BURST_REGISTRY_<NAME>_USERNAME and _PASSWORD[_FILE] from its environment. Empty: anonymous pulls."
  type        = string
  default     = "harbor"
}

variable "user_data_template" {
  description = "Node bootstrap (config key aws.user_data_template): builtin:slurm, builtin:k8s, a file path, or inline text."
  type        = string
  default     = "builtin:slurm"
}

variable "template_vars" {
  description = "Site values the bootstrap template needs (config key aws.template_vars), e.g. { slurmctld_host = \"slurm-ctl.example.org\", munge_key_ssm_param = \"/burst/munge-key\" }. The node role may read exactly the SSM parameters named by the *_ssm_param entries (the join secret), and no other."
  type        = map(string)
  default     = {}
}

variable "controller_trusted_principals" {
  description = "IAM principal ARNs (a role the on-prem controller reaches through IAM Roles Anywhere or SSO, for example) that may assume the controller role. Empty: only EC2 (a controller VM in this account, through the instance profile <cluster>-burst-controller)."
  type        = list(string)
  default     = []
}

variable "controller_role_name" {
  description = "IAM is global, the landing zone is regional: the first region's copy of this module creates the controller role <cluster>-burst-controller (leave this empty there); every other region's copy names that role here and attaches its own region's policies to it."
  type        = string
  default     = ""
}

variable "vpn" {
  description = "Optional site-to-site VPN to the on-prem network: the customer gateway's public IP and BGP ASN. null: no VPN (Direct Connect or an existing transit gateway instead)."
  type = object({
    customer_gateway_ip = string
    bgp_asn             = optional(number, 65000)
  })
  default = null
}

variable "flow_log_retention_days" {
  description = "How long VPC flow logs are kept in CloudWatch."
  type        = number
  default     = 365
}

variable "tags" {
  description = "Extra tags on every resource (burst:cluster is always added)."
  type        = map(string)
  default     = {}
}
