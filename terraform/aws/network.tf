# The VPC: one private subnet per AZ for burst nodes (no public IPv4 ever: EFA instances cannot
# have one, and nothing needs one), egress through a NAT gateway or through VPC endpoints only.

locals {
  az_ids = var.availability_zone_ids
  # /20 per private subnet (4,091 addresses: a p5 takes one per ENA interface; EFA-only takes none)
  private_cidrs = { for i, az in local.az_ids : az => cidrsubnet(var.vpc_cidr, 4, i) }
  # the NAT gateway's public subnet, only with egress = "nat": the last /24 of the range
  public_cidr = cidrsubnet(var.vpc_cidr, 8, 255)
  nat         = var.egress == "nat"
  name        = "${var.cluster}-burst"
}

resource "aws_vpc" "burst" {
  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true # VPC endpoints' private DNS names need it
  tags                 = { Name = local.name }
}

# Lock the default security group: nothing may use it by accident.
resource "aws_default_security_group" "locked" {
  vpc_id = aws_vpc.burst.id
  tags   = { Name = "${local.name}-default-unused" }
}

resource "aws_subnet" "private" {
  for_each                = local.private_cidrs
  vpc_id                  = aws_vpc.burst.id
  availability_zone_id    = each.key
  cidr_block              = each.value
  map_public_ip_on_launch = false
  tags                    = { Name = "${local.name}-private-${each.key}" }
}

resource "aws_route_table" "private" {
  vpc_id           = aws_vpc.burst.id
  propagating_vgws = var.vpn == null ? [] : [aws_vpn_gateway.onprem[0].id]
  tags             = { Name = "${local.name}-private" }
}

resource "aws_route_table_association" "private" {
  for_each       = aws_subnet.private
  subnet_id      = each.value.id
  route_table_id = aws_route_table.private.id
}

# ---- egress = "nat": one NAT gateway in a small public subnet ---------------------------------

resource "aws_internet_gateway" "nat" {
  count  = local.nat ? 1 : 0
  vpc_id = aws_vpc.burst.id
  tags   = { Name = local.name }
}

resource "aws_subnet" "public" {
  count                   = local.nat ? 1 : 0
  vpc_id                  = aws_vpc.burst.id
  availability_zone_id    = local.az_ids[0]
  cidr_block              = local.public_cidr
  map_public_ip_on_launch = false # only the NAT gateway lives here, with its own Elastic IP
  tags                    = { Name = "${local.name}-nat" }
}

resource "aws_route_table" "public" {
  count  = local.nat ? 1 : 0
  vpc_id = aws_vpc.burst.id
  route {
    cidr_block = "0.0.0.0/0"
    gateway_id = aws_internet_gateway.nat[0].id
  }
  tags = { Name = "${local.name}-nat" }
}

resource "aws_route_table_association" "public" {
  count          = local.nat ? 1 : 0
  subnet_id      = aws_subnet.public[0].id
  route_table_id = aws_route_table.public[0].id
}

resource "aws_eip" "nat" {
  count  = local.nat ? 1 : 0
  domain = "vpc"
  tags   = { Name = "${local.name}-nat" }
}

resource "aws_nat_gateway" "nat" {
  count         = local.nat ? 1 : 0
  subnet_id     = aws_subnet.public[0].id
  allocation_id = aws_eip.nat[0].id
  tags          = { Name = local.name }
  depends_on    = [aws_internet_gateway.nat]
}

resource "aws_route" "private_nat" {
  count                  = local.nat ? 1 : 0
  route_table_id         = aws_route_table.private.id
  destination_cidr_block = "0.0.0.0/0"
  nat_gateway_id         = aws_nat_gateway.nat[0].id
}

# ---- egress = "endpoints": the AWS APIs nodes and the mirror need, privately ------------------
# Nodes pull images from ECR (ecr.api for the token, ecr.dkr for manifests, S3 for layers), read
# their join secret (ssm) and their own tags (ec2). S3 is a free gateway endpoint, so it exists in
# NAT mode too.

locals {
  interface_endpoints = local.nat ? [] : ["ecr.api", "ecr.dkr", "ec2", "ssm"]
}

resource "aws_vpc_endpoint" "s3" {
  vpc_id            = aws_vpc.burst.id
  service_name      = "com.amazonaws.${var.region}.s3"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = [aws_route_table.private.id]
  tags              = { Name = "${local.name}-s3" }
}

resource "aws_vpc_endpoint" "interface" {
  for_each            = toset(local.interface_endpoints)
  vpc_id              = aws_vpc.burst.id
  service_name        = "com.amazonaws.${var.region}.${each.key}"
  vpc_endpoint_type   = "Interface"
  private_dns_enabled = true
  subnet_ids          = [for s in aws_subnet.private : s.id]
  security_group_ids  = [aws_security_group.endpoints.id]
  tags                = { Name = "${local.name}-${each.key}" }
}

# ---- flow logs ---------------------------------------------------------------------------------

resource "aws_flow_log" "burst" {
  vpc_id               = aws_vpc.burst.id
  traffic_type         = "ALL"
  log_destination_type = "cloud-watch-logs"
  log_destination      = aws_cloudwatch_log_group.flow.arn
  iam_role_arn         = aws_iam_role.flow_log.arn
}

resource "aws_cloudwatch_log_group" "flow" {
  name              = "/burst/${var.cluster}/vpc-flow"
  retention_in_days = var.flow_log_retention_days
  kms_key_id        = aws_kms_key.logs.arn
}

resource "aws_kms_key" "logs" {
  description         = "burst ${var.cluster}: VPC flow logs"
  enable_key_rotation = true
  policy              = data.aws_iam_policy_document.logs_key.json
}

data "aws_iam_policy_document" "logs_key" {
  # checkov:skip=CKV_AWS_109: a key policy's "*" resource is the key itself; the account root statement is AWS's default key policy, without it the key becomes unmanageable
  # checkov:skip=CKV_AWS_111: as above: the key policy's "*" is this key, granted to this account's root (IAM decides further) and to CloudWatch Logs for this cluster's log groups only
  # checkov:skip=CKV_AWS_356: as above: in a key policy the resource "*" means this key only
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"] # in a key policy, "*" is this key
    principals {
      type        = "AWS"
      identifiers = ["arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }
  statement {
    sid       = "CloudWatchLogsEncrypts"
    actions   = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${var.region}.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${data.aws_partition.current.partition}:logs:${var.region}:${data.aws_caller_identity.current.account_id}:log-group:/burst/${var.cluster}/*"]
    }
  }
}

resource "aws_iam_role" "flow_log" {
  name               = "${local.name}-flow-log"
  assume_role_policy = data.aws_iam_policy_document.flow_log_trust.json
}

data "aws_iam_policy_document" "flow_log_trust" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["vpc-flow-logs.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

resource "aws_iam_role_policy" "flow_log" {
  name   = "write-flow-logs"
  role   = aws_iam_role.flow_log.id
  policy = data.aws_iam_policy_document.flow_log_write.json
}

data "aws_iam_policy_document" "flow_log_write" {
  statement {
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
    resources = ["${aws_cloudwatch_log_group.flow.arn}:*"]
  }
}
