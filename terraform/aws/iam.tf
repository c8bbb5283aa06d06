# IAM: the node role (pull mirrored images, read tags, nothing more) and the controller's
# least-privilege policies. tests/terraform/test_policy_actions.py keeps the controller's actions
# equal to the calls providers/aws.py makes, and the mirror's to providers/ecr.py plus the
# registry push protocol: a new SDK call without a grant here (or a stale grant) fails the tests.

locals {
  partition   = data.aws_partition.current.partition
  account     = data.aws_caller_identity.current.account_id
  ec2_arn     = "arn:${local.partition}:ec2:${var.region}:${local.account}"
  mirror_repo = "arn:${local.partition}:ecr:${var.region}:${local.account}:repository/${var.mirror_repository_prefix}/*"
  # the AMI's SSM parameter, when ami names one (AWS's public parameters have no account in the ARN)
  ssm_name      = startswith(var.ami, "ami-") ? "" : trimprefix(var.ami, "resolve:ssm:")
  ssm_parameter = local.ssm_name == "" ? "" : "arn:${local.partition}:ssm:${var.region}:${startswith(local.ssm_name, "/aws/service/") ? "" : local.account}:parameter${local.ssm_name}"
  cluster_tag   = "burst:cluster"
  # IAM is global: per-region copies of this module share one controller role (see variables.tf)
  create_controller_role = var.controller_role_name == ""
  controller_role_name   = local.create_controller_role ? "${var.cluster}-burst-controller" : var.controller_role_name
}

# ---- burst nodes ---------------------------------------------------------------------------------

resource "aws_iam_role" "node" {
  name               = "${local.name}-node-${var.region}"
  description        = "burst nodes of ${var.cluster} in ${var.region}: pull mirrored images, read tags"
  assume_role_policy = data.aws_iam_policy_document.ec2_trust.json
}

resource "aws_iam_instance_profile" "node" {
  name = "${local.name}-node-${var.region}"
  role = aws_iam_role.node.name
}

data "aws_iam_policy_document" "ec2_trust" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "node" {
  name   = "pull-mirror-read-tags"
  role   = aws_iam_role.node.id
  policy = data.aws_iam_policy_document.node.json
}

data "aws_iam_policy_document" "node" {
  statement {
    sid       = "RegistryToken"               # `aws ecr get-login-password` in burst-mirror-auth
    actions   = ["ecr:GetAuthorizationToken"] # account-wide by design: no resource-level form
    resources = ["*"]
  }
  statement {
    sid       = "PullMirroredImages" # containerd: manifests, then layers
    actions   = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
    resources = [local.mirror_repo]
  }
  statement {
    sid       = "ReadTags"
    actions   = ["ec2:DescribeTags"] # no resource-level form; read-only, this region only
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "aws:RequestedRegion"
      values   = [var.region]
    }
  }
  dynamic "statement" {
    # the join secret the shipped user data reads (`aws ssm get-parameter`): munge key (Slurm) or
    # bootstrap token (Kubernetes), named in template_vars; only those parameters
    for_each = length(local.node_ssm_parameters) > 0 ? [1] : []
    content {
      sid       = "ReadTheJoinSecret"
      actions   = ["ssm:GetParameter"]
      resources = local.node_ssm_parameters
    }
  }
}

locals {
  node_ssm_parameters = [
    for k, v in var.template_vars : "arn:${local.partition}:ssm:${var.region}:${local.account}:parameter/${trimprefix(v, "/")}"
    if endswith(k, "_ssm_param") && v != ""
  ]
}

# ---- the controller --------------------------------------------------------------------------------

resource "aws_iam_role" "controller" {
  count              = local.create_controller_role ? 1 : 0
  name               = local.controller_role_name
  description        = "the burst controller of ${var.cluster}"
  assume_role_policy = data.aws_iam_policy_document.controller_trust.json
}

resource "aws_iam_instance_profile" "controller" {
  count = local.create_controller_role ? 1 : 0
  name  = local.controller_role_name
  role  = aws_iam_role.controller[0].name
}

data "aws_iam_policy_document" "controller_trust" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
  dynamic "statement" {
    for_each = length(var.controller_trusted_principals) > 0 ? [1] : []
    content {
      actions = ["sts:AssumeRole"]
      principals {
        type        = "AWS"
        identifiers = var.controller_trusted_principals
      }
    }
  }
}

resource "aws_iam_role_policy" "controller" {
  name   = "burst-ec2-${var.region}"
  role   = local.create_controller_role ? aws_iam_role.controller[0].id : var.controller_role_name
  policy = data.aws_iam_policy_document.controller.json
}

resource "aws_iam_role_policy" "mirror" {
  name   = "burst-mirror-${var.region}"
  role   = local.create_controller_role ? aws_iam_role.controller[0].id : var.controller_role_name
  policy = data.aws_iam_policy_document.mirror.json
}

# What providers/aws.py calls, and on what. Launch and terminate are confined to this cluster's
# tag: an instance without burst:cluster=<cluster> can neither be created nor terminated.
data "aws_iam_policy_document" "controller" {
  statement {
    sid     = "LaunchOnlyTaggedForThisCluster"
    actions = ["ec2:RunInstances"]
    resources = [
      "${local.ec2_arn}:instance/*",
      "${local.ec2_arn}:volume/*",
    ]
    condition {
      test     = "StringEquals"
      variable = "aws:RequestTag/${local.cluster_tag}"
      values   = [var.cluster]
    }
  }
  statement {
    sid     = "LaunchIntoThisLandingZone"
    actions = ["ec2:RunInstances"]
    resources = concat(
      [for s in aws_subnet.private : "${local.ec2_arn}:subnet/${s.id}"],
      [
        "${local.ec2_arn}:security-group/${aws_security_group.node.id}",
        "${local.ec2_arn}:network-interface/*", # created by RunInstances in the subnets above
        "arn:${local.partition}:ec2:${var.region}::image/*",
        "${local.ec2_arn}:spot-instances-request/*", # spot offers (one-time requests)
      ],
      var.key_name == "" ? [] : ["${local.ec2_arn}:key-pair/${var.key_name}"],
    )
  }
  dynamic "statement" {
    for_each = var.placement_groups ? [1] : []
    content {
      sid       = "LaunchIntoThisClustersPlacementGroups"
      actions   = ["ec2:RunInstances"]
      resources = ["${local.ec2_arn}:placement-group/*"]
      condition {
        test     = "StringEquals"
        variable = "ec2:ResourceTag/${local.cluster_tag}"
        values   = [var.cluster]
      }
    }
  }
  dynamic "statement" {
    for_each = var.placement_groups ? [1] : []
    content {
      sid       = "CreatePlacementGroupsTaggedForThisCluster"
      actions   = ["ec2:CreatePlacementGroup"]
      resources = ["${local.ec2_arn}:placement-group/*"]
      condition {
        test     = "StringEquals"
        variable = "aws:RequestTag/${local.cluster_tag}"
        values   = [var.cluster]
      }
    }
  }
  statement {
    sid       = "TagOnlyWhileCreating"
    actions   = ["ec2:CreateTags"] # TagSpecifications of RunInstances / CreatePlacementGroup
    resources = ["${local.ec2_arn}:instance/*", "${local.ec2_arn}:volume/*", "${local.ec2_arn}:placement-group/*"]
    condition {
      test     = "StringEquals"
      variable = "ec2:CreateAction"
      values   = ["RunInstances", "CreatePlacementGroup"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:RequestTag/${local.cluster_tag}"
      values   = [var.cluster]
    }
  }
  statement {
    sid       = "TerminateOnlyThisCluster"
    actions   = ["ec2:TerminateInstances"]
    resources = ["${local.ec2_arn}:instance/*"]
    condition {
      test     = "StringEquals"
      variable = "ec2:ResourceTag/${local.cluster_tag}"
      values   = [var.cluster]
    }
  }
  statement {
    sid = "DescribeThisRegion" # EC2 Describe* calls have no resource-level form
    actions = [
      "ec2:DescribeAvailabilityZones",
      "ec2:DescribeImages",
      "ec2:DescribeInstanceTypeOfferings",
      "ec2:DescribeInstanceTypes",
      "ec2:DescribeInstances",
      "ec2:DescribeKeyPairs",
      "ec2:DescribeRegions",
      "ec2:DescribeSecurityGroups",
      "ec2:DescribeSubnets",
    ]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "aws:RequestedRegion"
      values   = [var.region]
    }
  }
  statement {
    sid       = "PassOnlyTheNodeRole"
    actions   = ["iam:PassRole"]
    resources = [aws_iam_role.node.arn]
    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["ec2.amazonaws.com"]
    }
  }
  statement {
    sid       = "CheckTheNodeProfile" # `burst run` validates the configured instance profile
    actions   = ["iam:GetInstanceProfile"]
    resources = [aws_iam_instance_profile.node.arn]
  }
  dynamic "statement" {
    for_each = local.ssm_parameter == "" ? [] : [local.ssm_parameter]
    content {
      sid       = "ResolveTheAmiParameter"
      actions   = ["ssm:GetParameter"]
      resources = [statement.value]
    }
  }
}

# What the image mirror calls (providers/ecr.py, and the registry push protocol of providers/oci.py
# against ECR), only under the mirror's repository prefix.
data "aws_iam_policy_document" "mirror" {
  statement {
    sid       = "RegistryToken"
    actions   = ["ecr:GetAuthorizationToken"] # account-wide by design: no resource-level form
    resources = ["*"]
  }
  statement {
    sid = "MirrorRepositories"
    actions = [
      "ecr:CreateRepository",
      "ecr:DescribeRepositories",
      "ecr:TagResource", # CreateRepository with tags
    ]
    resources = [local.mirror_repo]
  }
  statement {
    sid = "PushMirroredImages"
    actions = [
      "ecr:BatchCheckLayerAvailability", # HEAD blob
      "ecr:BatchGetImage",               # HEAD manifest (already copied?)
      "ecr:CompleteLayerUpload",         # PUT upload
      "ecr:GetDownloadUrlForLayer",      # blob mount from another mirrored repository
      "ecr:InitiateLayerUpload",         # POST upload
      "ecr:PutImage",                    # PUT manifest
      "ecr:UploadLayerPart",             # PATCH upload
    ]
    resources = [local.mirror_repo]
  }
}
