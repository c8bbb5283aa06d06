# Resource group, VNet, the node subnet and its NSG. Nodes get no public IP (the provider never
# asks for one) and no default outbound access: the registry is reached through its private
# endpoint, the on-prem network through the VPN (or ExpressRoute), the internet only with
# nat_gateway = true.

locals {
  name           = "${var.cluster}-burst"
  resource_group = var.resource_group_name != "" ? var.resource_group_name : local.name
  tags           = merge(var.tags, { "burst:cluster" = var.cluster })
  rg_name        = var.shared ? azurerm_resource_group.burst[0].name : data.azurerm_resource_group.burst[0].name
  rg_id          = var.shared ? azurerm_resource_group.burst[0].id : data.azurerm_resource_group.burst[0].id
  node_cidr      = cidrsubnet(var.vnet_cidr, 4, 0)    # /20: one address per VM (one NIC each)
  endpoint_cidr  = cidrsubnet(var.vnet_cidr, 8, 16)   # the registry's private endpoint
  gateway_cidr   = cidrsubnet(var.vnet_cidr, 11, 255) # GatewaySubnet (/27), with vpn only
}

resource "azurerm_resource_group" "burst" {
  count    = var.shared ? 1 : 0
  name     = local.resource_group
  location = var.location
  tags     = local.tags
}

data "azurerm_resource_group" "burst" {
  count = var.shared ? 0 : 1
  name  = local.resource_group
}

resource "azurerm_virtual_network" "burst" {
  name                = "${local.name}-${var.location}"
  resource_group_name = local.rg_name
  location            = var.location
  address_space       = [var.vnet_cidr]
  tags                = local.tags
}

resource "azurerm_subnet" "nodes" {
  name                            = "nodes"
  resource_group_name             = local.rg_name
  virtual_network_name            = azurerm_virtual_network.burst.name
  address_prefixes                = [local.node_cidr]
  default_outbound_access_enabled = false
}

resource "azurerm_subnet" "endpoints" {
  name                              = "private-endpoints"
  resource_group_name               = local.rg_name
  virtual_network_name              = azurerm_virtual_network.burst.name
  address_prefixes                  = [local.endpoint_cidr]
  default_outbound_access_enabled   = false
  private_endpoint_network_policies = "Enabled" # the NSG below applies to the endpoint too
}

resource "azurerm_network_security_group" "nodes" {
  name                = "${local.name}-nodes-${var.location}"
  resource_group_name = local.rg_name
  location            = var.location
  tags                = local.tags
}

# The on-prem scheduler's ports, from the on-prem ranges only.
resource "azurerm_network_security_rule" "scheduler" {
  for_each                    = { for i, p in var.scheduler_ports : p.name => merge(p, { priority = 100 + i }) }
  name                        = "onprem-${each.key}"
  resource_group_name         = local.rg_name
  network_security_group_name = azurerm_network_security_group.nodes.name
  priority                    = each.value.priority
  direction                   = "Inbound"
  access                      = "Allow"
  protocol                    = each.value.protocol
  source_address_prefixes     = var.onprem_cidrs
  source_port_range           = "*"
  destination_address_prefix  = local.node_cidr
  destination_port_range      = each.value.ports
}

# Nodes among themselves (NCCL, MPI; InfiniBand itself bypasses the NSG).
resource "azurerm_network_security_rule" "peers" {
  name                        = "node-peers"
  resource_group_name         = local.rg_name
  network_security_group_name = azurerm_network_security_group.nodes.name
  priority                    = 200
  direction                   = "Inbound"
  access                      = "Allow"
  protocol                    = "*"
  source_address_prefix       = local.node_cidr
  source_port_range           = "*"
  destination_address_prefix  = local.node_cidr
  destination_port_range      = "*"
}

# HTTPS from nodes to the registry's private endpoint.
resource "azurerm_network_security_rule" "registry" {
  name                        = "nodes-to-registry"
  resource_group_name         = local.rg_name
  network_security_group_name = azurerm_network_security_group.nodes.name
  priority                    = 210
  direction                   = "Inbound"
  access                      = "Allow"
  protocol                    = "Tcp"
  source_address_prefix       = local.node_cidr
  source_port_range           = "*"
  destination_address_prefix  = local.endpoint_cidr
  destination_port_range      = "443"
}

# The mirror (on the controller, on-prem) pushes to the registry's private endpoint.
resource "azurerm_network_security_rule" "mirror" {
  name                        = "onprem-mirror-to-registry"
  resource_group_name         = local.rg_name
  network_security_group_name = azurerm_network_security_group.nodes.name
  priority                    = 220
  direction                   = "Inbound"
  access                      = "Allow"
  protocol                    = "Tcp"
  source_address_prefixes     = var.onprem_cidrs
  source_port_range           = "*"
  destination_address_prefix  = local.endpoint_cidr
  destination_port_range      = "443"
}

# Azure's default rules admit all of "VirtualNetwork", which includes the on-prem ranges behind a
# VPN gateway: deny every other inbound flow so the rules above are the whole story.
resource "azurerm_network_security_rule" "deny_inbound" {
  name                        = "deny-other-inbound"
  resource_group_name         = local.rg_name
  network_security_group_name = azurerm_network_security_group.nodes.name
  priority                    = 4000
  direction                   = "Inbound"
  access                      = "Deny"
  protocol                    = "*"
  source_address_prefix       = "*"
  source_port_range           = "*"
  destination_address_prefix  = "*"
  destination_port_range      = "*"
}

resource "azurerm_subnet_network_security_group_association" "nodes" {
  subnet_id                 = azurerm_subnet.nodes.id
  network_security_group_id = azurerm_network_security_group.nodes.id
}

resource "azurerm_subnet_network_security_group_association" "endpoints" {
  subnet_id                 = azurerm_subnet.endpoints.id
  network_security_group_id = azurerm_network_security_group.nodes.id
}

# ---- optional NAT gateway -------------------------------------------------------------------

resource "azurerm_public_ip" "nat" {
  count               = var.nat_gateway ? 1 : 0
  name                = "${local.name}-nat-${var.location}"
  resource_group_name = local.rg_name
  location            = var.location
  allocation_method   = "Static"
  sku                 = "Standard"
  zones               = ["1", "2", "3"]
  tags                = local.tags
}

resource "azurerm_nat_gateway" "nat" {
  count               = var.nat_gateway ? 1 : 0
  name                = "${local.name}-nat-${var.location}"
  resource_group_name = local.rg_name
  location            = var.location
  sku_name            = "Standard"
  tags                = local.tags
}

resource "azurerm_nat_gateway_public_ip_association" "nat" {
  count                = var.nat_gateway ? 1 : 0
  nat_gateway_id       = azurerm_nat_gateway.nat[0].id
  public_ip_address_id = azurerm_public_ip.nat[0].id
}

resource "azurerm_subnet_nat_gateway_association" "nodes" {
  count          = var.nat_gateway ? 1 : 0
  subnet_id      = azurerm_subnet.nodes.id
  nat_gateway_id = azurerm_nat_gateway.nat[0].id
}
