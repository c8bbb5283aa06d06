"""The simulator's :class:`burst.ports.Mirror`: a source registry and per-region target
registries, in memory.

Where the live daemon copies Harbor images into ECR/ACR over HTTP (the mirror service over
:mod:`providers.oci`), a simulation or a test has this. It keeps the port's contract the way a
registry pair would show it, so the same contract suite runs on both:

* ``target_for`` is pure naming (``<target host>/<prefix>/<repository>:<tag>``): no request.
* ``ensure`` copies what the target lacks (a blob the target has is not sent again) and PUTs the
  manifest as it is at the source, so the digest at the target is the source's. An image already
  at the target with the source's digest costs one ``HEAD`` at each registry and nothing else.
* Failures are :class:`burst.errors.MirrorError` subclasses: :class:`UnknownImage` (not at the
  source), :class:`UnknownTarget` (no registry configured for ``cloud:region``),
  :class:`InvalidImageReference`, and :class:`burst.errors.TransientMirrorError` while a
  registry is :attr:`SimRegistry.down`. A failed copy leaves no manifest behind.

Every request is logged in :attr:`SimRegistry.requests` as ``(method, path)``, the way a
registry's access log reads; the harness seeds images with :meth:`SimRegistry.push`.
Thread-safe: the mirror worker calls ``ensure`` from its pool.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Mapping

from burst.errors import ConfigError, InputError, MirrorError, TransientMirrorError
from burst.ports import MirrorResult

_REPO_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")


class InvalidImageReference(MirrorError, InputError):
    def __init__(self, where: str, message: str) -> None:
        InputError.__init__(self, where, message)


class UnknownTarget(MirrorError, ConfigError):
    def __init__(self, where: str, message: str) -> None:
        ConfigError.__init__(self, where, message)


class UnknownImage(MirrorError):
    """The source registry has no such manifest (``manifest unknown``)."""


class SimRegistry:
    """One registry: manifests by ``repository:tag``, blobs by digest, and an access log."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.tags: dict[str, str] = {}  # "repo:tag" -> manifest digest
        self.manifests: dict[str, tuple[str, ...]] = {}  # manifest digest -> its blob digests
        self.blobs: dict[str, int] = {}  # blob digest -> size
        self.requests: list[tuple[str, str]] = []
        self.down = False  # True: answers nothing (TransientMirrorError)
        self._lock = threading.Lock()

    def push(self, repository: str, tag: str, blobs: Mapping[str, int]) -> str:
        """Harness: put an image made of ``blobs`` (digest -> size) under ``repository:tag`` (moving
        the tag if it existed). Returns the manifest digest, a function of the content only."""
        digest = "sha256:" + hashlib.sha256(json.dumps(sorted(blobs.items())).encode()).hexdigest()
        with self._lock:
            self.blobs.update(blobs)
            self.manifests[digest] = tuple(blobs)
            self.tags[f"{repository}:{tag}"] = digest
        return digest

    def digest_of(self, reference: str) -> str | None:
        """What ``repository:tag`` (or ``repository@digest``) resolves to, without a logged request."""
        with self._lock:
            return self._resolve(reference)

    def _resolve(self, reference: str) -> str | None:
        if "@" in reference:
            d = reference.split("@", 1)[1]
            return d if d in self.manifests else None
        return self.tags.get(reference)

    def _request(self, method: str, path: str) -> None:
        if self.down:
            raise TransientMirrorError(f"{method} {self.host}{path}: connection refused")
        self.requests.append((method, path))

    # ---- the registry API, as the mirror uses it ----------------------------------------------
    def head_manifest(self, reference: str) -> str | None:
        repo, sep, ref = _split(reference)
        with self._lock:
            self._request("HEAD", f"/v2/{repo}/manifests/{ref}")
            return self._resolve(reference)

    def get_manifest(self, reference: str) -> tuple[str, tuple[str, ...]]:
        repo, _, ref = _split(reference)
        with self._lock:
            self._request("GET", f"/v2/{repo}/manifests/{ref}")
            digest = self._resolve(reference)
            if digest is None:
                raise UnknownImage(f"{self.host}/{reference}: manifest unknown")
            return digest, self.manifests[digest]

    def put_manifest(self, reference: str, digest: str, blobs: tuple[str, ...]) -> None:
        repo, _, ref = _split(reference)
        with self._lock:
            self._request("PUT", f"/v2/{repo}/manifests/{ref}")
            missing = [b for b in blobs if b not in self.blobs]
            if missing:
                raise MirrorError(f"{self.host}/{reference}: manifest blob unknown {missing[0]}")
            self.manifests[digest] = blobs
            if "@" not in reference:
                self.tags[reference] = digest

    def head_blob(self, repository: str, digest: str) -> bool:
        with self._lock:
            self._request("HEAD", f"/v2/{repository}/blobs/{digest}")
            return digest in self.blobs

    def get_blob(self, repository: str, digest: str) -> int:
        with self._lock:
            self._request("GET", f"/v2/{repository}/blobs/{digest}")
            return self.blobs[digest]

    def put_blob(self, repository: str, digest: str, size: int) -> None:
        with self._lock:
            self._request("PUT", f"/v2/{repository}/blobs/uploads/?digest={digest}")
            self.blobs[digest] = size


def _split(reference: str) -> tuple[str, str, str]:
    """``repo:tag`` -> (repo, ":", tag); ``repo@digest`` -> (repo, "@", digest)."""
    if "@" in reference:
        repo, digest = reference.split("@", 1)
        return repo, "@", digest
    repo, tag = reference.rsplit(":", 1)
    return repo, ":", tag


class SimMirror:
    """:class:`burst.ports.Mirror` between a :class:`SimRegistry` source and one target registry
    per ``"cloud:region"``; target repositories sit under ``repository_prefix``."""

    def __init__(self, source: SimRegistry, targets: Mapping[str, SimRegistry], *,
                 repository_prefix: str = "burst") -> None:
        self.source = source
        self.targets = dict(targets)
        self.prefix = repository_prefix.strip("/")

    def _parse(self, image: str) -> tuple[str, str, str]:
        """(registry host, repository, ":tag" or "@digest"); a reference without a host is the
        source's, one without a tag or digest means ``:latest``."""
        text = image.strip()
        if not text or any(c.isspace() for c in text):
            raise InvalidImageReference(image, "not an image reference")
        first, slash, rest = text.partition("/")
        host, path = (first, rest) if slash and ("." in first or ":" in first or first == "localhost") else (
            self.source.host, text)
        if "@" in path:
            repo, digest = path.split("@", 1)
            if not _DIGEST_RE.match(digest):
                raise InvalidImageReference(image, "digest must be sha256:<64 hex>")
            suffix = "@" + digest
        elif ":" in path.rsplit("/", 1)[-1]:
            repo, tag = path.rsplit(":", 1)
            if not _TAG_RE.match(tag):
                raise InvalidImageReference(image, f"bad tag {tag!r}")
            suffix = ":" + tag
        else:
            repo, suffix = path, ":latest"
        if not _REPO_RE.match(repo):
            raise InvalidImageReference(image, f"bad repository {repo!r}")
        return host, repo, suffix

    def _target(self, cloud: str, region: str) -> SimRegistry:
        t = self.targets.get(f"{cloud}:{region}")
        if t is None:
            known = ", ".join(sorted(self.targets)) or "none"
            raise UnknownTarget(f"{cloud}:{region}", f"no mirror target configured (configured: {known})")
        return t

    def _target_repo(self, repo: str) -> str:
        return f"{self.prefix}/{repo}" if self.prefix else repo

    def target_for(self, image: str, cloud: str, region: str) -> str:
        _, repo, suffix = self._parse(image)
        return f"{self._target(cloud, region).host}/{self._target_repo(repo)}{suffix}"

    def ensure(self, image: str, cloud: str, region: str) -> MirrorResult:
        host, repo, suffix = self._parse(image)
        dst = self._target(cloud, region)
        target = self.target_for(image, cloud, region)
        if host != self.source.host:
            raise UnknownImage(f"{image}: only {self.source.host} is mirrored here")
        src_ref, dst_repo = repo + suffix, self._target_repo(repo)
        digest = self.source.head_manifest(src_ref)
        if digest is None:
            raise UnknownImage(f"{self.source.host}/{src_ref}: manifest unknown")
        if dst.head_manifest(dst_repo + suffix) == digest:
            return MirrorResult(image, target, digest)
        digest, blobs = self.source.get_manifest(src_ref)
        uploaded = copied = skipped = 0
        for b in blobs:
            if dst.head_blob(dst_repo, b):
                skipped += 1
                continue
            size = self.source.get_blob(repo, b)
            dst.put_blob(dst_repo, b, size)
            uploaded += size
            copied += 1
        dst.put_manifest(dst_repo + suffix, digest, blobs)
        return MirrorResult(image, target, digest, uploaded, copied, skipped)
