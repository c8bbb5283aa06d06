"""The shipped user-data templates: rendered with a real spec, checked for the parts that matter."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from burst.domain import Market
from burst.errors import ConfigError
from providers.aws import AwsProvider, AwsSettings
from providers.bootstrap import USER_DATA_VARIABLES, load_template, render_user_data
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


# ---- the registry mirror block: hosts.toml and the token refresher, executed for real ------------


def heredoc(text: str, opener: str, end: str) -> str:
    """The body of the heredoc that starts on the line ending with ``opener``."""
    return text.split(opener + "\n", 1)[1].split("\n" + end + "\n", 1)[0] + "\n"


def prefixed(aws_settings: Callable[..., AwsSettings], template: str, mirror_host: str) -> str:
    settings = aws_settings(user_data_template=template, template_vars=SLURM_VARS if "slurm" in template else K8S_VARS,
                            east={"mirror_host": mirror_host})
    spec = make_spec("b-0123abcd", make_offer("p5.48xlarge", zone="use1-az2", gpu_model="H100"))
    return AwsProvider(settings, cluster=CLUSTER).render_user_data(spec)


@pytest.mark.parametrize("template", ["builtin:slurm", "builtin:k8s"])
def test_mirror_with_repository_prefix_uses_the_v2_api_root(
    aws_settings: Callable[..., AwsSettings], template: str
) -> None:
    import tomllib

    text = prefixed(aws_settings, template, "123456789012.dkr.ecr.us-east-1.amazonaws.com/burst")
    bash_syntax_ok(text)
    hosts = tomllib.loads(heredoc(text, "cat > /etc/burst/hosts.toml.base <<'TOML'", "TOML"))
    assert hosts["server"] == "https://harbor.example.org"
    mirror = hosts["host"]["https://123456789012.dkr.ecr.us-east-1.amazonaws.com/v2/burst"]
    assert mirror == {"capabilities": ["pull", "resolve"], "override_path": True}
    assert "MIRROR_AUTH=ecr\n" in text


def test_no_mirror_configured_skips_the_block(aws_settings: Callable[..., AwsSettings]) -> None:
    text = prefixed(aws_settings, "builtin:slurm", "")
    bash_syntax_ok(text)
    assert 'MIRROR_REGISTRY=""' in text and "MIRROR_AUTH=none\n" in text
    assert 'if [ -n "${MIRROR_REGISTRY}" ]; then' in text  # the whole mirror block is skipped


def run_refresher(text: str, tmp: Path, env: dict[str, str]) -> tuple[dict[str, Any], subprocess.CompletedProcess[str]]:
    """Run the rendered burst-mirror-auth script against files under ``tmp``."""
    import os
    import tomllib

    script = tmp / "burst-mirror-auth"
    script.write_text(heredoc(text, "cat > /usr/local/sbin/burst-mirror-auth <<'SH'", "SH"))
    base = tmp / "hosts.toml.base"
    base.write_text(heredoc(text, "cat > /etc/burst/hosts.toml.base <<'TOML'", "TOML"))
    env_text = heredoc(text, "cat > /etc/burst/mirror-auth.env <<'ENV'", "ENV")
    env_text = env_text.replace("HOSTS_BASE=/etc/burst/hosts.toml.base", f"HOSTS_BASE={base}")
    env_text = "\n".join(
        f"HOSTS_FILE={tmp / 'hosts.toml'}" if line.startswith("HOSTS_FILE=") else line for line in env_text.splitlines()
    )
    (tmp / "mirror-auth.env").write_text(env_text + "\n")
    proc = subprocess.run(
        ["bash", str(script)],
        env={**os.environ, "BURST_MIRROR_AUTH_ENV": str(tmp / "mirror-auth.env"), **env},
        capture_output=True, text=True, timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    out = tmp / "hosts.toml"
    assert out.stat().st_mode & 0o777 == 0o600, "the token file must be root-only"
    return tomllib.loads(out.read_text()), proc


def test_ecr_token_refresher_writes_the_authorization_header(
    aws_settings: Callable[..., AwsSettings], tmp_path: Path
) -> None:
    import base64

    text = prefixed(aws_settings, "builtin:k8s", "123456789012.dkr.ecr.us-east-1.amazonaws.com/burst")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # a stand-in for the AWS CLI: checks its arguments, prints a password as the real one does
    fake_aws = bin_dir / "aws"
    fake_aws.write_text('#!/bin/bash\n[ "$*" = "ecr get-login-password --region us-east-1" ] || exit 3\necho s3cr3t-ecr\n')
    fake_aws.chmod(0o755)
    import os

    hosts, proc = run_refresher(text, tmp_path, {"PATH": f"{bin_dir}:{os.environ['PATH']}"})
    url = "https://123456789012.dkr.ecr.us-east-1.amazonaws.com/v2/burst"
    header = hosts["host"][url]["header"]["Authorization"]
    assert header == "Basic " + base64.b64encode(b"AWS:s3cr3t-ecr").decode()
    assert hosts["host"][url]["override_path"] is True and hosts["server"] == "https://harbor.example.org"
    assert "s3cr3t" not in proc.stdout + proc.stderr


def test_acr_token_refresher_exchanges_the_managed_identity_token(
    aws_settings: Callable[..., AwsSettings], tmp_path: Path
) -> None:
    import base64
    import json
    import threading
    import urllib.parse
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen: list[tuple[str, str, dict[str, list[str]]]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a: Any) -> None:
            pass

        def _send(self, doc: dict[str, str]) -> None:
            body = json.dumps(doc).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # IMDS
            seen.append(("GET", self.path, {"Metadata": [self.headers.get("Metadata", "")]}))
            self._send({"access_token": "aad-token-123"})

        def do_POST(self) -> None:  # ACR /oauth2/exchange
            form = urllib.parse.parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
            seen.append(("POST", self.path, form))
            self._send({"refresh_token": "acr-refresh-456"})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base_url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        text = prefixed(aws_settings, "builtin:slurm", "burstmirror.azurecr.io")
        assert "MIRROR_AUTH=acr\n" in text
        hosts, proc = run_refresher(text, tmp_path, {"IMDS": base_url, "ACR_EXCHANGE_URL": f"{base_url}/oauth2/exchange"})
    finally:
        server.shutdown()
    imds, exchange = seen
    assert imds[0] == "GET" and imds[1].startswith("/metadata/identity/oauth2/token?") and imds[2]["Metadata"] == ["true"]
    assert exchange[1] == "/oauth2/exchange"
    assert exchange[2] == {"grant_type": ["access_token"], "service": ["burstmirror.azurecr.io"], "access_token": ["aad-token-123"]}
    header = hosts["host"]["https://burstmirror.azurecr.io"]["header"]["Authorization"]
    assert header == "Basic " + base64.b64encode(b"00000000-0000-0000-0000-000000000000:acr-refresh-456").decode()
    assert "acr-refresh" not in proc.stdout + proc.stderr


@pytest.mark.parametrize("gang", ["", "g-0123456789abcdef"])
def test_k8s_gang_member_registers_with_the_gang_taint(
    aws_settings: Callable[..., AwsSettings], tmp_path: Path, gang: str
) -> None:
    import yaml

    provider = AwsProvider(aws_settings(user_data_template="builtin:k8s", template_vars=K8S_VARS), cluster=CLUSTER)
    spec = make_spec("b-0123abcd", make_offer("p5.48xlarge", zone="use1-az2", gpu_model="H100"), gang_id=gang)
    text = provider.render_user_data(spec)
    bash_syntax_ok(text)
    # run the part that writes the JoinConfiguration, into a temporary directory
    part = text.split("# ---- kubeadm join", 1)[1].split("\n", 1)[1].split("kubeadm join --config", 1)[0]
    part = part.replace("/etc/burst", str(tmp_path))
    subprocess.run(["bash", "-euc", 'BOOTSTRAP_TOKEN=x\n' + part], check=True)
    conf = yaml.safe_load((tmp_path / "kubeadm-join.yaml").read_text())
    taints = conf["nodeRegistration"]["taints"]
    want = [{"key": "burst.dev/cloud", "value": "true", "effect": "NoSchedule"}]
    if gang:
        want.append({"key": "burst.dev/gang", "value": gang, "effect": "NoSchedule"})
    assert taints == want
