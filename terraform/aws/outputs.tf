# Every output is one burst config key (burst/terraform_config.py holds the table; the tests keep
# the two equal). `terraform output -json | burst config from-terraform` renders them as YAML.
# Nothing else is an output: the controller role is named <cluster>-burst-controller, and the
# VPN's tunnel details are in the state (`terraform state show 'aws_vpn_connection.onprem[0]'`).

output "cluster" {
  description = "config key `cluster`"
  value       = var.cluster
}

output "aws_regions" {
  description = "config key `clouds.aws.settings.regions` (this region's entry)"
  value = {
    (var.region) = {
      ami                = var.ami
      subnets            = { for az, s in aws_subnet.private : az => s.id }
      security_group_ids = [aws_security_group.node.id]
      instance_profile   = aws_iam_instance_profile.node.name
      key_name           = var.key_name == "" ? null : var.key_name
      instance_types     = var.instance_types
      mirror_host        = "${local.account}.dkr.ecr.${var.region}.${data.aws_partition.current.dns_suffix}/${var.mirror_repository_prefix}"
    }
  }
}

output "aws_user_data_template" {
  description = "config key `clouds.aws.settings.user_data_template`"
  value       = var.user_data_template
}

output "aws_harbor_host" {
  description = "config key `clouds.aws.settings.harbor_host`"
  value       = var.harbor_host
}

output "aws_template_vars" {
  description = "config key `clouds.aws.settings.template_vars`"
  value       = var.template_vars
}

output "offer_regions" {
  description = "config key `offers.regions` (this region; merged with the other landing zones')"
  value       = [var.region]
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

output "aws_mirror_targets" {
  description = "config key `mirror.targets` (this region's entry, aws:<region>)"
  value = {
    "aws:${var.region}" = {
      kind              = "ecr"
      account_id        = local.account
      repository_prefix = var.mirror_repository_prefix
    }
  }
}
