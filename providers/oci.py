"""OCI distribution copy engine: mirrors an image from Harbor into ECR/ACR, digest for digest.

Why hand-written: burst needs a *digest-exact, streaming* registry-to-registry copy with
cross-repository mounts and per-blob parallelism, that verifies every byte before the target
links it, and that runs in-process under the controller's error model. No well-kept Python
library does that (the registry clients on PyPI either pull whole layers into memory or to disk,
re-serialise manifests, or are unmaintained), and shelling out to skopeo would put a second
auth/retry/error model next to ours. The wire protocol is small; this module speaks it with httpx.

How one copy goes (:meth:`OciCopier.copy`):

1. GET the source manifest (tag or digest), accepting OCI index, OCI manifest, Docker manifest
   list and Docker v2 manifest. Its digest is the sha256 of the bytes received. For an index the
   platform manifests are fetched too. With ``platforms`` chosen, a new index holding only those
   entries is built: **its digest differs from the source index** (the platform manifests and
   blobs keep theirs). Without ``platforms`` the index bytes are kept and so is its digest.
2. HEAD the target reference; when it already names the same digest the copy is done.
3. Per platform manifest already present at the target (HEAD by digest) its blobs are skipped.
   Every other blob, in parallel (``parallel`` workers): HEAD at the target (present: skipped);
   else a cross-repository mount when this process has seen the blob in another repository of
   the same target registry; else an upload streamed from the source GET (its body read
   straight off the connection past the first chunk, :func:`body_chunks`). The bytes are hashed
   while they stream; the upload is ``POST`` + ``PATCH`` (one streamed PATCH, or ``chunk_size``
   PATCHes with ``Content-Range`` above ``chunk_threshold``) and only after the hash matched the
   closing ``PUT ?digest=``. On a mismatch the session is DELETEd and :class:`DigestMismatch`
   raised: the registry never linked the blob. No layer is ever held whole in memory.
4. Manifests are PUT with their exact bytes and Content-Type, children before the index.

Requests answered 429/5xx (or lost on the network) are retried with exponential backoff that
honours ``Retry-After`` (capped); the sleep function is injectable. A 401 is answered once by the
registry's :class:`providers.registry_auth.RegistryAuth` (which refreshes an expired token) and
the request repeated. Errors are :mod:`burst.errors` mirror errors; httpx exceptions never escape.
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import json
import logging
import os
import re
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpcore
import httpx

from burst.errors import DigestMismatch, InputError, MirrorError, TransientMirrorError
from providers.registry_auth import AnonymousAuth, RegistryAuth, RegistryAuthError, parse_challenge

log = logging.getLogger(__name__)

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
IMAGE_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
ACCEPT = ", ".join((OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST))
FOREIGN_LAYER_TYPES = frozenset(
    {
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    }
)
MIB = 1 << 20


# ---- errors ---------------------------------------------------------------------------------


class InvalidReference(MirrorError, InputError):
    """An image reference that cannot be parsed."""

    def __init__(self, ref: str, message: str) -> None:
        InputError.__init__(self, ref, message)


class ManifestNotFound(MirrorError):
    """The source has no such tag or digest."""


class UnsupportedManifest(MirrorError):
    """A manifest type this engine does not copy (Docker schema 1, unknown artifacts)."""


class RegistryRequestError(MirrorError):
    """A registry refused a request for a reason retrying will not fix (4xx)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class RetryableRegistryError(TransientMirrorError):
    """429/5xx/network trouble. ``retry_after`` is the server's hint in seconds, when given."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


# ---- references -----------------------------------------------------------------------------

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_REPO_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")
_HOST_RE = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)(?:\.[A-Za-z0-9-]+)*(?::[0-9]+)?$|^\[[0-9a-fA-F:]+\](?::[0-9]+)?$")


@dataclass(frozen=True, slots=True)
class ImageRef:
    registry: str  # host[:port]
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def reference(self) -> str:
        """What goes after ``/manifests/``: the digest when there is one, else the tag."""
        return self.digest or self.tag or "latest"

    def with_registry(self, registry: str, repository: str) -> ImageRef:
        return ImageRef(registry, repository, self.tag, self.digest)

    def __str__(self) -> str:
        out = f"{self.registry}/{self.repository}"
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


def parse_reference(ref: str, default_registry: str | None = None) -> ImageRef:
    """Parse ``[host[:port]/]repo/path[:tag][@sha256:...]``.

    The first path component is a registry host when it holds a ``.`` or ``:`` or is
    ``localhost``; otherwise ``default_registry`` is used (an error when there is none). A
    reference with neither tag nor digest means ``:latest``.
    """
    text = ref.strip()
    if not text or any(c.isspace() for c in text):
        raise InvalidReference(ref, "not an image reference")
    digest: str | None = None
    if "@" in text:
        text, digest = text.split("@", 1)
        if not _DIGEST_RE.match(digest):
            raise InvalidReference(ref, "digest must be sha256:<64 hex>")
    first, slash, rest = text.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        registry, path = first, rest
    else:
        if default_registry is None:
            raise InvalidReference(ref, "no registry host in the reference (e.g. harbor.example.com/team/image:tag)")
        registry, path = default_registry, text
    if not _HOST_RE.match(registry):
        raise InvalidReference(ref, f"bad registry host {registry!r}")
    tag: str | None = None
    last = path.rsplit("/", 1)[-1]
    if ":" in last:
        path, tag = path.rsplit(":", 1)
        if not _TAG_RE.match(tag):
            raise InvalidReference(ref, f"bad tag {tag!r}")
    if not _REPO_RE.match(path):
        raise InvalidReference(ref, f"bad repository name {path!r} (lower-case, digits, . _ - and /)")
    if tag is None and digest is None:
        tag = "latest"
    return ImageRef(registry, path, tag, digest)


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# ---- settings and results ---------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """One registry as the engine talks to it."""

    host: str  # host[:port]
    auth: RegistryAuth = field(default_factory=AnonymousAuth)
    insecure: bool = False  # plain http (tests, local mirrors)
    ca_bundle: Path | None = None  # TLS CA bundle; system roots when None

    @property
    def base_url(self) -> str:
        return f"{'http' if self.insecure else 'https'}://{self.host}"


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    max_retry_after_s: float = 60.0  # a Retry-After longer than this is capped
    sleep: Callable[[float], None] = time.sleep

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return max(0.0, min(retry_after, self.max_retry_after_s))
        return min(self.max_backoff_s, self.backoff_s * 2**attempt)


@dataclass(frozen=True, slots=True)
class Progress:
    bytes_done: int
    bytes_total: int
    layers_done: int
    layers_total: int


ProgressFn = Callable[[Progress], None]


@dataclass(frozen=True, slots=True)
class CopyResult:
    source: str
    target: str
    digest: str  # digest of the top manifest at the target
    source_digest: str  # equals ``digest`` unless platforms were filtered
    media_type: str
    bytes_uploaded: int = 0
    blobs_copied: int = 0
    blobs_skipped: int = 0
    blobs_mounted: int = 0
    manifests_pushed: int = 0
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class Manifest:
    digest: str
    media_type: str
    raw: bytes
    doc: dict[str, Any]

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES


def _retry_after(resp: httpx.Response) -> float | None:
    value = resp.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _errors_text(resp: httpx.Response) -> str:
    try:
        errs = resp.json().get("errors") or []
        return "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errs) or resp.reason_phrase
    except Exception:
        return resp.reason_phrase


def tune_malloc_for_streaming(buffer_bytes: int = 8 * MIB) -> bool:
    """Keep glibc from mmap-ing (and page-faulting) every streamed chunk buffer.

    Each ``read_size`` chunk is a fresh ``bytes`` object; above glibc's default 128 KiB mmap
    threshold every one is an mmap/munmap pair whose pages the kernel zeroes, which cost a fresh
    process ~10% of its copy time in B3. A long-running process adapts by itself; a CLI run does
    not live long enough. Raises the mmap and trim thresholds. Process-wide; glibc only; returns
    False where it does not apply.
    """
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        ok = libc.mallopt(m_mmap_threshold, buffer_bytes) == 1
        return bool(libc.mallopt(m_trim_threshold, 4 * buffer_bytes) == 1 and ok)
    except (OSError, AttributeError):
        return False


_tls_contexts: dict[tuple[str, str, str], ssl.SSLContext] = {}
_tls_lock = threading.Lock()


def tls_context(ca_bundle: Path | None) -> ssl.SSLContext:
    """The verifying TLS context for a CA bundle (None: httpx's default roots, honouring
    ``SSL_CERT_FILE``/``SSL_CERT_DIR``), built once per process and shared by every client.

    Loading a CA bundle costs ~30 ms; each registry client used to load its own, so a CLI copy
    loaded certifi's bundle twice (source and target) even over plain http, where a redirect to
    https storage may still need it. An ``SSLContext`` is safe to share between connections.
    """
    key = (str(ca_bundle or ""), os.environ.get("SSL_CERT_FILE", ""), os.environ.get("SSL_CERT_DIR", ""))
    with _tls_lock:
        ctx = _tls_contexts.get(key)
        if ctx is None:
            ctx = ssl.create_default_context(cafile=str(ca_bundle)) if ca_bundle else httpx.create_ssl_context()
            _tls_contexts[key] = ctx
        return ctx


# ---- one registry ---------------------------------------------------------------------------


class RegistryClient:
    """The distribution API of one registry over a shared keep-alive httpx client.

    ``request`` adds authorization, answers one 401 challenge, and retries 429/5xx/network errors
    for requests whose body can be sent again. Streaming bodies are never retried here; the
    caller retries the whole blob.
    """

    def __init__(self, endpoint: Endpoint, *, retry: RetryPolicy, timeout: httpx.Timeout, max_connections: int) -> None:
        self.endpoint = endpoint
        self.retry = retry
        self.http = httpx.Client(
            base_url=endpoint.base_url,
            verify=tls_context(endpoint.ca_bundle),
            timeout=timeout,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            headers={"User-Agent": "burst-mirror/0.1"},
        )

    def close(self) -> None:
        self.http.close()

    # -- core ----------------------------------------------------------------------------------
    def _auth_headers(self, scopes: tuple[str, ...], headers: dict[str, str] | None) -> dict[str, str]:
        out = dict(headers or {})
        value = self.endpoint.auth.header(scopes)
        if value:
            out["Authorization"] = value
        return out

    def _send(
        self,
        method: str,
        url: str | httpx.URL,
        scopes: tuple[str, ...],
        *,
        headers: dict[str, str] | None = None,
        content: bytes | Iterator[bytes] | None = None,
        stream: bool = False,
        follow_redirects: bool = False,
    ) -> httpx.Response:
        """One request with the 401 dance (and no other retry). Network errors become retryable."""
        replayable = content is None or isinstance(content, bytes)
        for auth_try in range(2):
            req = self.http.build_request(method, url, headers=self._auth_headers(scopes, headers), content=content)
            try:
                resp = self.http.send(req, stream=stream, follow_redirects=follow_redirects)
            except httpx.TransportError as exc:
                raise RetryableRegistryError(f"{method} {self.endpoint.host}: {type(exc).__name__}: {exc}") from None
            if resp.status_code != 401 or auth_try == 1:
                return resp
            challenge = parse_challenge(resp.headers.get("WWW-Authenticate", ""))
            resp.close()
            if self.endpoint.auth.on_challenge(challenge, scopes, self.http) is None:
                raise RegistryAuthError(f"{self.endpoint.host}: 401 and no credentials to answer it")
            if not replayable:
                # A streamed body cannot be sent again: fresh credentials are cached now, and
                # the caller restarts the whole blob.
                raise RetryableRegistryError(f"{method} {self.endpoint.host}: credentials expired mid-upload")
        raise AssertionError("unreachable")

    def request(
        self,
        method: str,
        url: str | httpx.URL,
        scopes: tuple[str, ...],
        *,
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
        ok: Sequence[int] = (200,),
        stream: bool = False,
        follow_redirects: bool = False,
    ) -> httpx.Response:
        """A replayable request, retried on 429/5xx/network errors. Other statuses not in
        ``ok`` are returned too (404 etc.) unless they are 401/403, which raise."""
        attempt = 0
        while True:
            try:
                resp = self._send(
                    method, url, scopes, headers=headers, content=content, stream=stream, follow_redirects=follow_redirects
                )
                err = self.check(resp, method, ok)
            except RetryableRegistryError as exc:
                err = exc
                resp = None
            if err is None:
                assert resp is not None
                return resp
            if resp is not None:
                resp.close()
            attempt += 1
            if attempt >= self.retry.attempts:
                raise err
            delay = self.retry.delay(attempt - 1, err.retry_after)
            log.info("%s %s: %s; retrying in %.1fs", method, self.endpoint.host, err, delay)
            self.retry.sleep(delay)

    def check(self, resp: httpx.Response, method: str, ok: Sequence[int]) -> RetryableRegistryError | None:
        """None when ``resp`` may be used; a retryable error for 429/5xx; raises on 401/403."""
        code = resp.status_code
        if code in ok:
            return None
        if code == 429 or code >= 500:
            if stream_unread(resp):
                resp.read()
            return RetryableRegistryError(
                f"{method} {resp.request.url.path} at {self.endpoint.host}: {code} {_errors_text(resp)}",
                _retry_after(resp),
            )
        if code in (401, 403):
            if stream_unread(resp):
                resp.read()
            raise RegistryAuthError(f"{method} {resp.request.url.path} at {self.endpoint.host}: {code} {_errors_text(resp)}")
        return None

    # -- manifests -----------------------------------------------------------------------------
    def get_manifest(self, repo: str, reference: str, *, expect_type: str | None = None) -> Manifest:
        resp = self.request("GET", f"/v2/{repo}/manifests/{reference}", (f"repository:{repo}:pull",), headers={"Accept": ACCEPT})
        if resp.status_code == 404:
            raise ManifestNotFound(f"{self.endpoint.host}/{repo}:{reference}: manifest unknown")
        if resp.status_code != 200:
            raise RegistryRequestError(f"GET manifest {repo}:{reference}: {resp.status_code} {_errors_text(resp)}", resp.status_code)
        raw = resp.content
        digest = sha256_digest(raw)
        if reference.startswith("sha256:") and reference != digest:
            raise DigestMismatch(f"{self.endpoint.host}/{repo}@{reference}: manifest bytes hash to {digest}")
        announced = resp.headers.get("Docker-Content-Digest")
        if announced and announced.startswith("sha256:") and announced != digest:
            raise DigestMismatch(f"{self.endpoint.host}/{repo}:{reference}: registry says {announced}, bytes hash to {digest}")
        try:
            doc = json.loads(raw)
        except ValueError:
            raise UnsupportedManifest(f"{repo}:{reference}: manifest is not JSON") from None
        ctype = resp.headers.get("Content-Type", "").split(";")[0].strip()
        media = ctype if ctype in INDEX_TYPES | IMAGE_TYPES else doc.get("mediaType") or expect_type or ""
        if not media and doc.get("schemaVersion") == 2:
            media = OCI_INDEX if "manifests" in doc else OCI_MANIFEST
        if media not in INDEX_TYPES | IMAGE_TYPES:
            raise UnsupportedManifest(f"{repo}:{reference}: unsupported manifest type {media or ctype!r}")
        return Manifest(digest, media, raw, doc)

    def head_manifest(self, repo: str, reference: str, scopes: tuple[str, ...]) -> str | None:
        """The digest the registry holds for ``reference``, or None when absent."""
        resp = self.request("HEAD", f"/v2/{repo}/manifests/{reference}", scopes, headers={"Accept": ACCEPT}, ok=(200, 404))
        if resp.status_code == 404:
            return None
        digest = resp.headers.get("Docker-Content-Digest")
        if digest:
            return digest
        if reference.startswith("sha256:"):
            return reference
        return self.get_manifest(repo, reference).digest

    def put_manifest(self, repo: str, reference: str, m: Manifest) -> None:
        resp = self.request(
            "PUT",
            f"/v2/{repo}/manifests/{reference}",
            (f"repository:{repo}:pull,push",),
            headers={"Content-Type": m.media_type},
            content=m.raw,
            ok=(200, 201, 202),
        )
        if resp.status_code not in (200, 201, 202):
            raise RegistryRequestError(f"PUT manifest {repo}:{reference}: {resp.status_code} {_errors_text(resp)}", resp.status_code)
        got = resp.headers.get("Docker-Content-Digest")
        if got and got != m.digest:
            raise DigestMismatch(f"{self.endpoint.host}/{repo}: stored manifest as {got}, expected {m.digest}")

    # -- blobs ---------------------------------------------------------------------------------
    def blob_exists(self, repo: str, digest: str) -> bool:
        resp = self.request("HEAD", f"/v2/{repo}/blobs/{digest}", (f"repository:{repo}:pull,push",), ok=(200, 404))
        return resp.status_code == 200

    def upload_url(self, location: str) -> httpx.URL:
        return self.http.base_url.join(location)


def stream_unread(resp: httpx.Response) -> bool:
    return not resp.is_closed and not hasattr(resp, "_content")


def body_chunks(resp: httpx.Response, read_size: int, timeout: float | None) -> Iterator[bytes]:
    """The body of a streamed response, read straight off its connection when that is safe.

    httpcore reads a body 64 KiB at a time and h11 copies every byte three more times on its
    way out (into its receive buffer, out of it, into ``bytes``), which with the 16,000 events
    per GiB was half of the copy engine's CPU in B3. When the response is HTTP/1.1 framed by
    ``Content-Length`` (no ``Transfer-Encoding``), the first chunk still comes through httpx: h11
    hands over everything it buffered past the headers, up to the length, as one event. The
    rest is ``recv``-ed ``read_size`` at a time from httpcore's network stream (its public
    ``network_stream`` response extension, TLS included), never past the announced length. h11
    then still counts the body unread, so closing the response closes the connection instead of
    returning it to the pool. Chunked bodies, HTTP/2 and bodies of at most ``read_size`` go
    through ``iter_raw``. Raw bytes either way (no content decoding), and the caller hashes
    them: a framing slip here can only show as a digest mismatch, never as a wrong blob. A
    connection closed before the length is a ``RemoteProtocolError`` (retryable), as from h11.
    """
    length = resp.headers.get("Content-Length", "")
    stream = resp.extensions.get("network_stream")
    if (
        stream is None
        or resp.http_version != "HTTP/1.1"
        or not length.isdigit()
        or int(length) <= read_size
        or "Transfer-Encoding" in resp.headers
    ):
        yield from resp.iter_raw(read_size)
        return
    remaining = int(length)
    raw = cast(Generator[bytes, None, None], resp.iter_raw())  # first: h11's buffered part, one chunk
    try:
        first = next(raw, b"")
        remaining -= len(first)
        if first:
            yield first
        if remaining < 0:
            return  # more than announced already: the caller's size check fails it
        while remaining > 0:
            try:
                data = stream.read(min(read_size, remaining), timeout)
            except httpcore.ReadTimeout as exc:
                raise httpx.ReadTimeout(str(exc)) from None
            except httpcore.NetworkError as exc:
                raise httpx.ReadError(str(exc)) from None
            if not data:  # as h11 says it when it reads the body itself; retryable
                raise httpx.RemoteProtocolError(f"peer closed connection with {remaining} bytes of the body unread")
            remaining -= len(data)
            yield data
    finally:
        raw.close()


# ---- streaming with verification --------------------------------------------------------------


class _VerifyingStream:
    """Reads a blob from the source response, hashing as it goes; serves it in slices."""

    def __init__(self, chunks: Iterator[bytes], digest: str, size: int, on_bytes: Callable[[int], None]) -> None:
        self._chunks = chunks
        self._hash = hashlib.sha256()
        self._left = b""
        self.digest = digest
        self.size = size
        self.read = 0
        self.ended_early = False
        self._on_bytes = on_bytes

    def slice(self, n: int) -> Iterator[bytes]:
        """Yield exactly the next ``n`` bytes (fewer only if the source ends early)."""
        want = n
        while want > 0:
            if not self._left:
                try:
                    self._left = next(self._chunks)
                except StopIteration:
                    self.ended_early = True
                    return
                if not self._left:
                    continue
            part, self._left = self._left[:want], self._left[want:]
            want -= len(part)
            self.read += len(part)
            self._hash.update(part)
            self._on_bytes(len(part))
            yield part

    def verified(self) -> bool:
        """All bytes read, nothing extra, and they hash to the promised digest."""
        if self.read != self.size:
            return False
        if self._left:
            return False
        for extra in self._chunks:  # the source sent more than the descriptor's size
            if extra:
                return False
        return "sha256:" + self._hash.hexdigest() == self.digest


# ---- the engine -------------------------------------------------------------------------------


@dataclass
class _Stats:
    lock: threading.Lock = field(default_factory=threading.Lock)
    bytes_uploaded: int = 0
    copied: int = 0
    skipped: int = 0
    mounted: int = 0
    bytes_done: int = 0
    bytes_total: int = 0
    layers_done: int = 0
    layers_total: int = 0


class OciCopier:
    """Copies images between registries. Thread-safe; keep one per process and reuse it so the
    keep-alive connections and the mount map (digest -> repository per target registry) are
    shared across copies.
    """

    def __init__(
        self,
        *,
        parallel: int = 4,
        chunk_threshold: int = 512 * MIB,
        chunk_size: int = 128 * MIB,
        read_size: int = 1 * MIB,
        retry: RetryPolicy | None = None,
        timeout: httpx.Timeout | None = None,
        mount_map_size: int = 100_000,
    ) -> None:
        if parallel < 1 or chunk_size < 1 or read_size < 1:
            raise ValueError("parallel, chunk_size and read_size must be positive")
        self.parallel = parallel
        self.chunk_threshold = chunk_threshold
        self.chunk_size = chunk_size
        self.read_size = read_size
        self.retry = retry or RetryPolicy()
        self.timeout = timeout or httpx.Timeout(30.0, read=600.0, write=600.0, pool=600.0)
        self._clients: dict[tuple[str, bool, str, int], RegistryClient] = {}
        self._clients_lock = threading.Lock()
        self._known: dict[str, OrderedDict[str, str]] = {}
        self._known_lock = threading.Lock()
        self._known_cap = mount_map_size

    # -- plumbing ------------------------------------------------------------------------------
    def client(self, ep: Endpoint) -> RegistryClient:
        key = (ep.host, ep.insecure, str(ep.ca_bundle or ""), id(ep.auth))
        with self._clients_lock:
            c = self._clients.get(key)
            if c is None:
                c = RegistryClient(ep, retry=self.retry, timeout=self.timeout, max_connections=2 * self.parallel + 4)
                self._clients[key] = c
            return c

    def close(self) -> None:
        with self._clients_lock:
            for c in self._clients.values():
                c.close()
            self._clients.clear()

    def __enter__(self) -> OciCopier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def learn(self, registry: str, digest: str, repo: str) -> None:
        """Remember that ``registry`` holds ``digest`` in ``repo`` (a mount source)."""
        with self._known_lock:
            m = self._known.setdefault(registry, OrderedDict())
            m[digest] = repo
            m.move_to_end(digest)
            while len(m) > self._known_cap:
                m.popitem(last=False)

    def known_repo(self, registry: str, digest: str) -> str | None:
        with self._known_lock:
            m = self._known.get(registry)
            return m.get(digest) if m is not None else None

    # -- public API ----------------------------------------------------------------------------
    def resolve(self, src: Endpoint, ref: ImageRef) -> str:
        """The manifest digest ``ref`` names at ``src`` (a HEAD). Raises ManifestNotFound."""
        digest = self.client(src).head_manifest(ref.repository, ref.reference, (f"repository:{ref.repository}:pull",))
        if digest is None:
            raise ManifestNotFound(f"{ref}: manifest unknown")
        return digest

    def fetch(self, src: Endpoint, ref: ImageRef) -> Manifest:
        return self.client(src).get_manifest(ref.repository, ref.reference)

    def copy(
        self,
        src: Endpoint,
        src_ref: ImageRef,
        dst: Endpoint,
        dst_ref: ImageRef,
        *,
        platforms: Sequence[str] | None = None,
        progress: ProgressFn | None = None,
    ) -> CopyResult:
        """Copy ``src_ref`` to ``dst_ref`` (its tag, or by digest when it has none)."""
        t0 = time.monotonic()
        sc, dc = self.client(src), self.client(dst)
        repo = dst_ref.repository
        push_scope = (f"repository:{repo}:pull,push",)
        top = sc.get_manifest(src_ref.repository, src_ref.reference)
        source_digest = top.digest
        children: list[Manifest] = []
        if top.is_index:
            top, chosen = select_platforms(top, platforms)
            children = self._fetch_children(sc, src_ref.repository, chosen)
        if dst_ref.digest and dst_ref.digest != top.digest:
            raise MirrorError(f"{dst_ref}: target digest differs from the copied manifest {top.digest}")
        dst_reference = dst_ref.tag or top.digest
        images = children if top.is_index else [top]
        blobs: dict[str, dict[str, Any]] = {}
        for m in images:
            for d in _blobs_of(m):
                blobs.setdefault(d["digest"], d)

        stats = _Stats(layers_total=len(blobs), bytes_total=sum(int(d.get("size", 0)) for d in blobs.values()))
        if dc.head_manifest(repo, dst_reference, push_scope) == top.digest:
            log.info("%s already at %s/%s:%s", top.digest, dst.host, repo, dst_reference)
            return CopyResult(str(src_ref), str(dst_ref), top.digest, source_digest, top.media_type,
                              blobs_skipped=len(blobs), seconds=time.monotonic() - t0)

        # A manifest present by digest at the target implies its blobs are (registries refuse a
        # manifest whose blobs are missing), so its blobs need no HEAD each.
        present = {m.digest for m in images if dc.head_manifest(repo, m.digest, push_scope) == m.digest}
        needed: dict[str, dict[str, Any]] = {}
        for m in images:
            if m.digest not in present:
                for d in _blobs_of(m):
                    needed.setdefault(d["digest"], d)
        with stats.lock:
            for dg, d in blobs.items():
                if dg not in needed:
                    stats.skipped += 1
                    stats.layers_done += 1
                    stats.bytes_done += int(d.get("size", 0))
        self._report(stats, progress)

        self._copy_blobs(sc, src_ref.repository, dc, repo, list(needed.values()), stats, progress)

        pushed = 0
        for m in children:
            if m.digest not in present:
                dc.put_manifest(repo, m.digest, m)
                pushed += 1
        dc.put_manifest(repo, dst_reference, top)
        pushed += 1
        result = CopyResult(
            str(src_ref),
            str(dst_ref),
            top.digest,
            source_digest,
            top.media_type,
            bytes_uploaded=stats.bytes_uploaded,
            blobs_copied=stats.copied,
            blobs_skipped=stats.skipped,
            blobs_mounted=stats.mounted,
            manifests_pushed=pushed,
            seconds=time.monotonic() - t0,
        )
        log.info(
            "copied %s -> %s (%s): %d bytes, %d blobs copied, %d skipped, %d mounted in %.1fs",
            src_ref, dst_ref, top.digest, result.bytes_uploaded, result.blobs_copied,
            result.blobs_skipped, result.blobs_mounted, result.seconds,
        )
        return result

    # -- internals -----------------------------------------------------------------------------
    def _fetch_children(self, sc: RegistryClient, repo: str, descs: Sequence[dict[str, Any]]) -> list[Manifest]:
        out: list[Manifest] = []
        for d in descs:
            m = sc.get_manifest(repo, d["digest"], expect_type=d.get("mediaType"))
            if m.is_index:
                raise UnsupportedManifest(f"{repo}@{m.digest}: nested index")
            out.append(m)
        return out

    def _report(self, stats: _Stats, progress: ProgressFn | None) -> None:
        if progress is None:
            return
        with stats.lock:
            p = Progress(stats.bytes_done, stats.bytes_total, stats.layers_done, stats.layers_total)
        progress(p)

    def _copy_blobs(
        self,
        sc: RegistryClient,
        src_repo: str,
        dc: RegistryClient,
        repo: str,
        descs: list[dict[str, Any]],
        stats: _Stats,
        progress: ProgressFn | None,
    ) -> None:
        if not descs:
            return
        # Largest first: the long poles start early, so the pool drains evenly.
        descs = sorted(descs, key=lambda d: -int(d.get("size", 0)))
        cancel = threading.Event()
        with ThreadPoolExecutor(max_workers=min(self.parallel, len(descs)), thread_name_prefix="oci-blob") as pool:
            futures: list[Future[None]] = [
                pool.submit(self._copy_blob_retrying, sc, src_repo, dc, repo, d, stats, progress, cancel) for d in descs
            ]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            failed = [f for f in done if f.exception() is not None]
            if failed:
                cancel.set()
                for f in futures:
                    f.cancel()
                wait(futures)
                exc = failed[0].exception()
                assert exc is not None
                raise exc

    def _copy_blob_retrying(
        self,
        sc: RegistryClient,
        src_repo: str,
        dc: RegistryClient,
        repo: str,
        desc: dict[str, Any],
        stats: _Stats,
        progress: ProgressFn | None,
        cancel: threading.Event,
    ) -> None:
        attempt = 0
        while True:
            if cancel.is_set():
                return
            try:
                self._copy_blob(sc, src_repo, dc, repo, desc, stats, progress, cancel)
                return
            except RetryableRegistryError as exc:
                if cancel.is_set():
                    return
                attempt += 1
                if attempt >= self.retry.attempts:
                    raise
                delay = self.retry.delay(attempt - 1, exc.retry_after)
                log.info("blob %s: %s; retrying in %.1fs", desc["digest"], exc, delay)
                self.retry.sleep(delay)

    def _copy_blob(
        self,
        sc: RegistryClient,
        src_repo: str,
        dc: RegistryClient,
        repo: str,
        desc: dict[str, Any],
        stats: _Stats,
        progress: ProgressFn | None,
        cancel: threading.Event,
    ) -> None:
        digest: str = desc["digest"]
        size = int(desc.get("size", 0))
        host = dc.endpoint.host

        def finish(kind: str, uploaded: int) -> None:
            with stats.lock:
                setattr(stats, kind, getattr(stats, kind) + 1)
                stats.layers_done += 1
                stats.bytes_uploaded += uploaded
                if kind != "copied":
                    stats.bytes_done += size
            self.learn(host, digest, repo)
            self._report(stats, progress)

        if dc.blob_exists(repo, digest):
            finish("skipped", 0)
            return
        from_repo = self.known_repo(host, digest)
        if from_repo == repo:
            from_repo = None
        location = self._start_upload(dc, repo, digest, from_repo)
        if location is None:
            finish("mounted", 0)
            return
        sent = self._stream_upload(sc, src_repo, dc, repo, location, digest, size, stats, progress, cancel)
        finish("copied", sent)

    def _start_upload(self, dc: RegistryClient, repo: str, digest: str, from_repo: str | None) -> str | None:
        """POST an upload session; with ``from_repo`` try a mount first. None means mounted."""
        scopes: tuple[str, ...] = (f"repository:{repo}:pull,push",)
        url = httpx.URL(f"/v2/{repo}/blobs/uploads/")
        if from_repo:
            scopes += (f"repository:{from_repo}:pull",)
            url = url.copy_merge_params({"mount": digest, "from": from_repo})
        try:
            resp = dc.request("POST", url, scopes, ok=(201, 202), headers={"Content-Length": "0"})
        except RegistryAuthError:
            if not from_repo:
                raise
            # Not allowed to read the other repository: upload instead.
            return self._start_upload(dc, repo, digest, None)
        if resp.status_code == 201 and from_repo:
            log.debug("mounted %s into %s from %s", digest, repo, from_repo)
            return None
        if resp.status_code not in (201, 202) or not resp.headers.get("Location"):
            raise RegistryRequestError(f"POST upload {repo}: {resp.status_code} {_errors_text(resp)}", resp.status_code)
        return resp.headers["Location"]

    def _stream_upload(
        self,
        sc: RegistryClient,
        src_repo: str,
        dc: RegistryClient,
        repo: str,
        location: str,
        digest: str,
        size: int,
        stats: _Stats,
        progress: ProgressFn | None,
        cancel: threading.Event,
    ) -> int:
        push = (f"repository:{repo}:pull,push",)
        url = dc.upload_url(location)
        last_report = [0.0]

        def on_bytes(n: int) -> None:
            if cancel.is_set():
                raise _Cancelled()
            with stats.lock:
                stats.bytes_done += n
            now = time.monotonic()
            if progress is not None and now - last_report[0] > 0.1:
                last_report[0] = now
                self._report(stats, progress)

        vs: _VerifyingStream | None = None
        get = sc._send("GET", f"/v2/{src_repo}/blobs/{digest}", (f"repository:{src_repo}:pull",), stream=True, follow_redirects=True)
        ok = False
        try:
            err = sc.check(get, "GET", (200,))
            if err is not None:
                raise err
            if get.status_code != 200:
                raise RegistryRequestError(f"GET blob {src_repo}@{digest}: {get.status_code}", get.status_code)
            vs = _VerifyingStream(body_chunks(get, self.read_size, self.timeout.read), digest, size, on_bytes)
            offset = 0
            chunked = size > self.chunk_threshold
            try:
                while True:
                    n = min(self.chunk_size, size - offset) if chunked else size
                    headers = {"Content-Type": "application/octet-stream", "Content-Length": str(n)}
                    if chunked:
                        headers["Content-Range"] = f"{offset}-{offset + n - 1}"
                    resp = dc._send("PATCH", url, push, headers=headers, content=vs.slice(n))
                    err = dc.check(resp, "PATCH", (202, 204))
                    if err is not None:
                        raise err
                    if resp.status_code not in (202, 204):
                        raise RegistryRequestError(f"PATCH blob {repo}: {resp.status_code} {_errors_text(resp)}", resp.status_code)
                    url = dc.upload_url(resp.headers.get("Location", str(url)))
                    offset += n
                    if not chunked or offset >= size:
                        break
            except (httpx.HTTPError, RetryableRegistryError) as exc:
                # The source ran dry before the promised size: that is a bad blob, not a network fault.
                if vs.ended_early:
                    raise self._mismatch(dc, url, push, digest, vs) from None
                if isinstance(exc, httpx.HTTPError):
                    raise RetryableRegistryError(f"PATCH blob {repo}: {type(exc).__name__}: {exc}") from None
                raise
            if not vs.verified():
                raise self._mismatch(dc, url, push, digest, vs)
            put_url = url.copy_merge_params({"digest": digest})
            resp = dc.request("PUT", put_url, push, content=b"", ok=(201, 204))
            if resp.status_code not in (201, 204):
                raise RegistryRequestError(f"PUT blob {repo}@{digest}: {resp.status_code} {_errors_text(resp)}", resp.status_code)
            ok = True
            return size
        finally:
            get.close()
            if not ok:
                self._abort(dc, url, push)
                if vs is not None:
                    with stats.lock:
                        stats.bytes_done -= vs.read

    def _mismatch(self, dc: RegistryClient, url: httpx.URL, push: tuple[str, ...], digest: str, vs: _VerifyingStream) -> DigestMismatch:
        self._abort(dc, url, push)
        return DigestMismatch(f"blob {digest}: the source sent {vs.read} bytes that do not hash to it; upload aborted")

    def _abort(self, dc: RegistryClient, url: httpx.URL, push: tuple[str, ...]) -> None:
        with contextlib.suppress(Exception):
            dc._send("DELETE", url, push).close()


class _Cancelled(RetryableRegistryError):
    def __init__(self) -> None:
        super().__init__("cancelled: another blob failed")


def _blobs_of(m: Manifest) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cfg = m.doc.get("config")
    if isinstance(cfg, dict) and cfg.get("digest"):
        out.append(cfg)
    for layer in m.doc.get("layers") or []:
        if layer.get("mediaType") in FOREIGN_LAYER_TYPES or layer.get("urls"):
            continue  # non-distributable: lives at its URLs, never in a registry
        out.append(layer)
    for d in out:
        if not _DIGEST_RE.match(str(d.get("digest", ""))):
            raise UnsupportedManifest(f"{m.digest}: blob digest {d.get('digest')!r} is not sha256")
    return out


def platform_of(desc: dict[str, Any]) -> str:
    p = desc.get("platform") or {}
    out = f"{p.get('os', '')}/{p.get('architecture', '')}"
    if p.get("variant"):
        out += f"/{p['variant']}"
    return out


def select_platforms(index: Manifest, platforms: Sequence[str] | None) -> tuple[Manifest, list[dict[str, Any]]]:
    """The index to push and the entries to copy.

    No ``platforms``: the index unchanged (same bytes, same digest). Otherwise the entries whose
    ``os/arch[/variant]`` matches one of ``platforms`` (``linux/arm64`` also matches
    ``linux/arm64/v8``); when that is fewer than all, a new index is serialised and **its digest
    differs from the source's**. Raises MirrorError when nothing matches.
    """
    entries: list[dict[str, Any]] = list(index.doc.get("manifests") or [])
    if not platforms:
        return index, entries
    want = [p.strip().lower() for p in platforms if p.strip()]

    def matches(d: dict[str, Any]) -> bool:
        have = platform_of(d).lower()
        return any(have == w or have.startswith(w + "/") for w in want)

    chosen = [d for d in entries if matches(d)]
    if not chosen:
        have = ", ".join(sorted({platform_of(d) for d in entries}))
        raise MirrorError(f"{index.digest}: no platform of {', '.join(want)} in the index (has {have})")
    if len(chosen) == len(entries):
        return index, entries
    doc = dict(index.doc)
    doc["manifests"] = chosen
    raw = json.dumps(doc, separators=(",", ":")).encode()
    return Manifest(sha256_digest(raw), index.media_type, raw, doc), chosen
