"""Tests of ONNX graph surgery: tensor listing, tap outputs, pruning, fused preprocessing."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from cnncodes.errors import ModelFileError, UnknownLayerError
from cnncodes.taps import PIXELS_INPUT, TensorInfo, graph_input, list_tensors, prepare_model

MEAN, STD = (120.0, 110.0, 100.0), (60.0, 50.0, 40.0)


def test_list_tensors_shapes(tiny_onnx: Path) -> None:
    """Check that intermediate tensors are listed with inferred shapes."""
    tensors = {t.name: t for t in list_tensors(tiny_onnx)}
    assert tensors["conv1"].shape == ("N", 4, 16, 16)
    assert tensors["conv2"].shape == ("N", 6, 8, 8)
    assert tensors["vector"].shape == ("N", 6)
    assert tensors["relu1"].op_type == "Relu"


def test_graph_input(tiny_onnx: Path) -> None:
    """Check that the image input and its size are found."""
    assert graph_input(tiny_onnx) == ("images", 32)


def test_prepare_model_fuses_preprocessing(tiny_onnx: Path) -> None:
    """Check that the uint8 NHWC model equals the float model fed (x - mean) / std in NCHW."""
    prepared = prepare_model(tiny_onnx, ["conv1", "vector"], input_name="images", input_size=32, mean=MEAN, std=STD)
    pixels = np.random.default_rng(0).integers(0, 256, size=(2, 32, 32, 3), dtype=np.uint8)
    fused = ort.InferenceSession(prepared, providers=["CPUExecutionProvider"])
    assert [i.name for i in fused.get_inputs()] == [PIXELS_INPUT]
    conv1, vector = fused.run(["conv1", "vector"], {PIXELS_INPUT: pixels})
    plain = ort.InferenceSession(str(tiny_onnx), providers=["CPUExecutionProvider"])
    float_input = ((pixels - np.array(MEAN)) / np.array(STD)).astype(np.float32).transpose(0, 3, 1, 2)
    (expected_vector,) = plain.run(["vector"], {"images": float_input})
    np.testing.assert_allclose(vector, expected_vector, rtol=1e-5, atol=1e-5)
    assert conv1.shape == (2, 4, 16, 16)


@pytest.mark.parametrize("color_order", ["RGB", "BGR"])
def test_prepare_model_normalizes_by_plane_to_the_bit(tmp_path: Path, color_order: str) -> None:
    """Check that the network's float input is exactly (float32(x) - mean) * float32(1 / std), channel by channel,
    in NCHW: the same two operations on every element as numpy, whatever the order of the transposition."""
    images = onnx.helper.make_tensor_value_info("images", onnx.TensorProto.FLOAT, ["N", 3, 32, 32])
    copy = onnx.helper.make_tensor_value_info("copy", onnx.TensorProto.FLOAT, ["N", 3, 32, 32])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["images"], ["copy"])], "id", [images], [copy])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, str(tmp_path / "identity.onnx"))
    pixels = np.random.default_rng(2).integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)
    prepared = prepare_model(
        tmp_path / "identity.onnx", ["copy"], input_name="images", input_size=32, mean=MEAN, std=STD,
        color_order=color_order,
    )  # fmt: skip
    (got,) = ort.InferenceSession(prepared, providers=["CPUExecutionProvider"]).run(None, {PIXELS_INPUT: pixels})
    order = slice(None, None, -1 if color_order == "BGR" else 1)
    mean = np.asarray(MEAN, np.float32)[order]
    scale = (1.0 / np.asarray(STD, np.float64)).astype(np.float32)[order]
    expected = ((pixels[..., order].astype(np.float32) - mean) * scale).transpose(0, 3, 1, 2)
    assert got.dtype == np.float32 and got.shape == (3, 3, 32, 32)
    np.testing.assert_array_equal(got, expected)


def test_prepare_model_bgr_reverses_channels(tiny_onnx: Path) -> None:
    """Check that a BGR model receives the channels reversed."""
    pixels = np.random.default_rng(1).integers(0, 256, size=(1, 32, 32, 3), dtype=np.uint8)
    rgb = ort.InferenceSession(
        prepare_model(tiny_onnx, ["vector"], input_name="images", input_size=32, mean=MEAN[::-1], std=STD[::-1]),
        providers=["CPUExecutionProvider"],
    )
    bgr = ort.InferenceSession(
        prepare_model(tiny_onnx, ["vector"], input_name="images", input_size=32, mean=MEAN, std=STD, color_order="BGR"),
        providers=["CPUExecutionProvider"],
    )
    (expected,) = rgb.run(None, {PIXELS_INPUT: pixels[..., ::-1].copy()})
    (got,) = bgr.run(None, {PIXELS_INPUT: pixels})
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_prepare_model_prunes_unneeded_nodes(tiny_onnx: Path) -> None:
    """Check that an early tap keeps only the nodes it needs."""
    model = onnx.load_from_string(
        prepare_model(tiny_onnx, ["conv1"], input_name="images", input_size=32, mean=MEAN, std=STD)
    )
    ops = [node.op_type for node in model.graph.node]
    assert ops.count("Conv") == 1 and "GlobalAveragePool" not in ops


def test_prepare_model_unknown_tensor(tiny_onnx: Path) -> None:
    """Check that an unknown tensor name is a one-line error naming the file and the command to list tensors."""
    expected = f"{tiny_onnx}: no tensor named 'conv9'; run 'cnncodes layers {tiny_onnx}' to list them"
    with pytest.raises(UnknownLayerError, match=re.escape(expected)):
        prepare_model(tiny_onnx, ["conv9"], input_name="images", input_size=32, mean=MEAN, std=STD)


def test_list_tensors_rejects_non_onnx(tmp_path: Path) -> None:
    """Check that a file that is not ONNX gets a one-line error naming it."""
    path = tmp_path / "fake.onnx"
    path.write_bytes(b"\x00\x01garbage that is not protobuf\xff\xff")
    with pytest.raises(ModelFileError, match=re.escape(f"{path}: not an ONNX model (protobuf decode failed)")):
        list_tensors(path)


def test_tensor_info_size_only_for_feature_maps() -> None:
    """Check that a tensor's spatial size is its height for (N, C, H, W) maps and None for vectors or symbols."""
    assert TensorInfo("map", ("N", 8, 7, 7), "Conv").size == 7
    assert TensorInfo("vector", ("N", 8), "Gemm").size is None
    assert TensorInfo("dynamic", ("N", 8, "H", "W"), "Conv").size is None
    assert TensorInfo("dynamic", ("N", "C"), "Conv").n_features is None


def test_graph_input_symbolic_size_defaults_to_224(tiny_onnx: Path, tmp_path: Path) -> None:
    """Check that an input whose height and width are symbolic is taken as 224 px."""
    model = onnx.load(str(tiny_onnx))
    for dim in model.graph.input[0].type.tensor_type.shape.dim[2:]:
        dim.dim_param = "size"
    onnx.save(model, str(tmp_path / "dynamic.onnx"))
    assert graph_input(tmp_path / "dynamic.onnx") == ("images", 224)


def test_prepare_model_unknown_input(tiny_onnx: Path) -> None:
    """Check that a wrong image input name is a one-line error naming the file."""
    with pytest.raises(ModelFileError, match=re.escape(f"{tiny_onnx}: no graph input named 'pixels_in'")):
        prepare_model(tiny_onnx, ["vector"], input_name="pixels_in", input_size=32, mean=MEAN, std=STD)


def test_list_tensors_missing_file(tmp_path: Path) -> None:
    """Check that a missing file is a one-line error naming it."""
    with pytest.raises(ModelFileError, match=re.escape(f"{tmp_path / 'none.onnx'}: cannot read ONNX model (")):
        list_tensors(tmp_path / "none.onnx")
