"""The shipped user-data templates: rendered with a real spec, checked for the parts that matter."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable

import pytest

from burst.domain import Market
from burst.errors import ConfigError
from providers.aws import USER_DATA_VARIABLES, AwsProvider, AwsSettings, load_template, render_user_data
from tests.aws.helpers import CLUSTER, make_offer, make_spec

K8S_VARS = {"k8s_api_endpoint": "10.0.0.10:6443", "k8s_ca_cert_hash": "sha256:abc123", "bootstrap_token_ssm_param": ""}
SLURM_VARS = {"slurmctld_host": "ctld.example.org:6817", "munge_key_ssm_param": "/burst/munge"}


def rendered(aws_settings: Callable[..., AwsSettings], template: str, extra: dict[str, str]) -> str:
    provider = AwsProvider(aws_settings(user_data_template=template, template_vars=extra), cluster=CLUSTER)
    spec = make_spec("b-0123abcd", make_offer("p5.48xlarge", zone="use1-az2", gpu_model="H100", market=Market.SPOT))
    return provider.render_user_data(spec)


def bash_syntax_ok(text: str) -> None:
    if shutil.which("bash"):
        subprocess.run(["bash", "-n"], input=text.encode(), check=True)


def test_slurm_template(aws_settings: Callable[..., AwsSettings]) -> None:
    text = rendered(aws_settings, "builtin:slurm", SLURM_VARS)
    bash_syntax_ok(text)
    assert "/usr/sbin/slurmd -D -s -Z -N b-0123abcd --conf-server ctld.example.org:6817" in text
    assert 'Feature=cloud,aws,us-east-1' in text
    assert "Gres=gpu:h100:8" in text
    # containerd: Harbor pulls go through this region's mirror
    assert "/etc/containerd/certs.d/${HARBOR_HOST}/hosts.toml" in text
    assert 'HARBOR_HOST="harbor.example.org"' in text
    assert 'server = "https://harbor.example.org"' in text
    assert '[host."https://123456789012.dkr.ecr.us-east-1.amazonaws.com"]' in text
    assert 'capabilities = ["pull", "resolve"]' in text
    assert 'MUNGE_KEY_SSM_PARAM="/burst/munge"' in text


def test_k8s_template(aws_settings: Callable[..., AwsSettings]) -> None:
    text = rendered(aws_settings, "builtin:k8s", K8S_VARS)
    bash_syntax_ok(text)
    assert "kubeadm join --config /etc/burst/kubeadm-join.yaml" in text
    assert 'apiServerEndpoint: "10.0.0.10:6443"' in text
    assert 'caCertHashes: ["sha256:abc123"]' in text
    assert 'BOOTSTRAP_TOKEN="__BURST_BOOTSTRAP_TOKEN__"' in text  # placeholder, never a real token
    assert 'token: "${BOOTSTRAP_TOKEN}"' in text
    assert "key: burst.dev/cloud" in text and 'value: "true"' in text and "effect: NoSchedule" in text
    labels = text.split('node-labels: "', 1)[1].split('"', 1)[0].split(",")
    assert {
        "burst.dev/provider=aws",
        "burst.dev/region=us-east-1",
        "burst.dev/instance-type=p5.48xlarge",
        "burst.dev/gpu-model=H100",
        "burst.dev/instance-id=b-0123abcd",
        "topology.kubernetes.io/region=us-east-1",
        "node.kubernetes.io/instance-type=p5.48xlarge",
    } <= set(labels)
    assert 'server = "https://harbor.example.org"' in text
    assert '[host."https://123456789012.dkr.ecr.us-east-1.amazonaws.com"]' in text


@pytest.mark.parametrize("name", ["builtin:slurm", "builtin:k8s"])
def test_templates_use_only_documented_variables(name: str) -> None:
    extra = SLURM_VARS if name.endswith("slurm") else K8S_VARS
    render_user_data(load_template(name), {**{k: "x" for k in USER_DATA_VARIABLES}, **extra})
    with pytest.raises(ConfigError, match=r"\$"):
        render_user_data(load_template(name), {k: "x" for k in USER_DATA_VARIABLES})  # template_vars missing


def test_unsafe_values_are_refused() -> None:
    with pytest.raises(ConfigError, match="unsafe"):
        render_user_data("echo $cluster", {"cluster": "a$(reboot)"})
    with pytest.raises(ConfigError, match=r"\$\$"):
        render_user_data("echo $ 1", {})


def test_template_from_file(tmp_path: object, aws_settings: Callable[..., AwsSettings]) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "ud.sh"
    path.write_text("#!/bin/sh\necho $node_name $gpus $$HOME\n")
    text = rendered(aws_settings, str(path), {})
    assert text == "#!/bin/sh\necho b-0123abcd 8 $HOME\n"
