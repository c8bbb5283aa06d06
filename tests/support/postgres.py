"""A real PostgreSQL for tests, started from the Debian binaries (RECIPES.md, "PostgreSQL 15").

Fixtures (import them into a conftest.py, or fetch them with ``request.getfixturevalue``):

* ``postgres_server`` (session): one server in a temporary directory, on 127.0.0.1 at a free port,
  ``fsync=off``; stopped and removed at the end of the session. Skips with a clear reason when the
  PostgreSQL binaries are not installed (``scripts/install-system-deps.sh`` installs them).
* ``postgres_url`` (function): a fresh, empty database on that server, dropped after the test.
  The URL is ``postgresql+psycopg://postgres@127.0.0.1:PORT/NAME``.

Needs nothing beyond the ``postgresql`` package: as root, ``initdb`` and ``pg_ctl`` (which refuse
to run as root) run as the ``postgres`` user through ``runuser``; as any other user they run as
that user. The data directory lives under ``/tmp`` rather than pytest's ``tmp_path`` because
``/tmp/pytest-of-root`` is mode 0700 and the ``postgres`` user could not reach it.
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

PG_USER = "postgres"


def find_bindir() -> Path | None:
    """The newest ``/usr/lib/postgresql/N/bin`` holding initdb and pg_ctl, else PATH's."""

    def version(p: str) -> int:
        try:
            return int(Path(p).parent.parent.name)
        except ValueError:
            return 0

    for initdb in sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version, reverse=True):
        d = Path(initdb).parent
        if (d / "pg_ctl").exists():
            return d
    initdb_path = shutil.which("initdb")
    if initdb_path and shutil.which("pg_ctl"):
        return Path(os.path.realpath(initdb_path)).parent
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """One throw-away PostgreSQL cluster. ``start()``/``stop()``; ``create_database()``."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.as_root = os.geteuid() == 0
        self.dir = Path(tempfile.mkdtemp(prefix="burst-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.port = 0
        self.started = False

    # ---- processes -----------------------------------------------------------------------
    def _cmd(self, *args: str) -> list[str]:
        exe = [str(self.bindir / args[0]), *args[1:]]
        return ["runuser", "-u", PG_USER, "--", *exe] if self.as_root else exe

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self._cmd(*args),
            cwd=self.dir,  # the postgres user may not be allowed into the caller's cwd
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "LC_ALL": "C", "LANG": "C"},
        )

    def _fail(self, what: str, proc: subprocess.CompletedProcess[str]) -> RuntimeError:
        log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
        return RuntimeError(f"{what} failed ({proc.returncode}): {proc.stdout}\n{proc.stderr}\n{log}")

    def start(self) -> None:
        if self.as_root:
            try:
                pw = pwd.getpwnam(PG_USER)
            except KeyError:
                raise RuntimeError(
                    f"running as root but there is no {PG_USER!r} user to run PostgreSQL"
                ) from None
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        os.chmod(self.dir, 0o700)
        proc = self._run(
            "initdb", "-D", str(self.data), "--auth=trust", "-U", PG_USER, "--encoding=UTF8", "--locale=C"
        )
        if proc.returncode != 0:
            raise self._fail("initdb", proc)
        last: RuntimeError | None = None
        for _ in range(3):  # the free port may be taken between probing and binding
            self.port = _free_port()
            with open(self.data / "postgresql.auto.conf", "a") as f:
                f.write(
                    "\n".join(
                        [
                            "listen_addresses = '127.0.0.1'",
                            f"port = {self.port}",
                            f"unix_socket_directories = '{self.dir}'",
                            "fsync = off",
                            "synchronous_commit = off",
                            "full_page_writes = off",
                            "max_connections = 200",
                            "shared_buffers = '32MB'",
                            "",
                        ]
                    )
                )
            proc = self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")
            if proc.returncode == 0:
                self.started = True
                return
            last = self._fail("pg_ctl start", proc)
        assert last is not None
        raise last

    def stop(self) -> None:
        if self.started:
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
            self.started = False
        shutil.rmtree(self.dir, ignore_errors=True)

    # ---- databases -----------------------------------------------------------------------
    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{PG_USER}@127.0.0.1:{self.port}/{database}"

    def _admin(self) -> psycopg.Connection[Any]:
        return psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user=PG_USER,
            dbname="postgres",
            autocommit=True,
            connect_timeout=10,
        )

    def create_database(self) -> str:
        name = "t_" + uuid.uuid4().hex[:16]
        with self._admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        with self._admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    bindir = find_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not found; run scripts/install-system-deps.sh")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        pytest.skip("running as root but 'runuser' is missing, so initdb cannot drop privileges")
    server = PostgresServer(bindir)
    atexit.register(server.stop)  # also on an interpreter exit that skips fixture teardown
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    try:
        yield server
    finally:
        server.stop()
        atexit.unregister(server.stop)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    name = postgres_server.create_database()
    try:
        yield postgres_server.url(name)
    finally:
        postgres_server.drop_database(name)
