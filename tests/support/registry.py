"""Real OCI registries for tests and benchmarks (RECIPES.md, "OCI registries").

* :class:`RegistryServer`: Debian's ``docker-registry`` (CNCF distribution 2.8) on 127.0.0.1 at
  a free port, filesystem storage under a temp dir, deletes enabled, logs to a file. Auth: none,
  basic (``htpasswd -Bbn``) or token (pointing at a :class:`TokenServer`).
* :class:`TokenServer`: the Docker token protocol. Signs ES256 JWTs with a generated key; the
  registry trusts it through ``rootcertbundle`` (a self-signed cert of the key). The JWT carries
  both ``x5c`` (the cert, which distribution prefers) and ``kid`` (the libtrust key id of the
  public key, its fallback). ``ttl_s`` can be made small or negative to hand out short-lived
  tokens while still announcing a long ``expires_in`` (distribution allows 60 s of leeway).
* :class:`CountingProxy`: an HTTP reverse proxy in front of a registry that records every
  request and can inject a status (429 with Retry-After) or corrupt blob bytes.
* OCI layouts written from Python (:class:`LayoutWriter`) and pushed with skopeo.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import hashlib
import http.client
import io
import json
import os
import re
import shutil
import socket
import subprocess
import tarfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

REGISTRY_BIN = shutil.which("docker-registry") or "/usr/bin/docker-registry"
SKOPEO = shutil.which("skopeo")
HTPASSWD = shutil.which("htpasswd")

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


def tools_available() -> bool:
    return bool(os.path.exists(REGISTRY_BIN) and SKOPEO and HTPASSWD)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(host: str, path: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection(host, timeout=2)
            conn.request("GET", path)
            conn.getresponse().read()
            conn.close()
            return
        except OSError as exc:
            last = exc
            time.sleep(0.05)
    raise RuntimeError(f"{host}{path} did not come up: {last}")


# ---- token server -------------------------------------------------------------------------------


def libtrust_key_id(public_der: bytes) -> str:
    """Key id as docker/libtrust derives it: sha256 of the SPKI DER, first 240 bits, base32,
    in 12 colon-separated groups of 4."""
    s = base64.b32encode(hashlib.sha256(public_der).digest()[:30]).decode().rstrip("=")
    return ":".join(s[i : i + 4] for i in range(0, len(s), 4))


class TokenServer:
    """Docker registry token server. ``users`` maps username -> password.

    Every authenticated user gets every action asked for, except that ``deny_pull`` lists
    repositories no one may pull (to exercise refused mounts). Anonymous requests get 401.
    """

    def __init__(self, root: Path, users: dict[str, str], *, service: str = "burst-test-registry",
                 issuer: str = "burst-test-token-issuer") -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        self.users = dict(users)
        self.service = service
        self.issuer = issuer
        self.ttl_s = 300.0  # the exp claim: iat + ttl_s (may be negative: see module doc)
        self.announced_ttl_s = 300  # the expires_in the client is told
        self.deny_pull: set[str] = set()
        self.issued: list[tuple[str, tuple[str, ...]]] = []
        self._lock = threading.Lock()
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "burst test token signer")])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                              key_encipherment=False, data_encipherment=False, key_agreement=False,
                              encipher_only=False, decipher_only=False),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        root.mkdir(parents=True, exist_ok=True)
        self.cert_path = root / "token-signer.pem"
        self.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self._key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.kid = libtrust_key_id(spki)
        self._x5c = [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]
        self.port = free_port()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                server._handle(self)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def start(self) -> TokenServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def reset(self) -> None:
        with self._lock:
            self.ttl_s = 300.0
            self.announced_ttl_s = 300
            self.deny_pull = set()
            self.issued.clear()

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        import jwt

        url = urlsplit(h.path)
        if url.path != "/token":
            h.send_response(404)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        user = None
        auth = h.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            u, _, p = base64.b64decode(auth[6:]).decode().partition(":")
            if self.users.get(u) == p:
                user = u
        if user is None:
            body = b'{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}'
            h.send_response(401)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
            return
        q = parse_qs(url.query)
        scopes = tuple(s for v in q.get("scope", []) for s in v.split(" ") if s)
        access = []
        for scope in scopes:
            typ, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            acts = [a for a in actions.split(",") if a]
            if name in self.deny_pull:
                acts = []
            access.append({"type": typ, "name": name, "actions": acts})
        now = int(time.time())
        with self._lock:
            ttl, announced = self.ttl_s, self.announced_ttl_s
            self.issued.append((user, scopes))
        claims = {
            "iss": self.issuer,
            "sub": user,
            "aud": q.get("service", [self.service])[0],
            "exp": int(now + ttl),
            "nbf": int(now + min(0, ttl) - 10),
            "iat": int(now + min(0, ttl) - 10),
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        token = jwt.encode(claims, self._key_pem, algorithm="ES256",
                           headers={"kid": self.kid, "x5c": self._x5c, "typ": "JWT"})
        body = json.dumps({"token": token, "access_token": token, "expires_in": announced,
                           "issued_at": dt.datetime.now(dt.UTC).isoformat()}).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)


# ---- registry -----------------------------------------------------------------------------------


class RegistryServer:
    """One ``docker-registry`` process. ``auth`` is None, ``("basic", {user: password})`` or
    ``("token", TokenServer)``."""

    def __init__(self, root: Path, *, auth: tuple[str, Any] | None = None, name: str = "registry") -> None:
        self.root = root
        self.name = name
        self.port = free_port()
        self.auth = auth
        self.log_path = root / f"{name}.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> RegistryServer:
        self.root.mkdir(parents=True, exist_ok=True)
        storage = self.root / "storage"
        storage.mkdir(exist_ok=True)
        auth_cfg = ""
        if self.auth is not None and self.auth[0] == "basic":
            lines = []
            for user, pw in self.auth[1].items():
                out = subprocess.run([HTPASSWD or "htpasswd", "-Bbn", user, pw], check=True, capture_output=True, text=True)
                lines.append(out.stdout.strip())
            (self.root / "htpasswd").write_text("\n".join(lines) + "\n")
            auth_cfg = f"""auth:
  htpasswd:
    realm: burst-test
    path: {self.root / 'htpasswd'}
"""
        elif self.auth is not None and self.auth[0] == "token":
            ts: TokenServer = self.auth[1]
            auth_cfg = f"""auth:
  token:
    realm: {ts.realm}
    service: {ts.service}
    issuer: {ts.issuer}
    rootcertbundle: {ts.cert_path}
"""
        cfg = f"""version: 0.1
log:
  level: info
  formatter: text
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{self.port}
  secret: burst-test-secret-{self.name}
{auth_cfg}"""
        cfg_path = self.root / "config.yml"
        cfg_path.write_text(cfg)
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child for its lifetime
        self._proc = subprocess.Popen([REGISTRY_BIN, "serve", str(cfg_path)], stdout=log, stderr=log,
                                      stdin=subprocess.DEVNULL)
        log.close()
        _wait_http(self.host, "/v2/")
        return self

    def cpu_seconds(self) -> float:
        """User + system CPU the registry process has used so far (Linux; 0 elsewhere)."""
        if self._proc is None:
            return 0.0
        try:
            fields = Path(f"/proc/{self._proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None


# ---- counting / fault-injecting proxy -------------------------------------------------------------

_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


@dataclass
class Fault:
    method: str
    path: re.Pattern[str]
    times: int = 1
    status: int | None = None  # answer this status instead of forwarding
    headers: dict[str, str] = field(default_factory=dict)
    corrupt: bool = False  # forward, but flip a byte in the response body
    corrupt_at: int = 0  # which byte (clamped to the body); a negative index counts from the end

    def matches(self, method: str, path: str) -> bool:
        return self.times > 0 and method == self.method and bool(self.path.search(path))


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    query: str
    status: int
    sent: int  # request body bytes


class CountingProxy:
    """Reverse proxy to ``upstream`` (host:port) that records requests and injects faults.

    The client's Host header is passed on, so the registry's Location URLs point back here.
    Bodies are buffered: fine for test-sized blobs.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.port = free_port()
        self.seen: list[Seen] = []
        self.faults: list[Fault] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _any(self) -> None:
                proxy._handle(self)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _any

        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> CountingProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def reset(self) -> None:
        with self._lock:
            self.seen.clear()
            self.faults.clear()

    def add_fault(self, method: str, path_regex: str, *, times: int = 1, status: int | None = None,
                  headers: dict[str, str] | None = None, corrupt: bool = False, corrupt_at: int = 0) -> Fault:
        f = Fault(method, re.compile(path_regex), times, status, dict(headers or {}), corrupt, corrupt_at)
        with self._lock:
            self.faults.append(f)
        return f

    def count(self, method: str, path_regex: str = "", *, query: str = "", status: int | None = None) -> int:
        rx = re.compile(path_regex)
        with self._lock:
            return sum(
                1 for s in self.seen
                if s.method == method and rx.search(s.path) and query in s.query and (status is None or s.status == status)
            )

    def blob_uploads(self) -> int:
        """Upload sessions completed: ``PUT .../blobs/uploads/...?digest=``, answered 201."""
        return self.count("PUT", r"/blobs/uploads/", query="digest=", status=201)

    def bytes_sent(self) -> int:
        with self._lock:
            return sum(s.sent for s in self.seen)

    def _read_body(self, h: BaseHTTPRequestHandler) -> bytes:
        if h.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = io.BytesIO()
            while True:
                line = h.rfile.readline()
                n = int(line.split(b";")[0].strip(), 16)
                if n == 0:
                    while h.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out.getvalue()
                out.write(h.rfile.read(n))
                h.rfile.readline()
        n = int(h.headers.get("Content-Length") or 0)
        return h.rfile.read(n) if n else b""

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        method = h.command
        url = urlsplit(h.path)
        body = self._read_body(h)
        fault = None
        with self._lock:
            for f in self.faults:
                if f.matches(method, url.path):
                    f.times -= 1
                    fault = f
                    break
        if fault is not None and fault.status is not None:
            payload = b'{"errors":[{"code":"TOOMANYREQUESTS","message":"injected"}]}'
            # Record before answering: the client may act (and a test reset) as soon as it reads.
            self._record(method, url, fault.status, len(body))
            h.send_response(fault.status)
            for k, v in fault.headers.items():
                h.send_header(k, v)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(payload)))
            h.end_headers()
            if method != "HEAD":
                h.wfile.write(payload)
            return
        headers = {k: v for k, v in h.headers.items() if k.lower() not in _HOP and k.lower() != "content-length"}
        if body or method in ("POST", "PUT", "PATCH"):
            headers["Content-Length"] = str(len(body))
        conn = http.client.HTTPConnection(self.upstream, timeout=120)
        try:
            conn.request(method, h.path, body=body or None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            if fault is not None and fault.corrupt and data:
                i = max(-len(data), min(fault.corrupt_at, len(data) - 1)) % len(data)
                data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:]
            self._record(method, url, resp.status, len(body))
            h.send_response(resp.status, resp.reason)
            for k, v in resp.getheaders():
                if k.lower() not in _HOP and k.lower() != "content-length":
                    h.send_header(k, v)
            if method == "HEAD":
                h.send_header("Content-Length", resp.getheader("Content-Length") or "0")
            else:
                h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            if method != "HEAD":
                h.wfile.write(data)
        finally:
            conn.close()

    def _record(self, method: str, url: Any, status: int, sent: int) -> None:
        with self._lock:
            self.seen.append(Seen(method, url.path, url.query, status, sent))


# ---- OCI layouts ----------------------------------------------------------------------------------


def random_layer(size: int, rng: Callable[[int], bytes] = os.urandom, name: str = "data.bin") -> bytes:
    """A tar.gz holding one file of ``size`` random bytes (incompressible)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = size
        info.mtime = 0
        tar.addfile(info, io.BytesIO(rng(size)))
    return gzip.compress(raw.getvalue(), compresslevel=1, mtime=0)


@dataclass
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: dict[str, str] | None = None

    def json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.platform:
            d["platform"] = self.platform
        return d


class LayoutWriter:
    """Writes an OCI image layout directory (``oci-layout``, ``index.json``, ``blobs/sha256``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        idx = root / "index.json"
        self._refs: list[dict[str, Any]] = json.loads(idx.read_text())["manifests"] if idx.exists() else []

    def blob(self, data: bytes, media_type: str) -> Descriptor:
        digest = hashlib.sha256(data).hexdigest()
        (self.root / "blobs" / "sha256" / digest).write_bytes(data)
        return Descriptor(media_type, f"sha256:{digest}", len(data))

    def random_gzip_layer_file(self, size: int, chunk: int = 8 << 20) -> Descriptor:
        """A tar.gz layer of ``size`` random bytes streamed to disk (for GiB-sized benchmarks)."""
        tmp = self.root / "blobs" / f"tmp-{uuid.uuid4().hex}"
        h = hashlib.sha256()

        class _Hashing(io.RawIOBase):
            def __init__(self, f: Any) -> None:
                self.f = f

            def writable(self) -> bool:
                return True

            def write(self, b: Any) -> int:
                h.update(b)
                return int(self.f.write(b))

        with open(tmp, "wb") as f:
            sink = _Hashing(f)
            with gzip.GzipFile(fileobj=sink, mode="wb", compresslevel=1, mtime=0) as gz:
                with tarfile.open(fileobj=gz, mode="w") as tar:
                    info = tarfile.TarInfo("data.bin")
                    info.size = size

                    class _Rand(io.RawIOBase):
                        left = size

                        def readable(self) -> bool:
                            return True

                        def readinto(self, b: Any) -> int:
                            n = min(len(b), self.left, chunk)
                            b[:n] = os.urandom(n)
                            self.left -= n
                            return n

                    tar.addfile(info, io.BufferedReader(_Rand(), chunk))
        digest = h.hexdigest()
        os.replace(tmp, self.root / "blobs" / "sha256" / digest)
        return Descriptor(OCI_LAYER_GZIP, f"sha256:{digest}", (self.root / "blobs" / "sha256" / digest).stat().st_size)

    def image(self, layers: Sequence[Descriptor | bytes], *, os_: str = "linux", arch: str = "amd64",
              annotations: dict[str, str] | None = None) -> Descriptor:
        descs = [d if isinstance(d, Descriptor) else self.blob(d, OCI_LAYER_GZIP) for d in layers]
        config = {
            "architecture": arch,
            "os": os_,
            "config": {"Labels": {"burst.test": uuid.uuid4().hex}},
            "rootfs": {"type": "layers", "diff_ids": [d.digest for d in descs]},
        }
        cfg = self.blob(json.dumps(config).encode(), OCI_CONFIG)
        manifest: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": cfg.json(),
            "layers": [d.json() for d in descs],
        }
        if annotations:
            manifest["annotations"] = annotations
        m = self.blob(json.dumps(manifest, indent=2).encode(), OCI_MANIFEST)
        m.platform = {"architecture": arch, "os": os_}
        return m

    def index(self, manifests: Sequence[Descriptor]) -> Descriptor:
        doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [m.json() for m in manifests]}
        return self.blob(json.dumps(doc, indent=2).encode(), OCI_INDEX)

    def tag(self, desc: Descriptor, tag: str) -> None:
        entry = {"mediaType": desc.media_type, "digest": desc.digest, "size": desc.size,
                 "annotations": {"org.opencontainers.image.ref.name": tag}}
        self._refs = [r for r in self._refs if r.get("annotations", {}).get("org.opencontainers.image.ref.name") != tag]
        self._refs.append(entry)
        (self.root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": self._refs}))


# ---- skopeo -----------------------------------------------------------------------------------------


def skopeo(*args: str, timeout: float = 600) -> str:
    out = subprocess.run([SKOPEO or "skopeo", *args], capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"skopeo {' '.join(args)} failed: {out.stderr.strip()}")
    return out.stdout


def _creds(flag: str, creds: tuple[str, str] | None) -> list[str]:
    return [flag, f"{creds[0]}:{creds[1]}"] if creds else []


def push_layout(layout: Path, tag: str, dest: str, creds: tuple[str, str] | None = None) -> None:
    """``skopeo copy --all --preserve-digests oci:LAYOUT:TAG docker://DEST`` over plain http."""
    skopeo("copy", "--quiet", "--all", "--preserve-digests", "--dest-tls-verify=false",
           *_creds("--dest-creds", creds), f"oci:{layout}:{tag}", f"docker://{dest}")


def inspect_raw(ref: str, creds: tuple[str, str] | None = None) -> bytes:
    out = subprocess.run([SKOPEO or "skopeo", "inspect", "--raw", "--tls-verify=false", *_creds("--creds", creds),
                          f"docker://{ref}"], capture_output=True, timeout=120)
    if out.returncode != 0:
        raise RuntimeError(f"skopeo inspect --raw {ref} failed: {out.stderr.decode().strip()}")
    return out.stdout


def inspect_digest(ref: str, creds: tuple[str, str] | None = None) -> str:
    """The manifest digest skopeo reports for ``ref``: sha256 of the raw manifest it fetched."""
    return "sha256:" + hashlib.sha256(inspect_raw(ref, creds)).hexdigest()


def inspect_format_digest(ref: str, creds: tuple[str, str] | None = None) -> str:
    return skopeo("inspect", "--tls-verify=false", *_creds("--creds", creds), "--format", "{{.Digest}}",
                  f"docker://{ref}").strip()


def pull_all(ref: str, dest_layout: Path, creds: tuple[str, str] | None = None) -> None:
    skopeo("copy", "--quiet", "--all", "--src-tls-verify=false", *_creds("--src-creds", creds),
           f"docker://{ref}", f"oci:{dest_layout}:pulled")


def stop_all(things: Iterable[Any]) -> None:
    for t in things:
        try:
            t.stop()
        except Exception:  # best effort at teardown
            pass
