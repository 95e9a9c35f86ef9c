"""Prepared graphs (uint8 pixels in, the taps out) kept in the models folder: later runs need not import onnx.

Preparing a graph (:func:`cnncodes.taps.prepare_model`) loads the onnx package, which takes
1-2.5 s to import here, longer than ONNX Runtime needs for a few hundred images. The prepared
bytes are therefore kept, named after everything they depend on, and checked when read.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from .backbones import BackboneSpec
from .contentkeys import file_sha256
from .fileio import atomic_path
from .fingerprint import sha256_bytes
from .paths import models_dir

__all__ = ["prepared_model", "PREPARED_FOLDER"]

PREPARED_FOLDER = "prepared"  # inside the models folder
_RECIPE = 2  # raise it whenever prepare_model's output changes: graphs of an older recipe are never read


def prepared_model(path: Path | str, outputs: list[str], backbone: BackboneSpec) -> bytes:
    """What :func:`cnncodes.taps.prepare_model` returns for ``backbone``'s input and these outputs, prepared once.

    The file ``<models>/prepared/<key>-<digest>.onnx`` is named after the model file's sha256
    and every argument (the key) and after its own sha256 (the digest, checked on reading: a
    damaged file is prepared again). Where the models folder cannot be written, the graph is
    prepared in memory each time.

    Parameters
    ----------
    path : Path or str
        The ONNX file.
    outputs : list of str
        Tensor names to expose, in this order.
    backbone : BackboneSpec
        Its input name, size, normalization and colour order go into the graph.

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
    >>> from cnncodes.backbones import get_backbone
    >>> from cnncodes.modelfiles import ensure_model_file
    >>> lite0 = get_backbone("efficientnet_lite0")
    >>> first = prepared_model(ensure_model_file(lite0), ["penultimate"], lite0)
    >>> first == prepared_model(ensure_model_file(lite0), ["penultimate"], lite0)  # read back, not prepared
    True
    """
    arguments = {
        "recipe": _RECIPE,
        "model_sha256": file_sha256(Path(path)),
        "outputs": list(outputs),
        "input_name": backbone.input_name,
        "input_size": backbone.input_size,
        "mean": [float(value) for value in backbone.mean],
        "std": [float(value) for value in backbone.std],
        "color_order": backbone.color_order.upper(),
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
        path,
        outputs,
        input_name=backbone.input_name,
        input_size=backbone.input_size,
        mean=backbone.mean,
        std=backbone.std,
        color_order=backbone.color_order,
    )
    with contextlib.suppress(OSError), atomic_path(folder / f"{key}-{sha256_bytes(data)[:16]}.onnx") as temporary:
        temporary.write_bytes(data)
    return data
