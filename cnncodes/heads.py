"""Classifier heads on CNN codes: named presets that are plain scikit-learn pipelines."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.ensemble import ExtraTreesClassifier, HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, Normalizer, StandardScaler
from sklearn.svm import LinearSVC

from .errors import InputError

__all__ = ["HEADS", "make_head", "power_normalize", "fit_out_of_core"]


def power_normalize(X: np.ndarray, power: float = 0.5) -> np.ndarray:
    """Signed power ``sign(x) * |x| ** power`` (use before an L2 :class:`~sklearn.preprocessing.Normalizer`).

    Examples
    --------
    >>> power_normalize(np.array([[4.0, -9.0]])).tolist()
    [[2.0, -3.0]]
    """
    return np.sign(X) * np.abs(X) ** power


def _scaler(kind: str) -> list[tuple[str, Any]]:
    if kind == "standardize":
        return [("scale", StandardScaler())]
    if kind == "l2":
        return [("scale", Normalizer())]
    if kind == "power-l2":
        return [("power", FunctionTransformer(power_normalize)), ("scale", Normalizer())]
    return []


# name -> (estimator factory, its main hyperparameter grid, default scaling)
_C_GRID = [0.001, 0.01, 0.1, 1.0]
HEADS: dict[str, tuple[Any, dict[str, list[Any]], str]] = {
    "linear-svm": (
        lambda rs, cw: LinearSVC(C=0.01, class_weight=cw, random_state=rs, max_iter=5000),
        {"C": _C_GRID},
        "standardize",
    ),
    "logistic": (
        lambda rs, cw: LogisticRegression(C=0.1, class_weight=cw, max_iter=2000),
        {"C": _C_GRID},
        "standardize",
    ),
    "random-forest": (
        lambda rs, cw: RandomForestClassifier(n_estimators=300, class_weight=cw, random_state=rs, n_jobs=-1),
        {"max_features": ["sqrt", 0.05]},
        "none",
    ),
    "extra-trees": (
        lambda rs, cw: ExtraTreesClassifier(n_estimators=300, class_weight=cw, random_state=rs, n_jobs=-1),
        {"max_features": ["sqrt", 0.05]},
        "none",
    ),
    "hist-gb": (
        lambda rs, cw: HistGradientBoostingClassifier(class_weight=cw, random_state=rs),
        {"learning_rate": [0.05, 0.2]},
        "none",
    ),
    "sgd": (
        lambda rs, cw: SGDClassifier(loss="hinge", alpha=1e-3, class_weight=cw, random_state=rs),
        {"alpha": [1e-4, 1e-3, 1e-2]},
        "standardize",
    ),
}
_SCALINGS = ("standardize", "l2", "power-l2", "none")


def make_head(
    name: str = "logistic",
    *,
    cv: int | None = 5,
    scaling: str | None = None,
    class_weight: str | None = None,
    random_state: int = 0,
    n_jobs: int | None = None,
    params: dict[str, Any] | None = None,
) -> Pipeline:
    """A classic classifier head for CNN codes, as a plain scikit-learn pipeline.

    Parameters
    ----------
    name : {"linear-svm", "logistic", "random-forest", "extra-trees", "hist-gb", "sgd"}, default="logistic"
    cv : int or None, default=5
        Folds of the stratified cross-validation that picks the main hyperparameter
        (C, max_features, learning_rate or alpha); None keeps the preset's value.
    scaling : {"standardize", "l2", "power-l2", "none"} or None, default=None
        What goes in front; None uses the preset's (standardize for linear heads,
        none for trees).
    class_weight : {"balanced"} or None, default=None
        For imbalanced sets.
    random_state : int, default=0
    n_jobs : int or None, default=None
        Parallel folds of the hyperparameter search.
    params : dict or None, default=None
        Fixed hyperparameters of the estimator (e.g. ``{"C": 0.001}``, as ``sweep``
        reports them); given, no search is made.

    Returns
    -------
    sklearn.pipeline.Pipeline
        ``[scaling steps..., ("clf", estimator or GridSearchCV(estimator))]``.

    Examples
    --------
    >>> from sklearn.datasets import make_classification
    >>> X, y = make_classification(n_samples=60, random_state=0)
    >>> make_head("linear-svm", cv=3).fit(X, y).score(X, y) > 0.8
    True
    """
    if name not in HEADS:
        message = f"The 'head' parameter must be one of {', '.join(map(repr, HEADS))}. Got {name!r} instead."
        raise InputError(message)
    factory, grid, default_scaling = HEADS[name]
    scaling = scaling or default_scaling
    if scaling not in _SCALINGS:
        message = f"The 'scaling' parameter must be one of {', '.join(map(repr, _SCALINGS))}. Got {scaling!r} instead."
        raise InputError(message)
    estimator = factory(random_state, class_weight)
    if params:
        unknown = sorted(set(params) - set(estimator.get_params()))
        if unknown:
            message = f"The head '{name}' has no parameter {', '.join(map(repr, unknown))}; its main one is {', '.join(grid)}."
            raise InputError(message)
        return Pipeline([*_scaler(scaling), ("clf", estimator.set_params(**params))])
    if cv:
        estimator = GridSearchCV(
            estimator, grid, cv=StratifiedKFold(cv, shuffle=True, random_state=random_state), n_jobs=n_jobs
        )
    return Pipeline([*_scaler(scaling), ("clf", estimator)])


def fit_out_of_core(
    chunks: Any,
    classes: np.ndarray,
    *,
    loss: str = "hinge",
    alpha: float = 1e-4,
    n_epochs: int = 5,
    class_weight: dict[int, float] | None = None,
    random_state: int = 0,
) -> Pipeline:
    """Train a standardized SGD linear model over chunks of codes, with bounded memory.

    Parameters
    ----------
    chunks : callable
        ``chunks()`` returns a fresh iterator of ``(X_chunk, y_chunk)``; it is called
        once for the scaler's pass and once per epoch.
    classes : ndarray
        Every class label.
    loss : {"hinge", "log_loss"}, default="hinge"
        Linear SVM or logistic regression.
    alpha : float, default=1e-4
    n_epochs : int, default=5
    class_weight : dict or None, default=None
        SGD's partial_fit cannot compute "balanced" itself; pass the weights.
    random_state : int, default=0

    Returns
    -------
    sklearn.pipeline.Pipeline
        ``[("scale", StandardScaler), ("clf", SGDClassifier)]``, fitted.
    """
    scaler = StandardScaler()
    for X, _ in chunks():
        scaler.partial_fit(X)
    clf = SGDClassifier(loss=loss, alpha=alpha, random_state=random_state, class_weight=class_weight)
    for _ in range(n_epochs):
        for X, y in chunks():
            clf.partial_fit(scaler.transform(X), y, classes=classes)
    return Pipeline([("scale", scaler), ("clf", clf)])
