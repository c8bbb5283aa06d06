"""The builtin Slurm user data starts the node agent on spot instances."""

from __future__ import annotations

import subprocess

import pytest

from burst.domain import LaunchSpec, Market, Offer, Purpose
from providers.bootstrap import load_template, node_variables, render_user_data

EXTRA = {"slurmctld_host": "ctld:6817", "munge_key_ssm_param": "/burst/munge", "munge_key_secret_url": ""}


@pytest.mark.parametrize("cloud", ["aws", "azure"])
def test_slurm_user_data_starts_the_agent_for_spot(cloud: str) -> None:
    offer = Offer(cloud, "x8", "r1", "", "A100", 8, 40.0, 10.0, Market.SPOT)
    spec = LaunchSpec("b-00aa11", offer, Purpose.OVERFLOW, {})
    variables = node_variables(spec, cluster="c1", provider=cloud, node_name="b-00aa11", harbor_host="harbor.example.org",
                               mirror_host="")
    text = render_user_data(load_template("builtin:slurm", cloud=cloud), {**EXTRA, **variables})
    assert f"python3 -m burst.agent --cloud {cloud} --node b-00aa11 --resource b-00aa11" in text
    assert 'if [ "spot" = "spot" ]' in text and "systemctl enable --now burst-agent" in text
    assert text.index("enable --now slurmd") < text.index("burst-agent.service")
    subprocess.run(["bash", "-n"], input=text, text=True, check=True)
