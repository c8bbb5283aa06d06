"""The network claims of the READMEs, checked on the parsed ``.tf`` files: nothing reaches burst
nodes but the on-prem ranges (scheduler ports) and the nodes themselves, and no node subnet hands
out public addresses or default internet access."""

from __future__ import annotations

from typing import Any

from tests.terraform.hcl import typed_blocks

NODE_SG = "${aws_security_group.node.id}"


def _all(module: str, kind: str, rtype: str) -> dict[str, Any]:
    return dict(typed_blocks(module, kind, rtype))


def test_aws_node_ingress_only_from_onprem_or_peers() -> None:
    rules = _all("aws", "resource", "aws_vpc_security_group_ingress_rule")
    node_rules = {n: r for n, r in rules.items() if r["security_group_id"] == NODE_SG}
    assert set(node_rules) == {"scheduler", "peers"}
    scheduler = node_rules["scheduler"]
    assert "var.onprem_cidrs" in scheduler["for_each"] and "var.scheduler_ports" in scheduler["for_each"]
    assert scheduler["cidr_ipv4"] == "${each.value.cidr}"
    assert node_rules["peers"]["referenced_security_group_id"] == NODE_SG
    for name, rule in rules.items():
        assert rule.get("cidr_ipv4") not in ("0.0.0.0/0",), name
        assert "cidr_ipv6" not in rule, name


def test_aws_no_subnet_gives_public_addresses() -> None:
    for name, subnet in _all("aws", "resource", "aws_subnet").items():
        assert subnet.get("map_public_ip_on_launch") is False, name


def test_aws_endpoints_cover_what_nodes_call() -> None:
    """ECR (token, manifests), EC2 (tags), SSM (join secret) by interface; S3 (layers) by gateway."""
    from tests.terraform.hcl import local_values

    assert "ecr.api" in local_values("aws")["interface_endpoints"]
    for service in ("ecr.dkr", "ec2", "ssm"):
        assert f'"{service}"' in local_values("aws")["interface_endpoints"]
    s3 = _all("aws", "resource", "aws_vpc_endpoint")["s3"]
    assert s3["vpc_endpoint_type"] == "Gateway"


def test_azure_nsg_admits_only_onprem_scheduler_and_peers_and_denies_the_rest() -> None:
    rules = _all("azure", "resource", "azurerm_network_security_rule")
    allows = {n: r for n, r in rules.items() if r["access"] == "Allow" and r["direction"] == "Inbound"}
    denies = {n: r for n, r in rules.items() if r["access"] == "Deny" and r["direction"] == "Inbound"}
    for name, rule in allows.items():
        sources = rule.get("source_address_prefixes") or rule.get("source_address_prefix")
        assert sources in ("${var.onprem_cidrs}", "${local.node_cidr}"), (name, sources)
        if sources == "${var.onprem_cidrs}":
            # from on-prem: the scheduler's ports to nodes, or HTTPS to the registry endpoint only
            assert rule["destination_port_range"] in ("${each.value.ports}", "443"), name
    (deny,) = denies.values()
    assert deny["source_address_prefix"] == "*" and deny["destination_port_range"] == "*"
    assert deny["priority"] == 4000
    fixed = [r["priority"] for r in allows.values() if isinstance(r["priority"], int)]
    assert fixed and max(fixed) < deny["priority"]


def test_azure_scheduler_rule_priorities_stay_below_the_fixed_rules() -> None:
    rules = _all("azure", "resource", "azurerm_network_security_rule")
    assert "priority = 100 + i" in rules["scheduler"]["for_each"].replace("${", "")
    from tests.terraform.hcl import blocks

    ports = dict(blocks("azure", "variable"))["scheduler_ports"]
    conditions = " ".join(v["condition"] for v in ports.get("validation", []))
    assert "length(var.scheduler_ports) <= 99" in conditions


def test_azure_subnets_have_no_default_internet() -> None:
    subnets = _all("azure", "resource", "azurerm_subnet")
    for name in ("nodes", "endpoints"):
        assert subnets[name]["default_outbound_access_enabled"] is False, name


def test_azure_registry_is_private() -> None:
    acr = _all("azure", "resource", "azurerm_container_registry")["mirror"]
    assert acr["public_network_access_enabled"] is False
    assert acr["admin_enabled"] is False
    assert acr["anonymous_pull_enabled"] is False


def test_aws_default_security_group_is_emptied() -> None:
    (locked,) = _all("aws", "resource", "aws_default_security_group").values()
    assert "ingress" not in locked and "egress" not in locked


def test_aws_internet_path_only_with_nat() -> None:
    """egress = "endpoints": no internet gateway, NAT gateway or 0.0.0.0/0 route exists."""
    for rtype in ("aws_internet_gateway", "aws_nat_gateway", "aws_eip", "aws_route"):
        for name, res in _all("aws", "resource", rtype).items():
            assert res.get("count") == "${local.nat ? 1 : 0}", (rtype, name)
    public_rt = _all("aws", "resource", "aws_route_table")["public"]
    assert public_rt["count"] == "${local.nat ? 1 : 0}"
    from tests.terraform.hcl import local_values

    assert local_values("aws")["nat"] == '${var.egress == "nat"}'
