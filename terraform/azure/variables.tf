# Inputs of the Azure landing zone for one burst cluster in one location. burst's Azure settings
# name one resource group for every location: the first copy of this module creates it with the
# identities and roles (shared = true); a copy for another location reuses them (shared = false).

variable "cluster" {
  description = "burst's cluster name (config key `cluster`); tagged burst:cluster on every resource."
  type        = string
  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{0,62}$", var.cluster))
    error_message = "cluster must be 1-63 characters of a-z, 0-9 and '-', starting with a letter or digit (burst's own rule)."
  }
}

variable "subscription_id" {
  description = "The subscription (config key azure.subscription_id)."
  type        = string
  validation {
    condition     = can(regex("^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", var.subscription_id))
    error_message = "subscription_id must be a UUID."
  }
}

variable "location" {
  description = "The Azure location of this landing zone, e.g. eastus (config key azure.regions.<location>)."
  type        = string
  validation {
    condition     = can(regex("^[a-z0-9]+$", var.location))
    error_message = "location must be an Azure location name such as eastus or westus2."
  }
}

variable "resource_group_name" {
  description = "The resource group burst launches VMs into (config key azure.resource_group). Empty: <cluster>-burst."
  type        = string
  default     = ""
}

variable "shared" {
  description = "true in the first copy of this module: it creates the resource group, the node and controller identities and the controller's roles. false in a copy for another location: it reuses them by name."
  type        = bool
  default     = true
}

variable "vnet_cidr" {
  description = "The VNet's address range. Must not overlap the on-prem ranges or another location's VNet."
  type        = string
  default     = "10.52.0.0/16"
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
  description = "Ports on burst nodes the on-prem scheduler connects to. Default: Slurm (slurmd 6818, the srun port range). Kubernetes: [{ ports = \"10250\", protocol = \"Tcp\", name = \"kubelet\" }]."
  type = list(object({
    name     = string
    ports    = string # "6818" or "60001-63000"
    protocol = string # Tcp | Udp
  }))
  default = [
    { name = "slurmd", ports = "6818", protocol = "Tcp" },
    { name = "srun", ports = "60001-63000", protocol = "Tcp" },
  ]
  validation {
    # NSG priorities 100..198 (the fixed allow rules start at 200, the deny is 4000)
    condition     = length(var.scheduler_ports) >= 1 && length(var.scheduler_ports) <= 99
    error_message = "scheduler_ports takes 1 to 99 entries."
  }
}

variable "image" {
  description = "The GPU node image (config key azure.regions.<location>.image): a marketplace URN publisher:offer:sku:version, or an image resource id."
  type        = string
  default     = "microsoft-dsvm:ubuntu-hpc:2204:latest"
}

variable "vm_sizes" {
  description = "GPU sizes burst may launch here (config key azure.regions.<location>.vm_sizes)."
  type        = list(string)
  default     = ["Standard_ND96asr_v4", "Standard_ND96amsr_A100_v4", "Standard_NC24ads_A100_v4"]
}

variable "admin_ssh_public_key" {
  description = "OpenSSH public key of the nodes' admin user (config key azure.admin_ssh_public_key); Azure Linux VMs get no password."
  type        = string
  validation {
    condition     = can(regex("^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp256) ", var.admin_ssh_public_key))
    error_message = "admin_ssh_public_key must be an OpenSSH public key line."
  }
}

variable "user_data_template" {
  description = "Node bootstrap (config key azure.user_data_template): builtin:slurm, builtin:k8s, a file path, or inline text."
  type        = string
  default     = "builtin:slurm"
}

variable "template_vars" {
  description = "Site values the bootstrap template needs (config key azure.template_vars), e.g. { slurmctld_host = \"slurm-ctl.example.org\", munge_key_secret_url = \"https://<vault>.vault.azure.net/secrets/munge-key\" }."
  type        = map(string)
  default     = {}
}

variable "node_secret_ids" {
  description = "Key Vault secret resource ids (/subscriptions/.../vaults/<vault>/secrets/<name>) of the join secret the shipped custom data reads with the node identity: the secret template_vars.munge_key_secret_url (Slurm) or bootstrap_token_secret_url (Kubernetes) points at. The node identity may read exactly these secrets."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for id in var.node_secret_ids : can(regex("^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft.KeyVault/vaults/[^/]+/secrets/[^/]+$", id))])
    error_message = "node_secret_ids must be Key Vault secret resource ids."
  }
}

variable "acr_name" {
  description = "The registry's globally unique name (5-50 letters and digits). Empty: burst<cluster without dashes><location>, cut to 50."
  type        = string
  default     = ""
}

variable "mirror_repository_prefix" {
  description = "The repository prefix the image mirror copies Harbor images under (config key mirror.targets.azure:<location>.repository_prefix)."
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
  description = "NAME of the Harbor robot credentials (config key mirror.source.auth.credentials): BURST_REGISTRY_<NAME>_USERNAME and _PASSWORD[_FILE] on the controller. Empty: anonymous."
  type        = string
  default     = "harbor"
}

variable "controller_principal_ids" {
  description = "Object ids of further principals that act as the burst controller (a service principal used on-prem, for example). The module always creates the user-assigned identity <cluster>-burst-controller for a controller running in Azure."
  type        = list(string)
  default     = []
}

variable "nat_gateway" {
  description = "Give the node subnet outbound internet through a NAT gateway (bootstrap downloads). false: no internet path at all; images come from the registry's private endpoint, the rest from on-prem."
  type        = bool
  default     = false
}

variable "vpn" {
  description = "Optional site-to-site VPN gateway to the on-prem network: the on-prem gateway's public IP. null: none (ExpressRoute or an existing hub instead). The IPsec key is vpn_shared_key."
  type = object({
    onprem_gateway_ip = string
    sku               = optional(string, "VpnGw1AZ")
  })
  default = null
}

variable "vpn_shared_key" {
  description = "The IPsec pre-shared key of the VPN connection (with vpn only). Pass it as TF_VAR_vpn_shared_key, never in a committed file."
  type        = string
  default     = ""
  sensitive   = true
}

variable "tags" {
  description = "Extra tags on every resource (burst:cluster is always added)."
  type        = map(string)
  default     = {}
}
