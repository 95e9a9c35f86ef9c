"""The README runs as written: command 1's train + evaluate, every cnncodes command line, every Python block."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from cnncodes.cli import cli
from tests.conftest import HYMENOPTERA
from tests.conftest import session_cache

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
BLOCKS = re.findall(r"```(\w+)\n(.*?)```", README, re.S)


def _command_lines() -> list[list[str]]:
    """Every ``cnncodes ...`` invocation of the README's console and bash blocks, as words after ``cnncodes``."""
    found = []
    for kind, block in BLOCKS:
        for line in block.splitlines() if kind in ("console", "bash") else []:
            line = line.removeprefix("$ ").split("  #")[0]
            for part in line.split("&&"):
                words = shlex.split(part)
                if words[:1] == ["cnncodes"]:
                    found.append(words[1:])
    return found


COMMAND_LINES = _command_lines()


@pytest.fixture
def beside_shared(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty folder where ../shared/data/hymenoptera resolves, as in a checkout; codes cached once a session."""
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "shared").symlink_to(HYMENOPTERA.parents[1])
    monkeypatch.chdir(work)
    monkeypatch.setenv("CNNCODES_CACHE", str(session_cache(tmp_path_factory)))
    return work


def test_readme_command_lines_found() -> None:
    """Check that the README's command lines are found, command 1's train and evaluate among them."""
    assert len(COMMAND_LINES) >= 20
    assert ["train", "../shared/data/hymenoptera/train", "-o", "model.skops"] in COMMAND_LINES


@pytest.mark.parametrize("words", COMMAND_LINES, ids=[" ".join(words)[:70] for words in COMMAND_LINES])
def test_readme_command_uses_existing_command_and_options(words: list[str]) -> None:
    """Check that each README command line names a real (sub)command and only options that command has."""
    command: click.Command = cli
    position = 0
    while isinstance(command, click.Group) and position < len(words) and words[position] in command.commands:
        command = command.commands[words[position]]
        position += 1
    assert command is not cli, f"no command in: cnncodes {' '.join(words)}"
    flags = {flag for parameter in command.params for flag in (*parameter.opts, *parameter.secondary_opts)}
    used = {word.split("=")[0] for word in words[position:] if word.startswith("-") and word != "-"}
    assert used <= flags | {"--help"}, f"cnncodes {' '.join(words)}: unknown {sorted(used - flags)}"


def test_readme_command_1_trains_and_evaluates(beside_shared: Path) -> None:
    """Check that README command 1's train and evaluate run as written and reach accuracy >= 0.93."""
    first = next(block for kind, block in BLOCKS if kind == "bash").splitlines()[1]
    commands = [shlex.split(part)[1:] for part in first.split("&&") if part.split()[0] == "cnncodes"]
    assert [words[0] for words in commands] == ["train", "evaluate"]
    for words in commands:
        result = CliRunner().invoke(cli, ["-q", *words], catch_exceptions=False)
        assert result.exit_code == 0, result.output
    accuracy = float(re.match(r"samples 153  accuracy ([0-9.]+)  ", result.stdout)[1])
    assert accuracy >= 0.93


def test_readme_python_blocks_run(beside_shared: Path) -> None:
    """Check that the README's Python examples run as written, from a folder beside ../shared."""
    blocks = [block for kind, block in BLOCKS if kind == "python"]
    assert len(blocks) >= 3
    # The codes-file example reads the file the extract example on the command line writes.
    result = CliRunner().invoke(
        cli, ["-q", "extract", "../shared/data/hymenoptera/val", "-o", "codes.h5"], catch_exceptions=False
    )
    assert result.exit_code == 0
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})
