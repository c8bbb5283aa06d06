"""Building the repository's Dockerfile without Docker and without a public registry
(RECIPES.md, "Container images offline").

* :func:`debian_mirror` reads the Debian archive apt uses on this machine from
  ``/etc/apt/sources.list`` and ``/etc/apt/sources.list.d/`` (one-line and deb822 formats), so
  no host is written into the repository.
* :func:`ensure_base_image` makes ``localhost/burst-test-base:bookworm`` from a ``debootstrap``
  minbase rootfs with python3 and python3-venv, imported with podman. The image is kept in the
  shared containers storage: later runs find it and skip debootstrap (about 45 s).
* :func:`build_wheelhouse` turns the project and every dependency into wheels on the host
  (``pip wheel``), plus the build backend, so the image installs with ``--no-index``.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

BUILDAH = shutil.which("buildah")
PODMAN = shutil.which("podman")
DEBOOTSTRAP = shutil.which("debootstrap") or ("/usr/sbin/debootstrap" if os.path.exists("/usr/sbin/debootstrap") else None)
SUITE = "bookworm"
BASE_IMAGE = f"localhost/burst-test-base:{SUITE}"
REPO = Path(__file__).resolve().parents[2]
# Wheels of the dependencies are kept between runs, keyed by pyproject.toml (burst's own wheel is
# rebuilt every time).
WHEEL_CACHE = Path(os.environ.get("BURST_TEST_CACHE", Path.home() / ".cache" / "burst-tests")) / "wheelhouse"


def tools_missing() -> list[str]:
    return [n for n, p in (("buildah", BUILDAH), ("podman", PODMAN), ("debootstrap", DEBOOTSTRAP)) if not p]


def _sources_entries(apt_dir: Path) -> Iterable[tuple[str, list[str]]]:
    """(URI, suites) of every ``deb`` entry, in the order apt reads them."""
    files: list[Path] = []
    if (apt_dir / "sources.list").is_file():
        files.append(apt_dir / "sources.list")
    d = apt_dir / "sources.list.d"
    if d.is_dir():
        files += sorted(p for p in d.iterdir() if p.suffix in (".list", ".sources"))
    for f in files:
        text = f.read_text(errors="replace")
        if f.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields: dict[str, str] = {}
                for line in stanza.splitlines():
                    if line.startswith("#") or ":" not in line:
                        continue
                    k, _, v = line.partition(":")
                    fields[k.strip().lower()] = v.strip()
                if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes") == "no":
                    continue
                for uri in fields.get("uris", "").split():
                    yield uri, fields.get("suites", "").split()
        else:
            for line in text.splitlines():
                words = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
                if len(words) >= 3 and words[0] == "deb":
                    yield words[1], [words[2]]


def debian_mirror(apt_dir: Path = Path("/etc/apt"), suite: str = SUITE) -> str:
    """The archive apt fetches ``suite`` itself from (not -security or -updates)."""
    for uri, suites in _sources_entries(apt_dir):
        if suite in suites:
            return uri
    raise LookupError(f"{apt_dir}: no 'deb' source for suite {suite!r} in sources.list or sources.list.d")


def image_exists(name: str) -> bool:
    assert PODMAN
    return subprocess.run([PODMAN, "image", "exists", name], capture_output=True).returncode == 0


def ensure_base_image(name: str = BASE_IMAGE) -> str:
    """The debootstrap base, built once per machine. Returns how it was obtained (for the log)."""
    assert PODMAN and DEBOOTSTRAP
    if image_exists(name):
        return "cached"
    mirror = debian_mirror()
    with tempfile.TemporaryDirectory(prefix="burst-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        subprocess.run(
            [DEBOOTSTRAP, "--variant=minbase", "--include=python3,python3-venv", SUITE, str(rootfs), mirror],
            check=True, capture_output=True, timeout=900,
        )
        # apt's package lists and caches are not needed in the image (debootstrap leaves the .debs).
        shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        try:
            subprocess.run([PODMAN, "import", "--quiet", "-", name], stdin=tar.stdout, check=True,
                           capture_output=True, timeout=600)
        finally:
            assert tar.stdout is not None
            tar.stdout.close()
            tar.wait()
    return f"debootstrap from {mirror}"


def _deps_key() -> str:
    return hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest()[:16]


def build_wheelhouse(dest: Path, src: Path) -> None:
    """Wheels of every dependency of the project at ``src`` and of its build backend in ``dest``,
    for ``pip install --no-index --find-links`` (the image builds burst's own wheel). They come from
    a cache keyed by pyproject.toml; pip fills it from its own cache or PyPI the first time."""
    cache = WHEEL_CACHE / _deps_key()
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    if not (cache / ".complete").exists():
        cache.mkdir(parents=True, exist_ok=True)
        _pip(pip + ["wheel", "--wheel-dir", str(cache), str(src)], timeout=1200)
        _pip(pip + ["download", "--only-binary=:all:", "--dest", str(cache), "setuptools>=68", "wheel"], timeout=600)
        for w in cache.glob("burst-*.whl"):
            w.unlink()
        (cache / ".complete").touch()
    dest.mkdir(parents=True, exist_ok=True)
    for w in cache.glob("*.whl"):
        shutil.copy2(w, dest / w.name)


def _pip(cmd: list[str], timeout: float) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[2:5])} ... exited {proc.returncode}: {proc.stderr[-3000:]}")


def make_context(dest: Path) -> Path:
    """A build context holding what the repository's .dockerignore lets through, and a
    wheelhouse/. The Dockerfile and .dockerignore are the repository's own."""
    for name in ("pyproject.toml", "README.md", "Dockerfile", ".dockerignore"):
        shutil.copy2(REPO / name, dest / name)
    for pkg in ("burst", "providers", "policies", "bot"):
        shutil.copytree(REPO / pkg, dest / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    build_wheelhouse(dest / "wheelhouse", dest)
    return dest


if __name__ == "__main__":  # warm the caches: python -m tests.deploy.imaging
    print(ensure_base_image())
