"""The repository's Dockerfile, built and run offline (RECIPES.md, "Container images offline").

The Dockerfile's public default base (python:3.11-slim) cannot be pulled here, so the same file is
built on a Debian bookworm rootfs made by debootstrap (``BASE`` build argument), with every
dependency installed from wheels built on the host (``PIP_ARGS="--no-index ..."``). Then, inside
the image with ``buildah run``: ``burst --help``, ``burst run --once`` on the embedded default
config as the image's non-root user in its own working directory, and no build tools left. The
image is pushed to a real ``docker-registry`` and read back with skopeo.

The image size and the build time are printed (``pytest -s`` shows them; CI logs them).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.deploy import imaging
from tests.support import registry

pytestmark = [pytest.mark.slow, pytest.mark.registry, pytest.mark.timeout(1800)]

METRICS_PORT = 9464  # docs/deploy/burst-controller.service and deploy/kubernetes/ use the same


@dataclass(frozen=True)
class Built:
    name: str
    size_bytes: int
    build_s: float


def _need_tools() -> None:
    missing = imaging.tools_missing()
    if not registry.tools_available():
        missing.append("docker-registry/skopeo/htpasswd")
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (scripts/install-system-deps.sh)")


def _buildah(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    assert imaging.BUILDAH
    proc = subprocess.run([imaging.BUILDAH, *args], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"buildah {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    _need_tools()
    how = imaging.ensure_base_image()
    ctx = imaging.make_context(tmp_path_factory.mktemp("context"))
    name = f"localhost/burst-test:{uuid.uuid4().hex[:12]}"
    t0 = time.monotonic()
    _buildah("bud", "--isolation", "chroot", "--format", "docker", "--layers=false",
             "--build-arg", f"BASE={imaging.BASE_IMAGE}",
             "--build-arg", "PIP_ARGS=--no-index --find-links /src/wheelhouse",
             "-f", str(ctx / "Dockerfile"), "-t", name, str(ctx), timeout=1500)
    build_s = time.monotonic() - t0
    assert imaging.PODMAN
    size = int(subprocess.run([imaging.PODMAN, "image", "inspect", name, "--format", "{{.Size}}"],
                              check=True, capture_output=True, text=True).stdout.strip())
    print(f"\nburst image {name}: {size / 1e6:.0f} MB, built in {build_s:.0f} s "
          f"(base {imaging.BASE_IMAGE}: {how})")
    # docs/operate.md: "about 600 MB ... fails if it grows past 800 MB"
    assert size < 800e6, f"the image grew to {size / 1e6:.0f} MB"
    try:
        yield Built(name, size, build_s)
    finally:
        _buildah("rmi", "--force", name, check=False)  # the cached base image stays


def _run(image: Built, *cmd: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``cmd`` in a fresh container of ``image``, as the image's USER, in its WORKDIR."""
    c = _buildah("from", "--quiet", "--pull-never", image.name).stdout.strip()
    try:
        return _buildah("run", "--isolation", "chroot", c, "--", *cmd, timeout=timeout, check=False)
    finally:
        _buildah("rm", c, check=False)


def _config(image: Built) -> dict[str, Any]:
    doc = json.loads(_buildah("inspect", "--type", "image", image.name).stdout)
    cfg: dict[str, Any] = doc["Docker"]["config"]
    return cfg


def test_help_runs_in_the_image(image: Built) -> None:
    proc = _run(image, "burst", "--help")
    assert proc.returncode == 0, proc.stderr
    assert "Usage: burst" in proc.stdout and "run" in proc.stdout


def test_one_tick_on_the_embedded_default_as_a_non_root_user(image: Built) -> None:
    who = _run(image, "sh", "-c", "id -u; pwd; test -w . && echo writable")
    assert who.returncode == 0, who.stderr
    uid, cwd, writable = who.stdout.split()
    assert uid != "0" and cwd == "/var/lib/burst" and writable == "writable"
    # the default database_url is relative (sqlite:///.burst/burst.db): it lands in the workdir
    # BURST_HOLDER_ID names the lease holder (the Kubernetes Deployment sets it to the pod name)
    proc = _run(image, "sh", "-c", "BURST_HOLDER_ID=pod-a burst run --once && ls .burst")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "burst.db" in proc.stdout
    assert "pod-a is now the leader" in proc.stderr


def test_no_build_tools_or_installers_are_left(image: Built) -> None:
    proc = _run(image, "sh", "-c",
                "for t in gcc cc make pip pip3 apt-get; do command -v $t && echo \"found $t\"; done; "
                "python3 -m pip --version >/dev/null 2>&1 && echo 'found python3 -m pip'; "
                "python3 -c 'import setuptools' 2>/dev/null && echo 'found setuptools'; "
                "ls /tmp/wheels /src /wheels 2>/dev/null && echo 'found build leftovers'; true")
    assert proc.returncode == 0, proc.stderr
    found = [line for line in proc.stdout.splitlines() if line.startswith("found")]
    # apt-get comes with the Debian base; everything else must be gone
    assert found in ([], ["found apt-get"]), found


def test_entrypoint_user_and_healthcheck(image: Built) -> None:
    cfg = _config(image)
    assert cfg["Entrypoint"] == ["burst"]
    assert cfg["User"].split(":")[0] not in ("", "0", "root")
    assert cfg["WorkingDir"] == "/var/lib/burst"
    test = " ".join(cfg["Healthcheck"]["Test"])
    assert f"http://127.0.0.1:{METRICS_PORT}/healthz" in test
    assert f"{METRICS_PORT}/tcp" in cfg["ExposedPorts"]
    assert cfg["Cmd"][:1] == ["run"] and str(METRICS_PORT) in cfg["Cmd"]


def test_pushed_to_a_registry_and_read_back(image: Built, tmp_path: Path) -> None:
    reg = registry.RegistryServer(tmp_path / "registry", name="images").start()
    try:
        ref = f"docker://{reg.host}/burst/burst:test"
        digest_file = tmp_path / "digest"
        _buildah("push", "--tls-verify=false", "--digestfile", str(digest_file), image.name, ref, timeout=600)
        assert registry.SKOPEO and shutil.which(registry.SKOPEO)
        out = subprocess.run([registry.SKOPEO, "inspect", "--tls-verify=false", ref],
                             check=True, capture_output=True, text=True, timeout=120).stdout
        doc = json.loads(out)
        assert doc["Digest"] == digest_file.read_text().strip()
        cfg = json.loads(subprocess.run([registry.SKOPEO, "inspect", "--config", "--tls-verify=false", ref],
                                        check=True, capture_output=True, text=True, timeout=120).stdout)
        assert cfg["config"]["Entrypoint"] == ["burst"]
        assert cfg["config"]["User"].split(":")[0] not in ("", "0", "root")
    finally:
        reg.stop()
