"""Predict: a saved model's top classes for images, and the class scores evaluate shares."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .datasets import load_dataset
from .persist import ModelBundle, load_model
from .transformer import CNNCodes

__all__ = ["Prediction", "PredictionResult", "predict", "class_scores", "runtime_codes"]


def class_scores(head: Any, X: np.ndarray, n_classes: int) -> tuple[np.ndarray, str]:
    """Class scores of a fitted head: probabilities where the head has them, else decision scores."""
    if hasattr(head, "predict_proba"):
        try:
            return head.predict_proba(X), "probability"
        except AttributeError:  # e.g. a hinge-loss SGD exposes the method but cannot use it
            pass
    scores = head.decision_function(X)
    if scores.ndim == 1:  # binary: one margin for the positive class
        scores = np.stack([-scores, scores], axis=1)
    return scores, "decision score"


def runtime_codes(bundle: ModelBundle, cache: bool | str | Path, device: str) -> CNNCodes:
    """The bundle's CNNCodes step, fitted, reading this cache on this device and dropping bad images."""
    return bundle.pipeline.named_steps["codes"].set_params(cache=cache, device=device, on_error="drop").fit()


@dataclass
class Prediction:
    """Top classes of one image."""

    path: str
    top: list[tuple[str, float]]  # (class name, score), best first


@dataclass
class PredictionResult:
    """Predictions of a model on images."""

    predictions: list[Prediction]
    score_kind: str  # "probability" or "decision score"
    failures: list[tuple[str, str]]


def predict(
    model: str | Path | ModelBundle,
    inputs: str | Path | Sequence[Any],
    *,
    top_k: int = 5,
    cache: bool | str | Path = True,
    device: str = "auto",
) -> PredictionResult:
    """Predict the classes of images with a saved model.

    Parameters
    ----------
    model : str, Path or ModelBundle
    inputs : str, Path or sequence
        Image files and folders (folders are searched), a CSV, or arrays.
    top_k : int, default=5
        How many classes per image (at most the number of classes).

    Returns
    -------
    PredictionResult
        Per image the top-k class names with probabilities, or decision scores
        where the head has no probabilities (``score_kind`` says which).
    """
    bundle = model if isinstance(model, ModelBundle) else load_model(model)
    codes = runtime_codes(bundle, cache, device)
    sources = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    if sources and all(isinstance(s, (str, Path)) for s in sources):
        result = codes.extract(load_dataset(sources).paths)
    else:
        result = codes.extract(sources)
    head = bundle.pipeline.named_steps["head"]
    if not len(result.codes):
        return PredictionResult([], "probability", result.failures)
    scores, kind = class_scores(head, result.codes, len(bundle.class_names))
    k = min(top_k, len(bundle.class_names))
    order = np.argsort(-scores, axis=1)[:, :k]
    predictions = [
        Prediction(path, [(bundle.class_names[c], float(row[c])) for c in ranked])
        for path, row, ranked in zip(result.paths, scores, order)
    ]
    return PredictionResult(predictions, kind, result.failures)
