"""Predict: a saved model's top classes for images, and the class scores evaluate shares."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
from sklearn.base import clone

from .datasets import load_dataset
from .params import RunOptions
from .persist import ModelBundle, load_model
from .transformer import CNNCodes

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["Prediction", "PredictionResult", "predict", "class_scores", "runtime_codes"]


def class_scores(head: Any, X: np.ndarray, n_classes: int | None = None) -> tuple[np.ndarray, str]:
    """Class scores of a fitted head: probabilities where the head has them, else decision scores.

    Column ``j`` of a scikit-learn head scores ``head.classes_[j]``; with ``n_classes``
    the columns are put in class-index order (column ``c`` scores class ``c``), and a
    class the head never saw scores 0 (probability) or -inf (decision score).

    Parameters
    ----------
    head : fitted classifier
        A head pipeline, as :func:`cnncodes.make_head` builds them.
    X : ndarray of shape (n_samples, n_features)
        Codes.
    n_classes : int or None, default=None
        Number of class names; None: the head's own columns.

    Returns
    -------
    scores : ndarray of shape (n_samples, n_classes)
        A binary head's one margin becomes two columns, ``[-margin, margin]``.
    kind : {"probability", "decision score"}
        Which they are.

    Examples
    --------
    >>> from sklearn.svm import LinearSVC
    >>> head = LinearSVC().fit([[0.0], [1.0]], [0, 1])
    >>> scores, kind = class_scores(head, np.array([[1.0]]))
    >>> scores.shape, kind, bool(scores[0, 0] == -scores[0, 1])
    ((1, 2), 'decision score', True)
    """
    scores, kind = _head_scores(head, X)
    if n_classes is None:
        return scores, kind
    full = np.full((len(scores), n_classes), 0.0 if kind == "probability" else -np.inf, dtype=scores.dtype)
    full[:, np.asarray(head.classes_, dtype=int)] = scores
    return full, kind


def _head_scores(head: Any, X: np.ndarray) -> tuple[np.ndarray, str]:
    if hasattr(head, "predict_proba"):
        try:
            return head.predict_proba(X), "probability"
        except AttributeError:  # e.g. a hinge-loss SGD exposes the method but cannot use it
            pass
    scores = head.decision_function(X)
    if scores.ndim == 1:  # binary: one margin for the positive class
        scores = np.stack([-scores, scores], axis=1)
    return scores, "decision score"


def runtime_codes(
    model: str | Path | ModelBundle, caller: str, *, trusted: bool = False, **run: Any
) -> tuple[ModelBundle, CNNCodes]:
    """A model's bundle, and a fitted copy of its CNNCodes step with these run options, skipping bad images.

    Parameters
    ----------
    model : str, Path or ModelBundle
        A model file, or its bundle; the bundle's own steps are left as they are.
    caller : str
        The public function asking, named in the error for an unknown keyword.
    trusted : bool, default=False
        Also read a joblib model file (see :func:`cnncodes.load_model`).
    **run
        Keywords of :class:`cnncodes.params.RunOptions`; the feature set stays the model's.

    Returns
    -------
    bundle : ModelBundle
    codes : CNNCodes
        Fitted.

    Raises
    ------
    TypeError
        For a keyword that is not a run option, in Python's own wording.

    Examples
    --------
    See :func:`predict`.
    """
    unknown = sorted(set(run) - set(RunOptions.__annotations__))
    if unknown:
        message = f"{caller}() got an unexpected keyword argument {unknown[0]!r}"
        raise TypeError(message)
    bundle = model if isinstance(model, ModelBundle) else load_model(model, trusted=trusted)
    return bundle, clone(bundle.pipeline.named_steps["codes"]).set_params(**run, on_error="skip").fit()


@dataclass
class Prediction:
    """Top classes of one image. Made by :func:`predict`."""

    path: str
    top: list[tuple[str, float]]  # (class name, score), best first


@dataclass
class PredictionResult:
    """Predictions of a model on images, and the images that failed. Made by :func:`predict`."""

    predictions: list[Prediction]
    score_kind: str  # "probability" or "decision score"
    failures: list[tuple[str, str]]  # (path, reason)


def predict(
    model: str | Path | ModelBundle,
    inputs: str | Path | Sequence[Any],
    *,
    top_k: int = 5,
    trusted: bool = False,
    **run: Unpack[RunOptions],
) -> PredictionResult:
    """Predict the classes of images with a saved model.

    Parameters
    ----------
    model : str, Path or ModelBundle
        A model file from :func:`cnncodes.train`, or its bundle.
    inputs : str, Path or sequence
        Image files and folders (folders are searched), a CSV, or arrays.
    top_k : int, default=5
        How many classes per image (at most the number of classes).
    trusted : bool, default=False
        Also read a joblib (pickle) model file of the first format; it runs code
        when loaded (see :func:`cnncodes.load_model`).
    **run : run options
        ``cache``, ``batch_size``, ``device``, ``n_threads``, ``optimization``,
        ``n_workers``: as for :class:`cnncodes.CNNCodes` (declared in :mod:`cnncodes.params`).

    Returns
    -------
    PredictionResult
        Per image the top-k class names with probabilities, or decision scores
        where the head has no probabilities (``score_kind`` says which); bad images
        are listed in ``failures``.

    Raises
    ------
    ModelFileError, ModelMismatchError
        If the model file cannot be used (see :func:`cnncodes.load_model`).

    Examples
    --------
    >>> import shutil, tempfile
    >>> from cnncodes import CNNCodes, train
    >>> folder = Path(tempfile.mkdtemp())
    >>> images = Path("../shared/data/hymenoptera/train")
    >>> rows = [f"{p.resolve()},{name}\\n" for name in ("ants", "bees") for p in sorted((images / name).glob("*"))[:6]]
    >>> _ = (folder / "labels.csv").write_text("".join(rows))
    >>> model = train(folder / "labels.csv", codes=CNNCodes(cache=False), cv=2).bundle
    >>> bee = sorted(Path("../shared/data/hymenoptera/val/bees").glob("*.jpg"))[0]
    >>> result = predict(model, [bee], top_k=1, cache=False)
    >>> result.score_kind, [name for name, _ in result.predictions[0].top]
    ('probability', ['bees'])
    >>> shutil.rmtree(folder)
    """
    bundle, codes = runtime_codes(model, "predict", trusted=trusted, **run)
    sources = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    if sources and all(isinstance(s, (str, Path)) for s in sources):
        sources = load_dataset(sources).paths  # folders are searched for images
    result = codes.extract(sources)
    if not len(result.codes):
        return PredictionResult([], "probability", result.failures)
    scores, kind = class_scores(bundle.pipeline.named_steps["head"], result.codes, len(bundle.class_names))
    k = min(top_k, len(bundle.class_names))
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    predictions = [
        Prediction(path, [(bundle.class_names[c], float(row[c])) for c in ranked])
        for path, row, ranked in zip(result.paths, scores, order)
    ]
    return PredictionResult(predictions, kind, result.failures)
