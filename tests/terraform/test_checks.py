"""Static checks of the landing zones, all offline: python-hcl2 parses every ``.tf``; checkov finds
no failed check (a skip needs a justification next to the resource); ``terraform fmt -check``
where a terraform binary is on PATH (``validate`` would need the provider registry: not here).

checkov lives in a venv of its own (it pins an old boto3 and a conflicting ``hcl2``): ``make
checkov`` creates ``.venv-checkov``; ``BURST_CHECKOV`` names another binary. It runs once per
root module (module-scoped fixture), with the module's example tfvars.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.terraform.hcl import MODULES, ROOT, TERRAFORM, load, tf_files

MIN_JUSTIFICATION = 20  # characters: a reason, not "skip"


def _checkov() -> str | None:
    candidates = [
        os.environ.get("BURST_CHECKOV", ""),
        str(ROOT / ".venv-checkov" / "bin" / "checkov"),  # `make checkov` (CI)
        "/work/checkov-venv/bin/checkov",  # the development machines' shared one
        shutil.which("checkov") or "",
    ]
    for c in candidates:
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return c
    return None


def test_every_tf_file_parses() -> None:
    files = tf_files()
    assert {p.parent.name for p in files} >= {"aws"}, files
    for path in files:
        try:
            load(path)
        except Exception as e:  # noqa: BLE001 - any parser error is the finding
            pytest.fail(f"{path.relative_to(ROOT)}: python-hcl2 cannot parse it: {e}")


def test_each_module_has_its_files() -> None:
    for module in MODULES:
        base = TERRAFORM / module
        if module == "azure" and not base.exists():
            continue
        for name in ("variables.tf", "outputs.tf", "README.md", "example.tfvars"):
            assert (base / name).is_file(), f"terraform/{module}/{name} is missing"
    assert (TERRAFORM / "README.md").is_file()


@pytest.fixture(scope="module", params=[m for m in MODULES if (TERRAFORM / m).exists()])
def checkov_report(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    module = str(request.param)
    binary = _checkov()
    if binary is None:
        reason = "checkov not found: run `make checkov` (creates .venv-checkov) or set BURST_CHECKOV"
        if os.environ.get("CI"):
            pytest.fail(reason + " (CI must run it)")
        pytest.skip(reason)
    base = TERRAFORM / module
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE"}  # without it checkov reaches for the network
    proc = subprocess.run(
        [binary, "-d", str(base), "--framework", "terraform", "--var-file", str(base / "example.tfvars"),
         "--skip-download", "-o", "json"],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"checkov gave no JSON report (exit {proc.returncode}): {proc.stderr[-2000:]}")
    if isinstance(report, list):  # one entry per framework when several ran
        report = next(r for r in report if r.get("check_type") == "terraform")
    return module, report


def test_checkov_parses_everything(checkov_report: tuple[str, dict[str, Any]]) -> None:
    module, report = checkov_report
    summary = report["summary"]
    # a syntax error still exits 0: the summary says so
    assert summary["parsing_errors"] == 0, f"terraform/{module}: checkov could not parse {summary['parsing_errors']} file(s)"
    assert summary["resource_count"] > 10, f"terraform/{module}: checkov saw only {summary['resource_count']} resources"


def test_checkov_has_no_failed_checks(checkov_report: tuple[str, dict[str, Any]]) -> None:
    module, report = checkov_report
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}" for c in report["results"]["failed_checks"]
    ]
    assert not failed, f"terraform/{module}: checkov failed checks:\n" + "\n".join(failed)


def test_checkov_skips_are_justified(checkov_report: tuple[str, dict[str, Any]]) -> None:
    module, report = checkov_report
    for c in report["results"]["skipped_checks"]:
        reason = (c.get("check_result") or {}).get("suppress_comment") or ""
        assert len(reason.strip()) >= MIN_JUSTIFICATION, (
            f"terraform/{module}: {c['check_id']} on {c['resource']} is skipped without a reason "
            "(write `# checkov:skip=<ID>: <why>` inside the resource)"
        )


def test_terraform_fmt() -> None:
    binary = shutil.which("terraform") or shutil.which("tofu")
    if binary is None:
        pytest.skip("no terraform (or tofu) binary on PATH; `fmt -check` runs where one is")
    proc = subprocess.run([binary, "fmt", "-check", "-recursive", "-diff", str(TERRAFORM)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, f"terraform fmt would change:\n{proc.stdout}"
