"""Build EfficientNet-Lite ONNX graphs from their PyTorch state dicts, without torch.

BatchNorm is folded into the convolutions and TensorFlow 'SAME' padding is written into
each Conv node's ``pads`` (asymmetric at stride 2), so ONNX Runtime sees one fused op
per convolution. The graph takes float32 NCHW images already normalized; taps.py puts
the uint8 preprocessing in front.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .errors import WeightsFormatError
from .fileio import atomic_path

__all__ = ["build_lite_model", "write_onnx"]

_INPUT_NAME = "images"
_STAGE_STRIDES = (1, 2, 2, 2, 1, 2, 1)  # stride of the first block of each of the 7 stages
_BN_EPS = 1e-3
_OPSET = 17
_IR_VERSION = 8


def _same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'SAME' padding of one spatial axis as (begin, end)."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class _GraphWriter:
    """Accumulates nodes and initializers of a feed-forward conv net."""

    def __init__(self, state: dict[str, np.ndarray], source: str) -> None:
        self.state = state
        self.source = source
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def weight(self, key: str) -> np.ndarray:
        if key not in self.state:
            message = f"{self.source}: missing tensor '{key}'; not an EfficientNet-Lite state dict"
            raise WeightsFormatError(message)
        return self.state[key].astype(np.float32)

    def constant(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def conv_bn(self, x: str, out: str, conv: str, bn: str, size: int, stride: int, groups: int = 1) -> str:
        """Conv with its BatchNorm folded in, SAME padding inside the node."""
        w = self.weight(f"{conv}.weight")
        gamma, beta = self.weight(f"{bn}.weight"), self.weight(f"{bn}.bias")
        mean, var = self.weight(f"{bn}.running_mean"), self.weight(f"{bn}.running_var")
        scale = gamma / np.sqrt(var + _BN_EPS)
        w_name = self.constant(f"{out}.w", (w * scale[:, None, None, None]).astype(np.float32))
        b_name = self.constant(f"{out}.b", (beta - mean * scale).astype(np.float32))
        kernel = w.shape[-1]
        begin, end = _same_pads(size, kernel, stride)
        self.nodes.append(
            helper.make_node(
                "Conv",
                [x, w_name, b_name],
                [out],
                name=out,
                kernel_shape=[kernel, kernel],
                strides=[stride, stride],
                pads=[begin, begin, end, end],
                group=groups,
            )
        )
        return out

    def relu6(self, x: str, out: str) -> str:
        lo = self.constant(f"{out}.min", np.array(0.0, np.float32))
        hi = self.constant(f"{out}.max", np.array(6.0, np.float32))
        self.nodes.append(helper.make_node("Clip", [x, lo, hi], [out], name=out))
        return out

    def add(self, a: str, b: str, out: str) -> str:
        self.nodes.append(helper.make_node("Add", [a, b], [out], name=out))
        return out


def _block_indices(state: dict[str, np.ndarray]) -> list[int]:
    return sorted({int(key.split(".")[1]) for key in state if key.startswith("_blocks.")})


def build_lite_model(state: dict[str, np.ndarray], input_size: int, source: str = "weights") -> onnx.ModelProto:
    """Build an EfficientNet-Lite ONNX model from a lukemelas-layout state dict.

    Parameters
    ----------
    state : dict of str to numpy.ndarray
        The state dict, as :func:`cnncodes.weights.load_state_dict` returns it.
    input_size : int
        Square input resolution the graph is built for (224, 240 or 260); SAME
        padding depends on it.
    source : str, default="weights"
        Name of the weights file, for error messages.

    Returns
    -------
    onnx.ModelProto
        A checked model with input ``images`` (N, 3, input_size, input_size) float32
        and outputs ``stage1`` … ``stage7``, ``head`` (ReLU6 feature map),
        ``penultimate`` (N, 1280) and ``logits`` (N, 1000).

    Raises
    ------
    WeightsFormatError
        If a tensor the architecture needs is missing.

    Examples
    --------
    >>> from cnncodes.backbones import lite_weights_path
    >>> from cnncodes.weights import load_state_dict
    >>> model = build_lite_model(load_state_dict(lite_weights_path("efficientnet_lite0")), 224)
    >>> [output.name for output in model.graph.output][-3:]
    ['head', 'penultimate', 'logits']
    """
    writer = _GraphWriter(state, source)
    size = input_size
    x = writer.relu6(writer.conv_bn(_INPUT_NAME, "stem.conv", "_conv_stem", "_bn0", size, 2), "stem")
    size = math.ceil(size / 2)
    stage, channels = -1, writer.weight("_conv_stem.weight").shape[0]
    stage_outputs: list[tuple[str, int, int]] = []
    blocks = _block_indices(state)
    for position, index in enumerate(blocks):
        prefix = f"_blocks.{index}"
        out_channels = writer.weight(f"{prefix}._project_conv.weight").shape[0]
        first_in_stage = position == 0 or out_channels != channels
        if first_in_stage:
            stage += 1
            if stage >= len(_STAGE_STRIDES):
                message = f"{source}: more than {len(_STAGE_STRIDES)} stages; not EfficientNet-Lite"
                raise WeightsFormatError(message)
        stride = _STAGE_STRIDES[stage] if first_in_stage else 1
        name = f"blocks.{index}"
        h = x
        if f"{prefix}._expand_conv.weight" in state:
            h = writer.relu6(
                writer.conv_bn(h, f"{name}.expand.conv", f"{prefix}._expand_conv", f"{prefix}._bn0", size, 1),
                f"{name}.expand",
            )
        hidden = writer.weight(f"{prefix}._depthwise_conv.weight").shape[0]
        h = writer.conv_bn(
            h, f"{name}.dw.conv", f"{prefix}._depthwise_conv", f"{prefix}._bn1", size, stride, groups=hidden
        )
        h = writer.relu6(h, f"{name}.dw")
        size = math.ceil(size / stride)
        h = writer.conv_bn(h, f"{name}.project", f"{prefix}._project_conv", f"{prefix}._bn2", size, 1)
        if stride == 1 and channels == out_channels:
            h = writer.add(h, x, f"{name}.add")
        x, channels = h, out_channels
        is_last_in_stage = position == len(blocks) - 1 or (
            writer.weight(f"_blocks.{blocks[position + 1]}._project_conv.weight").shape[0] != channels
        )
        if is_last_in_stage:
            stage_name = f"stage{stage + 1}"
            writer.nodes.append(helper.make_node("Identity", [x], [stage_name], name=stage_name))
            stage_outputs.append((stage_name, channels, size))
    head = writer.relu6(writer.conv_bn(x, "head.conv", "_conv_head", "_bn1", size, 1), "head")
    head_channels = writer.weight("_conv_head.weight").shape[0]
    writer.nodes.append(helper.make_node("GlobalAveragePool", [head], ["head.pool"], name="head.pool"))
    writer.nodes.append(helper.make_node("Flatten", ["head.pool"], ["penultimate"], name="penultimate", axis=1))
    fc_w = writer.constant("logits.w", writer.weight("_fc.weight"))
    fc_b = writer.constant("logits.b", writer.weight("_fc.bias"))
    writer.nodes.append(helper.make_node("Gemm", ["penultimate", fc_w, fc_b], ["logits"], name="logits", transB=1))
    n_classes = writer.weight("_fc.bias").shape[0]

    def output(name: str, *shape: int | str) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", *shape])

    outputs = [output(name, c, s, s) for name, c, s in stage_outputs]
    outputs += [
        output("head", head_channels, size, size),
        output("penultimate", head_channels),
        output("logits", n_classes),
    ]
    graph = helper.make_graph(
        writer.nodes,
        "efficientnet_lite",
        [helper.make_tensor_value_info(_INPUT_NAME, TensorProto.FLOAT, ["N", 3, input_size, input_size])],
        outputs,
        writer.initializers,
    )
    model = helper.make_model(graph, producer_name="cnncodes", opset_imports=[helper.make_opsetid("", _OPSET)])
    model.ir_version = _IR_VERSION
    onnx.checker.check_model(model)
    return model


def write_onnx(model: onnx.ModelProto, path: Path | str) -> Path:
    """Write an ONNX model to a file, atomically (a reader never sees half a model).

    Parameters
    ----------
    model : onnx.ModelProto
        The model, e.g. from :func:`build_lite_model`.
    path : Path or str
        The ``.onnx`` file; its folder is created if missing.

    Returns
    -------
    Path
        The file written, ``path`` itself.

    Examples
    --------
    >>> graph = helper.make_graph(
    ...     [helper.make_node("Relu", ["x"], ["y"])],
    ...     "relu",
    ...     [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
    ...     [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
    ... )
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = write_onnx(helper.make_model(graph), Path(folder) / "relu.onnx")
    ...     print(sorted(p.name for p in path.parent.iterdir()), onnx.load(str(path)).graph.node[0].op_type)
    ['relu.onnx'] Relu
    """
    with atomic_path(path, suffix=".onnx") as temporary:
        temporary.write_bytes(model.SerializeToString())
    return Path(path)
