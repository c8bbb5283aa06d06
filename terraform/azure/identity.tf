# The registry (ACR) the mirror fills, the identities and the controller's roles.
# tests/terraform/test_policy_actions.py keeps the two controller roles' actions equal to the ARM
# operations providers/azure.py performs: a new SDK call without a grant here fails the tests.

locals {
  acr_name = var.acr_name != "" ? var.acr_name : substr("burst${replace(var.cluster, "-", "")}${var.location}", 0, 50)
  # identities and roles live once per resource group (var.shared)
  node_identity_id           = var.shared ? azurerm_user_assigned_identity.node[0].id : data.azurerm_user_assigned_identity.node[0].id
  node_identity_principal    = var.shared ? azurerm_user_assigned_identity.node[0].principal_id : data.azurerm_user_assigned_identity.node[0].principal_id
  controller_identity_object = var.shared ? azurerm_user_assigned_identity.controller[0].principal_id : data.azurerm_user_assigned_identity.controller[0].principal_id
  # static keys: for_each cannot key on ids that are known only after apply
  controllers         = merge({ identity = local.controller_identity_object }, { for i, id in var.controller_principal_ids : "principal-${i}" => id })
  private_dns_zone_id = var.shared ? azurerm_private_dns_zone.acr[0].id : data.azurerm_private_dns_zone.acr[0].id
}

# ---- the registry ---------------------------------------------------------------------------

resource "azurerm_container_registry" "mirror" {
  # checkov:skip=CKV_AZURE_165: one registry per location by design (each landing zone's nodes pull from their own); geo-replication would duplicate that
  # checkov:skip=CKV_AZURE_166: the mirror copies images that Harbor already scanned and admitted; quarantine would hold every copy until a scanner released it, and nodes could not pull
  # checkov:skip=CKV_AZURE_164: Docker Content Trust (deprecated by Azure) would need every mirrored image signed again here; images are admitted at the source, Harbor
  name                          = local.acr_name
  resource_group_name           = local.rg_name
  location                      = var.location
  sku                           = "Premium" # private endpoints, zone redundancy, dedicated data endpoints
  admin_enabled                 = false
  anonymous_pull_enabled        = false
  public_network_access_enabled = false
  network_rule_bypass_option    = "None"
  zone_redundancy_enabled       = true
  data_endpoint_enabled         = true
  export_policy_enabled         = false
  retention_policy_in_days      = 7
  tags                          = local.tags
}

resource "azurerm_private_dns_zone" "acr" {
  count               = var.shared ? 1 : 0
  name                = "privatelink.azurecr.io"
  resource_group_name = local.rg_name
  tags                = local.tags
}

data "azurerm_private_dns_zone" "acr" {
  count               = var.shared ? 0 : 1
  name                = "privatelink.azurecr.io"
  resource_group_name = local.rg_name
}

resource "azurerm_private_dns_zone_virtual_network_link" "acr" {
  name                  = "${local.name}-${var.location}"
  resource_group_name   = local.rg_name
  private_dns_zone_name = "privatelink.azurecr.io"
  virtual_network_id    = azurerm_virtual_network.burst.id
  tags                  = local.tags
  depends_on            = [azurerm_private_dns_zone.acr]
}

resource "azurerm_private_endpoint" "acr" {
  name                = "${local.acr_name}-pe"
  resource_group_name = local.rg_name
  location            = var.location
  subnet_id           = azurerm_subnet.endpoints.id
  tags                = local.tags
  private_service_connection {
    name                           = "${local.acr_name}-registry"
    private_connection_resource_id = azurerm_container_registry.mirror.id
    subresource_names              = ["registry"]
    is_manual_connection           = false
  }
  private_dns_zone_group {
    name                 = "acr"
    private_dns_zone_ids = [local.private_dns_zone_id]
  }
}

# ---- identities -----------------------------------------------------------------------------

resource "azurerm_user_assigned_identity" "node" {
  count               = var.shared ? 1 : 0
  name                = "${local.name}-node"
  resource_group_name = local.rg_name
  location            = var.location
  tags                = local.tags
}

data "azurerm_user_assigned_identity" "node" {
  count               = var.shared ? 0 : 1
  name                = "${local.name}-node"
  resource_group_name = local.rg_name
}

resource "azurerm_user_assigned_identity" "controller" {
  count               = var.shared ? 1 : 0
  name                = "${local.name}-controller"
  resource_group_name = local.rg_name
  location            = var.location
  tags                = local.tags
}

data "azurerm_user_assigned_identity" "controller" {
  count               = var.shared ? 0 : 1
  name                = "${local.name}-controller"
  resource_group_name = local.rg_name
}

# Nodes: pull from this location's registry.
resource "azurerm_role_assignment" "node_pull" {
  scope                = azurerm_container_registry.mirror.id
  role_definition_name = "AcrPull"
  principal_id         = local.node_identity_principal
  principal_type       = "ServicePrincipal"
}

# Nodes: read their join secret (munge key or bootstrap token), only the secrets named.
resource "azurerm_role_assignment" "node_join_secret" {
  for_each             = toset(var.node_secret_ids)
  scope                = each.value
  role_definition_name = "Key Vault Secrets User"
  principal_id         = local.node_identity_principal
  principal_type       = "ServicePrincipal"
}

# The controller's mirror pushes into this location's registry.
resource "azurerm_role_assignment" "controller_push" {
  for_each             = local.controllers
  scope                = azurerm_container_registry.mirror.id
  role_definition_name = "AcrPush"
  principal_id         = each.value
}

# ---- the controller's roles ---------------------------------------------------------------------

# What providers/azure.py does to VMs, in the resource group only.
resource "azurerm_role_definition" "controller" {
  count       = var.shared ? 1 : 0
  name        = "burst-controller-${var.cluster}"
  scope       = local.rg_id
  description = "burst controller of ${var.cluster}: VMs (with their NICs and OS disks) and gang proximity placement groups in ${local.resource_group}"
  permissions {
    actions = [
      "Microsoft.Compute/virtualMachines/read",
      "Microsoft.Compute/virtualMachines/write",
      "Microsoft.Compute/virtualMachines/delete",
      "Microsoft.Compute/proximityPlacementGroups/write",
      "Microsoft.Compute/disks/write",                                  # the OS disk, created with the VM
      "Microsoft.Compute/disks/delete",                                 # deleteOption Delete: removed with the VM
      "Microsoft.Network/networkInterfaces/read",                       # the VM-managed NIC's private IP (instances carry it)
      "Microsoft.Network/networkInterfaces/write",                      # the VM-managed NIC
      "Microsoft.Network/networkInterfaces/delete",                     # deleteOption Delete
      "Microsoft.Network/virtualNetworks/subnets/join/action",          # the NIC joins the node subnet
      "Microsoft.Network/virtualNetworks/subnets/read",                 # `burst run` checks subnet_id
      "Microsoft.ManagedIdentity/userAssignedIdentities/assign/action", # VMs carry the node identity
      "Microsoft.ManagedIdentity/userAssignedIdentities/read",          # `burst run` checks node_identity_id
      "Microsoft.Resources/subscriptions/resourceGroups/read",          # `burst run` checks resource_group
    ]
    not_actions = []
  }
  assignable_scopes = [local.rg_id]
}

# The read-only catalogue the provider reads before it launches: SKUs with their restrictions,
# quota, marketplace image versions. ARM serves these at subscription scope only.
resource "azurerm_role_definition" "controller_catalog" {
  count       = var.shared ? 1 : 0
  name        = "burst-controller-catalog-${var.cluster}"
  scope       = data.azurerm_subscription.current.id
  description = "burst controller of ${var.cluster}: read VM sizes, restrictions, quota and images (read-only)"
  permissions {
    actions = [
      "Microsoft.Compute/skus/read",
      "Microsoft.Compute/locations/usages/read",
      "Microsoft.Compute/locations/publishers/artifacttypes/offers/skus/versions/read",
      "Microsoft.Compute/galleries/images/versions/read", # image given as a gallery image version id
      "Microsoft.Compute/images/read",                    # image given as a managed image id
      "Microsoft.Resources/subscriptions/read",           # `burst run` checks subscription_id
    ]
    not_actions = []
  }
  assignable_scopes = [data.azurerm_subscription.current.id]
}

resource "azurerm_role_assignment" "controller" {
  for_each           = var.shared ? local.controllers : {}
  scope              = local.rg_id
  role_definition_id = azurerm_role_definition.controller[0].role_definition_resource_id
  principal_id       = each.value
}

resource "azurerm_role_assignment" "controller_catalog" {
  for_each           = var.shared ? local.controllers : {}
  scope              = data.azurerm_subscription.current.id
  role_definition_id = azurerm_role_definition.controller_catalog[0].role_definition_resource_id
  principal_id       = each.value
}
