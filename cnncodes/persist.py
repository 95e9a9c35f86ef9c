"""Save and load trained models: a skops file (no code runs on load) of the fitted pipeline plus metadata."""

from __future__ import annotations

import json
import pickle
import struct
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import sklearn
import skops.io

from .errors import ModelFileError, ModelMismatchError, ModelMismatchWarning
from .fileio import atomic_path
from .images import FAST_RESIZE_RULE, FAST_VIEWS
from .contentkeys import file_sha256
from .messages import newer_format_message
from .modelfiles import ensure_model_file, resolve_backbone
from .runtime import onnxruntime_version
from .version import VERSION

__all__ = ["ModelBundle", "save_model", "load_model", "TRUSTED_TYPES", "TRUST_WARNING"]

MODEL_FORMAT = "cnncodes-model"
MODEL_FORMAT_VERSION = 2  # 2: skops; 1: a joblib pickle (read only with trusted=True)
_JOBLIB_FORMAT_VERSION = 1
_CHECKED_VERSIONS = ("cnncodes", "scikit-learn")  # a difference in these may change predictions: warn
# The only non-default types a model file may name: what make_head, GridSearchCV and CNNCodes hold.
TRUSTED_TYPES = [
    "cnncodes.backbones.BackboneSpec",
    "cnncodes.backbones.TapSpec",
    "cnncodes.heads.PowerNormalizer",
    "cnncodes.transformer.CNNCodes",
    "sklearn.ensemble._forest.ExtraTreesClassifier",
    "sklearn.ensemble._forest.RandomForestClassifier",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.linear_model._logistic.LogisticRegression",
    "sklearn.linear_model._stochastic_gradient.SGDClassifier",
    "sklearn.metrics._classification.balanced_accuracy_score",  # GridSearchCV's scorer with class_weight="balanced"
    "sklearn.metrics._scorer._PassthroughScorer",
    "sklearn.metrics._scorer._Scorer",
    "sklearn.model_selection._search.GridSearchCV",
    "sklearn.model_selection._split.StratifiedKFold",
    "sklearn.pipeline.Pipeline",
    "sklearn.preprocessing._data.Normalizer",
    "sklearn.preprocessing._data.StandardScaler",
    "sklearn.svm._classes.LinearSVC",
    "sklearn.tree._classes.DecisionTreeClassifier",
    "sklearn.tree._classes.ExtraTreeClassifier",
    "sklearn.tree._tree.Tree",
]
TRUST_WARNING = "joblib (pickle) model files run code when loaded: trust only files you made"
# What a damaged, truncated or foreign file raises while it is read (measured by cutting files at every byte).
_UNREADABLE = (
    OSError,
    EOFError,
    ValueError,
    KeyError,
    IndexError,
    TypeError,
    ImportError,
    AttributeError,
    RecursionError,
    OverflowError,
    NotImplementedError,  # zipfile: a header naming a compression method or zip version it does not know
    RuntimeError,  # zipfile: an encrypted member (found by fuzzing)
    zipfile.BadZipFile,
    pickle.UnpicklingError,
    struct.error,
)


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


def _plain(value: Any) -> Any:
    """numpy scalars (a hyperparameter from a grid, a score) as Python numbers for JSON."""
    if isinstance(value, np.generic):
        return value.item()
    message = f"cannot store {type(value).__name__} in a model file's metadata"
    raise TypeError(message)


def save_model(bundle: ModelBundle, path: Path | str) -> Path:
    """Write ``bundle`` to ``path`` in the skops format, atomically (a crash leaves no half file).

    The pipeline is stored by skops (no pickle: loading it runs no code) and the rest
    of the bundle as JSON inside the same file.

    Parameters
    ----------
    bundle : ModelBundle
        What :func:`cnncodes.train` made (``TrainResult.bundle``).
    path : Path or str
        The model file (``.skops`` by convention); its folder is created if missing.

    Returns
    -------
    Path
        The file written, ``path``; a :class:`TypeError` if the metadata holds something JSON cannot store.

    Examples
    --------
    >>> import shutil, tempfile
    >>> from sklearn.linear_model import LogisticRegression
    >>> folder = Path(tempfile.mkdtemp())
    >>> bundle = ModelBundle(LogisticRegression().fit([[0], [1]], [0, 1]), ["ant", "bee"], {}, "none", "0" * 64)
    >>> save_model(bundle, folder / "model.skops").name
    'model.skops'
    >>> load_model(folder / "model.skops", check_backbone=False).class_names
    ['ant', 'bee']
    >>> shutil.rmtree(folder)
    """
    metadata = {
        "class_names": list(bundle.class_names),
        "spec": bundle.spec,
        "backbone": bundle.backbone,
        "backbone_sha256": bundle.backbone_sha256,
        "head": bundle.head,
        "versions": bundle.versions,
        "metrics": bundle.metrics,
    }
    document = {
        "format": MODEL_FORMAT,
        "format_version": MODEL_FORMAT_VERSION,
        "metadata": json.dumps(metadata, default=_plain),
        "pipeline": bundle.pipeline,
    }
    with atomic_path(path) as temporary:
        skops.io.dump(document, temporary)
    return Path(path)


def load_model(path: Path | str, *, check_backbone: bool = True, trusted: bool = False) -> ModelBundle:
    """Load a model saved by :func:`save_model`; reading it runs no code from the file.

    A model file is read by skops with :data:`TRUSTED_TYPES` only: a file naming any
    other type is refused. Model files of the first format (version 1) are joblib pickles, which
    can run any code when loaded: they are read only with ``trusted=True``. The
    backbone must be present and byte-identical to the one the model was trained on
    (another file would silently give wrong predictions); other versions of cnncodes
    or scikit-learn only warn.

    Parameters
    ----------
    path : Path or str
        The model file.
    check_backbone : bool, default=True
        Check that the backbone file is here and is the one the model was trained on.
    trusted : bool, default=False
        Also read joblib (pickle) model files. They run code when loaded: only for
        files you made yourself.

    Returns
    -------
    ModelBundle

    Raises
    ------
    ModelFileError
        If the file is missing, empty, damaged, not a cnncodes model, names an
        untrusted type, is a joblib file without ``trusted=True``, or has a newer
        format version.
    ModelMismatchError
        If the backbone is missing or differs from the training one.

    Warns
    -----
    ModelMismatchWarning
        If it was saved with another version of cnncodes or scikit-learn.

    Examples
    --------
    >>> load_model("no/such/model.skops")
    Traceback (most recent call last):
    ...
    cnncodes.errors.ModelFileError: no/such/model.skops: no such model file

    See :func:`save_model` for a round trip.
    """
    path = Path(path)
    if not path.is_file():
        message = f"{path}: no such model file"
        raise ModelFileError(message)
    bundle = _read_skops(path) if zipfile.is_zipfile(path) else _read_joblib(path, trusted)
    current = _versions()
    for package in _CHECKED_VERSIONS:
        saved = bundle.versions.get(package)
        if saved != current[package]:
            message = f"{path}: saved with {package} {saved}, loaded with {current[package]}; predictions may differ"
            warnings.warn(message, ModelMismatchWarning, stacklevel=2)
    _check_consistent(bundle, path)
    _warn_on_an_earlier_resize_rule(bundle, path)
    if check_backbone:
        _check_backbone(bundle, path)
    return bundle


def _warn_on_an_earlier_resize_rule(bundle: ModelBundle, path: Path) -> None:
    """Say so when the head learned codes that the fast decoder cut by a rule this version no longer has."""
    layers = bundle.spec.get("layers") if isinstance(bundle.spec.get("layers"), list) else []
    for layer in layers:
        pre = layer.get("preprocessing", {}) if isinstance(layer, dict) else {}
        if isinstance(pre, dict) and pre.get("decoder") == "fast" and pre.get("views") in FAST_VIEWS:
            if pre.get("resize_rule") != FAST_RESIZE_RULE:
                message = (
                    f"{path}: trained on codes of the fast decoder's earlier resize rule; codes are now cut by "
                    f"another ({FAST_RESIZE_RULE}), so predictions may differ slightly: train again to match"
                )
                warnings.warn(message, ModelMismatchWarning, stacklevel=3)
                return


def _check_consistent(bundle: ModelBundle, path: Path) -> None:
    """Refuse metadata that disagrees with the head: classes it cannot name, codes of another width."""
    try:
        steps = getattr(bundle.pipeline, "steps", None)
        head = steps[-1][1] if steps else bundle.pipeline  # codes then head; a bare estimator in older files
        classes = [int(c) for c in getattr(head, "classes_", [])]
        width = getattr(head, "n_features_in_", None)
    except (AttributeError, IndexError, TypeError, ValueError) as error:
        raise _not_a_model(path, error) from error
    if any(not 0 <= c < len(bundle.class_names) for c in classes):
        message = f"{path}: not a cnncodes model file (its head predicts classes {classes}, its metadata names "
        raise ModelFileError(message + f"{len(bundle.class_names)})")
    expected = bundle.spec.get("n_features")
    if isinstance(expected, int) and width is not None and int(width) != expected:
        message = f"{path}: not a cnncodes model file (its head takes {width} features, its codes have {expected})"
        raise ModelFileError(message)


def _not_a_model(path: Path, error: BaseException | None = None) -> ModelFileError:
    reason = f" ({type(error).__name__}: {error})".replace("\n", " ") if error is not None else ""
    return ModelFileError(f"{path}: not a cnncodes model file{reason}")


def _check_format(path: Path, document: Any, version_range: tuple[int, int]) -> None:
    if not isinstance(document, dict) or document.get("format") != MODEL_FORMAT:
        raise _not_a_model(path)
    version = document.get("format_version")
    if isinstance(version, int) and version > MODEL_FORMAT_VERSION:
        raise ModelFileError(newer_format_message(path, "model", version, MODEL_FORMAT_VERSION))
    if not isinstance(version, int) or not version_range[0] <= version <= version_range[1]:
        raise _not_a_model(path)


def _read_skops(path: Path) -> ModelBundle:
    try:
        untrusted = sorted(set(skops.io.get_untrusted_types(file=path)) - set(TRUSTED_TYPES))
        if untrusted:
            message = (
                f"{path}: refusing to load types outside the trusted list ({', '.join(untrusted)}); "
                "cnncodes model files hold only scikit-learn heads and CNNCodes"
            )
            raise ModelFileError(message)
        document = skops.io.load(path, trusted=TRUSTED_TYPES)
    except ModelFileError:
        raise
    except _UNREADABLE as error:
        raise _not_a_model(path, error) from error
    _check_format(path, document, (MODEL_FORMAT_VERSION, MODEL_FORMAT_VERSION))
    try:
        metadata = json.loads(document["metadata"])
        bundle = ModelBundle(pipeline=document["pipeline"], **metadata)
    except _UNREADABLE as error:
        raise _not_a_model(path, error) from error
    shapes = {"class_names": list, "spec": dict, "versions": dict, "metrics": dict, "backbone": str, "head": str}
    wrong = [name for name, kind in shapes.items() if not isinstance(getattr(bundle, name), kind)]
    if wrong or not all(isinstance(name, str) for name in bundle.class_names):
        message = f"{path}: not a cnncodes model file (malformed metadata: {', '.join(wrong) or 'class_names'})"
        raise ModelFileError(message)
    return bundle


def _read_joblib(path: Path, trusted: bool) -> ModelBundle:
    with open(path, "rb") as handle:
        head = handle.read(2)
    if not head:
        message = f"{path}: empty file, not a cnncodes model file"
        raise ModelFileError(message)
    if not trusted:
        if head[:1] != b"\x80":  # every pickle of protocol 2 or later starts so; joblib writes them
            raise _not_a_model(path)
        message = (
            f"{path}: a joblib (pickle) model file, which can run code when loaded; "
            "if you made it yourself, load it with --trust (trusted=True), then train again to get a .skops file"
        )
        raise ModelFileError(message)
    try:
        document = joblib.load(path)
    except _UNREADABLE as error:
        raise _not_a_model(path, error) from error
    _check_format(path, document, (_JOBLIB_FORMAT_VERSION, _JOBLIB_FORMAT_VERSION))
    bundle = document.get("bundle")
    if not isinstance(bundle, ModelBundle):
        raise _not_a_model(path)
    return bundle


def _check_backbone(bundle: ModelBundle, path: Path) -> None:
    try:
        onnx_path = ensure_model_file(resolve_backbone(bundle.backbone))
    except (LookupError, OSError) as error:
        message = f"{path}: its backbone '{bundle.backbone}' is not available here ({error})"
        raise ModelMismatchError(message) from error
    found = file_sha256(onnx_path)  # memoized per process: predict and evaluate hash the same file again
    if found != bundle.backbone_sha256:
        message = (
            f"{path}: backbone '{bundle.backbone}' differs from the one this model was trained on "
            f"({onnx_path} has sha256 {found[:12]}, expected {bundle.backbone_sha256[:12]}); "
            "retrain or restore that file"
        )
        raise ModelMismatchError(message)
