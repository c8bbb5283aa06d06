terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.40, < 7.0"
    }
  }
}

provider "aws" {
  region = var.region
  default_tags {
    tags = merge(var.tags, { "burst:cluster" = var.cluster })
  }
}

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
