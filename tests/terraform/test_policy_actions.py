"""The controller's cloud permissions are exactly what the provider code calls: no grant missing
(a launch would fail with AccessDenied in production only) and none to spare (least privilege).

The calls are derived from the source (tests/terraform/sdk_calls.py), the grants from the
``.tf`` files (python-hcl2), so a new SDK call or a stale grant fails here.
"""

from __future__ import annotations

import pytest

from tests.terraform.hcl import local_values, strings_under, typed_blocks
from tests.terraform.sdk_calls import ROOT, SdkCall, boto3_calls, iam_action, string_constants

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
