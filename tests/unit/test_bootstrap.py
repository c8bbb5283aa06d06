"""providers/bootstrap.py is cloud-neutral: the same templates and variables serve any cloud."""

from __future__ import annotations

import pytest

from burst.domain import LaunchSpec, Market, Offer, Purpose
from burst.errors import ConfigError
from providers.bootstrap import (
    USER_DATA_VARIABLES,
    containerd_hosts_toml,
    containerd_mirror_url,
    load_template,
    node_variables,
    render_user_data,
)

AZURE_OFFER = Offer("azure", "Standard_ND96asr_v4", "eastus", "", "A100", 8, 40.0, 27.2, Market.SPOT)


def _spec(gang: str = "") -> LaunchSpec:
    return LaunchSpec("b-00aa11", AZURE_OFFER, Purpose.OVERFLOW, {}, gang_id=gang)


def test_node_variables_name_every_documented_variable_for_a_non_aws_cloud() -> None:
    got = node_variables(
        _spec("g1"), cluster="c1", provider="azure", node_name="burst-b-00aa11", harbor_host="harbor.example.org",
        mirror_host="burstmirror.azurecr.io/burst",
    )
    assert set(got) == set(USER_DATA_VARIABLES)
    assert got["provider"] == "azure" and got["region"] == "eastus" and got["zone"] == ""
    assert got["gpu_gres_type"] == "a100" and got["market"] == "spot" and got["gang_id"] == "g1"
    assert got["mirror_auth"] == "acr" and got["mirror_registry"] == "burstmirror.azurecr.io"
    assert (got["mirror_url"], got["mirror_override_path"]) == ("https://burstmirror.azurecr.io/v2/burst", "true")


@pytest.mark.parametrize("name", ["builtin:slurm", "builtin:k8s"])
def test_builtin_templates_render_for_azure(name: str) -> None:
    variables = node_variables(
        _spec(), cluster="c1", provider="azure", node_name="burst-b-00aa11", harbor_host="harbor.example.org",
        mirror_host="burstmirror.azurecr.io",
    )
    extra = {"slurmctld_host": "ctld:6817", "munge_key_ssm_param": "", "k8s_api_endpoint": "10.0.0.1:6443",
             "k8s_ca_cert_hash": "sha256:ab", "bootstrap_token_ssm_param": ""}
    text = render_user_data(load_template(name), {**extra, **variables})
    assert "# @include" not in text  # the shared containerd block was spliced in
    assert "burstmirror.azurecr.io" in text and "b-00aa11" in text


def test_errors_name_the_setting_they_came_from() -> None:
    with pytest.raises(ConfigError) as ei:
        render_user_data("echo $nope", {}, where="azure.user_data_template")
    assert ei.value.where == "azure.user_data_template"
    with pytest.raises(ConfigError) as ei:
        load_template("/no/such/template.sh", where="azure.user_data_template")
    assert ei.value.where == "azure.user_data_template"


def test_one_mirror_url_rule_for_hosts_toml_and_user_data() -> None:
    url, override = containerd_mirror_url("mirror.example.org:5000/burst", insecure=True)
    toml = containerd_hosts_toml("harbor.example.org", "mirror.example.org:5000/burst", mirror_insecure=True)
    assert (url, override) == ("http://mirror.example.org:5000/v2/burst", True)
    assert f'[host."{url}"]' in toml and "override_path = true" in toml
