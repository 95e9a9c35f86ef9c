"""The architecture checked by the project itself: import-linter contracts, fast start, one docstring, one style."""

from __future__ import annotations

import ast
import configparser
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cnncodes.backbones import get_backbone
from cnncodes.modelfiles import ensure_model_file

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "cnncodes"
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py"))
SUBPACKAGES = sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py") if p.parent.name != "models_onnx")
# every source file of the package, subpackages included, as a path relative to it
SOURCE_FILES = sorted(p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)
HEAVY = ("onnxruntime", "onnx", "h5py", "sklearn", "matplotlib", "numpy", "dask", "torch")
SOURCES = ("cnncodes", "tests", "scripts")


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True)


def _setup_cfg() -> configparser.ConfigParser:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    return config


def _contract_layers() -> list[str]:
    """The module names of the layers contract in setup.cfg, optional ones without their parentheses."""
    rows = _setup_cfg()["importlinter:contract:layers"]["layers"].split()
    return [name.strip("()") for name in rows if name != "|"]


def test_import_linter_contracts_kept() -> None:
    """Check that lint-imports keeps every contract in setup.cfg: the layers, fast start, one importer each."""
    completed = _run(str(Path(sys.executable).with_name("lint-imports")))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    n_contracts = sum(section.startswith("importlinter:contract:") for section in _setup_cfg().sections())
    assert f"Contracts: {n_contracts} kept, 0 broken." in completed.stdout


def test_layers_contract_names_every_module() -> None:
    """Check that every module of the package has a layer and every layer names a module that exists."""
    layered = _contract_layers()
    assert sorted({*MODULES, *SUBPACKAGES} - {"__init__"}) == sorted(layered)


def test_import_cnncodes_and_cli_load_no_heavy_library() -> None:
    """Check that `import cnncodes, cnncodes.cli` (what `cnncodes --help` runs) loads no heavy library."""
    code = f"import sys, json, cnncodes, cnncodes.cli; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    completed = _run(sys.executable, "-c", code)
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout) == []


def test_cli_help_loads_no_heavy_library() -> None:
    """Check that rendering `cnncodes --help` and `cnncodes extract --help` loads no heavy library."""
    code = (
        "import sys, json\nfrom cnncodes.cli import cli\n"
        "for args in (['--help'], ['extract', '--help']):\n"
        "    try:\n        cli(args)\n    except SystemExit as exit:\n        assert exit.code == 0\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    completed = _run(sys.executable, "-c", code)
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout.splitlines()[-1]) == []


def test_a_run_served_by_the_cache_loads_neither_onnx_nor_onnxruntime(image_dir: Path, tmp_path: Path) -> None:
    """Check that a second extract of the same images, all from the cache, imports no inference library."""
    code = (
        "import sys, json, cnncodes\n"
        f"paths = sorted(str(p) for p in __import__('pathlib').Path({str(image_dir)!r}).rglob('*.jpg'))\n"
        f"first = cnncodes.extract(paths, cache={str(tmp_path / 'cache')!r}, progress=False)\n"
        "print(json.dumps([first.n_from_cache, first.n_images]))\n"
    )
    assert json.loads(_run(sys.executable, "-c", code + "print(0)").stdout.splitlines()[0])[0] == 0
    code += "print(json.dumps([m for m in ('onnx', 'onnxruntime') if m in sys.modules]))"
    completed = _run(sys.executable, "-c", code)
    assert completed.returncode == 0, completed.stderr
    served, loaded = (json.loads(line) for line in completed.stdout.splitlines()[-2:])
    assert served[0] == served[1] > 0 and loaded == []


def test_a_run_that_computes_loads_onnx_only_to_prepare_its_graph(image_dir: Path, tmp_path: Path) -> None:
    """Check that once a graph is prepared (kept in the models folder), a new process computing codes with it
    imports onnxruntime but not onnx, and gets the same codes."""
    code = (
        "import sys, json, cnncodes\n"
        f"paths = sorted(str(p) for p in __import__('pathlib').Path({str(image_dir)!r}).rglob('*.jpg'))\n"
        "result = cnncodes.extract(paths, cache=False, progress=False)\n"
        "print(json.dumps([m for m in ('onnx', 'onnxruntime') if m in sys.modules]))\n"
        "print(json.dumps(result.codes.sum(axis=1).tolist()))\n"
    )
    models = tmp_path / "models"  # a models folder of its own, holding the built fp32 Lite0 file
    models.mkdir()
    (models / "efficientnet_lite0.onnx").symlink_to(ensure_model_file(get_backbone("efficientnet_lite0")))
    environment = {**os.environ, "CNNCODES_MODELS_DIR": str(models)}
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment) for _ in "12"]
    assert [run.returncode for run in runs] == [0, 0], runs[0].stderr + runs[1].stderr
    first, second = ([json.loads(line) for line in run.stdout.splitlines()[-2:]] for run in runs)
    assert first[0] == ["onnx", "onnxruntime"] and second[0] == ["onnxruntime"]
    assert second[1] == first[1] and len(first[1]) > 0
    assert len(list((models / "prepared").glob("*.onnx"))) == 1


@pytest.mark.parametrize("module", SOURCE_FILES)
def test_module_opens_with_one_line_docstring(module: str) -> None:
    """Check that every module (subpackages' too) opens with a one-line docstring of its responsibility."""
    docstring = ast.get_docstring(ast.parse((PACKAGE / module).read_text()))
    assert docstring and docstring.splitlines()[0].endswith("."), module


@pytest.mark.parametrize("folder", SOURCES)
def test_flake8_clean(folder: str) -> None:
    """Check that the code passes flake8 with setup.cfg's settings (lines of at most 120 characters)."""
    completed = _run(sys.executable, "-m", "flake8", folder)
    assert completed.returncode == 0, completed.stdout


@pytest.mark.parametrize("folder", SOURCES)
def test_black_formatted(folder: str) -> None:
    """Check that the code is as black formats it (the one formatter, 120 columns in pyproject.toml)."""
    completed = _run(sys.executable, "-m", "black", "--check", folder)
    assert completed.returncode == 0, completed.stderr
