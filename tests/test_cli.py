"""Tests of the command line: output, errors, help, and the README's commands."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from cnncodes.cli import cli

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _commands(group: click.Group, prefix: str = "") -> list[str]:
    names = []
    for name, command in sorted(group.commands.items()):
        names.append(f"{prefix}{name}")
        if isinstance(command, click.Group):
            names += _commands(command, f"{prefix}{name} ")
    return names


COMMANDS = _commands(cli)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_and_is_in_readme(command: str) -> None:
    """Check that each command prints help with an example and is shown in the README."""
    result = CliRunner().invoke(cli, [*command.split(), "--help"], catch_exceptions=False)
    assert result.exit_code == 0
    assert "Example:" in result.stdout or isinstance(cli.get_command(None, command.split()[0]), click.Group)
    assert f"cnncodes {command}" in README or (command.startswith("cache ") and command.split()[1] in README)


def test_cli_layers_lite0_table() -> None:
    """Check the exact table of `cnncodes layers efficientnet_lite0`."""
    result = CliRunner().invoke(cli, ["layers", "efficientnet_lite0"], catch_exceptions=False)
    assert result.exit_code == 0
    assert result.stdout == (
        "layer        tensor       channels  spatial  stride  non-negative  relu\n"
        "-----------  -----------  --------  -------  ------  ------------  ----\n"
        "penultimate  penultimate  1280      -        -       yes           no\n"
        "stage1       stage1       16        112x112  2       no            yes\n"
        "stage2       stage2       24        56x56    4       no            yes\n"
        "stage3       stage3       40        28x28    8       no            yes\n"
        "stage4       stage4       80        14x14    16      no            yes\n"
        "stage5       stage5       112       14x14    16      no            yes\n"
        "stage6       stage6       192       7x7      32      no            yes\n"
        "stage7       stage7       320       7x7      32      no            yes\n"
        "head         head         1280      7x7      32      yes           no\n"
        "logits       logits       1000      -        -       no            no\n"
    )


def test_cli_layers_any_onnx(tiny_onnx: Path) -> None:
    """Check that `cnncodes layers FILE.onnx` lists tensors with inferred shapes."""
    result = CliRunner().invoke(cli, ["layers", str(tiny_onnx), "--json"], catch_exceptions=False)
    rows = {row["tensor"]: row for row in json.loads(result.stdout)}
    assert rows["conv2"]["shape"] == ["N", 6, 8, 8] and rows["conv2"]["channels"] == 6
    table = CliRunner().invoke(cli, ["layers", str(tiny_onnx)], catch_exceptions=False).stdout
    assert "conv1   N x4x16x16" not in table and re.search(r"^conv1 +Nx4x16x16 +4$", table, re.M)


def test_cli_models_lists_zoo() -> None:
    """Check that `cnncodes models --json` lists every card with taps, presence and license."""
    rows = json.loads(CliRunner().invoke(cli, ["models", "--json"], catch_exceptions=False).stdout)
    lite0 = next(row for row in rows if row["name"] == "efficientnet_lite0")
    assert lite0["input_size"] == 224 and lite0["taps"]["penultimate"] == 1280 and lite0["license"] == "Apache-2.0"
    assert {"alexnet", "vgg16", "convnext_tiny"} <= {row["name"] for row in rows}
    table = CliRunner().invoke(cli, ["models"], catch_exceptions=False).stdout
    assert table.splitlines()[0].split() == ["name", "input", "default", "taps", "present", "license"]


def test_cli_unknown_model_is_one_line_error() -> None:
    """Check that an unknown model exits 1 with one 'Error:' line and a suggestion."""
    result = CliRunner().invoke(cli, ["layers", "resnet19"])
    assert result.exit_code == 1
    assert (
        result.stderr
        == "Error: Unknown backbone 'resnet19'. Did you mean 'resnet18'? Run 'cnncodes models' to list them.\n"
    )


@pytest.mark.parametrize("args", [["models"], ["layers", "efficientnet_lite0"]], ids=["models", "layers"])
def test_cli_listing_imports_no_torch(args: list[str]) -> None:
    """Check that listing the zoo works without importing torch (the core never needs it)."""
    code = (
        "import sys\nfrom cnncodes.cli import cli\n"
        f"cli({args!r}, standalone_mode=False)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr


def test_python_m_cnncodes() -> None:
    """Check that `python -m cnncodes` is the CLI."""
    completed = subprocess.run([sys.executable, "-m", "cnncodes", "--help"], capture_output=True, text=True)
    assert completed.returncode == 0 and "Usage: python -m cnncodes" in completed.stdout
