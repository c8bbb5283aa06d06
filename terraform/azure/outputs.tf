# Every output is one burst config key (burst/terraform_config.py holds the table; the tests keep
# the two equal). `terraform output -json | burst config from-terraform` renders them as YAML.
# Nothing else is an output: the node identity <cluster>-burst-node is one (the VMs carry it), the
# controller identity <cluster>-burst-controller and the roles burst-controller[-catalog]-<cluster>
# are found by name in the resource group.

output "cluster" {
  description = "config key `cluster`"
  value       = var.cluster
}

output "azure_subscription_id" {
  description = "config key `clouds.azure.settings.subscription_id`"
  value       = var.subscription_id
}

output "azure_resource_group" {
  description = "config key `clouds.azure.settings.resource_group`"
  value       = local.rg_name
}

output "azure_regions" {
  description = "config key `clouds.azure.settings.regions` (this location's entry)"
  value = {
    (var.location) = {
      subnet_id   = azurerm_subnet.nodes.id
      image       = var.image
      vm_sizes    = var.vm_sizes
      mirror_host = "${azurerm_container_registry.mirror.login_server}/${var.mirror_repository_prefix}"
    }
  }
}

output "azure_node_identity_id" {
  description = "config key `clouds.azure.settings.node_identity_id` (one per resource group: every landing zone's is the same)"
  value       = local.node_identity_id
}

output "azure_admin_ssh_public_key" {
  description = "config key `clouds.azure.settings.admin_ssh_public_key`"
  value       = var.admin_ssh_public_key
}

output "azure_user_data_template" {
  description = "config key `clouds.azure.settings.user_data_template`"
  value       = var.user_data_template
}

output "azure_harbor_host" {
  description = "config key `clouds.azure.settings.harbor_host`"
  value       = var.harbor_host
}

output "azure_template_vars" {
  description = "config key `clouds.azure.settings.template_vars`"
  value       = var.template_vars
}

output "offer_regions" {
  description = "config key `offers.regions` (this location; merged with the other landing zones')"
  value       = [var.location]
}

output "mirror_source_registry" {
  description = "config key `mirror.source.registry`"
  value       = var.harbor_host
}

output "mirror_source_auth" {
  description = "config key `mirror.source.auth`"
  value = {
    method      = var.harbor_credentials == "" ? "anonymous" : "basic"
    credentials = var.harbor_credentials == "" ? null : var.harbor_credentials
  }
}

output "azure_mirror_targets" {
  description = "config key `mirror.targets` (this location's entry, azure:<location>)"
  value = {
    "azure:${var.location}" = {
      kind              = "acr"
      registry          = azurerm_container_registry.mirror.login_server
      repository_prefix = var.mirror_repository_prefix
    }
  }
}
