"""The landing zones' READMEs say what the modules hold: every variable and output is listed (and
nothing else), each output row names the config key burst.terraform_config maps it to, and every
`burst ...` command the walkthrough shows exists with the options it uses."""

from __future__ import annotations

import re
import shlex

import pytest
from typer.testing import CliRunner

from burst.cli import app
from burst.terraform_config import OUTPUTS
from tests.terraform.hcl import TERRAFORM, blocks, outputs

runner = CliRunner()


def _table(readme: str, heading: str) -> list[list[str]]:
    """Rows of the first markdown table after ``## heading`` (cells stripped, header dropped)."""
    section = readme.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = [ln for ln in section.splitlines() if ln.startswith("|")]
    cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in rows]
    return [c for c in cells[2:] if c]  # header, separator


def _name(cell: str) -> str:
    m = re.fullmatch(r"`([^`]+)`", cell)
    assert m, f"expected a `name` cell, got {cell!r}"
    return m.group(1)


@pytest.mark.parametrize("module", ["aws", "azure"])
def test_readme_lists_every_variable(module: str) -> None:
    readme = (TERRAFORM / module / "README.md").read_text()
    listed = [_name(row[0]) for row in _table(readme, "Inputs")]
    declared = [name for name, _ in blocks(module, "variable")]
    assert sorted(listed) == sorted(declared)


@pytest.mark.parametrize("module", ["aws", "azure"])
def test_readme_lists_every_output_with_its_config_key(module: str) -> None:
    readme = (TERRAFORM / module / "README.md").read_text()
    rows = _table(readme, "Outputs")
    listed = {_name(row[0]): row[1] for row in rows}
    assert sorted(listed) == sorted(outputs(module))
    for name, key_cell in listed.items():
        key = re.match(r"`([^`]+)`", key_cell)
        assert key, (name, key_cell)
        assert key.group(1).split(".<")[0].split(".aws:<")[0].split(".azure:<")[0] == OUTPUTS[name].dotted, (
            f"{module}/README.md: {name} is documented as {key.group(1)}, burst maps it to {OUTPUTS[name].dotted}"
        )


def _burst_commands() -> list[list[str]]:
    text = (TERRAFORM / "README.md").read_text()
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for line in block.splitlines():
            line = line.split("#", 1)[0].strip()
            if "burst " in line:
                words = shlex.split(line.split("|")[-1].split(">")[0])
                commands.append(words[words.index("burst") + 1:])
    return commands


def test_walkthrough_shows_the_from_terraform_step() -> None:
    assert ["config", "from-terraform"] in [c[:2] for c in _burst_commands()]


@pytest.mark.parametrize("args", _burst_commands(), ids=lambda a: " ".join(a[:2]))
def test_walkthrough_commands_exist_with_their_options(args: list[str]) -> None:
    words = [a for a in args if not a.startswith("-") and "/" not in a and "." not in a and "$" not in a]
    path = words[:2] if args[0] in ("config", "db", "gc", "bot") else words[:1]
    res = runner.invoke(app, [*path, "--help"])
    assert res.exit_code == 0, (path, res.output)
    for option in (a for a in args if a.startswith("--")):
        assert option in res.output, f"burst {' '.join(path)} has no {option}"


@pytest.mark.parametrize("module", ["aws", "azure"])
def test_example_tfvars_sets_every_required_variable_and_only_declared_ones(module: str) -> None:
    from tests.terraform.hcl import load

    example = load(TERRAFORM / module / "example.tfvars")
    declared = dict(blocks(module, "variable"))
    required = {name for name, body in declared.items() if "default" not in body}
    given = {k for k in example if not k.startswith("__")}
    assert required <= given, f"{module}/example.tfvars lacks {sorted(required - given)}"
    assert given <= set(declared), f"{module}/example.tfvars sets undeclared {sorted(given - set(declared))}"
