"""The wheel carries what the package reads at run time (model cards, class names) and never a model file."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("cnncodes", "models_onnx", "setup.cfg", "pyproject.toml", "README.md")


def _build_wheel(source: Path, wheels: Path) -> set[str]:
    completed = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), "."],
        cwd=source,
        capture_output=True,
        text=True,
    )
    assert completed.returncode == 0, completed.stderr
    (wheel,) = wheels.glob("cnncodes-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def test_wheel_holds_cards_and_class_names_and_no_onnx(tmp_path: Path) -> None:
    """Check that a wheel built from a tree with stray built models holds every card, the class names, no .onnx."""
    source = tmp_path / "source"
    for name in SOURCES:
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy2
        copy(
            ROOT / name,
            source / name,
            **({"ignore": shutil.ignore_patterns("__pycache__")} if name == "cnncodes" else {}),
        )
    # A developer's tree may hold models built by older versions beside the cards or in the package.
    (source / "models_onnx" / "efficientnet_lite0.onnx").write_bytes(b"stray model")
    (source / "cnncodes" / "stray.onnx").write_bytes(b"stray model")
    names = _build_wheel(source, tmp_path / "wheels")
    cards = {f"cnncodes/models_onnx/{card.name}" for card in (ROOT / "models_onnx").glob("*.json")}
    assert len(cards) >= 13 and cards <= names, sorted(cards - names)
    assert "cnncodes/imagenet_classes.txt" in names
    modules = {
        p.relative_to(ROOT).as_posix() for p in (ROOT / "cnncodes").rglob("*.py") if "__pycache__" not in p.parts
    }
    assert modules <= names, sorted(modules - names)  # every module and subpackage ships
    assert "cnncodes/cli/__init__.py" in names and "cnncodes/models_onnx/__init__.py" in names
    assert [name for name in names if name.endswith(".onnx")] == []
