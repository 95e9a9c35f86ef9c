"""Save and load trained models: a joblib bundle of the fitted pipeline plus metadata, with checks."""

from __future__ import annotations

import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import sklearn

from .errors import ModelFileError, ModelMismatchError, ModelMismatchWarning
from .fingerprint import sha256_file
from .runtime import onnxruntime_version
from .version import VERSION
from .modelfiles import ensure_model_file, resolve_backbone

__all__ = ["MODEL_FORMAT", "ModelBundle", "save_model", "load_model"]

MODEL_FORMAT = "cnncodes-model"
MODEL_FORMAT_VERSION = 1


def _versions() -> dict[str, str]:
    return {
        "cnncodes": VERSION,
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
        "onnxruntime": onnxruntime_version(),
    }


@dataclass
class ModelBundle:
    """A trained model: the fitted pipeline (images in, classes out) and what it was trained on."""

    pipeline: Any  # sklearn Pipeline([("codes", CNNCodes), ("head", ...)])
    class_names: list[str]
    spec: dict[str, Any]  # the feature-set spec of the codes
    backbone: str  # zoo name or ONNX path
    backbone_sha256: str  # of the ONNX file the codes came from
    head: str = ""
    versions: dict[str, str] = field(default_factory=_versions)
    metrics: dict[str, Any] = field(default_factory=dict)  # cross-validation figures from training


def save_model(bundle: ModelBundle, path: Path | str) -> Path:
    """Write ``bundle`` to ``path`` with joblib, atomically.

    Examples
    --------
    See :func:`cnncodes.train`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"format": MODEL_FORMAT, "format_version": MODEL_FORMAT_VERSION, "bundle": bundle}
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        joblib.dump(document, temporary)
        os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)
    return path


def load_model(path: Path | str, *, check_backbone: bool = True) -> ModelBundle:
    """Load a model saved by :func:`save_model`. Load only files you trust: joblib runs code.

    The backbone must be present and byte-identical to the one the model was trained
    on (another file would silently give wrong predictions); other library versions
    only warn.

    Raises
    ------
    ModelFileError
        If the file is missing or is not a cnncodes model.
    ModelMismatchError
        If the backbone is missing or differs from the training one.
    """
    path = Path(path)
    if not path.is_file():
        message = f"{path}: no such model file"
        raise ModelFileError(message)
    try:
        document = joblib.load(path)
    except (OSError, EOFError, ValueError, KeyError, ImportError, AttributeError) as error:
        message = f"{path}: not a cnncodes model file ({type(error).__name__}: {error})"
        raise ModelFileError(message) from error
    if not isinstance(document, dict) or document.get("format") != MODEL_FORMAT:
        message = f"{path}: not a cnncodes model file"
        raise ModelFileError(message)
    if int(document.get("format_version", 0)) > MODEL_FORMAT_VERSION:
        message = f"{path}: model format version {document['format_version']} is newer than this cnncodes supports ({MODEL_FORMAT_VERSION}); upgrade cnncodes"
        raise ModelFileError(message)
    bundle: ModelBundle = document["bundle"]
    for package, version in _versions().items():
        saved = bundle.versions.get(package)
        if package in ("cnncodes", "scikit-learn") and saved != version:
            warnings.warn(
                f"{path}: saved with {package} {saved}, loaded with {version}; predictions may differ",
                ModelMismatchWarning,
                stacklevel=2,
            )
    if check_backbone:
        _check_backbone(bundle, path)
    return bundle


def _check_backbone(bundle: ModelBundle, path: Path) -> None:
    try:
        onnx_path = ensure_model_file(resolve_backbone(bundle.backbone))
    except (LookupError, OSError) as error:
        message = f"{path}: its backbone '{bundle.backbone}' is not available here ({error})"
        raise ModelMismatchError(message) from error
    found = sha256_file(onnx_path)
    if found != bundle.backbone_sha256:
        message = (
            f"{path}: backbone '{bundle.backbone}' differs from the one this model was trained on "
            f"({onnx_path} has sha256 {found[:12]}, expected {bundle.backbone_sha256[:12]}); retrain or restore that file"
        )
        raise ModelMismatchError(message)
