"""deploy/kubernetes/: each overlay renders with ``kubectl kustomize``, every object passes
``kubernetes-validate --strict``, and the objects agree with burst and with each other (config,
probes on the metrics port, lease identity, Secrets referenced, RBAC = the calls the Kubernetes
queue source makes). RECIPES.md, "Kubernetes manifests offline"."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from burst.config import parse_config
from tests.deploy import kube_calls

ROOT = Path(__file__).resolve().parents[2]
KUSTOMIZE = ROOT / "deploy" / "kubernetes"
OVERLAYS = ("controller-only", "controller-bot")
KUBECTL = shutil.which("kubectl")
Obj = dict[str, Any]

needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="needs kubectl (kustomize built in)")


@cache
def rendered(overlay: str) -> str:
    assert KUBECTL
    proc = subprocess.run([KUBECTL, "kustomize", str(KUSTOMIZE / "overlays" / overlay)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def objects(overlay: str) -> list[Obj]:
    return [d for d in yaml.safe_load_all(rendered(overlay)) if d]


def one(objs: list[Obj], kind: str, name: str) -> Obj:
    found = [o for o in objs if o["kind"] == kind and o["metadata"]["name"].startswith(name)]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} objects"
    return found[0]


def container(deploy: Obj, name: str) -> Obj:
    return next(c for c in deploy["spec"]["template"]["spec"]["containers"] if c["name"] == name)


def _validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kubernetes_validate", "--strict", str(path)],
                          capture_output=True, text=True, timeout=120)


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates_strictly(overlay: str, tmp_path: Path) -> None:
    out = tmp_path / f"{overlay}.yaml"
    out.write_text(rendered(overlay))
    proc = _validate(out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # a kind without a schema only warns: require a "passed" line for every object
    passed = re.findall(r"passed for resource (\S+)", proc.stdout + proc.stderr)
    assert len(passed) == len(objects(overlay)), proc.stdout + proc.stderr


@needs_kubectl
def test_the_validator_rejects_an_unknown_field(tmp_path: Path) -> None:
    """The check above has teeth: a misspelt field in a rendered Deployment fails --strict."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(rendered("controller-only").replace("revisionHistoryLimit:", "revisionHistoryLimits:"))
    proc = _validate(bad)
    assert proc.returncode != 0 and "revisionHistoryLimits" in proc.stdout + proc.stderr


CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding"}


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_is_in_the_namespace_and_runs_the_released_image(overlay: str) -> None:
    """The overlay-wide settings reach every object, the bot's included."""
    objs = objects(overlay)
    ns = one(objs, "Namespace", "burst")["metadata"]["name"]
    for o in objs:
        assert o["metadata"]["labels"]["app.kubernetes.io/part-of"] == "burst", o["metadata"]["name"]
        if o["kind"] not in CLUSTER_SCOPED:
            assert o["metadata"].get("namespace") == ns, f"{o['kind']}/{o['metadata']['name']}"
    images = {c["image"] for o in objs if o["kind"] == "Deployment"
              for c in o["spec"]["template"]["spec"]["containers"]}
    assert len(images) == 1 and "/" in images.pop(), images


@needs_kubectl
def test_overlays_differ_by_the_bot_only() -> None:
    only = {(o["kind"], o["metadata"]["name"]) for o in objects("controller-only")}
    both = {(o["kind"], o["metadata"]["name"]) for o in objects("controller-bot")}
    assert only < both
    assert both - only == {("Deployment", "burst-bot"), ("Service", "burst-bot"), ("PodDisruptionBudget", "burst-bot")}


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_controller_two_replicas_lease_identity_and_probes(overlay: str) -> None:
    objs = objects(overlay)
    dep = one(objs, "Deployment", "burst-controller")
    assert dep["spec"]["replicas"] == 2
    c = container(dep, "controller")
    env = {e["name"]: e for e in c["env"]}
    assert env["BURST_HOLDER_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    # the probes hit the port burst serves metrics on: the one --metrics-port names
    args = c["args"]
    assert args[0] == "run"
    port = int(args[args.index("--metrics-port") + 1])
    assert args[args.index("--metrics-addr") + 1] == "0.0.0.0"  # kubelet probes from outside the pod
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports["metrics"] == port
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = c[probe]["httpGet"]
        assert get["path"] == path and get["port"] in ("metrics", port)
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
    ann = dep["spec"]["template"]["metadata"]["annotations"]
    assert (ann["prometheus.io/scrape"], ann["prometheus.io/port"], ann["prometheus.io/path"]) == ("true", str(port), "/metrics")
    # PDB covers the controller pods
    pdb = one(objs, "PodDisruptionBudget", "burst-controller")
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["minAvailable"] == 1


def _dockerfile_uid() -> int:
    user = re.search(r"^USER\s+(\d+)", (ROOT / "Dockerfile").read_text(), re.M)
    assert user, "Dockerfile: USER <uid> expected"
    return int(user[1])


@needs_kubectl
def test_the_image_healthcheck_and_the_probes_use_the_same_metrics_port() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")  # continuation lines joined
    health = re.search(r"^HEALTHCHECK .*$", dockerfile, re.M)
    assert health
    args = container(one(objects("controller-only"), "Deployment", "burst-controller"), "controller")["args"]
    port = args[args.index("--metrics-port") + 1]
    assert f"127.0.0.1:{port}/healthz" in health[0]
    assert re.search(rf"^EXPOSE\s.*\b{port}\b", dockerfile, re.M)


@needs_kubectl
def test_pods_run_as_the_images_non_root_user_with_a_writable_workdir() -> None:
    uid = _dockerfile_uid()
    workdir = re.search(r"^WORKDIR\s+(\S+)", (ROOT / "Dockerfile").read_text(), re.M)
    assert workdir
    for dep in (o for o in objects("controller-bot") if o["kind"] == "Deployment"):
        spec = dep["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] == uid != 0
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"]["drop"] == ["ALL"]
            mounts = {m["mountPath"] for m in c["volumeMounts"]}
            assert workdir[1] in mounts, f"{dep['metadata']['name']}: {workdir[1]} must be a writable volume"


@needs_kubectl
def test_config_map_holds_a_valid_kubernetes_config_mounted_where_args_point() -> None:
    objs = objects("controller-bot")
    cm = one(objs, "ConfigMap", "burst-config")
    assert re.fullmatch(r"burst-config-[a-z0-9]{6,}", cm["metadata"]["name"]), "hash suffix rolls the pods"
    cfg = parse_config(yaml.safe_load(cm["data"]["burst.yaml"]), "ConfigMap burst-config")
    assert cfg.queue.kind == "kubernetes"
    assert (cfg.queue.kubernetes or {}).get("in_cluster") is True
    assert cfg.database_url.startswith("postgresql") and "@" in cfg.database_url
    assert ":" not in cfg.database_url.split("//", 1)[1].split("@", 1)[0], "no password in database_url"
    for dep in (o for o in objs if o["kind"] == "Deployment"):
        spec = dep["spec"]["template"]["spec"]
        vols = {v["name"]: v for v in spec["volumes"]}
        for c in spec["containers"]:
            cfg_path = Path(c["args"][c["args"].index("--config") + 1])
            mount = next(m for m in c["volumeMounts"] if m["mountPath"] == str(cfg_path.parent))
            assert vols[mount["name"]]["configMap"]["name"] == cm["metadata"]["name"]
            assert cfg_path.name in cm["data"]


@needs_kubectl
def test_secrets_are_placeholders_and_every_reference_resolves() -> None:
    objs = objects("controller-bot")
    secrets = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Secret"}
    assert {"burst-slack", "burst-harbor-robot", "burst-database"} <= set(secrets)
    for name, s in secrets.items():
        values = {**s.get("stringData", {}), **s.get("data", {})}
        assert values and all(str(v).startswith("REPLACE-ME") for v in values.values()), name
    for dep in (o for o in objs if o["kind"] == "Deployment"):
        spec = dep["spec"]["template"]["spec"]
        vols = {v["name"]: v for v in spec["volumes"]}
        for v in vols.values():
            if "secret" in v:
                assert v["secret"]["secretName"] in secrets
        for c in spec["containers"]:
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in {**secrets[ref["name"]].get("stringData", {}), **secrets[ref["name"]].get("data", {})}
                if e["name"].endswith("_FILE"):  # a secret file must be mounted from a Secret key
                    f = Path(e["value"])
                    m = next(m for m in c["volumeMounts"] if m["mountPath"] == str(f.parent))
                    sec = secrets[vols[m["name"]]["secret"]["secretName"]]
                    assert f.name in sec.get("stringData", {}), e["name"]


@needs_kubectl
def test_the_controller_finds_the_harbor_robot_where_the_secret_is_mounted(tmp_path: Path) -> None:
    """The mirror resolves its source credentials from the controller's environment as set by
    the Deployment (the mounted password file stood in by a file here)."""
    from providers.registry_auth import credentials_from_env

    objs = objects("controller-only")
    cfg = parse_config(yaml.safe_load(one(objs, "ConfigMap", "burst-config")["data"]["burst.yaml"]))
    assert cfg.mirror is not None
    src = cfg.mirror["source"]
    c = container(one(objs, "Deployment", "burst-controller"), "controller")
    robot = one(objs, "Secret", "burst-harbor-robot")["stringData"]
    env: dict[str, str] = {}
    for e in c["env"]:
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        if ref and ref["name"] == "burst-harbor-robot":
            env[e["name"]] = robot[ref["key"]]
        elif "value" in e and e["value"].startswith("/etc/burst/secrets/harbor/"):
            f = tmp_path / Path(e["value"]).name
            f.write_text(robot[f.name] + "\n")
            env[e["name"]] = str(f)
    creds = credentials_from_env(src["auth"].get("credentials") or src["registry"], env)
    assert creds is not None and (creds.username, creds.password) == (robot["username"], robot["password"])


@needs_kubectl
def test_bot_is_behind_a_service_and_never_gets_an_api_token() -> None:
    objs = objects("controller-bot")
    dep = one(objs, "Deployment", "burst-bot")
    svc = one(objs, "Service", "burst-bot")
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= labels.items()
    c = container(dep, "bot")
    assert c["args"][:2] == ["bot", "serve"]
    port = int(c["args"][c["args"].index("--port") + 1])
    named = {p["name"]: p["containerPort"] for p in c["ports"]}
    target = svc["spec"]["ports"][0]["targetPort"]
    assert named.get(target, target) == port
    # no health path on the bot: its probes check the TCP port (docs/operate.md)
    for probe in ("livenessProbe", "readinessProbe"):
        assert named.get(c[probe]["tcpSocket"]["port"], c[probe]["tcpSocket"]["port"]) == port
    assert dep["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


@needs_kubectl
def test_rbac_grants_exactly_what_the_kubernetes_queue_calls() -> None:
    objs = objects("controller-only")
    role = one(objs, "ClusterRole", "burst-queue")
    assert kube_calls.granted(role["rules"]) == kube_calls.permissions()
    binding = one(objs, "ClusterRoleBinding", "burst-queue")
    dep = one(objs, "Deployment", "burst-controller")
    sa = dep["spec"]["template"]["spec"]["serviceAccountName"]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": dep["metadata"]["namespace"]}]
    assert one(objs, "ServiceAccount", sa)


def test_calls_are_derived_from_the_code(tmp_path: Path) -> None:
    """The derivation sees a new call: a module that also lists Secrets adds that permission, and a
    method it cannot map is an error rather than a silent gap."""
    base = kube_calls.permissions()
    assert {("", "pods/eviction", "create"), ("", "nodes", "watch"), ("batch", "jobs", "patch")} <= base
    pkg = tmp_path / "pkg"
    shutil.copytree(kube_calls.PACKAGE, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    (pkg / "extra.py").write_text("def f(apis):\n    return apis.core.list_namespaced_secret('ns')\n")
    assert kube_calls.permissions(pkg) == base | {("", "secrets", "list")}
    (pkg / "extra.py").write_text("def f(apis):\n    return apis.core.connect_get_namespaced_pod_proxy('x', 'ns')\n")
    with pytest.raises(ValueError, match="connect_get_namespaced_pod_proxy"):
        kube_calls.permissions(pkg)


def test_an_empty_bot_token_file_means_no_slack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/operate.md: without Slack, burst-slack gets an empty bot-token and the controller
    starts with notifications only logged."""
    from bot.notifier import slack_notifier

    token = tmp_path / "bot-token"
    token.write_text("")
    monkeypatch.delenv("SLACK_BOT_TOKEN", raising=False)
    monkeypatch.setenv("SLACK_BOT_TOKEN_FILE", str(token))
    assert slack_notifier(None) is None
    token.write_text("xoxb-test\n")
    assert slack_notifier(None) is not None
