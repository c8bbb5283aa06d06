# Optional site-to-site VPN gateway to the on-prem network (var.vpn): route based, zone
# redundant, IKEv2 with the pre-shared key var.vpn_shared_key.

resource "azurerm_subnet" "gateway" {
  count                = var.vpn == null ? 0 : 1
  name                 = "GatewaySubnet" # the name Azure requires
  resource_group_name  = local.rg_name
  virtual_network_name = azurerm_virtual_network.burst.name
  address_prefixes     = [local.gateway_cidr]
}

resource "azurerm_public_ip" "vpn" {
  count               = var.vpn == null ? 0 : 1
  name                = "${local.name}-vpn-${var.location}"
  resource_group_name = local.rg_name
  location            = var.location
  allocation_method   = "Static"
  sku                 = "Standard"
  zones               = ["1", "2", "3"]
  tags                = local.tags
}

resource "azurerm_virtual_network_gateway" "vpn" {
  count               = var.vpn == null ? 0 : 1
  name                = "${local.name}-vpn-${var.location}"
  resource_group_name = local.rg_name
  location            = var.location
  type                = "Vpn"
  vpn_type            = "RouteBased"
  sku                 = var.vpn.sku
  generation          = "Generation1"
  tags                = local.tags
  ip_configuration {
    name                 = "vpn"
    public_ip_address_id = azurerm_public_ip.vpn[0].id
    subnet_id            = azurerm_subnet.gateway[0].id
  }
}

resource "azurerm_local_network_gateway" "onprem" {
  count               = var.vpn == null ? 0 : 1
  name                = "${local.name}-onprem-${var.location}"
  resource_group_name = local.rg_name
  location            = var.location
  gateway_address     = var.vpn.onprem_gateway_ip
  address_space       = var.onprem_cidrs
  tags                = local.tags
}

resource "azurerm_virtual_network_gateway_connection" "onprem" {
  count                      = var.vpn == null ? 0 : 1
  name                       = "${local.name}-onprem-${var.location}"
  resource_group_name        = local.rg_name
  location                   = var.location
  type                       = "IPsec"
  connection_protocol        = "IKEv2"
  virtual_network_gateway_id = azurerm_virtual_network_gateway.vpn[0].id
  local_network_gateway_id   = azurerm_local_network_gateway.onprem[0].id
  shared_key                 = var.vpn_shared_key
  tags                       = local.tags
}
