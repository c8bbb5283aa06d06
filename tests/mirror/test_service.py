"""MirrorService, prewarm, containerd hosts.toml and the `burst mirror` command."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from pydantic import ValidationError
from typer.testing import CliRunner

from burst.errors import MirrorError
from burst.mirror_cli import mirror_command
from burst.ports import Mirror
from burst.store.memory import MemoryStore
from providers.mirror_service import (
    MirrorConfigError,
    MirrorService,
    MirrorSettings,
    UnknownTarget,
    containerd_hosts_toml,
    prewarm,
)
from providers.oci import InvalidReference
from tests.mirror.conftest import HARBOR_SECRET, HARBOR_USER, TARGET_PASSWORD, TARGET_USER, Env, Sleeps
from tests.support.registry import inspect_digest

pytestmark = pytest.mark.registry


class Clock:
    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def now(self) -> float:
        return self.t


def settings_for(env: Env, key: str = "aws:us-test-1", **target: Any) -> MirrorSettings:
    return MirrorSettings.model_validate({
        "source": {"registry": env.harbor_proxy.host, "insecure": True,
                   "auth": {"method": "basic", "credentials": "harbor"}},
        "targets": {
            key: {"registry": env.target_proxy.host, "insecure": True, "repository_prefix": "burst",
                              "auth": {"method": "basic", "credentials": "target"}, **target},
        },
    })


@pytest.fixture
def environ(tmp_path: Path) -> dict[str, str]:
    secret = tmp_path / "target-password"
    secret.write_text(TARGET_PASSWORD + "\n")
    return {
        "BURST_REGISTRY_HARBOR_USERNAME": HARBOR_USER,
        "BURST_REGISTRY_HARBOR_PASSWORD": HARBOR_SECRET,
        "BURST_REGISTRY_TARGET_USERNAME": TARGET_USER,
        "BURST_REGISTRY_TARGET_PASSWORD_FILE": str(secret),
    }


@pytest.fixture
def service(env: Env, environ: dict[str, str], sleeps: Sleeps) -> Any:
    svc = MirrorService(settings_for(env), MemoryStore(), clock=Clock(), environ=environ, sleep=sleeps)
    yield svc
    svc.close()


def test_service_is_a_mirror(service: MirrorService) -> None:
    assert isinstance(service, Mirror)


def test_target_naming(env: Env, service: MirrorService) -> None:
    assert service.target_for("team/app:v1", "aws", "us-test-1") == f"{env.target_proxy.host}/burst/team/app:v1"
    d = "sha256:" + "a" * 64
    assert service.target_for(f"{env.harbor_proxy.host}/team/app@{d}", "aws", "us-test-1") == (
        f"{env.target_proxy.host}/burst/team/app@{d}"
    )
    with pytest.raises(UnknownTarget):
        service.target_for("team/app:v1", "azure", "westeurope")
    with pytest.raises(InvalidReference):
        service.target_for("Team/App::v1", "aws", "us-test-1")


def test_second_ensure_only_heads_the_source(env: Env, service: MirrorService) -> None:
    first = service.ensure("team/app:v1", "aws", "us-test-1")
    assert first.digest == env.images.app.digest and first.blobs_copied == 4
    rec = service.store.get_mirror("team/app:v1", first.target)
    assert rec is not None and rec.digest == first.digest and rec.at == 1_800_000_000.0
    assert inspect_digest(f"{env.target.host}/burst/team/app:v1", (TARGET_USER, TARGET_PASSWORD)) == first.digest

    env.target_proxy.reset()
    env.harbor_proxy.reset()
    again = service.ensure("team/app:v1", "aws", "us-test-1")
    assert again.digest == first.digest and again.bytes_uploaded == 0 and again.blobs_copied == 0
    assert env.target_proxy.blob_uploads() == 0
    assert env.target_proxy.seen == []
    assert [(s.method, s.status) for s in env.harbor_proxy.seen] == [("HEAD", 200)]


def test_stale_record_copies_again(env: Env, service: MirrorService) -> None:
    target = service.target_for("team/app:v2", "aws", "us-test-1")
    service.store.record_mirror("team/app:v2", target, "sha256:" + "0" * 64, now=1.0)
    res = service.ensure("team/app:v2", "aws", "us-test-1")
    assert res.digest == env.images.app2.digest
    rec = service.store.get_mirror("team/app:v2", target)
    assert rec is not None and rec.digest == env.images.app2.digest


def test_platform_filtered_target(env: Env, environ: dict[str, str], sleeps: Sleeps) -> None:
    svc = MirrorService(settings_for(env, platforms=["linux/amd64"], repository_prefix="amd64only"), MemoryStore(),
                        environ=environ, sleep=sleeps)
    try:
        a = svc.ensure("team/multi:v1", "aws", "us-test-1")
        assert a.digest != env.images.multi.digest
        env.target_proxy.reset()
        b = svc.ensure("team/multi:v1", "aws", "us-test-1")
        assert b.digest == a.digest and env.target_proxy.seen == []
    finally:
        svc.close()


def test_missing_credentials_is_a_config_error(env: Env, sleeps: Sleeps) -> None:
    svc = MirrorService(settings_for(env), MemoryStore(), environ={}, sleep=sleeps)
    with pytest.raises(MirrorConfigError, match="BURST_REGISTRY_"):
        svc.ensure("team/app:v1", "aws", "us-test-1")


def test_failures_are_mirror_errors(env: Env, service: MirrorService) -> None:
    with pytest.raises(MirrorError):
        service.ensure("team/does-not-exist:v1", "aws", "us-test-1")
    with pytest.raises(MirrorError):
        service.ensure("team/app:v1", "azure", "nowhere")


def test_prewarm_top_n(env: Env, service: MirrorService) -> None:
    uses = {"team/app:v1": 10, "team/missing:v1": 7, "team/multi:v1": 5, "team/app:v2": 1}
    results = prewarm(service, uses, ["aws:us-test-1"], top_n=3)
    assert [r.source for r in results] == ["team/app:v1", "team/multi:v1"]  # missing one logged, skipped
    assert service.store.get_mirror("team/app:v2", service.target_for("team/app:v2", "aws", "us-test-1")) is None
    assert len(service.prewarm(uses, top_n=1)) == 1


def test_ecr_kind_creates_the_repository(env: Env, environ: dict[str, str], sleeps: Sleeps, moto_url: str,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3

    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(k, "testing")
    httpx.post(f"{moto_url}/moto-api/reset")
    # ECR's control plane from moto; the data plane is the local registry (moto has none).
    svc = MirrorService(settings_for(env, "aws:us-east-2", kind="ecr", endpoint_url=moto_url, repository_prefix="ecr"),
                        MemoryStore(), environ=environ, sleep=sleeps)
    try:
        svc.ensure("team/app:v1", "aws", "us-east-2")
        svc.ensure("team/app:v2", "aws", "us-east-2")
    finally:
        svc.close()
    ecr = boto3.client("ecr", region_name="us-east-2", endpoint_url=moto_url)
    assert [r["repositoryName"] for r in ecr.describe_repositories()["repositories"]] == ["ecr/team/app"]


def test_settings_are_strict() -> None:
    with pytest.raises(ValidationError):
        MirrorSettings.model_validate({"source": {"registry": "h.example.com"}, "bogus": 1})
    with pytest.raises(ValidationError):
        MirrorSettings.model_validate({"source": {"registry": "h.example.com"}, "targets": {"us-east-1": {"registry": "x.io"}}})
    with pytest.raises(ValidationError):
        MirrorSettings.model_validate({"source": {"registry": "h.example.com"}, "targets": {"aws:us-east-1": {"kind": "ecr"}}})
    ok = MirrorSettings.model_validate(
        {"source": {"registry": "h.example.com"}, "targets": {"aws:us-east-1": {"kind": "ecr", "account_id": "123456789012"}}}
    )
    svc = MirrorService(ok, MemoryStore())
    assert svc.target_for("h.example.com/team/app:v1", "aws", "us-east-1") == (
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/burst/team/app:v1"
    )


def test_containerd_hosts_toml() -> None:
    text = containerd_hosts_toml("harbor.example.com", "123456789012.dkr.ecr.us-east-1.amazonaws.com/burst")
    doc = tomllib.loads(text)
    assert doc["server"] == "https://harbor.example.com"
    host = doc["host"]["https://123456789012.dkr.ecr.us-east-1.amazonaws.com/v2/burst"]
    assert host == {"capabilities": ["pull"], "override_path": True}
    plain = tomllib.loads(containerd_hosts_toml("harbor.example.com:8443", "mirror.local:5000", mirror_insecure=True,
                                                resolve_from_mirror=True))
    assert plain["host"]["http://mirror.local:5000"] == {"capabilities": ["pull", "resolve"]}
    with pytest.raises(ValueError):
        containerd_hosts_toml('evil"]\nserver="x', "m.io")


# ---- CLI ------------------------------------------------------------------------------------------


def cli() -> typer.Typer:
    app = typer.Typer()
    app.command("mirror")(mirror_command)

    @app.command("noop")
    def _noop() -> None:  # a second command keeps "mirror" a subcommand, as in burst/cli.py
        pass

    return app


def test_cli_help_renders() -> None:
    r = CliRunner().invoke(cli(), ["mirror", "--help"])
    assert r.exit_code == 0 and "--to" in r.output


def test_cli_bad_input_exits_2() -> None:
    r = CliRunner().invoke(cli(), ["mirror", "Not A Ref", "--to", "aws:us-east-1"])
    assert r.exit_code == 2
    assert r.output.strip().count("\n") == 0 and "burst mirror:" in r.output
    r = CliRunner().invoke(cli(), ["mirror", "harbor.example.com/team/app:v1", "--to", "aws:us-east-1"])
    assert r.exit_code == 2 and "no mirror target configured" in r.output


def test_cli_copies_with_json_result(env: Env, tmp_path: Path) -> None:
    env_vars = {
        f"BURST_REGISTRY_{env.harbor.host.replace('.', '_').replace(':', '_')}_USERNAME": HARBOR_USER,
        f"BURST_REGISTRY_{env.harbor.host.replace('.', '_').replace(':', '_')}_PASSWORD": HARBOR_SECRET,
        f"BURST_REGISTRY_{env.target.host.replace('.', '_').replace(':', '_')}_USERNAME": TARGET_USER,
        f"BURST_REGISTRY_{env.target.host.replace('.', '_').replace(':', '_')}_PASSWORD": TARGET_PASSWORD,
    }
    r = CliRunner().invoke(
        cli(), ["mirror", f"{env.harbor.host}/team/multi:v1", "--to", f"{env.target.host}/cli", "--insecure", "--json"],
        env=env_vars,
    )
    assert r.exit_code == 0, r.output
    out = json.loads(r.output.strip().splitlines()[-1])
    assert out["digest"] == env.images.multi.digest and out["target"] == f"{env.target.host}/cli/team/multi:v1"
    assert HARBOR_SECRET not in r.output and TARGET_PASSWORD not in r.output
    r = CliRunner().invoke(
        cli(), ["mirror", f"{env.harbor.host}/team/app:v1", "--to", env.target.host, "--insecure", "--progress"],
        env=env_vars,
    )
    assert r.exit_code == 0, r.output
    assert env.images.app.digest in r.output


def test_cli_with_config_file(env: Env, tmp_path: Path) -> None:
    cfg = tmp_path / "burst.yaml"
    cfg.write_text(json.dumps({"mirror": {
        "source": {"registry": env.harbor.host, "insecure": True, "auth": {"method": "basic", "credentials": "harbor"}},
        "targets": {"aws:us-test-1": {"registry": env.target.host, "insecure": True,
                                      "auth": {"method": "basic", "credentials": "target"}}},
    }}))
    env_vars = {"BURST_REGISTRY_HARBOR_USERNAME": HARBOR_USER, "BURST_REGISTRY_HARBOR_PASSWORD": HARBOR_SECRET,
                "BURST_REGISTRY_TARGET_USERNAME": TARGET_USER, "BURST_REGISTRY_TARGET_PASSWORD": TARGET_PASSWORD}
    r = CliRunner().invoke(cli(), ["mirror", "team/app:v2", "--to", "aws:us-test-1", "--config", str(cfg),
                                   "--no-progress"], env=env_vars)
    assert r.exit_code == 0, r.output
    assert f"{env.target.host}/burst/team/app:v2 {env.images.app2.digest}" in r.output
    r = CliRunner().invoke(cli(), ["mirror", "team/app:v2", "--to", "azure:westeurope", "--config", str(cfg)], env=env_vars)
    assert r.exit_code == 2 and "azure:westeurope" in r.output
    r = CliRunner().invoke(cli(), ["mirror", "team/nope:v2", "--to", "aws:us-test-1", "--config", str(cfg)], env=env_vars)
    assert r.exit_code == 1 and "manifest unknown" in r.output
