# Security groups. Burst nodes accept the on-prem scheduler's ports from the on-prem ranges only,
# and all traffic from each other (EFA requires a group that admits itself, in and out).

resource "aws_security_group" "node" {
  # checkov:skip=CKV2_AWS_5: attached by the controller to the instances it launches (config key security_group_ids), not by Terraform
  name        = "${local.name}-node"
  description = "burst nodes of cluster ${var.cluster}"
  vpc_id      = aws_vpc.burst.id
  tags        = { Name = "${local.name}-node" }
}

resource "aws_vpc_security_group_ingress_rule" "scheduler" {
  for_each = {
    for pair in setproduct(var.scheduler_ports, var.onprem_cidrs) :
    "${pair[0].protocol}/${pair[0].from_port}-${pair[0].to_port}/${pair[1]}" => { port = pair[0], cidr = pair[1] }
  }
  security_group_id = aws_security_group.node.id
  description       = "on-prem scheduler: ${each.value.port.description}"
  ip_protocol       = each.value.port.protocol
  from_port         = each.value.port.from_port
  to_port           = each.value.port.to_port
  cidr_ipv4         = each.value.cidr
}

resource "aws_vpc_security_group_ingress_rule" "peers" {
  security_group_id            = aws_security_group.node.id
  description                  = "burst nodes among themselves (EFA, NCCL, MPI)"
  ip_protocol                  = "-1"
  referenced_security_group_id = aws_security_group.node.id
}

resource "aws_vpc_security_group_egress_rule" "peers" {
  security_group_id            = aws_security_group.node.id
  description                  = "burst nodes among themselves (EFA requires it)"
  ip_protocol                  = "-1"
  referenced_security_group_id = aws_security_group.node.id
}

resource "aws_vpc_security_group_egress_rule" "onprem" {
  for_each          = toset(var.onprem_cidrs)
  security_group_id = aws_security_group.node.id
  description       = "the on-prem scheduler, Harbor and storage"
  ip_protocol       = "-1"
  cidr_ipv4         = each.value
}

# HTTPS to AWS APIs: the VPC endpoints (inside the VPC range), or the internet through NAT.
resource "aws_vpc_security_group_egress_rule" "https" {
  security_group_id = aws_security_group.node.id
  description       = local.nat ? "HTTPS through the NAT gateway (ECR, EC2 API)" : "HTTPS to the VPC endpoints"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = local.nat ? "0.0.0.0/0" : var.vpc_cidr
}

# S3 (image layers) is a gateway endpoint: reached by its prefix list, not the VPC range.
resource "aws_vpc_security_group_egress_rule" "s3" {
  security_group_id = aws_security_group.node.id
  description       = "image layers from S3 through the gateway endpoint"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  prefix_list_id    = aws_vpc_endpoint.s3.prefix_list_id
}

resource "aws_security_group" "endpoints" {
  name        = "${local.name}-endpoints"
  description = "VPC interface endpoints of burst cluster ${var.cluster}"
  vpc_id      = aws_vpc.burst.id
  tags        = { Name = "${local.name}-endpoints" }
}

resource "aws_vpc_security_group_ingress_rule" "endpoints" {
  security_group_id            = aws_security_group.endpoints.id
  description                  = "HTTPS from burst nodes"
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
  referenced_security_group_id = aws_security_group.node.id
}
