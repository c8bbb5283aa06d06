"""Amazon ECR for the image mirror: repositories, registry hosts and registry credentials.

Only the control plane lives here (boto3). The data plane (``/v2/``) is the copy engine's job
(:mod:`providers.oci`); ECR speaks plain distribution with basic auth whose password is the
authorization token, so :class:`EcrTokenProvider` feeds :class:`providers.registry_auth.StaticBasicAuth`.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from burst.errors import MirrorError, TransientMirrorError
from providers.registry_auth import Credentials, RegistryAuthError, StaticBasicAuth

log = logging.getLogger(__name__)

REFRESH_MARGIN_S = 15 * 60.0
"""Refresh a token this long before its ``expiresAt`` (ECR tokens live 12 hours)."""
PAST_EXPIRY_TTL_S = 5 * 60.0
"""A token whose ``expiresAt`` is already past when received (moto returns a fixed 2015 date; a
badly skewed clock does the same) is used for this long, and refreshed earlier on a 401."""

_THROTTLE = {"ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded"}
_DENIED = {"AccessDeniedException", "AccessDenied", "UnrecognizedClientException", "InvalidSignatureException",
           "ExpiredTokenException", "UnauthorizedOperation"}


def registry_host(account_id: str, region: str) -> str:
    """``<account>.dkr.ecr.<region>.amazonaws.com`` (``.com.cn`` in the China partition)."""
    if not (account_id.isdigit() and len(account_id) == 12):
        raise ValueError(f"AWS account id must be 12 digits, got {account_id!r}")
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"{account_id}.dkr.ecr.{region}.{suffix}"


def ecr_client(region: str, endpoint_url: str | None = None) -> Any:
    import boto3

    return boto3.client("ecr", region_name=region, endpoint_url=endpoint_url)


def _map_client_error(exc: Exception, what: str) -> MirrorError:
    code = ""
    resp = getattr(exc, "response", None)
    if isinstance(resp, Mapping):
        code = str(resp.get("Error", {}).get("Code", ""))
        status = int(resp.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    else:
        status = 0
    if code in _THROTTLE or status == 429 or status >= 500:
        return TransientMirrorError(f"ECR {what}: {code or type(exc).__name__}")
    if code in _DENIED:
        return RegistryAuthError(f"ECR {what}: {code}")
    if type(exc).__name__ in {"EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError"}:
        return TransientMirrorError(f"ECR {what}: {type(exc).__name__}")
    if type(exc).__name__ in {"NoCredentialsError", "PartialCredentialsError"}:
        return RegistryAuthError(f"ECR {what}: no AWS credentials")
    return MirrorError(f"ECR {what}: {code or type(exc).__name__}")


def ensure_repository(
    region: str,
    name: str,
    *,
    client: Any | None = None,
    endpoint_url: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> str:
    """Create the ECR repository ``name`` unless it exists; return its URI. Idempotent."""
    from botocore.exceptions import BotoCoreError, ClientError

    ecr = client if client is not None else ecr_client(region, endpoint_url)
    kwargs: dict[str, Any] = {
        "repositoryName": name,
        "imageTagMutability": "MUTABLE",
        "imageScanningConfiguration": {"scanOnPush": False},
    }
    if tags:
        kwargs["tags"] = [{"Key": k, "Value": v} for k, v in tags.items()]
    try:
        resp = ecr.create_repository(**kwargs)
        uri = str(resp["repository"]["repositoryUri"])
        log.info("created ECR repository %s in %s", name, region)
        return uri
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "RepositoryAlreadyExistsException":
            raise _map_client_error(exc, f"create_repository {name}") from None
    except BotoCoreError as exc:
        raise _map_client_error(exc, f"create_repository {name}") from None
    try:
        found = ecr.describe_repositories(repositoryNames=[name])["repositories"][0]
        return str(found["repositoryUri"])
    except (ClientError, BotoCoreError) as exc:
        raise _map_client_error(exc, f"describe_repositories {name}") from None


class EcrTokenProvider:
    """Registry credentials from ``ecr.get_authorization_token``, cached until a margin before
    ``expiresAt``. Call with ``force_refresh=True`` after a 401. Thread-safe."""

    def __init__(
        self,
        region: str,
        *,
        client: Any | None = None,
        endpoint_url: str | None = None,
        registry_id: str | None = None,
        margin_s: float = REFRESH_MARGIN_S,
        past_expiry_ttl_s: float = PAST_EXPIRY_TTL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.region = region
        self._client = client
        self._endpoint_url = endpoint_url
        self._registry_id = registry_id
        self._margin = margin_s
        self._past_ttl = past_expiry_ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._creds: Credentials | None = None
        self._refresh_at = 0.0
        self.proxy_endpoint = ""
        self.fetches = 0

    def __call__(self, force_refresh: bool = False) -> Credentials:
        with self._lock:
            if self._creds is not None and not force_refresh and self._clock() < self._refresh_at:
                return self._creds
            self._creds = self._fetch()
            return self._creds

    def auth(self) -> StaticBasicAuth:
        return StaticBasicAuth(self)

    def _fetch(self) -> Credentials:
        from botocore.exceptions import BotoCoreError, ClientError

        if self._client is None:
            self._client = ecr_client(self.region, self._endpoint_url)
        kwargs: dict[str, Any] = {}
        if self._registry_id:
            kwargs["registryIds"] = [self._registry_id]
        try:
            data = self._client.get_authorization_token(**kwargs)["authorizationData"][0]
        except (ClientError, BotoCoreError) as exc:
            raise _map_client_error(exc, "get_authorization_token") from None
        except (KeyError, IndexError):
            raise RegistryAuthError("ECR get_authorization_token returned no authorizationData") from None
        creds = decode_authorization_token(str(data["authorizationToken"]))
        now = self._clock()
        expires = _timestamp(data.get("expiresAt"))
        if expires is None or expires <= now:
            self._refresh_at = now + self._past_ttl
        else:
            self._refresh_at = max(now + 1.0, expires - min(self._margin, (expires - now) / 2))
        self.proxy_endpoint = str(data.get("proxyEndpoint", ""))
        self.fetches += 1
        log.debug("ECR registry token fetched for %s; refresh in %.0fs", self.region, self._refresh_at - now)
        return creds


def decode_authorization_token(token: str) -> Credentials:
    """``base64("AWS:<password>")`` -> Credentials("AWS", password)."""
    try:
        user, sep, password = base64.b64decode(token, validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        raise RegistryAuthError("ECR authorization token is not base64 user:password") from None
    if not sep or not user:
        raise RegistryAuthError("ECR authorization token is not base64 user:password")
    return Credentials(user, password)


def _timestamp(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.timestamp()
    if isinstance(value, int | float):
        return float(value)
    return None
