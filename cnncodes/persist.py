"""Save and load trained models: a joblib bundle of the fitted pipeline plus metadata, with checks."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import sklearn

from .errors import ModelFileError, ModelMismatchError, ModelMismatchWarning
from .fileio import atomic_path
from .fingerprint import sha256_file
from .messages import newer_format_message
from .modelfiles import ensure_model_file, resolve_backbone
from .runtime import onnxruntime_version
from .version import VERSION

__all__ = ["ModelBundle", "save_model", "load_model"]

MODEL_FORMAT = "cnncodes-model"
MODEL_FORMAT_VERSION = 1
_CHECKED_VERSIONS = ("cnncodes", "scikit-learn")  # a difference in these may change predictions: warn


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
    """Write ``bundle`` to ``path`` with joblib, atomically (a crash leaves no half file).

    Parameters
    ----------
    bundle : ModelBundle
        What :func:`cnncodes.train` made (``TrainResult.bundle``).
    path : Path or str
        The model file; its folder is created if missing.

    Returns
    -------
    Path
        ``path``.

    Examples
    --------
    >>> import shutil, tempfile
    >>> from sklearn.dummy import DummyClassifier
    >>> folder = Path(tempfile.mkdtemp())
    >>> bundle = ModelBundle(DummyClassifier().fit([[0], [1]], [0, 1]), ["ant", "bee"], {}, "none", "0" * 64)
    >>> save_model(bundle, folder / "model.joblib").name
    'model.joblib'
    >>> load_model(folder / "model.joblib", check_backbone=False).class_names
    ['ant', 'bee']
    >>> shutil.rmtree(folder)
    """
    document = {"format": MODEL_FORMAT, "format_version": MODEL_FORMAT_VERSION, "bundle": bundle}
    with atomic_path(path) as temporary:
        joblib.dump(document, temporary)
    return Path(path)


def load_model(path: Path | str, *, check_backbone: bool = True) -> ModelBundle:
    """Load a model saved by :func:`save_model`. Load only files you trust: joblib runs code.

    The backbone must be present and byte-identical to the one the model was trained
    on (another file would silently give wrong predictions); other versions of
    cnncodes or scikit-learn only warn.

    Parameters
    ----------
    path : Path or str
        The model file.
    check_backbone : bool, default=True
        Check that the backbone file is here and is the one the model was trained on.

    Returns
    -------
    ModelBundle

    Raises
    ------
    ModelFileError
        If the file is missing, is not a cnncodes model, or has a newer format version.
    ModelMismatchError
        If the backbone is missing or differs from the training one.

    Warns
    -----
    ModelMismatchWarning
        If it was saved with another version of cnncodes or scikit-learn.

    Examples
    --------
    >>> load_model("no/such/model.joblib")
    Traceback (most recent call last):
    ...
    cnncodes.errors.ModelFileError: no/such/model.joblib: no such model file

    See :func:`save_model` for a round trip.
    """
    path = Path(path)
    if not path.is_file():
        message = f"{path}: no such model file"
        raise ModelFileError(message)
    try:
        document = joblib.load(path)
    except Exception as error:  # whatever a damaged file makes joblib raise (fuzzed: tests/test_fuzz.py)
        message = f"{path}: not a cnncodes model file ({type(error).__name__}: {error})"
        raise ModelFileError(message) from error
    if not isinstance(document, dict) or document.get("format") != MODEL_FORMAT or "bundle" not in document:
        message = f"{path}: not a cnncodes model file"
        raise ModelFileError(message)
    version = int(document.get("format_version", 0))
    if version > MODEL_FORMAT_VERSION:
        raise ModelFileError(newer_format_message(path, "model", version, MODEL_FORMAT_VERSION))
    bundle: ModelBundle = document["bundle"]
    if not isinstance(bundle, ModelBundle) or not isinstance(getattr(bundle, "versions", None), dict):
        raise ModelFileError(f"{path}: not a cnncodes model file (no model inside)")
    current = _versions()
    for package in _CHECKED_VERSIONS:
        saved = bundle.versions.get(package)
        if saved != current[package]:
            message = f"{path}: saved with {package} {saved}, loaded with {current[package]}; predictions may differ"
            warnings.warn(message, ModelMismatchWarning, stacklevel=2)
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
            f"({onnx_path} has sha256 {found[:12]}, expected {bundle.backbone_sha256[:12]}); "
            "retrain or restore that file"
        )
        raise ModelMismatchError(message)
