"""ONNX graph surgery: list a model's tensors, expose taps as outputs, fuse preprocessing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import TensorProto, helper, numpy_helper

from .errors import ModelFileError, UnknownLayerError

__all__ = ["TensorInfo", "list_tensors", "graph_input", "prepare_model", "PIXELS_INPUT"]

PIXELS_INPUT = "pixels"  # uint8 (N, H, W, 3) input of every prepared model


@dataclass(frozen=True)
class TensorInfo:
    """A float tensor of an ONNX graph that can serve as a tap.

    Examples
    --------
    >>> info = TensorInfo("conv1", ("N", 4, 16, 16), "Conv")
    >>> info.n_features, info.size
    (4, 16)
    """

    name: str
    shape: tuple[int | str, ...]  # dims from shape inference; a str is symbolic (batch)
    op_type: str  # the node that produces it

    @property
    def n_features(self) -> int | None:
        """Length of the code after global pooling: channels (dim 1), or None if unknown."""
        if len(self.shape) >= 2 and isinstance(self.shape[1], int):
            return self.shape[1]
        return None

    @property
    def size(self) -> int | None:
        """Height of a (N, C, H, W) feature map, or None for vectors and unknown heights."""
        if len(self.shape) == 4 and isinstance(self.shape[2], int):
            return self.shape[2]
        return None


def _load(path: Path | str) -> onnx.ModelProto:
    try:
        return onnx.load(str(path))
    except (OSError, onnx.onnx_cpp2py_export.checker.ValidationError, ValueError) as error:
        message = f"{path}: cannot read ONNX model ({error})"
        raise ModelFileError(message) from error
    except DecodeError as error:  # what protobuf raises for bytes that are not an ONNX model
        message = f"{path}: not an ONNX model (protobuf decode failed)"
        raise ModelFileError(message) from error


def _dims(value: onnx.ValueInfoProto) -> tuple[int | str, ...]:
    dims = value.type.tensor_type.shape.dim
    return tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims)


def list_tensors(path: Path | str) -> list[TensorInfo]:
    """List the float tensors of any ONNX model with their shapes, in graph order.

    Parameters
    ----------
    path : str or Path
        Any ONNX file; shapes come from ONNX shape inference.

    Returns
    -------
    list of TensorInfo
        Graph outputs and intermediate tensors of rank 2 or more whose type is float.

    Raises
    ------
    ModelFileError
        If the file is missing, or it is not an ONNX model, or shape inference fails.

    Examples
    --------
    >>> images = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, 8, 8])
    >>> pooled = helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["N", 3, 1, 1])
    >>> nodes = [helper.make_node("Relu", ["images"], ["relu"]),
    ...          helper.make_node("GlobalMaxPool", ["relu"], ["pooled"])]
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     onnx.save(helper.make_model(helper.make_graph(nodes, "tiny", [images], [pooled])), f"{folder}/tiny.onnx")
    ...     [(t.name, t.shape, t.op_type) for t in list_tensors(f"{folder}/tiny.onnx")]
    [('relu', ('N', 3, 8, 8), 'Relu'), ('pooled', ('N', 3, 1, 1), 'GlobalMaxPool')]
    """
    model = _load(path)
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except onnx.shape_inference.InferenceError as error:
        message = f"{path}: ONNX shape inference failed ({error})"
        raise ModelFileError(message) from error
    values = {v.name: v for v in [*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input]}
    float_types = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE}
    tensors: list[TensorInfo] = []
    seen: set[str] = set()
    for node in inferred.graph.node:
        for name in node.output:
            value = values.get(name)
            if value is None or name in seen or value.type.tensor_type.elem_type not in float_types:
                continue
            shape = _dims(value)
            if len(shape) >= 2:
                tensors.append(TensorInfo(name, shape, node.op_type))
                seen.add(name)
    return tensors


def graph_input(path: Path | str) -> tuple[str, int]:
    """Name and square size of the model's image input: its first graph input that is not a weight.

    Parameters
    ----------
    path : str or Path
        An ONNX file whose first input takes images.

    Returns
    -------
    name : str
        The input's name in the graph.
    size : int
        The last dimension of a 4-D input, or 224 when it is symbolic.

    Raises
    ------
    ModelFileError
        If the file is not an ONNX model or its graph has no input.

    Examples
    --------
    >>> pixels_in = helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, 96, 96])
    >>> same = helper.make_tensor_value_info("same", TensorProto.FLOAT, [1, 3, 96, 96])
    >>> graph = helper.make_graph([helper.make_node("Identity", ["input.1"], ["same"])], "id", [pixels_in], [same])
    >>> import tempfile; folder = Path(tempfile.mkdtemp())
    >>> onnx.save(helper.make_model(graph), folder / "identity.onnx")
    >>> graph_input(folder / "identity.onnx")
    ('input.1', 96)
    >>> (folder / "identity.onnx").unlink(); folder.rmdir()
    """
    model = _load(path)
    initializers = {init.name for init in model.graph.initializer}
    inputs = [value for value in model.graph.input if value.name not in initializers]
    if not inputs:
        message = f"{path}: the graph has no input"
        raise ModelFileError(message)
    shape = _dims(inputs[0])
    size = shape[-1] if len(shape) == 4 and isinstance(shape[-1], int) and shape[-1] > 0 else 224
    return inputs[0].name, int(size)


def _preprocessing_nodes(
    model_input: str, mean: tuple[float, ...], std: tuple[float, ...], bgr: bool
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """uint8 NHWC pixels -> float NCHW normalized, feeding ``model_input``.

    The bytes are transposed first and normalized by channel plane: onnxruntime broadcasts a
    constant over a contiguous plane fast, but over the 3 channels of every pixel (NHWC) one
    element at a time, which took 15% of Lite0's inference. Each element gets the same two
    float operations either way.
    """
    mean_array = np.asarray(mean, np.float32)
    scale_array = (1.0 / np.asarray(std, np.float64)).astype(np.float32)
    if bgr:
        mean_array, scale_array = mean_array[::-1].copy(), scale_array[::-1].copy()
    initializers = [
        numpy_helper.from_array(mean_array.reshape(1, 3, 1, 1), "preprocess.mean"),
        numpy_helper.from_array(scale_array.reshape(1, 3, 1, 1), "preprocess.scale"),
    ]
    nodes = [
        helper.make_node("Transpose", [PIXELS_INPUT], ["preprocess.planes"], perm=[0, 3, 1, 2]),
        helper.make_node("Cast", ["preprocess.planes"], ["preprocess.float"], to=TensorProto.FLOAT),
    ]
    source = "preprocess.float"
    if bgr:  # cnncodes always sends RGB; reverse the channel axis for BGR models
        initializers.append(numpy_helper.from_array(np.array([2, 1, 0], np.int64), "preprocess.bgr"))
        nodes.append(helper.make_node("Gather", [source, "preprocess.bgr"], ["preprocess.swapped"], axis=1))
        source = "preprocess.swapped"
    nodes += [
        helper.make_node("Sub", [source, "preprocess.mean"], ["preprocess.centred"]),
        helper.make_node("Mul", ["preprocess.centred", "preprocess.scale"], [model_input]),
    ]
    return nodes, initializers


def prepare_model(
    path: Path | str,
    outputs: list[str],
    *,
    input_name: str,
    input_size: int,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
    color_order: str = "RGB",
) -> bytes:
    """Return a model that takes uint8 pixels and outputs exactly the tensors ``outputs``.

    The float NCHW input ``input_name`` is replaced by ``pixels`` (N, H, W, 3) uint8
    (RGB), transposed, cast and normalized as ``(x - mean) / std`` inside the graph.
    Nodes that no requested output needs are pruned, so an early tap runs only the
    early part of the network; several taps come from one pass.

    Parameters
    ----------
    path : str or Path
        The ONNX file.
    outputs : list of str
        Tensor names to expose, in this order.
    input_name : str
        The model's float image input.
    input_size : int
        Height and width of the pixels input.
    mean, std : tuple of 3 floats
        Normalization in 0..255 units, in the model's colour order.
    color_order : {"RGB", "BGR"}, default="RGB"
        The channel order the model expects.

    Returns
    -------
    bytes
        The serialized model, ready for ``onnxruntime.InferenceSession``.

    Raises
    ------
    UnknownLayerError
        If a requested tensor is not in the graph.
    ModelFileError
        If the file is not an ONNX model or has no input called ``input_name``.

    Examples
    --------
    >>> x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4, 4])
    >>> nodes = [helper.make_node("Sigmoid", ["x"], ["early"]), helper.make_node("Exp", ["early"], ["late"])]
    >>> late = helper.make_tensor_value_info("late", TensorProto.FLOAT, ["N", 3, 4, 4])
    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile(suffix=".onnx") as file:
    ...     onnx.save(helper.make_model(helper.make_graph(nodes, "two", [x], [late])), file.name)
    ...     prepared = prepare_model(file.name, ["early"], input_name="x", input_size=4, mean=(0, 0, 0), std=(1, 1, 1))
    >>> graph = onnx.load_from_string(prepared).graph
    >>> [i.name for i in graph.input], [o.name for o in graph.output]
    (['pixels'], ['early'])
    >>> [node.op_type for node in graph.node]  # the Exp that no output needs is pruned
    ['Transpose', 'Cast', 'Sub', 'Mul', 'Sigmoid']
    """
    model = _load(path)
    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    produced = {name for node in graph.node for name in node.output}
    missing = [name for name in outputs if name not in produced]
    if missing:
        message = (
            f"{path}: no tensor named {', '.join(repr(m) for m in missing)}; run 'cnncodes layers {path}' to list them"
        )
        raise UnknownLayerError(message)
    if input_name not in {value.name for value in graph.input}:
        message = f"{path}: no graph input named '{input_name}'"
        raise ModelFileError(message)
    values = {v.name: v for v in [*graph.value_info, *graph.output]}
    # Keep only the nodes that the requested outputs depend on.
    producer = {name: node for node in graph.node for name in node.output}
    needed, stack = set(), list(outputs)
    while stack:
        name = stack.pop()
        node = producer.get(name)
        if node is None or id(node) in needed:
            continue
        needed.add(id(node))
        stack.extend(node.input)
    kept_nodes = [node for node in graph.node if id(node) in needed]
    used = {name for node in kept_nodes for name in node.input}
    pre_nodes, pre_inits = _preprocessing_nodes(input_name, mean, std, color_order.upper() == "BGR")
    new_outputs = []
    for name in outputs:
        value = values.get(name)
        elem_type = value.type.tensor_type.elem_type if value is not None else TensorProto.FLOAT
        new_outputs.append(helper.make_tensor_value_info(name, elem_type, None))
    new_graph = helper.make_graph(
        pre_nodes + kept_nodes,
        graph.name or "cnncodes",
        [helper.make_tensor_value_info(PIXELS_INPUT, TensorProto.UINT8, ["N", input_size, input_size, 3])],
        new_outputs,
        [init for init in graph.initializer if init.name in used] + pre_inits,
    )
    prepared = helper.make_model(new_graph, producer_name="cnncodes", opset_imports=model.opset_import)
    prepared.ir_version = model.ir_version
    return prepared.SerializeToString()
