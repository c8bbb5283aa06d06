"""The README's "Operate" section is a contract: every path it names exists, every command and
option it names is one the CLI has, and the endpoints it promises are the ones the daemon serves."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from burst.cli import app

ROOT = Path(__file__).resolve().parents[2]


def _section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("## Operate\n")
    return text[start : text.index("\n## ", start + 1)]


def test_every_path_the_operate_section_names_exists() -> None:
    sec = _section()
    paths = set(re.findall(r"\]\(([^)]+)\)", sec))
    paths |= {m for m in re.findall(r"`([^` ]+/[^` ]*)`", sec) if not m.startswith(("/", "http"))}
    paths |= set(re.findall(r"-k (deploy/\S+?)`", sec))
    assert paths, "the section names no path: the parser is broken"
    for p in sorted(paths):
        assert any(ROOT.glob(p)), f"README Operate names {p!r}, which does not exist"
    assert (ROOT / "Dockerfile").is_file()
    for overlay in ("controller-bot", "controller-only"):
        assert (ROOT / "deploy/kubernetes/overlays" / overlay / "kustomization.yaml").is_file()


def test_the_commands_and_options_it_names_exist() -> None:
    r = CliRunner()
    out = r.invoke(app, ["config", "from-terraform", "--help"])
    assert out.exit_code == 0, out.output
    out = r.invoke(app, ["run", "--help"], terminal_width=200)
    assert out.exit_code == 0 and "--log-format" in out.output and "--metrics-port" in out.output
    sec = _section()
    assert "burst config from-terraform aws.json azure.json" in sec


def test_the_health_paths_it_promises_are_served() -> None:
    import burst.metrics as m

    src = Path(m.__file__).read_text()
    for path in ("/metrics", "/healthz", "/readyz"):
        assert path in _section()
        assert f'"{path}"' in src, f"burst/metrics.py does not route {path}"
