"""The controller's cloud permissions are exactly what the provider code calls: no grant missing
(a launch would fail with AccessDenied in production only) and none to spare (least privilege).

The calls are derived from the source (tests/terraform/sdk_calls.py), the grants from the
``.tf`` files (python-hcl2), so a new SDK call or a stale grant fails here.
"""

from __future__ import annotations

from typing import Any

from tests.terraform.hcl import local_values, strings_under, typed_blocks
from tests.terraform.sdk_calls import ROOT, SdkCall, azure_calls, boto3_calls, iam_action, string_constants

AWS_PY = ROOT / "providers" / "aws.py"
ECR_PY = ROOT / "providers" / "ecr.py"

# Permissions AWS checks in addition to an operation's own action, because of a request
# parameter. Each applies only if the parameter appears in the provider's source.
AWS_IMPLIED = {
    # RunInstances / CreatePlacementGroup with TagSpecifications also authorise ec2:CreateTags
    "TagSpecifications": {"ec2:CreateTags"},
    # RunInstances with an instance profile passes its role to EC2
    "IamInstanceProfile": {"iam:PassRole"},
}
ECR_IMPLIED = {
    # CreateRepository with tags also authorises ecr:TagResource
    "tags": {"ecr:TagResource"},
}
# The registry protocol (/v2/) that providers/oci.py speaks to push into ECR: no boto3 call, so
# no AST to read; ECR authorises each request as the action named here.
ECR_PUSH_PROTOCOL = {
    "ecr:BatchCheckLayerAvailability",  # HEAD /v2/<repo>/blobs/<digest>
    "ecr:BatchGetImage",  # HEAD /v2/<repo>/manifests/<ref>
    "ecr:InitiateLayerUpload",  # POST /v2/<repo>/blobs/uploads/
    "ecr:UploadLayerPart",  # PATCH <upload>
    "ecr:CompleteLayerUpload",  # PUT <upload>?digest=
    "ecr:GetDownloadUrlForLayer",  # POST ...?mount=&from= (blob mount between mirrored repositories)
    "ecr:PutImage",  # PUT /v2/<repo>/manifests/<ref>
}


# The node: what the shipped user data runs (`aws <service> <command>` in providers/templates/),
# what containerd asks ECR for when it pulls, and reading tags (issue 14).
TEMPLATES = ROOT / "providers" / "templates"
CLI_CUSTOMISATIONS = {("ecr", "get-login-password"): "ecr:GetAuthorizationToken"}
ECR_PULL_PROTOCOL = {"ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"}  # GET manifest, GET blob
NODE_READS_TAGS = {"ec2:DescribeTags"}


def _template_actions() -> set[str]:
    import re

    found: set[str] = set()
    for path in sorted(TEMPLATES.glob("*.sh")):
        for service, command in re.findall(r"\baws ([a-z0-9-]+) ([a-z][a-z-]+)", path.read_text()):
            if (service, command) in CLI_CUSTOMISATIONS:
                found.add(CLI_CUSTOMISATIONS[(service, command)])
            else:
                found.add(iam_action(SdkCall(service, command.replace("-", "_"), 0)))
    return found


def _policy_actions(module: str, document: str) -> set[str]:
    docs = dict(typed_blocks(module, "data", "aws_iam_policy_document"))
    assert document in docs, f"terraform/{module}: no aws_iam_policy_document {document!r}"
    return set(strings_under(docs[document], "actions"))


def _derived(calls: list[SdkCall], source_strings: set[str], implied: dict[str, set[str]]) -> set[str]:
    actions = {iam_action(c) for c in calls}
    for parameter, extra in implied.items():
        if parameter in source_strings:
            actions |= extra
    return actions


def test_aws_controller_policy_is_exactly_what_providers_aws_calls() -> None:
    calls = boto3_calls(AWS_PY)
    assert len(calls) >= 10, "the AST walk found too few calls: the walker no longer understands providers/aws.py"
    derived = _derived(calls, string_constants(AWS_PY), AWS_IMPLIED)
    granted = _policy_actions("aws", "controller")
    assert granted == derived, (
        f"granted but never called: {sorted(granted - derived)}; called but not granted: {sorted(derived - granted)}"
    )


def test_aws_mirror_policy_is_exactly_what_the_mirror_calls() -> None:
    calls = boto3_calls(ECR_PY, default_service="ecr")
    derived = _derived(calls, string_constants(ECR_PY), ECR_IMPLIED) | ECR_PUSH_PROTOCOL
    granted = _policy_actions("aws", "mirror")
    assert granted == derived, (
        f"granted but never called: {sorted(granted - derived)}; called but not granted: {sorted(derived - granted)}"
    )


def test_aws_node_policy_is_exactly_what_a_node_does() -> None:
    derived = _template_actions()
    assert "ssm:GetParameter" in derived and "ecr:GetAuthorizationToken" in derived, derived
    derived |= ECR_PULL_PROTOCOL | NODE_READS_TAGS
    granted = _policy_actions("aws", "node")
    assert granted == derived, (
        f"granted but never used: {sorted(granted - derived)}; used but not granted: {sorted(derived - granted)}"
    )


def test_aws_launch_and_terminate_are_confined_to_the_cluster_tag() -> None:
    """RunInstances on instances and volumes needs aws:RequestTag/burst:cluster; TerminateInstances
    needs ec2:ResourceTag/burst:cluster; no statement grants either on '*'."""
    docs = dict(typed_blocks("aws", "data", "aws_iam_policy_document"))
    statements = docs["controller"]["statement"]
    for st in statements:
        actions = set(st.get("actions", []))
        resources = st.get("resources", [])
        variables = {c["variable"] for c in st.get("condition", [])}
        if actions & {"ec2:RunInstances", "ec2:TerminateInstances", "ec2:CreateTags", "ec2:CreatePlacementGroup"}:
            assert resources != ["*"], st["sid"]
        if "ec2:TerminateInstances" in actions:
            assert "ec2:ResourceTag/${local.cluster_tag}" in variables, st["sid"]
        if "ec2:RunInstances" in actions and any(r.endswith((":instance/*", ":volume/*")) for r in resources):
            assert "aws:RequestTag/${local.cluster_tag}" in variables, st["sid"]
    assert local_values("aws")["cluster_tag"] == "burst:cluster"


# ---- Azure ------------------------------------------------------------------------------------

AZURE_MODULES = sorted((ROOT / "providers").glob("azure*.py"))  # azure.py and the modules split from it

# azure-mgmt-compute operation -> the ARM action it is authorised as (Azure's resource provider
# operations list). A call missing here fails the test: add it, and grant it in identity.tf.
AZURE_OPERATIONS = {
    ("virtual_machines", "get"): "Microsoft.Compute/virtualMachines/read",
    ("virtual_machines", "list"): "Microsoft.Compute/virtualMachines/read",
    ("virtual_machines", "begin_create_or_update"): "Microsoft.Compute/virtualMachines/write",
    ("virtual_machines", "begin_delete"): "Microsoft.Compute/virtualMachines/delete",
    ("proximity_placement_groups", "create_or_update"): "Microsoft.Compute/proximityPlacementGroups/write",
    ("resource_skus", "list"): "Microsoft.Compute/skus/read",
    ("usage", "list"): "Microsoft.Compute/locations/usages/read",
    ("virtual_machine_images", "list"): "Microsoft.Compute/locations/publishers/artifacttypes/offers/skus/versions/read",
}
# The provider's raw ARM GETs (``self._raw_get(<path>, ...)``), by the source of the path argument.
AZURE_RAW_GETS = {
    "sub": {"Microsoft.Resources/subscriptions/read"},
    "f'{sub}/resourceGroups/{s.resource_group}'": {"Microsoft.Resources/subscriptions/resourceGroups/read"},
    "cfg.subnet_id": {"Microsoft.Network/virtualNetworks/subnets/read"},
    "nic_id": {"Microsoft.Network/networkInterfaces/read"},  # the VM-managed NIC's private IP
    "s.node_identity_id": {"Microsoft.ManagedIdentity/userAssignedIdentities/read"},  # `burst run` checks it
    # an image resource id: a gallery image version or a managed image
    "image": {"Microsoft.Compute/galleries/images/versions/read", "Microsoft.Compute/images/read"},
}
# Authorised in addition to virtualMachines/write because of what the VM body asks for.
AZURE_IMPLIED = {
    # the VM-managed NIC (no azure-mgmt-network): created with the VM, in the configured subnet
    "networkInterfaceConfigurations": {
        "Microsoft.Network/networkInterfaces/write",
        "Microsoft.Network/virtualNetworks/subnets/join/action",
    },
    "osDisk": {"Microsoft.Compute/disks/write"},
    # the node identity attached to the VM (body ``identity.userAssignedIdentities``)
    "userAssignedIdentities": {"Microsoft.ManagedIdentity/userAssignedIdentities/assign/action"},
    # NIC and OS disk go with the VM's delete
    "deleteOption": {"Microsoft.Network/networkInterfaces/delete", "Microsoft.Compute/disks/delete"},
}
# ARM serves these at subscription scope only, so they sit in the read-only catalogue role.
AZURE_SUBSCRIPTION_SCOPE = {
    "Microsoft.Compute/skus/read",
    "Microsoft.Compute/locations/usages/read",
    "Microsoft.Compute/locations/publishers/artifacttypes/offers/skus/versions/read",
    "Microsoft.Resources/subscriptions/read",
    "Microsoft.Compute/galleries/images/versions/read",
    "Microsoft.Compute/images/read",
}


def _azure_derived() -> set[str]:
    from azure.mgmt.compute import ComputeManagementClient

    client = ComputeManagementClient(credential=object(), subscription_id="00000000-0000-0000-0000-000000000000")  # type: ignore[arg-type]
    actions: set[str] = set()
    calls = [c for path in AZURE_MODULES for c in azure_calls(path)]
    assert len(calls) >= 8, "the AST walk found too few calls: the walker no longer understands providers/azure.py"
    for call in calls:
        if call.group == "GET":
            assert call.method in AZURE_RAW_GETS, f"azure.py:{call.line}: raw GET of {call.method} has no entry in AZURE_RAW_GETS"
            actions |= AZURE_RAW_GETS[call.method]
            continue
        assert call.group, f"azure.py:{call.line}: {call.method} on the compute client itself is not an operation"
        assert hasattr(getattr(client, call.group, None), call.method), (
            f"azure.py:{call.line}: {call.group}.{call.method} is not an azure-mgmt-compute operation"
        )
        key = (call.group, call.method)
        assert key in AZURE_OPERATIONS, f"azure.py:{call.line}: {call.group}.{call.method} has no entry in AZURE_OPERATIONS"
        actions.add(AZURE_OPERATIONS[key])
    strings = set().union(*(string_constants(path) for path in AZURE_MODULES))
    for body_key, extra in AZURE_IMPLIED.items():
        if body_key in strings:
            actions |= extra
    return actions


def _role_actions(name: str) -> tuple[set[str], Any]:
    roles = dict(typed_blocks("azure", "resource", "azurerm_role_definition"))
    assert name in roles, f"terraform/azure: no azurerm_role_definition {name!r}"
    return set(strings_under(roles[name], "actions")), roles[name]


def test_azure_controller_roles_are_exactly_what_providers_azure_calls() -> None:
    derived = _azure_derived()
    rg_actions, _ = _role_actions("controller")
    sub_actions, _ = _role_actions("controller_catalog")
    granted = rg_actions | sub_actions
    assert granted == derived, (
        f"granted but never called: {sorted(granted - derived)}; called but not granted: {sorted(derived - granted)}"
    )
    assert not rg_actions & sub_actions


def test_azure_roles_scopes() -> None:
    """The VM role is assignable in the resource group only; the subscription-wide role only reads."""
    rg_actions, rg_role = _role_actions("controller")
    sub_actions, sub_role = _role_actions("controller_catalog")
    assert rg_role["assignable_scopes"] == ["${local.rg_id}"]
    assert rg_role["scope"] == "${local.rg_id}"
    assert sub_actions == AZURE_SUBSCRIPTION_SCOPE
    assert all(a.endswith("/read") for a in sub_actions)
    assert not rg_actions & AZURE_SUBSCRIPTION_SCOPE


def test_azure_node_identity_may_only_pull_and_read_its_join_secret() -> None:
    assignments = dict(typed_blocks("azure", "resource", "azurerm_role_assignment"))
    node = {n: a for n, a in assignments.items() if a["principal_id"] == "${local.node_identity_principal}"}
    roles = {(a["role_definition_name"], a["scope"], a.get("for_each")) for a in node.values()}
    assert roles == {
        ("AcrPull", "${azurerm_container_registry.mirror.id}", None),
        ("Key Vault Secrets User", "${each.value}", "${toset(var.node_secret_ids)}"),
    }
