"""Classifier heads on CNN codes: named presets that are plain scikit-learn pipelines."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.ensemble import ExtraTreesClassifier, HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import Normalizer, StandardScaler
from sklearn.svm import LinearSVC
from sklearn.utils.validation import FLOAT_DTYPES, check_is_fitted, validate_data

from .errors import InputError
from .messages import one_of_message
from .params import POWER_EXPONENT

__all__ = ["PowerNormalizer", "make_head", "check_head", "head_names", "head_grid", "fit_out_of_core"]

_SCALINGS = ("standardize", "l2", "power-l2", "none")


class PowerNormalizer(TransformerMixin, BaseEstimator):
    """Signed square root of every value, ``sign(x) * |x| ** 0.5`` (the "power" of power-L2 scaling).

    Put an L2 :class:`~sklearn.preprocessing.Normalizer` after it, as ``make_head(scaling="power-l2")``
    does. The exponent is the fixed constant :data:`cnncodes.params.POWER_EXPONENT`; the
    transformer is stateless and learns nothing in ``fit`` but the number of features.

    Attributes
    ----------
    n_features_in_ : int
        Number of features seen in ``fit``.

    Examples
    --------
    >>> PowerNormalizer().fit_transform(np.array([[4.0, -9.0, 0.0]])).tolist()
    [[2.0, -3.0, 0.0]]
    """

    def fit(self, X: Any, y: Any = None) -> "PowerNormalizer":
        """Check ``X`` and remember its number of features.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Codes.
        y : ignored
            Accepted for the scikit-learn API.

        Returns
        -------
        self : PowerNormalizer
        """
        validate_data(self, X, dtype=FLOAT_DTYPES)
        return self

    def transform(self, X: Any) -> np.ndarray:
        """The signed square root of ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Codes.

        Returns
        -------
        ndarray of shape (n_samples, n_features)
            Same float dtype as ``X`` (integers become float64).
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=FLOAT_DTYPES, reset=False)
        return np.sign(X) * np.abs(X) ** np.asarray(POWER_EXPONENT, dtype=X.dtype)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


def power_normalize(X: np.ndarray) -> np.ndarray:
    # Model files of the first wave pickled FunctionTransformer(power_normalize): they still load and predict.
    return PowerNormalizer().fit_transform(X)


@dataclass(frozen=True)
class _Head:
    """A head preset: how to build its estimator, what to search, what to put in front."""

    build: Callable[[int, str | None], Any]  # (random_state, class_weight) -> unfitted estimator
    grid: dict[str, list[Any]]  # the main hyperparameter(s) searched by cross-validation
    scaling: str  # default scaling, one of _SCALINGS


_C_GRID = [0.001, 0.01, 0.1, 1.0]
_HEADS: dict[str, _Head] = {  # the registry; params.HEAD_NAMES lists the same names for the CLI
    "extra-trees": _Head(
        lambda rs, cw: ExtraTreesClassifier(n_estimators=300, class_weight=cw, random_state=rs, n_jobs=-1),
        {"max_features": ["sqrt", 0.05]},
        "none",
    ),
    "hist-gb": _Head(
        lambda rs, cw: HistGradientBoostingClassifier(class_weight=cw, random_state=rs),
        {"learning_rate": [0.05, 0.2]},
        "none",
    ),
    "linear-svm": _Head(
        lambda rs, cw: LinearSVC(C=0.01, class_weight=cw, random_state=rs, max_iter=5000),
        {"C": _C_GRID},
        "standardize",
    ),
    "logistic": _Head(
        lambda rs, cw: LogisticRegression(C=0.1, class_weight=cw, max_iter=2000),
        {"C": _C_GRID},
        "standardize",
    ),
    "random-forest": _Head(
        lambda rs, cw: RandomForestClassifier(n_estimators=300, class_weight=cw, random_state=rs, n_jobs=-1),
        {"max_features": ["sqrt", 0.05]},
        "none",
    ),
    "sgd": _Head(
        lambda rs, cw: SGDClassifier(loss="hinge", alpha=1e-3, class_weight=cw, random_state=rs),
        {"alpha": [1e-4, 1e-3, 1e-2]},
        "standardize",
    ),
}


def head_names() -> tuple[str, ...]:
    """The names of the head presets, sorted (:data:`cnncodes.params.HEAD_NAMES` declares the same for the CLI).

    Returns
    -------
    tuple of str

    Examples
    --------
    >>> head_names()
    ('extra-trees', 'hist-gb', 'linear-svm', 'logistic', 'random-forest', 'sgd')
    """
    return tuple(sorted(_HEADS))


def check_head(name: str) -> None:
    """Raise a one-line :class:`InputError` unless ``name`` is a head preset.

    Parameters
    ----------
    name : str
        A head name, e.g. ``"logistic"``.

    Raises
    ------
    InputError
        Naming every preset.

    Examples
    --------
    >>> check_head("logistic")
    >>> check_head("svm")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    cnncodes.errors.InputError: The 'head' parameter must be one of 'extra-trees', 'hist-gb', ... Got 'svm' instead.
    """
    if name not in _HEADS:
        raise InputError(one_of_message("head", _HEADS, name))


def head_grid(name: str) -> list[dict[str, Any]]:
    """Every combination of the hyperparameter values a head preset searches.

    Parameters
    ----------
    name : str
        A head preset.

    Returns
    -------
    list of dict
        One ``{hyperparameter: value}`` per candidate, in search order.

    Raises
    ------
    InputError
        If ``name`` is not a preset.

    Examples
    --------
    >>> head_grid("hist-gb")
    [{'learning_rate': 0.05}, {'learning_rate': 0.2}]
    """
    check_head(name)
    grid = _HEADS[name].grid
    return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]


def _scaling_steps(scaling: str) -> list[tuple[str, Any]]:
    if scaling not in _SCALINGS:
        raise InputError(one_of_message("scaling", _SCALINGS, scaling))
    return {
        "standardize": [("scale", StandardScaler())],
        "l2": [("scale", Normalizer())],
        "power-l2": [("power", PowerNormalizer()), ("scale", Normalizer())],
        "none": [],
    }[scaling]


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
    name : {"extra-trees", "hist-gb", "linear-svm", "logistic", "random-forest", "sgd"}, default="logistic"
        The preset.
    cv : int or None, default=5
        Folds of the stratified cross-validation that picks the main hyperparameter
        (C, max_features, learning_rate or alpha); None keeps the preset's value.
    scaling : {"standardize", "l2", "power-l2", "none"} or None, default=None
        What goes in front; None uses the preset's (standardize for linear heads,
        none for trees).
    class_weight : {"balanced"} or None, default=None
        For imbalanced sets.
    random_state : int, default=0
        Seed of the estimator and of the folds.
    n_jobs : int or None, default=None
        Parallel folds of the hyperparameter search.
    params : dict or None, default=None
        Fixed hyperparameters of the estimator (e.g. ``{"C": 0.001}``, as ``sweep``
        reports them); given, no search is made.

    Returns
    -------
    sklearn.pipeline.Pipeline
        ``[scaling steps..., ("clf", estimator or GridSearchCV(estimator))]``, unfitted.

    Raises
    ------
    InputError
        If the name, the scaling or a fixed hyperparameter is unknown.

    Examples
    --------
    >>> from sklearn.datasets import make_classification
    >>> X, y = make_classification(n_samples=60, random_state=0)
    >>> make_head("linear-svm", cv=3).fit(X, y).score(X, y) > 0.8
    True
    >>> [step for step, _ in make_head("logistic", scaling="power-l2", cv=None).steps]
    ['power', 'scale', 'clf']
    """
    check_head(name)
    head = _HEADS[name]
    steps = _scaling_steps(scaling or head.scaling)
    estimator = head.build(random_state, class_weight)
    if params:
        unknown = sorted(set(params) - set(estimator.get_params()))
        if unknown:
            names, main = ", ".join(map(repr, unknown)), ", ".join(head.grid)
            message = f"The head '{name}' has no parameter {names}; its main one is {main}."
            raise InputError(message)
        return Pipeline([*steps, ("clf", estimator.set_params(**params))])
    if cv:
        folds = StratifiedKFold(cv, shuffle=True, random_state=random_state)
        estimator = GridSearchCV(estimator, head.grid, cv=folds, n_jobs=n_jobs)
    return Pipeline([*steps, ("clf", estimator)])


def fit_out_of_core(
    chunks: Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]],
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
        Regularization strength.
    n_epochs : int, default=5
        Passes over the chunks.
    class_weight : dict or None, default=None
        SGD's partial_fit cannot compute "balanced" itself; pass the weights.
    random_state : int, default=0
        Seed of the SGD shuffles.

    Returns
    -------
    sklearn.pipeline.Pipeline
        ``[("scale", StandardScaler), ("clf", SGDClassifier)]``, fitted.

    Examples
    --------
    >>> from sklearn.datasets import make_classification
    >>> X, y = make_classification(n_samples=200, random_state=0)
    >>> halves = lambda: iter([(X[:100], y[:100]), (X[100:], y[100:])])
    >>> fit_out_of_core(halves, np.array([0, 1])).score(X, y) > 0.8
    True
    """
    scaler = StandardScaler()
    for X, _ in chunks():
        scaler.partial_fit(X)
    clf = SGDClassifier(loss=loss, alpha=alpha, random_state=random_state, class_weight=class_weight)
    for _ in range(n_epochs):
        for X, y in chunks():
            clf.partial_fit(scaler.transform(X), y, classes=classes)
    return Pipeline([("scale", scaler), ("clf", clf)])
