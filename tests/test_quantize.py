"""Tests of cnncodes.quantize: int8 and fp16 graphs, byte-identical builds, codes close to fp32, separate caches."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import pytest

import cnncodes
from cnncodes.backbones import get_backbone
from cnncodes.errors import InputError, ModelFileError
from cnncodes.modelfiles import ensure_model_file, resolve_backbone
from cnncodes.params import PRECISIONS
from cnncodes.quantize import (
    CALIBRATION_IMAGES,
    FLOAT_CONVS,
    build_fp16,
    build_int8,
    calibration_inputs,
    precision_model_file,
)
from tests.conftest import HYMENOPTERA, build_tiny_model, write_image


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def real_photos() -> list[Path]:
    """Eight real ants/bees photos (JPEG, EXIF), the same every run."""
    return (
        sorted((HYMENOPTERA / "val" / "ants").glob("*.jpg"))[:4]
        + sorted((HYMENOPTERA / "val" / "bees").glob("*.jpg"))[:4]
    )


def test_calibration_inputs_fixed_and_normalized() -> None:
    """Check that the calibration batch is 5 crops of every listed image, normalized as the fused graph does."""
    backbone = get_backbone("efficientnet_lite0")
    batch = calibration_inputs(backbone)
    assert batch.shape == (5 * len(CALIBRATION_IMAGES), 3, 224, 224) and batch.dtype == np.float32
    # Lite: (x - 127) / 128, so every value is a multiple of 1/128 in [-127/128, 1].
    assert np.allclose(batch * 128 % 1, 0) and batch.min() >= -127 / 128 and batch.max() <= 1.0
    np.testing.assert_array_equal(calibration_inputs(backbone), batch)


def test_build_int8_byte_identical_twice(tmp_path: Path) -> None:
    """Check that building the int8 graph twice gives the same bytes, in QDQ form, with the fp32 graph's tensors."""
    source = build_tiny_model(tmp_path / "tiny.onnx", size=32)
    backbone = resolve_backbone(source)
    first = build_int8(source, tmp_path / "a" / "tiny.int8.onnx", backbone)
    second = build_int8(source, tmp_path / "b" / "tiny.int8.onnx", backbone)
    assert first.read_bytes() == second.read_bytes()
    graph = onnx.load(str(first)).graph
    ops = {node.op_type for node in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    tensors = {name for node in graph.node for name in node.output}
    assert {"conv1", "conv2", "vector"} <= tensors  # the taps keep their names
    assert sorted(p.name for p in first.parent.iterdir()) == ["tiny.int8.onnx"]  # no temporary file left


def test_build_fp16_keeps_float32_io(tmp_path: Path) -> None:
    """Check that the fp16 graph holds float16 weights and still takes and gives float32."""
    source = build_tiny_model(tmp_path / "tiny.onnx")
    model = onnx.load(str(build_fp16(source, tmp_path / "tiny.fp16.onnx")))
    assert {init.data_type for init in model.graph.initializer} == {onnx.TensorProto.FLOAT16}
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_precision_model_file_named_by_source_and_built_once(tmp_path: Path) -> None:
    """Check that a reduced graph goes to the models folder, named by its source's sha256, built once."""
    source = build_tiny_model(tmp_path / "tiny.onnx")
    backbone = resolve_backbone(source)
    assert precision_model_file(backbone, source, "fp32") == source
    int8 = precision_model_file(backbone, source, "int8")
    assert int8.parent == cnncodes.models_dir() and re.fullmatch(r"tiny\.int8v2-[0-9a-f]{12}\.onnx", int8.name)
    mtime = int8.stat().st_mtime_ns
    assert precision_model_file(backbone, source, "int8").stat().st_mtime_ns == mtime
    with pytest.raises(InputError, match=re.escape("The 'precision' parameter must be one of 'fp32', 'int8', 'fp16'")):
        precision_model_file(backbone, source, "int4")


@pytest.mark.parametrize("precision", ["int8", "fp16"])
def test_precision_model_file_not_onnx_one_line_error(tmp_path: Path, precision: str) -> None:
    """Check that a file that is not an ONNX model fails with one line naming it, and leaves no file behind."""
    source = tmp_path / "broken.onnx"
    source.write_bytes(b"not an onnx model")
    expected = f"{source}: cannot build its {precision} graph ("
    with pytest.raises(ModelFileError, match="^" + re.escape(expected)) as caught:
        precision_model_file(get_backbone("efficientnet_lite0"), source, precision)
    assert "\n" not in str(caught.value)
    assert not list(cnncodes.models_dir().glob("*broken*"))  # no temporary file either


def test_extract_precisions_are_separate_feature_sets(tmp_path: Path) -> None:
    """Check that int8 and fp16 codes of a small model are close to fp32 ones yet cached apart."""
    source = build_tiny_model(tmp_path / "tiny.onnx")
    images = [write_image(tmp_path / f"{i}.jpg", seed=i) for i in range(4)]
    cache = tmp_path / "cache"
    runs = {p: cnncodes.extract(images, model=str(source), precision=p, cache=cache) for p in ("fp32", "int8", "fp16")}
    shas = {p: r.spec["layers"][0]["model_sha256"] for p, r in runs.items()}
    assert len(set(shas.values())) == 3
    assert runs["int8"].spec["layers"][0]["precision"] == "int8" and "precision" not in runs["fp32"].spec["layers"][0]
    assert len(cnncodes.cache_info(cache)) == 3
    assert _cosines(runs["fp32"].codes, runs["int8"].codes).min() > 0.95
    np.testing.assert_allclose(runs["fp16"].codes, runs["fp32"].codes, rtol=2e-2, atol=2e-2)
    again = cnncodes.extract(images, model=str(source), precision="int8", cache=cache)
    assert again.n_from_cache == 4
    np.testing.assert_array_equal(again.codes, runs["int8"].codes)


def test_real_backbone_int8_and_fp16_parity(real_photos: list[Path]) -> None:
    """Check on real photos that Lite0's int8 codes stay near fp32 (cosine) and fp16 matches it on the CPU."""
    layers = ("penultimate", "stage6")
    codes = {p: cnncodes.extract(real_photos, layer=layers, precision=p, cache=False).codes for p in PRECISIONS}
    penultimate = slice(0, 1280)
    assert _cosines(codes["fp32"][:, penultimate], codes["int8"][:, penultimate]).min() > 0.97
    assert _cosines(codes["fp32"], codes["int8"]).mean() > 0.98
    assert _cosines(codes["fp32"], codes["fp16"]).min() > 0.9999


def test_real_backbone_int8_keeps_its_first_convolutions_float() -> None:
    """Check that Lite0's int8 graph quantizes the weights of every convolution but the first three (stem, block 0),
    which saturate u8s8 kernels on CPUs without VNNI."""
    backbone = get_backbone("efficientnet_lite0")
    graph = onnx.load(str(precision_model_file(backbone, ensure_model_file(backbone), "int8"))).graph
    dequantized = {name for node in graph.node if node.op_type == "DequantizeLinear" for name in node.output}
    convolutions = [node for node in graph.node if node.op_type == "Conv"]
    assert [node.input[1] in dequantized for node in convolutions] == [False] * FLOAT_CONVS + [True] * 46
    assert [node.name for node in convolutions[:FLOAT_CONVS]] == ["stem.conv", "blocks.0.dw.conv", "blocks.0.project"]


def test_cnncodes_takes_precision() -> None:
    """Check that the estimator stores precision verbatim and checks it in fit, naming itself."""
    estimator = cnncodes.CNNCodes(precision="int8")
    assert estimator.get_params()["precision"] == "int8"
    with pytest.raises(InputError, match=re.escape("The 'precision' parameter of CNNCodes must be one of")):
        cnncodes.CNNCodes(precision="int4").fit()
