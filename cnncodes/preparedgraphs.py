"""Prepared graphs (uint8 pixels in, the taps out) kept in the models folder: later runs need not import onnx.

Preparing a graph (:func:`cnncodes.taps.prepare_model`) loads the onnx package, which takes
1-2.5 s to import here, longer than ONNX Runtime needs for a few hundred images. The prepared
bytes are therefore kept, named after everything they depend on, and checked when read.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from .contentkeys import file_sha256
from .fileio import atomic_path
from .fingerprint import sha256_bytes
from .paths import models_dir

__all__ = ["prepared_model", "PREPARED_FOLDER"]

PREPARED_FOLDER = "prepared"  # inside the models folder
_RECIPE = 1  # raise it whenever prepare_model's output changes: graphs of an older recipe are never read


def prepared_model(
    path: Path | str,
    outputs: list[str],
    *,
    input_name: str,
    input_size: int,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
    color_order: str = "RGB",
) -> bytes:
    """What :func:`cnncodes.taps.prepare_model` returns for these arguments, prepared once and then read back.

    The file ``<models>/prepared/<key>-<digest>.onnx`` is named after the model file's sha256
    and every argument (the key) and after its own sha256 (the digest, checked on reading: a
    damaged file is prepared again). Where the models folder cannot be written, the graph is
    prepared in memory each time.

    Parameters
    ----------
    path, outputs, input_name, input_size, mean, std, color_order
        As for :func:`cnncodes.taps.prepare_model`.

    Returns
    -------
    bytes
        The serialized model, ready for ``onnxruntime.InferenceSession``.

    Raises
    ------
    UnknownLayerError, ModelFileError
        As :func:`cnncodes.taps.prepare_model`, when the graph has to be prepared.

    Examples
    --------
    >>> import tempfile
    >>> from onnx import TensorProto, helper, save
    >>> x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4, 4])
    >>> y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, 4, 4])
    >>> graph = helper.make_graph([helper.make_node("Sigmoid", ["x"], ["y"])], "g", [x], [y])
    >>> with tempfile.NamedTemporaryFile(suffix=".onnx") as file:
    ...     save(helper.make_model(graph), file.name)
    ...     options = dict(input_name="x", input_size=4, mean=(0, 0, 0), std=(1, 1, 1))
    ...     prepared_model(file.name, ["y"], **options) == prepared_model(file.name, ["y"], **options)
    True
    """
    arguments = {
        "recipe": _RECIPE,
        "model_sha256": file_sha256(Path(path)),
        "outputs": list(outputs),
        "input_name": input_name,
        "input_size": input_size,
        "mean": [float(value) for value in mean],
        "std": [float(value) for value in std],
        "color_order": color_order.upper(),
    }
    key = sha256_bytes(json.dumps(arguments, sort_keys=True).encode())[:24]
    folder = models_dir() / PREPARED_FOLDER
    for candidate in sorted(folder.glob(f"{key}-*.onnx")):
        with contextlib.suppress(OSError):
            data = candidate.read_bytes()
            if sha256_bytes(data)[:16] == candidate.stem.rpartition("-")[2]:
                return data
            candidate.unlink()  # damaged (or cut): prepared again below
    from .taps import prepare_model  # loads onnx: only where no prepared file serves

    data = prepare_model(
        path, outputs, input_name=input_name, input_size=input_size, mean=mean, std=std, color_order=color_order
    )
    with contextlib.suppress(OSError), atomic_path(folder / f"{key}-{sha256_bytes(data)[:16]}.onnx") as temporary:
        temporary.write_bytes(data)
    return data
