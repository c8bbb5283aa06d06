"""``python -m burst.mirror_cli`` as its own process, as B3 and users run it: what it imports,
and a real copy through it (the trio/httpx._main import blockers of ``main`` included)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from providers.oci import tls_context
from tests.mirror.conftest import HARBOR_SECRET, HARBOR_USER, TARGET_PASSWORD, TARGET_USER, Env

ROOT = Path(__file__).resolve().parents[2]


def _python(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    return out.stdout.strip()


def test_importing_the_cli_loads_no_engine() -> None:
    """``burst --help`` registers the command; it must not pay for httpx, pydantic or rich."""
    got = _python("import sys, burst.mirror_cli; print(sorted(m for m in ('httpx', 'httpcore', 'pydantic', "
                  "'rich.console', 'providers.mirror_service', 'providers.oci', 'yaml') if m in sys.modules))")
    assert got == "[]"


def test_tls_context_is_built_once_per_bundle(tmp_path: Path) -> None:
    assert tls_context(None) is tls_context(None)
    import certifi

    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(Path(certifi.where()).read_bytes())
    assert tls_context(bundle) is tls_context(bundle) is not tls_context(None)


@pytest.mark.registry
def test_cli_process_copies_and_skips_unused_imports(env: Env) -> None:
    def var(host: str, what: str) -> str:
        return f"BURST_REGISTRY_{host.replace('.', '_').replace(':', '_')}_{what}"

    child_env = {
        **os.environ,
        var(env.harbor.host, "USERNAME"): HARBOR_USER, var(env.harbor.host, "PASSWORD"): HARBOR_SECRET,
        var(env.target.host, "USERNAME"): TARGET_USER, var(env.target.host, "PASSWORD"): TARGET_PASSWORD,
    }
    probe = (
        "import runpy, sys, atexit\n"
        "atexit.register(lambda: print(json.dumps({'trio': sys.modules.get('trio', 'absent') is None, "
        "'httpx_main': sys.modules.get('httpx._main', 'absent') is None}), file=sys.stderr))\n"
        "import json\n"
        f"sys.argv = ['burst.mirror_cli', '{env.harbor.host}/team/app:v1', '--to', '{env.target.host}/proc', "
        "'--insecure', '--json']\n"
        "runpy.run_module('burst.mirror_cli', run_name='__main__')\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=child_env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["digest"] == env.images.app.digest
    assert result["target"] == f"{env.target.host}/proc/team/app:v1"
    blocked = json.loads(out.stderr.strip().splitlines()[-1])
    assert blocked == {"trio": True, "httpx_main": True}
