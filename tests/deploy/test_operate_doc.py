"""docs/operate.md says what the repository holds: paths, build arguments, Secret names and keys,
secret-file variables, the metrics port, the RBAC table and the dashboard's metrics are checked
against the Dockerfile, the rendered manifests, the adapter's code and the daemon's registry."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.deploy import kube_calls
from tests.deploy.test_grafana_dashboard import exported_names
from tests.deploy.test_kubernetes_manifests import container, objects, one

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "operate.md").read_text()
needs_kubectl = pytest.mark.skipif(shutil.which("kubectl") is None, reason="needs kubectl")


def test_every_repository_path_named_exists() -> None:
    paths = set(re.findall(r"`((?:deploy|docs|tests|terraform)/[\w./-]*|Dockerfile|\.dockerignore|base/[\w.-]+)`", DOC))
    assert "deploy/kubernetes/overlays/controller-bot" in paths
    for p in paths:
        if p.startswith("terraform/"):
            continue  # the landing zones arrive with their own branch (terraform/README.md)
        where = ROOT / p if not p.startswith("base/") else ROOT / "deploy" / "kubernetes" / p
        assert where.exists(), p


def test_build_arguments_and_defaults_match_the_dockerfile() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for arg in set(re.findall(r"--build-arg (\w+)=", DOC)) | set(re.findall(r"`(BASE|PIP_ARGS)`", DOC)):
        assert re.search(rf"^ARG {arg}\b", dockerfile, re.M), arg
    default = re.search(r"^ARG BASE=(\S+)", dockerfile, re.M)
    assert default and f"`{default[1]}`" in DOC
    assert re.search(r"^USER 10001", dockerfile, re.M) and "uid 10001" in DOC
    assert re.search(r"^WORKDIR /var/lib/burst$", dockerfile, re.M) and "`/var/lib/burst`" in DOC
    cmd = re.search(r"^CMD (\[.*\])$", dockerfile, re.M)
    assert cmd and " ".join(re.findall(r'"([^"]+)"', cmd[1])) in DOC.replace("burst run", "run")
    for name in re.findall(r"`!?([\w./]+)`", DOC[DOC.index("`.dockerignore` sends"):][:200]):
        if name not in (".dockerignore",):
            assert f"!{name}" in (ROOT / ".dockerignore").read_text(), name


@needs_kubectl
def test_secret_commands_name_the_secrets_and_keys_the_pods_use() -> None:
    secrets = {o["metadata"]["name"]: o for o in objects("controller-bot") if o["kind"] == "Secret"}
    cmds = re.findall(r"create secret generic (\S+) (.*)", DOC)
    assert {name for name, _ in cmds} == set(secrets)
    for name, rest in cmds:
        keys = set(re.findall(r"--from-(?:file|literal)=([\w-]+)=", rest))
        assert keys == set(secrets[name]["stringData"]), name


@needs_kubectl
def test_secret_file_variables_and_the_port_are_the_manifests_ones() -> None:
    objs = objects("controller-bot")
    env = {e["name"] for o in objs if o["kind"] == "Deployment"
           for c in o["spec"]["template"]["spec"]["containers"] for e in c.get("env", [])}
    for var in re.findall(r"`([A-Z_]+_FILE|PGPASSWORD|BURST_HOLDER_ID)`", DOC):
        assert var in env, var
    args = container(one(objs, "Deployment", "burst-controller"), "controller")["args"]
    port = args[args.index("--metrics-port") + 1]
    assert f"metrics port {port}" in DOC and f"port {port} (`/metrics`)" in DOC


@needs_kubectl
def test_the_rbac_table_is_the_derived_one() -> None:
    table = DOC[DOC.index("| resources | verbs |"):].split("\n\n", 1)[0]
    rows = re.findall(r"^\s*\| (batch )?([\w/]+) \| ([\w, ]+) \|$", table, re.M)
    documented = {("batch" if batch else "", res, verb.strip()) for batch, res, verbs in rows
                  if res != "resources" for verb in verbs.split(",")}
    assert documented == kube_calls.permissions()


def test_dashboard_metrics_named_are_exported() -> None:
    section = DOC[DOC.index("## 3. Metrics and the dashboard"):]
    named = set(re.findall(r"`(burst_\w+)`", section))
    assert len(named) >= 8
    exported = exported_names()
    for m in named:
        assert m in exported or f"{m}_bucket" in exported, m
