"""Registry authentication for the OCI copy engine (:mod:`providers.oci`).

One small interface, :class:`RegistryAuth`, and the schemes burst meets:

* :class:`ChallengeAuth`: the Docker/OCI scheme every registry speaks. Answers a ``Basic``
  challenge with username/password, and a ``Bearer realm=..,service=..,scope=..`` challenge by
  fetching a token from the realm (with the credentials as basic auth when there are any, else
  anonymously). Tokens are cached per scope set until ``expires_in`` (minus a margin). Harbor
  robot accounts are just this with user ``robot$<name>`` (see :func:`harbor_robot`).
* :class:`StaticBasicAuth`: basic credentials from a provider callable, sent up-front. ECR uses it
  with :class:`providers.ecr.EcrTokenProvider`.
* :class:`AcrAuth`: Azure Container Registry. An AAD access token (from any azure-identity style
  credential with ``get_token``) is exchanged at ``/oauth2/exchange`` for an ACR refresh token,
  which ``/oauth2/token`` turns into a per-scope access token.

Every scheme follows the same retry rule, applied by the engine: a request answered 401 is retried
once after :meth:`RegistryAuth.on_challenge` produced new credentials (the cached token is
dropped first, so an expired token is refreshed). A second 401 is final.

Secrets: :class:`Credentials` hides the password from ``repr``; nothing here logs a secret or
puts one in an exception message. Credentials come from the environment or from files
(:func:`credentials_from_env`).
"""

from __future__ import annotations

import base64
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

from burst.errors import ConfigError, MirrorError

log = logging.getLogger(__name__)

TOKEN_MARGIN_S = 30.0
"""Refresh a cached token this long before the expiry its issuer announced."""
DEFAULT_TOKEN_TTL_S = 60.0
"""Lifetime assumed for a token whose response gives no ``expires_in`` (the spec's default)."""


class RegistryAuthError(MirrorError):
    """Credentials refused or a token endpoint failed. Not retried: an admin must act."""


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)

    def basic_header(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


def harbor_robot(name: str, secret: str) -> Credentials:
    """Harbor robot account: ``robot$<name>`` plus its secret, used as basic credentials."""
    user = name if name.startswith("robot$") else f"robot${name}"
    return Credentials(user, secret)


def _env_key(name: str) -> str:
    return re.sub(r"[^A-Z0-9]+", "_", name.upper()).strip("_")


def credentials_from_env(name: str, environ: Mapping[str, str] | None = None) -> Credentials | None:
    """Read ``BURST_REGISTRY_<NAME>_USERNAME`` and ``_PASSWORD`` or ``_PASSWORD_FILE``.

    ``NAME`` is upper-cased with every run of other characters turned into ``_`` (so a host such
    as ``127.0.0.1:5000`` becomes ``127_0_0_1_5000``). Returns None when no username is set.
    Raises :class:`ConfigError` (naming the variable, never its value) when the password is
    missing or its file cannot be read.
    """
    env = os.environ if environ is None else environ
    key = f"BURST_REGISTRY_{_env_key(name)}"
    user = env.get(f"{key}_USERNAME")
    if not user:
        return None
    password = env.get(f"{key}_PASSWORD")
    if password is None:
        path = env.get(f"{key}_PASSWORD_FILE")
        if not path:
            raise ConfigError(key, f"{key}_USERNAME is set but neither {key}_PASSWORD nor {key}_PASSWORD_FILE")
        try:
            password = Path(path).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{key}_PASSWORD_FILE", f"cannot read the secret file: {exc.strerror}") from None
    return Credentials(user, password)


# ---- challenges -----------------------------------------------------------------------------

_PARAM = re.compile(r'([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lower case: "basic" or "bearer"
    params: Mapping[str, str]

    @property
    def scopes(self) -> tuple[str, ...]:
        return tuple(self.params.get("scope", "").split())


def parse_challenge(header: str) -> Challenge | None:
    """Parse a ``WWW-Authenticate`` value (``Bearer realm="..",service="..",scope=".."``)."""
    header = header.strip()
    if not header:
        return None
    scheme, _, rest = header.partition(" ")
    params = {m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3)) for m in _PARAM.finditer(rest)}
    return Challenge(scheme.lower(), params)


def merge_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """Merge ``repository:name:actions`` scopes so each resource appears once, actions united."""
    merged: dict[str, set[str]] = {}
    for scope in scopes:
        resource, _, actions = scope.rpartition(":")
        if not resource:
            continue
        merged.setdefault(resource, set()).update(a for a in actions.split(",") if a)
    return tuple(f"{res}:{','.join(sorted(acts))}" for res, acts in sorted(merged.items()))


# ---- the interface --------------------------------------------------------------------------


class RegistryAuth(Protocol):
    """How one registry wants its requests authorized. Implementations are thread-safe."""

    def header(self, scopes: tuple[str, ...]) -> str | None:
        """An ``Authorization`` value to send up-front for ``scopes``, when one is cached."""
        ...

    def on_challenge(self, challenge: Challenge | None, scopes: tuple[str, ...], client: httpx.Client) -> str | None:
        """A 401 arrived: drop what is cached for ``scopes`` and get fresh credentials.

        Returns the new ``Authorization`` value, or None when this scheme cannot answer.
        """
        ...


class AnonymousAuth:
    """No credentials; still answers bearer challenges with anonymous tokens (public repos)."""

    def __init__(self) -> None:
        self._inner = ChallengeAuth(None)

    def header(self, scopes: tuple[str, ...]) -> str | None:
        return self._inner.header(scopes)

    def on_challenge(self, challenge: Challenge | None, scopes: tuple[str, ...], client: httpx.Client) -> str | None:
        return self._inner.on_challenge(challenge, scopes, client)


def _json_object(resp: httpx.Response, what: str) -> dict[str, Any]:
    """The JSON object of a 200 answer, or a RegistryAuthError that says what came instead (a
    proxy's login page, say); never the body itself, which may echo credentials."""
    try:
        body = resp.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        ctype = resp.headers.get("content-type", "?")
        raise RegistryAuthError(f"{what} answered 200 with a body that is not a JSON object (content-type {ctype})")
    return body


@dataclass
class _Token:
    value: str
    expires_at: float  # monotonic


class ChallengeAuth:
    """Basic or bearer-token auth as the registry's challenge asks.

    ``clock`` is monotonic seconds (injectable for tests).
    """

    def __init__(self, creds: Credentials | None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._creds = creds
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens: dict[tuple[str, ...], _Token] = {}
        self._bearer: Challenge | None = None  # last bearer challenge: realm and service
        self._basic = False
        self._client: httpx.Client | None = None  # the engine's client: same TLS settings
        self.tokens_fetched = 0

    def header(self, scopes: tuple[str, ...]) -> str | None:
        with self._lock:
            if self._basic and self._creds is not None:
                return self._creds.basic_header()
            tok = self._tokens.get(merge_scopes(scopes))
            if tok is not None and tok.expires_at > self._clock():
                return f"Bearer {tok.value}"
            if self._bearer is None:
                return None
            challenge, client = self._bearer, self._client
            if client is not None and client.is_closed:
                client = None  # the copier that answered the challenge has been closed
        # We know the realm from an earlier challenge: fetch proactively, saving a 401 round trip.
        return self._fetch(challenge, scopes, client=client)

    def on_challenge(self, challenge: Challenge | None, scopes: tuple[str, ...], client: httpx.Client) -> str | None:
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            if self._creds is None:
                return None
            with self._lock:
                self._basic = True
            return self._creds.basic_header()
        if challenge.scheme != "bearer" or "realm" not in challenge.params:
            return None
        with self._lock:
            self._bearer, self._client = challenge, client
            self._tokens.pop(merge_scopes(scopes), None)
        return self._fetch(challenge, scopes + challenge.scopes, client=client, key_scopes=scopes)

    def _fetch(
        self,
        challenge: Challenge,
        scopes: tuple[str, ...],
        *,
        client: httpx.Client | None = None,
        key_scopes: tuple[str, ...] | None = None,
    ) -> str:
        want = merge_scopes(scopes)
        params: list[tuple[str, str | int | float | bool | None]] = []
        if "service" in challenge.params:
            params.append(("service", challenge.params["service"]))
        params += [("scope", s) for s in want]
        headers = {"Accept": "application/json"}
        if self._creds is not None:
            headers["Authorization"] = self._creds.basic_header()
        realm = challenge.params["realm"]
        try:
            if client is not None:
                resp = client.get(realm, params=params, headers=headers)
            else:
                resp = httpx.get(realm, params=params, headers=headers, timeout=30.0)
        except httpx.HTTPError as exc:
            raise RegistryAuthError(f"token endpoint {realm} unreachable: {type(exc).__name__}") from None
        if resp.status_code != 200:
            raise RegistryAuthError(f"token endpoint {realm} answered {resp.status_code} for scopes {' '.join(want)}")
        body = _json_object(resp, f"token endpoint {realm}")
        value = body.get("token") or body.get("access_token")
        if not value:
            raise RegistryAuthError(f"token endpoint {realm} returned no token")
        ttl = float(body.get("expires_in") or DEFAULT_TOKEN_TTL_S)
        expires = self._clock() + max(1.0, ttl - min(TOKEN_MARGIN_S, ttl / 2))
        with self._lock:
            self.tokens_fetched += 1
            self._tokens[merge_scopes(key_scopes if key_scopes is not None else scopes)] = _Token(value, expires)
        log.debug("registry token fetched for %s (ttl %.0fs)", " ".join(want), ttl)
        return f"Bearer {value}"


class StaticBasicAuth:
    """Basic credentials from ``provider(force_refresh)``, sent up-front (ECR).

    On a 401 the provider is called with ``force_refresh=True`` once per challenge.
    """

    def __init__(self, provider: Callable[[bool], Credentials]) -> None:
        self._provider = provider

    def header(self, scopes: tuple[str, ...]) -> str | None:
        return self._provider(False).basic_header()

    def on_challenge(self, challenge: Challenge | None, scopes: tuple[str, ...], client: httpx.Client) -> str | None:
        return self._provider(True).basic_header()


class AzureCredential(Protocol):
    """What azure-identity credentials offer (``DefaultAzureCredential`` and friends)."""

    def get_token(self, *scopes: str, **kwargs: Any) -> Any: ...


ARM_SCOPE = "https://management.azure.com/.default"


class AcrAuth:
    """Azure Container Registry: AAD token -> ACR refresh token -> per-scope access token.

    ``base_url`` is ``https://<registry>`` (``http://`` only in tests).
    """

    def __init__(
        self,
        registry: str,
        credential: AzureCredential,
        *,
        base_url: str | None = None,
        tenant: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self._credential = credential
        self._base = (base_url or f"https://{registry}").rstrip("/")
        self._tenant = tenant
        self._clock = clock
        self._lock = threading.Lock()
        self._refresh: _Token | None = None
        # One exchange at a time: with parallel blob copies every thread meets the same 401,
        # and each would otherwise trade its own AAD token (ACR throttles the exchange).
        self._exchange_lock = threading.Lock()
        self._tokens: dict[tuple[str, ...], _Token] = {}
        self._service = ""  # from the last challenge, for proactive fetches
        self._client: httpx.Client | None = None
        self.exchanges = 0

    def header(self, scopes: tuple[str, ...]) -> str | None:
        with self._lock:
            tok = self._tokens.get(merge_scopes(scopes))
            if tok is not None and tok.expires_at > self._clock():
                return f"Bearer {tok.value}"
            fresh = self._refresh is not None and self._refresh.expires_at > self._clock()
            service, client = self._service, self._client
        if fresh and service and client is not None and not client.is_closed and scopes:
            # A refresh token in hand and the service known from an earlier challenge: get the
            # access token for this new scope now, saving the 401 round trip per repository.
            # Only an optimisation: any failure (the remembered client closed under us, a
            # refused refresh token) falls back to the challenge path, which reports properly.
            try:
                return self._access_token(service, scopes, scopes, client)
            except Exception as exc:  # noqa: BLE001 - see above
                log.debug("ACR %s: early token fetch failed (%s); waiting for the challenge", self.registry,
                          type(exc).__name__)
        return None

    def on_challenge(self, challenge: Challenge | None, scopes: tuple[str, ...], client: httpx.Client) -> str | None:
        service = self.registry
        if challenge is not None and challenge.params.get("service"):
            service = challenge.params["service"]
        want = merge_scopes(scopes + (challenge.scopes if challenge else ()))
        with self._lock:
            self._tokens.pop(merge_scopes(scopes), None)
            self._service, self._client = service, client
        return self._access_token(service, want, scopes, client)

    def _access_token(
        self, service: str, want: tuple[str, ...], scopes: tuple[str, ...], client: httpx.Client
    ) -> str:
        """Trade the refresh token (exchanging first when there is none) for an access token to
        ``want``, cached under ``scopes``."""
        want = merge_scopes(want)
        with self._lock:
            held = self._refresh
            refresh = held if held and held.expires_at > self._clock() else None
        if refresh is None:
            refresh = self._exchange(service, client, stale=held)
        resp = self._post(
            client,
            "/oauth2/token",
            {"grant_type": "refresh_token", "service": service, "scope": " ".join(want), "refresh_token": refresh.value},
        )
        if resp.status_code == 401:  # the refresh token died early: exchange again, once
            refresh = self._exchange(service, client, stale=refresh)
            resp = self._post(
                client,
                "/oauth2/token",
                {"grant_type": "refresh_token", "service": service, "scope": " ".join(want), "refresh_token": refresh.value},
            )
        if resp.status_code != 200:
            raise RegistryAuthError(f"ACR {self.registry} /oauth2/token answered {resp.status_code}")
        value = _json_object(resp, f"ACR {self.registry} /oauth2/token").get("access_token")
        if not value:
            raise RegistryAuthError(f"ACR {self.registry} /oauth2/token returned no access_token")
        with self._lock:
            # ACR access tokens live 75 minutes; the response gives no expiry. Stay well inside.
            self._tokens[merge_scopes(scopes)] = _Token(value, self._clock() + 30 * 60)
        return f"Bearer {value}"

    def _exchange(self, service: str, client: httpx.Client, *, stale: _Token | None) -> _Token:
        """A new refresh token, unless another thread already replaced ``stale`` (the one this
        caller found missing, expired or refused) with a fresh one: single flight."""
        with self._exchange_lock:
            with self._lock:
                cur = self._refresh
                if cur is not None and cur is not stale and cur.expires_at > self._clock():
                    return cur
            return self._exchange_now(service, client)

    def _exchange_now(self, service: str, client: httpx.Client) -> _Token:
        try:
            aad = self._credential.get_token(ARM_SCOPE)
        except Exception as exc:  # azure-identity raises many types; none may cross the port
            raise RegistryAuthError(f"ACR {self.registry}: no AAD token ({type(exc).__name__})") from None
        data = {"grant_type": "access_token", "service": service, "access_token": str(aad.token)}
        if self._tenant:
            data["tenant"] = self._tenant
        resp = self._post(client, "/oauth2/exchange", data)
        if resp.status_code != 200:
            raise RegistryAuthError(f"ACR {self.registry} /oauth2/exchange answered {resp.status_code}")
        value = _json_object(resp, f"ACR {self.registry} /oauth2/exchange").get("refresh_token")
        if not value:
            raise RegistryAuthError(f"ACR {self.registry} /oauth2/exchange returned no refresh_token")
        tok = _Token(value, self._clock() + 2 * 3600)  # ACR refresh tokens live 3 h
        with self._lock:
            self._refresh = tok
            self.exchanges += 1
        return tok

    def _post(self, client: httpx.Client, path: str, data: Mapping[str, str]) -> httpx.Response:
        try:
            return client.post(self._base + path, data=dict(data), headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise RegistryAuthError(f"ACR {self.registry}{path} unreachable: {type(exc).__name__}") from None
