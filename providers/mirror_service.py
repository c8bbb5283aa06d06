"""The image mirror: copies Harbor images into each burst region's registry before instances boot.

:class:`MirrorService` implements :class:`burst.ports.Mirror` on top of the copy engine
(:mod:`providers.oci`). Targets are configured per ``cloud:region``
(:class:`MirrorSettings`); ECR repositories are created on demand. Every finished copy is
recorded in the Store, so a repeat ``ensure`` of an unchanged image costs one manifest HEAD at
the source. Failures raise :class:`burst.errors.MirrorError` subclasses; the controller backs off.

Also here: :func:`prewarm` (mirror the most used images to every region ahead of need). The
containerd ``hosts.toml`` rule is cloud-neutral node bootstrap and lives in
:mod:`providers.bootstrap` (re-exported here for ``burst mirror``).

The service asks the Store only for mirror records (:class:`MirrorRecords`, which
:class:`burst.ports.Store` satisfies), so this adapter needs nothing of the core but the domain,
the errors and the ports.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, Protocol

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from burst.clock import WallClock
from burst.domain import Timestamp
from burst.errors import ConfigError, MirrorError, TransientMirrorError
from burst.ports import Clock, Mirror, MirrorResult
from providers.bootstrap import containerd_hosts_toml, containerd_mirror_url
from providers.oci import (
    MIB,
    CopyResult,
    Endpoint,
    ImageRef,
    OciCopier,
    ProgressFn,
    RetryPolicy,
    parse_reference,
    select_platforms,
)
from providers.registry_auth import (
    AcrAuth,
    AnonymousAuth,
    AzureCredential,
    ChallengeAuth,
    RegistryAuth,
    credentials_from_env,
)

__all__ = [
    "AuthSettings", "MirrorConfigError", "MirrorRecords", "MirrorService", "MirrorSettings", "SourceSettings",
    "TargetSettings", "UnknownTarget", "containerd_hosts_toml", "containerd_mirror_url", "prewarm",
]

log = logging.getLogger("burst.mirror")

_PREFIX_RE = re.compile(r"^(?:[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*)(?:/[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*)*$")
_HOST_RE = re.compile(r"^[A-Za-z0-9.-]+(?::[0-9]+)?$")


class MirrorConfigError(MirrorError, ConfigError):
    """The mirror is configured wrongly or lacks credentials: admins must act."""

    def __init__(self, where: str, message: str) -> None:
        ConfigError.__init__(self, where, message)


class UnknownTarget(MirrorConfigError):
    """No mirror target is configured for the cloud:region asked for."""


# ---- settings -------------------------------------------------------------------------------


class AuthSettings(BaseModel):
    """How to authenticate at a registry.

    * ``anonymous``: no credentials (bearer challenges are answered with anonymous tokens).
    * ``basic``: username/password from ``BURST_REGISTRY_<NAME>_USERNAME`` and ``_PASSWORD`` or
      ``_PASSWORD_FILE``; sent as basic auth, or to the token endpoint when the registry answers
      with a bearer challenge (Harbor; a Harbor robot account is user ``robot$<name>``).
      ``credentials`` is NAME; it defaults to the registry host.
    * ``ecr``: ``ecr:GetAuthorizationToken`` through the AWS identity chain.
    * ``acr``: an AAD token from azure-identity, exchanged at the registry's ``/oauth2``.
    """

    model_config = ConfigDict(extra="forbid")

    method: Literal["anonymous", "basic", "ecr", "acr"] = "anonymous"
    credentials: str | None = None


class SourceSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    registry: str  # the Harbor host[:port]
    auth: AuthSettings = Field(default_factory=AuthSettings)
    insecure: bool = False  # plain http: tests only
    ca_bundle: Path | None = None

    @field_validator("registry")
    @classmethod
    def _host(cls, v: str) -> str:
        if not _HOST_RE.match(v):
            raise ValueError(f"registry must be host[:port], got {v!r}")
        return v


class TargetSettings(BaseModel):
    """One region's registry. ``kind=ecr`` may give ``account_id`` instead of ``registry``."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["ecr", "acr", "generic"] = "generic"
    registry: str | None = None
    account_id: str | None = None
    repository_prefix: str = "burst"
    auth: AuthSettings | None = None  # default: ecr/acr by kind, else anonymous
    insecure: bool = False
    ca_bundle: Path | None = None
    platforms: list[str] | None = None  # e.g. ["linux/amd64"]; None copies every platform
    create_repositories: bool = True  # ECR: create_repository before the first push
    endpoint_url: str | None = None  # ECR control-plane endpoint override (tests)

    @field_validator("registry")
    @classmethod
    def _host(cls, v: str | None) -> str | None:
        if v is not None and not _HOST_RE.match(v):
            raise ValueError(f"registry must be host[:port], got {v!r}")
        return v

    @field_validator("repository_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        v = v.strip("/")
        if v and not _PREFIX_RE.match(v):
            raise ValueError(f"repository_prefix {v!r}: lower-case path components only")
        return v

    @model_validator(mode="after")
    def _check(self) -> TargetSettings:
        if self.registry is None and not (self.kind == "ecr" and self.account_id):
            raise ValueError("registry is required (or account_id for kind=ecr)")
        return self

    @property
    def effective_auth(self) -> AuthSettings:
        if self.auth is not None:
            return self.auth
        if self.kind in ("ecr", "acr"):
            return AuthSettings(method=self.kind)
        return AuthSettings()


class MirrorSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: SourceSettings
    targets: dict[str, TargetSettings] = Field(default_factory=dict)  # "cloud:region" -> target
    parallel: int = Field(4, ge=1, le=64)
    chunk_threshold_mib: int = Field(512, ge=1)
    chunk_size_mib: int = Field(128, ge=1)
    retry_attempts: int = Field(6, ge=1)
    max_retry_after_s: float = Field(60.0, ge=0)
    prewarm_top_n: int = Field(5, ge=0)

    @field_validator("targets")
    @classmethod
    def _keys(cls, v: dict[str, TargetSettings]) -> dict[str, TargetSettings]:
        for key in v:
            cloud, sep, region = key.partition(":")
            if not sep or not cloud or not region:
                raise ValueError(f"target key {key!r} must be cloud:region, e.g. aws:us-east-1")
        return v


# ---- the service ----------------------------------------------------------------------------


class _Recorded(Protocol):
    @property
    def digest(self) -> str: ...


class MirrorRecords(Protocol):
    """What the service keeps in the Store: the source digest of every finished copy."""

    def record_mirror(self, image: str, target: str, digest: str, *, now: Timestamp) -> None: ...

    def get_mirror(self, image: str, target: str) -> _Recorded | None: ...


class MirrorService:
    """:class:`burst.ports.Mirror` over real registries.

    ``environ`` is where credentials are read (default ``os.environ``); ``azure_credential`` is
    the AAD credential for ACR targets (default: ``DefaultAzureCredential`` on first use);
    ``ecr_client_factory(region)`` builds boto3 ECR clients (default: the AWS identity chain).
    """

    def __init__(
        self,
        settings: MirrorSettings,
        store: MirrorRecords,
        *,
        clock: Clock | None = None,
        copier: OciCopier | None = None,
        environ: Mapping[str, str] | None = None,
        azure_credential: AzureCredential | None = None,
        ecr_client_factory: Callable[[str], Any] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock: Clock = clock or WallClock()
        self.copier = copier or OciCopier(
            parallel=settings.parallel,
            chunk_threshold=settings.chunk_threshold_mib * MIB,
            chunk_size=settings.chunk_size_mib * MIB,
            retry=RetryPolicy(attempts=settings.retry_attempts, max_retry_after_s=settings.max_retry_after_s, sleep=sleep),
        )
        self._environ = environ
        self._azure_credential = azure_credential
        self._ecr_factory = ecr_client_factory
        self._lock = threading.Lock()
        self._endpoints: dict[str, Endpoint] = {}
        self._ecr_repos: set[tuple[str, str]] = set()

    def close(self) -> None:
        self.copier.close()

    # -- naming ------------------------------------------------------------------------------
    def parse(self, image: str) -> ImageRef:
        return parse_reference(image, default_registry=self.settings.source.registry)

    def target_settings(self, cloud: str, region: str) -> TargetSettings:
        t = self.settings.targets.get(f"{cloud}:{region}")
        if t is None:
            known = ", ".join(sorted(self.settings.targets)) or "none"
            raise UnknownTarget(f"{cloud}:{region}", f"no mirror target configured (configured: {known})")
        return t

    def target_host(self, cloud: str, region: str) -> str:
        t = self.target_settings(cloud, region)
        if t.registry:
            return t.registry
        from providers.ecr import registry_host

        assert t.account_id is not None
        return registry_host(t.account_id, region)

    def target_ref(self, image: str, cloud: str, region: str) -> ImageRef:
        ref = self.parse(image)
        t = self.target_settings(cloud, region)
        repo = f"{t.repository_prefix}/{ref.repository}" if t.repository_prefix else ref.repository
        return ImageRef(self.target_host(cloud, region), repo, ref.tag, None if ref.tag else ref.digest)

    def target_for(self, image: str, cloud: str, region: str) -> str:
        return str(self.target_ref(image, cloud, region))

    def hosts_toml(self, cloud: str, region: str) -> str:
        """containerd ``hosts.toml`` for Harbor on an instance in ``cloud:region``."""
        t = self.target_settings(cloud, region)
        mirror = self.target_host(cloud, region)
        if t.repository_prefix:
            mirror += "/" + t.repository_prefix
        return containerd_hosts_toml(self.settings.source.registry, mirror, mirror_insecure=t.insecure)

    # -- endpoints ---------------------------------------------------------------------------
    def _auth(self, a: AuthSettings, host: str, *, region: str = "", target: TargetSettings | None = None) -> RegistryAuth:
        if a.method == "anonymous":
            return AnonymousAuth()
        if a.method == "basic":
            name = a.credentials or host
            creds = credentials_from_env(name, self._environ)
            if creds is None:
                raise MirrorConfigError(host, f"no credentials: set BURST_REGISTRY_<{name}>_USERNAME and _PASSWORD(_FILE)")
            return ChallengeAuth(creds)
        if a.method == "ecr":
            from providers.ecr import EcrTokenProvider, ecr_client

            client = self._ecr_factory(region) if self._ecr_factory else ecr_client(region, target.endpoint_url if target else None)
            registry_id = host.split(".", 1)[0] if host.split(".", 1)[0].isdigit() else None
            return EcrTokenProvider(region, client=client, registry_id=registry_id).auth()
        # acr
        cred = self._azure_credential
        if cred is None:
            try:
                from azure.identity import DefaultAzureCredential
            except ImportError:
                raise MirrorConfigError(host, "ACR needs azure-identity") from None
            cred = self._azure_credential = DefaultAzureCredential()
        base = f"{'http' if target is not None and target.insecure else 'https'}://{host}"
        return AcrAuth(host, cred, base_url=base)

    def source_endpoint(self, registry: str) -> Endpoint:
        with self._lock:
            ep = self._endpoints.get(f"src:{registry}")
            if ep is None:
                s = self.settings.source
                if registry == s.registry:
                    ep = Endpoint(registry, self._auth(s.auth, registry), s.insecure, s.ca_bundle)
                else:  # an image from elsewhere: anonymous pull over TLS
                    ep = Endpoint(registry, AnonymousAuth())
                self._endpoints[f"src:{registry}"] = ep
            return ep

    def target_endpoint(self, cloud: str, region: str) -> Endpoint:
        key = f"dst:{cloud}:{region}"
        with self._lock:
            ep = self._endpoints.get(key)
            if ep is None:
                t = self.target_settings(cloud, region)
                host = self.target_host(cloud, region)
                ep = Endpoint(host, self._auth(t.effective_auth, host, region=region, target=t), t.insecure, t.ca_bundle)
                self._endpoints[key] = ep
            return ep

    # -- the port ----------------------------------------------------------------------------
    def ensure(self, image: str, cloud: str, region: str, *, progress: ProgressFn | None = None) -> MirrorResult:
        try:
            return self._ensure(image, cloud, region, progress)
        except MirrorError:
            raise
        except httpx.HTTPError as exc:
            raise TransientMirrorError(f"{image} -> {cloud}:{region}: {type(exc).__name__}") from None
        except OSError as exc:
            raise TransientMirrorError(f"{image} -> {cloud}:{region}: {exc.strerror or type(exc).__name__}") from None

    def copy(self, image: str, cloud: str, region: str, *, progress: ProgressFn | None = None) -> CopyResult:
        """Copy unconditionally (no Store shortcut); ``ensure`` is the usual entry."""
        ref = self.parse(image)
        t = self.target_settings(cloud, region)
        dst_ref = self.target_ref(image, cloud, region)
        if t.kind == "ecr" and t.create_repositories:
            self._ensure_ecr_repo(t, region, dst_ref.repository)
        return self.copier.copy(
            self.source_endpoint(ref.registry), ref, self.target_endpoint(cloud, region), dst_ref,
            platforms=t.platforms, progress=progress,
        )

    def _ensure(self, image: str, cloud: str, region: str, progress: ProgressFn | None) -> MirrorResult:
        ref = self.parse(image)
        t = self.target_settings(cloud, region)
        target = self.target_for(image, cloud, region)
        rec = self.store.get_mirror(image, target)
        if rec is not None:
            src = self.source_endpoint(ref.registry)
            if not t.platforms:
                digest = self.copier.resolve(src, ref)  # one HEAD
                if digest == rec.digest:
                    return MirrorResult(image, target, digest)
            else:
                # The target holds a filtered index whose digest follows from the source bytes.
                top = self.copier.fetch(src, ref)
                if top.digest == rec.digest:
                    pushed = select_platforms(top, t.platforms)[0] if top.is_index else top
                    return MirrorResult(image, target, pushed.digest)
            log.info("%s changed at the source since it was mirrored to %s; copying again", image, target)
        res = self.copy(image, cloud, region, progress=progress)
        self.store.record_mirror(image, target, res.source_digest, now=self.clock.now())
        return MirrorResult(
            image, target, res.digest, res.bytes_uploaded, res.blobs_copied, res.blobs_skipped + res.blobs_mounted
        )

    def _ensure_ecr_repo(self, t: TargetSettings, region: str, repo: str) -> None:
        from providers.ecr import ensure_repository

        key = (region, repo)
        if key in self._ecr_repos:
            return
        client = self._ecr_factory(region) if self._ecr_factory else None
        ensure_repository(region, repo, client=client, endpoint_url=t.endpoint_url, tags={"burst:purpose": "mirror"})
        self._ecr_repos.add(key)

    def prewarm(self, images_by_use: Mapping[str, int], regions: Iterable[str | tuple[str, str]] | None = None,
                *, top_n: int | None = None) -> list[MirrorResult]:
        """:func:`prewarm` over this service's targets (all of them when ``regions`` is None)."""
        return prewarm(self, images_by_use, regions if regions is not None else list(self.settings.targets),
                       top_n=self.settings.prewarm_top_n if top_n is None else top_n)


def prewarm(
    mirror: Mirror,
    images_by_use: Mapping[str, int],
    regions: Iterable[str | tuple[str, str]],
    *,
    top_n: int = 5,
) -> list[MirrorResult]:
    """Mirror the ``top_n`` most used images to every region (``"cloud:region"`` or tuples).

    Most used first (ties by name). A failure is logged and skipped; the rest still run, and
    the next run retries it. Returns the results that succeeded.
    """
    ranked = sorted(images_by_use.items(), key=lambda kv: (-kv[1], kv[0]))[: max(0, top_n)]
    places: list[tuple[str, str]] = []
    for r in regions:
        if isinstance(r, str):
            cloud, _, region = r.partition(":")
            if not region:
                raise ValueError(f"region {r!r} must be cloud:region")
            places.append((cloud, region))
        else:
            places.append((r[0], r[1]))
    out: list[MirrorResult] = []
    for image, _uses in ranked:
        for cloud, region in places:
            try:
                out.append(mirror.ensure(image, cloud, region))
            except MirrorError as exc:
                log.warning("prewarm %s -> %s:%s failed: %s", image, cloud, region, exc)
    return out
