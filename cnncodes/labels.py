"""Classify: the backbone's own ImageNet classes for images, from its logits tap and a softmax."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from .backbones import imagenet_class_names
from .errors import UnknownLayerError
from .extraction import extract
from .modelfiles import resolve_backbone
from .params import default
from .prediction import Prediction, PredictionResult

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack from Python 3.11 on

    from .engine import RunSettings

__all__ = ["classify", "softmax", "LOGITS_TAP"]

LOGITS_TAP = "logits"  # the zoo cards' name of the class-score tap


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, computed stably (the largest logit is subtracted first).

    Parameters
    ----------
    logits : ndarray of shape (n_samples, n_classes)
        Class scores.

    Returns
    -------
    ndarray of shape (n_samples, n_classes), float64
        Probabilities; each row sums to 1.

    Examples
    --------
    >>> softmax(np.array([[0.0, np.log(3.0)], [1000.0, 1000.0]])).round(3).tolist()
    [[0.25, 0.75], [0.5, 0.5]]
    """
    shifted = np.asarray(logits, np.float64) - np.max(logits, axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def _check_logits_tap(model: str | Path) -> None:
    backbone = resolve_backbone(model)
    if LOGITS_TAP not in backbone.tap_names:
        message = (
            f"{backbone.name}: no '{LOGITS_TAP}' tap, so no ImageNet classes; "
            f"its taps are {', '.join(backbone.tap_names)}. Run 'cnncodes models' for models with one"
        )
        raise UnknownLayerError(message)


def classify(
    inputs: str | Path | Sequence[Any],
    *,
    model: str = default("model"),
    top_k: int = 5,
    **run: Unpack[RunSettings],
) -> PredictionResult:
    """The backbone's own top ImageNet-1k classes for images, with probabilities.

    The codes are the backbone's ``logits`` tap (cached like any other tap, so a second
    run reads them); a softmax turns them into probabilities over the 1000 classes.

    Parameters
    ----------
    inputs : str, Path or sequence
        Image files and folders (folders are searched), a CSV, or arrays; any form
        :func:`cnncodes.extract` takes.
    model : str, default="efficientnet_lite0"
        A zoo model with a ``logits`` tap (every zoo card has one).
    top_k : int, default=5
        Classes per image, best first.
    run : keyword arguments
        Run options of :func:`cnncodes.extract` (``cache``, ``device``, ``progress``, ...); bad images are skipped.

    Returns
    -------
    PredictionResult
        Per image the ``top_k`` ImageNet class names with probabilities (``score_kind``
        is ``"probability"``); bad images are listed in ``failures``.

    Raises
    ------
    UnknownLayerError
        If the model has no ``logits`` tap, or its logits are not the 1000 ImageNet classes.
    InputError, UnknownBackboneError
        For a missing input or an unknown model.

    Examples
    --------
    >>> ant = sorted(Path("../shared/data/hymenoptera/val/ants").glob("*.jpg"))[2]
    >>> result = classify([ant], top_k=1, cache=False, progress=False)
    >>> name, probability = result.predictions[0].top[0]
    >>> name, 0.0 < probability <= 1.0
    ('ant', True)
    """
    _check_logits_tap(model)
    sources = [inputs] if isinstance(inputs, (str, Path)) else inputs
    result = extract(sources, model=model, layer=LOGITS_TAP, **run, on_error="skip")
    names = imagenet_class_names()
    if result.codes.shape[1] != len(names):
        message = (
            f"{model}: its '{LOGITS_TAP}' tap has {result.codes.shape[1]} classes, not the {len(names)} of ImageNet"
        )
        raise UnknownLayerError(message)
    probabilities = softmax(result.codes)
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, : min(top_k, len(names))]
    predictions = [
        Prediction(path, [(names[c], float(row[c])) for c in ranked])
        for path, row, ranked in zip(result.paths, probabilities, order)
    ]
    return PredictionResult(predictions, "probability", result.failures)
