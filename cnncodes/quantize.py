"""Reduced-precision graphs of a backbone: int8 by static QDQ quantization on a fixed image set, and fp16.

The int8 graph is ONNX Runtime's static quantization in QDQ form (per-channel int8 weights,
uint8 activations, min-max ranges) of the very ONNX file that fp32 runs, so it has the same
tensors (taps) and takes the same fused preprocessing (:func:`cnncodes.taps.prepare_model`).
Its ranges come from :data:`CALIBRATION_IMAGES`, photos that scikit-image ships inside its
wheel (no download), cut into the five crops of ``views="5crop"`` at the backbone's input
size: the same files and code give the same bytes, so building twice gives one file, and its
sha256 is the ``model_sha256`` of the codes it makes (int8 and fp32 codes never share a
feature set). The fp16 graph converts weights and arithmetic to float16, inputs and outputs
staying float32 (ONNX Runtime's own converter); it is meant for CUDA and TensorRT, and runs
on the CPU too, where its parity with fp32 is tested.

This module and :mod:`cnncodes.runtime` are the only importers of onnxruntime.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from .backbones import BackboneSpec
from .contentkeys import file_sha256
from .errors import MissingExtraError, ModelFileError
from .extras import import_extra
from .fileio import atomic_path
from .images import Preprocessing, make_views
from .params import check_parameter
from .paths import models_dir

__all__ = ["CALIBRATION_IMAGES", "calibration_inputs", "build_int8", "build_fp16", "precision_model_file"]

# Photos and scans in scikit-image's wheel (skimage/data), in this order: natural scenes, people,
# objects, textures, microscopy and astronomy, so that activation ranges see more than one kind of image.
CALIBRATION_IMAGES = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "camera.png",
    "moon.png",
    "coins.png",
    "brick.png",
    "grass.png",
    "gravel.png",
    "ihc.png",
    "retina.jpg",
    "hubble_deep_field.jpg",
    "cell.png",
    "page.png",
)
CALIBRATION_VIEWS = "5crop"  # five crops of each image: 80 calibration inputs
# The first convolutions stay float: on CPUs without VNNI (AVX2 alone) ONNX Runtime's u8 x s8 kernels
# saturate 16-bit sums on their wide activations, and Lite0's int8 codes fell to cosine 0.63 of fp32 on
# ants/bees photos (0.97 with these three in float, at the same speed: they are 2% of the multiply-adds).
# Measured slower on that CPU: every convolution int8 with 7-bit weights (reduce_range) 12.1 ms per image
# against 9.9 for this recipe, and uint8 weights (U8U8) 53 ms.
FLOAT_CONVS = 3
INT8_RECIPE = "int8v2"  # in the file name: graphs built by an earlier recipe are rebuilt, never reused


def _calibration_folder() -> Path:
    skimage = import_extra("skimage", "int8", "building an int8 model")
    return Path(skimage.__file__).parent / "data"


def calibration_inputs(backbone: BackboneSpec) -> np.ndarray:
    """The calibration batch of ``backbone``: its float input for the fixed images, normalized as the graph does.

    Parameters
    ----------
    backbone : BackboneSpec
        Gives the input size, crop, interpolation, mean, std and colour order.

    Returns
    -------
    ndarray of shape (5 * len(CALIBRATION_IMAGES), 3, input_size, input_size), float32

    Raises
    ------
    MissingExtraError
        Without scikit-image (extra ``int8``), whose wheel holds the images.

    Examples
    --------
    >>> from cnncodes.backbones import get_backbone
    >>> batch = calibration_inputs(get_backbone("efficientnet_lite0"))
    >>> batch.shape, batch.dtype, bool(-1.0 <= batch.min() < 0 < batch.max() <= 1.0)
    ((80, 3, 224, 224), dtype('float32'), True)
    """
    folder = _calibration_folder()
    pre = Preprocessing(backbone.input_size, backbone.crop_fraction, backbone.interpolation, CALIBRATION_VIEWS)
    views = []
    for name in CALIBRATION_IMAGES:  # files of a wheel, not user input: Pillow's plain decoding
        with Image.open(folder / name) as image:
            views += make_views(image.convert("RGB"), pre)
    pixels = np.stack(views)
    # The arithmetic of taps.prepare_model's fused preprocessing, so the ranges are those the graph will see.
    x, mean = pixels.astype(np.float32), np.asarray(backbone.mean, np.float32)
    scale = (1.0 / np.asarray(backbone.std, np.float64)).astype(np.float32)
    if backbone.color_order.upper() == "BGR":
        x, mean, scale = x[..., ::-1], mean[::-1], scale[::-1]
    return np.ascontiguousarray(((x - mean) * scale).transpose(0, 3, 1, 2))


@contextlib.contextmanager
def _quiet_advice() -> Iterator[None]:
    """Drop onnxruntime's advice to pre-process the model, which it logs on the root logger at every call."""

    def keep(record: logging.LogRecord) -> bool:
        return "pre-processing" not in record.getMessage()

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


def _with_tap_outputs(source: Path | str, backbone: BackboneSpec, folder: Path) -> tuple[Path, list[str]]:
    """A copy of ``source`` whose taps are graph outputs (the quantizer then keeps their names), and the names
    of its first ``FLOAT_CONVS`` convolutions (at most a quarter of them).

    Otherwise it may fold an activation into the node before it, and a tap that was that node's
    output would be gone from the int8 graph.
    """
    import onnx

    model = onnx.load(str(source))
    for number, node in enumerate(model.graph.node):  # the quantizer excludes nodes by name: every node needs one
        node.name = node.name or f"{node.op_type}_{number}"
    convolutions = [node.name for node in model.graph.node if node.op_type == "Conv"]  # in graph (topological) order
    outputs = {output.name for output in model.graph.output}
    produced = {name for node in model.graph.node for name in node.output}
    for tensor in dict.fromkeys(tap.tensor for tap in backbone.taps):
        if tensor in produced and tensor not in outputs:
            model.graph.output.append(onnx.helper.make_empty_tensor_value_info(tensor))
    path = folder / "fp32.onnx"
    onnx.save(model, str(path))
    return path, convolutions[: min(FLOAT_CONVS, len(convolutions) // 4)]  # a small graph keeps most quantized


def build_int8(source: Path | str, target: Path | str, backbone: BackboneSpec) -> Path:
    """Write the int8 (static QDQ) graph of the fp32 ONNX file ``source`` to ``target``, atomically.

    Weights are int8 per channel, activations uint8 from min-max calibration on fixed photos; the
    first ``FLOAT_CONVS`` convolutions stay float (see there).

    Parameters
    ----------
    source : Path or str
        The fp32 ONNX file.
    target : Path or str
        Where the quantized file goes; its folder is created if missing.
    backbone : BackboneSpec
        The backbone of ``source``: its input name and preprocessing make the calibration batch.

    Returns
    -------
    Path
        ``target``.

    Raises
    ------
    MissingExtraError
        Without scikit-image (extra ``int8``).
    """
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType
    from onnxruntime.quantization import quantize_static

    batch = calibration_inputs(backbone)

    class Reader(CalibrationDataReader):  # one image a call: any model, even one fixed to batch 1
        def __init__(self) -> None:
            self._rows = iter(range(len(batch)))

        def get_next(self) -> dict[str, np.ndarray] | None:
            row = next(self._rows, None)
            return None if row is None else {backbone.input_name: batch[row : row + 1]}

    with tempfile.TemporaryDirectory() as folder:
        tapped, float_convolutions = _with_tap_outputs(source, backbone, Path(folder))
        with atomic_path(target, suffix=".onnx") as temporary, _quiet_advice():
            quantize_static(
                str(tapped),
                str(temporary),
                Reader(),
                nodes_to_exclude=float_convolutions,
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
            )
    return Path(target)


def build_fp16(source: Path | str, target: Path | str) -> Path:
    """Write the fp16 graph of the fp32 ONNX file ``source`` to ``target`` (float32 inputs and outputs), atomically.

    Parameters
    ----------
    source : Path or str
        The fp32 ONNX file.
    target : Path or str
        Where the converted file goes.

    Returns
    -------
    Path
        ``target``.
    """
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True, disable_shape_infer=True)
    with atomic_path(target, suffix=".onnx") as temporary:
        onnx.save(model, str(temporary))
    return Path(target)


def precision_model_file(backbone: BackboneSpec, source: Path, precision: str) -> Path:
    """The ONNX file that runs ``backbone`` at ``precision``, built into the models folder on first use.

    The file is named after ``source``, the recipe (``INT8_RECIPE`` for int8) and the first 12 hex
    digits of the source's sha256, so a new fp32 file or a new recipe gets new reduced graphs.

    Parameters
    ----------
    backbone : BackboneSpec
        The backbone of ``source``.
    source : Path
        Its fp32 ONNX file (from :func:`cnncodes.modelfiles.ensure_model_file`).
    precision : {"fp32", "int8", "fp16"}
        ``"fp32"`` returns ``source`` itself.

    Returns
    -------
    Path
        In :func:`cnncodes.models_dir` for ``"int8"`` and ``"fp16"``.

    Raises
    ------
    InputError
        If ``precision`` is not one of ``params.PRECISIONS``.
    MissingExtraError
        For ``"int8"`` without scikit-image (extra ``int8``).
    ModelFileError
        If ``source`` cannot be quantized or converted (not an ONNX model, an input it cannot feed).

    Examples
    --------
    >>> from cnncodes.backbones import get_backbone
    >>> precision_model_file(get_backbone("efficientnet_lite0"), Path("lite0.onnx"), "fp32")
    PosixPath('lite0.onnx')
    """
    check_parameter("precision", precision)
    if precision == "fp32":
        return source
    recipe = INT8_RECIPE if precision == "int8" else precision
    target = models_dir() / f"{source.stem}.{recipe}-{file_sha256(source)[:12]}.onnx"
    if not target.is_file():
        logging.getLogger("cnncodes").info("building %s (%s) from %s", target.name, precision, source.name)
        try:
            if precision == "int8":
                build_int8(source, target, backbone)
            else:
                build_fp16(source, target)
        except (MissingExtraError, OSError):
            raise
        except Exception as error:  # onnx's and onnxruntime's own errors, whatever their class
            detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            message = f"{source}: cannot build its {precision} graph ({detail})"
            raise ModelFileError(message) from error
    return target
