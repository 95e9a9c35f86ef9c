"""The import-direction rule of STYLE.md, checked with ast: each module imports only from lower layers."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cnncodes"
LAYERS = {
    "errors": 0,
    "fingerprint": 0,
    "version": 0,
    "paths": 0,
    "backbones": 1,
    "weights": 1,
    "images": 1,
    "pooling": 1,
    "datasets": 1,
    "download": 1,
    "filekeys": 1,
    "build_lite": 2,
    "taps": 2,
    "runtime": 2,
    "cache": 2,
    "export": 2,
    "zoo": 2.5,
    "extract": 3,
    "distributed": 3.5,
    "api": 3.6,
    "transformer": 4,
    "heads": 4,
    "persist": 4,
    "report": 4,
    "training": 4.5,
    "sweep": 4.6,
    "cli": 5,
    "__main__": 5.1,
    "__init__": 4.9,
}
# Third-party packages that only one module may import.
OWNERS = {
    "onnxruntime": {"runtime"},
    "h5py": {"cache"},
    "torch": {"export"},
    "torchvision": {"export"},
    "click": {"cli"},
    "dask": {"distributed"},
    "matplotlib": {"report"},
}
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py"))


def _imports(module: str) -> list[tuple[str, bool]]:
    """(imported name, is internal) pairs of one module."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                found.append(((node.module or "").split(".")[0], True))
            elif node.module and node.module.split(".")[0] == "cnncodes":
                found.append((node.module.split(".")[1] if "." in node.module else "__init__", True))
            elif node.module:
                found.append((node.module.split(".")[0], False))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                found.append(("__init__", True) if top == "cnncodes" else (top, False))
    return found


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_only_lower_layers(module: str) -> None:
    """Check that each module imports cnncodes modules of lower layers only, and guarded packages only where owned."""
    assert module in LAYERS, f"{module}.py has no layer in the architecture table"
    for name, internal in _imports(module):
        if internal:
            assert LAYERS[name] < LAYERS[module], f"{module} imports {name}"
        elif name in OWNERS:
            assert module in OWNERS[name], f"{module} imports {name}"


def test_modules_open_with_a_docstring() -> None:
    """Check that every module opens with a one-line docstring of its responsibility."""
    for module in MODULES:
        docstring = ast.get_docstring(ast.parse((PACKAGE / f"{module}.py").read_text()))
        assert docstring and docstring.splitlines()[0].endswith("."), module


def test_flake8_clean() -> None:
    """Check that the package, tests and scripts pass flake8 with the settings in setup.cfg."""
    import subprocess
    import sys

    root = PACKAGE.parent
    completed = subprocess.run(
        [sys.executable, "-m", "flake8", "cnncodes", "tests", "scripts"], cwd=root, capture_output=True, text=True
    )
    assert completed.returncode == 0, completed.stdout
