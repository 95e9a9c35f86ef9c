"""Classifier heads on CNN codes: named presets that are plain scikit-learn pipelines."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, clone
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

__all__ = [
    "PowerNormalizer",
    "make_head",
    "check_head",
    "head_names",
    "head_grid",
    "fit_out_of_core",
    "search_out_of_core",
    "selection_metric",
    "check_params",
    "OUT_OF_CORE_PARAMS",
]

OUT_OF_CORE_PARAMS = ("alpha", "loss")  # what fit_out_of_core takes as fixed hyperparameters

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
        (C, max_features, learning_rate or alpha) on accuracy, or on balanced
        accuracy with ``class_weight="balanced"``; None keeps the preset's value.
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
        reports them); given, no search is made. They are checked at once.

    Returns
    -------
    sklearn.pipeline.Pipeline
        ``[scaling steps..., ("clf", estimator or GridSearchCV(estimator))]``, unfitted.

    Raises
    ------
    InputError
        If the name, the scaling or a fixed hyperparameter is unknown, or a fixed
        hyperparameter's value is invalid.

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
        return Pipeline([*steps, ("clf", check_params(estimator.set_params(**params)))])
    if cv:
        folds = StratifiedKFold(cv, shuffle=True, random_state=random_state)
        # None is the classifier's own score, accuracy; a scorer object would be one more type in model files.
        scoring = "balanced_accuracy" if selection_metric(class_weight) == "balanced_accuracy" else None
        estimator = GridSearchCV(estimator, head.grid, cv=folds, n_jobs=n_jobs, scoring=scoring)
    return Pipeline([*steps, ("clf", estimator)])


def selection_metric(class_weight: str | None) -> str:
    """The score hyperparameters are chosen on: balanced accuracy when classes are weighted, else accuracy.

    Examples
    --------
    >>> selection_metric("balanced"), selection_metric(None)
    ('balanced_accuracy', 'accuracy')
    """
    return "balanced_accuracy" if class_weight == "balanced" else "accuracy"


def check_params(estimator: Any) -> Any:
    """Return ``estimator`` after checking its hyperparameters, or raise a one-line :class:`InputError`.

    scikit-learn checks hyperparameters when ``fit`` starts; a fit on twenty valid rows
    makes it check them now, before any long extraction or training, so a failure can
    only be a hyperparameter's.

    Examples
    --------
    >>> check_params(LogisticRegression(C=-1.0))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    cnncodes.errors.InputError: The 'C' parameter of LogisticRegression must be a float in the range (0.0, inf]...
    """
    # Enough rows that a valid setting (early stopping's validation split, a few folds) can fit them.
    X = np.tile([[0.0, 1.0], [1.0, 0.0], [0.0, 0.5], [1.0, 0.5]], (5, 1))
    y = np.tile([0, 1, 0, 1], 5)
    try:
        clone(estimator).fit(X, y)
    except (ValueError, TypeError) as error:  # scikit-learn's InvalidParameterError is both
        message = str(error).splitlines()[0] if str(error) else f"{type(error).__name__} for {estimator!r}"
        raise InputError(message) from error
    return estimator


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


def _rows(chunks: Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]], keep: np.ndarray) -> Callable[[], Iterator]:
    """The chunks restricted to the rows where ``keep`` is True (rows counted in chunk order)."""

    def restricted() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        start = 0
        for X, y in chunks():
            mask = keep[start : start + len(y)]
            start += len(y)
            if mask.any():
                yield X[mask], y[mask]

    return restricted


def search_out_of_core(
    chunks: Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]],
    y: np.ndarray,
    classes: np.ndarray,
    *,
    cv: int,
    class_weight: dict[int, float] | None = None,
    random_state: int = 0,
) -> tuple[dict[str, Any], float]:
    """Choose the SGD head's alpha by stratified cross-validation over chunks, with bounded memory.

    Parameters
    ----------
    chunks : callable
        As for :func:`fit_out_of_core`; every call yields the rows in the same order.
    y : ndarray of shape (n_samples,)
        Every row's label, in that order (read without the codes).
    classes : ndarray
        Every class label.
    cv : int
        Folds.
    class_weight : dict or None, default=None
        Class weights; given, alpha is chosen on balanced accuracy, else on accuracy.
    random_state : int, default=0
        Seed of the folds and the SGD shuffles.

    Returns
    -------
    best_params : dict
        ``{"alpha": value}``.
    best_score : float
        Its mean score over the folds.

    Examples
    --------
    >>> from sklearn.datasets import make_classification
    >>> X, y = make_classification(n_samples=120, random_state=0)
    >>> halves = lambda: iter([(X[:60], y[:60]), (X[60:], y[60:])])
    >>> params, score = search_out_of_core(halves, y, np.array([0, 1]), cv=3)
    >>> sorted(params), score > 0.7
    (['alpha'], True)
    """
    from sklearn.metrics import accuracy_score, balanced_accuracy_score

    metric = balanced_accuracy_score if class_weight else accuracy_score
    folds = list(StratifiedKFold(cv, shuffle=True, random_state=random_state).split(np.zeros((len(y), 1)), y))
    results = []
    for params in head_grid("sgd"):
        scores = []
        for train_rows, test_rows in folds:
            held_out = np.zeros(len(y), bool)
            held_out[test_rows] = True
            fitted = fit_out_of_core(
                _rows(chunks, ~held_out), classes, class_weight=class_weight, random_state=random_state, **params
            )
            truth, predicted = [], []
            for X_part, y_part in _rows(chunks, held_out)():
                truth.append(y_part)
                predicted.append(fitted.predict(X_part))
            scores.append(metric(np.concatenate(truth), np.concatenate(predicted)))
        results.append((float(np.mean(scores)), params))
    best_score, best_params = max(results, key=lambda result: result[0])
    return best_params, best_score
