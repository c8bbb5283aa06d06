# Optional site-to-site VPN to the on-prem network (var.vpn). Static routes to the on-prem
# ranges; the private route table learns them through route propagation (network.tf).

resource "aws_customer_gateway" "onprem" {
  count      = var.vpn == null ? 0 : 1
  bgp_asn    = var.vpn.bgp_asn
  ip_address = var.vpn.customer_gateway_ip
  type       = "ipsec.1"
  tags       = { Name = "${local.name}-onprem" }
}

resource "aws_vpn_gateway" "onprem" {
  count  = var.vpn == null ? 0 : 1
  vpc_id = aws_vpc.burst.id
  tags   = { Name = local.name }
}

resource "aws_vpn_connection" "onprem" {
  count               = var.vpn == null ? 0 : 1
  customer_gateway_id = aws_customer_gateway.onprem[0].id
  vpn_gateway_id      = aws_vpn_gateway.onprem[0].id
  type                = "ipsec.1"
  static_routes_only  = true
  tags                = { Name = "${local.name}-onprem" }
}

resource "aws_vpn_connection_route" "onprem" {
  for_each               = var.vpn == null ? toset([]) : toset(var.onprem_cidrs)
  vpn_connection_id      = aws_vpn_connection.onprem[0].id
  destination_cidr_block = each.value
}
