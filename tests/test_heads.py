"""Tests of the head presets, PowerNormalizer and out-of-core SGD on numeric codes."""

from __future__ import annotations

import pickle
import re

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.model_selection import GridSearchCV
from sklearn.preprocessing import FunctionTransformer, Normalizer, StandardScaler

from cnncodes import params
from cnncodes.errors import InputError
from cnncodes.heads import (
    PowerNormalizer,
    check_head,
    fit_out_of_core,
    head_grid,
    head_names,
    make_head,
    power_normalize,
)


@pytest.fixture(scope="module")
def codes() -> tuple[np.ndarray, np.ndarray]:
    """Non-negative, separable codes like pooled CNN features (read-only)."""
    X, y = make_classification(n_samples=120, n_features=20, n_informative=6, random_state=0)
    X = (X - X.min()).astype(np.float32)  # shifted: still linearly separable
    X.flags.writeable = False
    return X, y


def test_head_names_equal_the_declared_head_names() -> None:
    """Check that the registry and params.HEAD_NAMES (what the CLI offers) list the same presets."""
    assert head_names() == params.HEAD_NAMES


@pytest.mark.parametrize("name", params.HEAD_NAMES)
def test_make_head_preset_searches_its_grid(name: str, codes: tuple[np.ndarray, np.ndarray]) -> None:
    """Check that every preset fits by CV over its own grid, picks a value from it, and classifies well."""
    X, y = codes
    head = make_head(name, cv=3).fit(X, y)
    search = head.named_steps["clf"]
    assert isinstance(search, GridSearchCV) and search.best_params_ in head_grid(name)
    assert len(search.cv_results_["params"]) == len(head_grid(name))
    assert head.score(X, y) > 0.8


@pytest.mark.parametrize(
    "scaling, steps",
    [
        ("standardize", [StandardScaler]),
        ("l2", [Normalizer]),
        ("power-l2", [PowerNormalizer, Normalizer]),
        ("none", []),
    ],
)
def test_make_head_scaling_steps(scaling: str, steps: list[type]) -> None:
    """Check that each scaling puts exactly its steps in front of the classifier."""
    pipeline = make_head("logistic", cv=None, scaling=scaling)
    assert [type(step) for _, step in pipeline.steps[:-1]] == steps and pipeline.steps[-1][0] == "clf"


def test_make_head_default_scaling_by_family() -> None:
    """Check that linear presets standardize and tree presets take the codes as they are."""
    assert [type(s) for _, s in make_head("linear-svm", cv=None).steps[:-1]] == [StandardScaler]
    assert make_head("random-forest", cv=None).steps[:-1] == []


def test_make_head_fixed_params_skip_the_search() -> None:
    """Check that fixed hyperparameters are set on the estimator and no search is made."""
    head = make_head("logistic", params={"C": 0.001}, class_weight="balanced", random_state=3)
    clf = head.named_steps["clf"]
    assert not isinstance(clf, GridSearchCV) and (clf.C, clf.class_weight) == (0.001, "balanced")


def test_make_head_refuses_unknown_names() -> None:
    """Check the one-line refusals of an unknown preset, scaling and hyperparameter."""
    expected = (
        "The 'head' parameter must be one of 'extra-trees', 'hist-gb', 'linear-svm', 'logistic', "
        "'random-forest', 'sgd'. Got 'svm' instead."
    )
    with pytest.raises(InputError, match=re.escape(expected)):
        make_head("svm")
    with pytest.raises(InputError, match=re.escape(expected)):
        check_head("svm")
    expected = "The 'scaling' parameter must be one of 'standardize', 'l2', 'power-l2', 'none'. Got 'minmax' instead."
    with pytest.raises(InputError, match=re.escape(expected)):
        make_head("logistic", scaling="minmax")
    expected = "The head 'hist-gb' has no parameter 'C', 'alpha'; its main one is learning_rate."
    with pytest.raises(InputError, match=re.escape(expected)):
        make_head("hist-gb", params={"alpha": 1.0, "C": 1.0})


def test_head_grid_lists_every_candidate() -> None:
    """Check that the grid of a preset lists each hyperparameter value once, in search order."""
    assert head_grid("logistic") == [{"C": 0.001}, {"C": 0.01}, {"C": 0.1}, {"C": 1.0}]
    assert head_grid("sgd") == [{"alpha": 1e-4}, {"alpha": 1e-3}, {"alpha": 1e-2}]


def test_power_normalizer_signed_square_root() -> None:
    """Check the signed square root, dtype kept, and the fixed exponent from params."""
    X = np.array([[4.0, -9.0, 0.0], [0.25, -0.01, 16.0]], dtype=np.float32)
    out = PowerNormalizer().fit(X).transform(X)
    assert out.dtype == np.float32 and params.POWER_EXPONENT == 0.5
    np.testing.assert_allclose(out, [[2.0, -3.0, 0.0], [0.5, -0.1, 4.0]], rtol=1e-6)
    assert PowerNormalizer().fit_transform(np.array([[4, -1]])).dtype == np.float64


def test_power_normalizer_refuses_other_widths() -> None:
    """Check that transform refuses codes of another width than fit saw, in scikit-learn's words."""
    normalizer = PowerNormalizer().fit(np.ones((2, 3)))
    expected = "X has 2 features, but PowerNormalizer is expecting 3 features as input."
    with pytest.raises(ValueError, match=re.escape(expected)):
        normalizer.transform(np.ones((2, 2)))


def test_power_l2_head_pickles_and_clones(codes: tuple[np.ndarray, np.ndarray]) -> None:
    """Check that a fitted power-L2 head survives pickle and clone, and its power step has no hidden knob."""
    X, y = codes
    head = make_head("logistic", cv=None, scaling="power-l2").fit(X, y)
    restored = pickle.loads(pickle.dumps(head))
    np.testing.assert_array_equal(restored.predict(X), head.predict(X))
    assert clone(head).get_params()["power"].get_params() == {}


def test_power_normalize_keeps_first_wave_model_files_working() -> None:
    """Check that a first-wave power step, FunctionTransformer(power_normalize), still transforms the same."""
    X = np.array([[4.0, -9.0]])
    legacy = pickle.loads(pickle.dumps(FunctionTransformer(power_normalize)))
    np.testing.assert_array_equal(legacy.fit_transform(X), PowerNormalizer().fit_transform(X))


def test_fit_out_of_core_passes_over_every_chunk(codes: tuple[np.ndarray, np.ndarray]) -> None:
    """Check that SGD over chunks standardizes with every chunk, takes the class weights, and classifies well."""
    X, y = codes
    calls = []

    def chunks():
        calls.append(1)
        return iter([(X[:50], y[:50]), (X[50:], y[50:])])

    fitted = fit_out_of_core(chunks, np.array([0, 1]), n_epochs=3, class_weight={0: 1.0, 1: 2.0})
    assert len(calls) == 1 + 3  # one pass for the scaler, one per epoch
    np.testing.assert_allclose(fitted.named_steps["scale"].mean_, X.mean(axis=0), rtol=1e-5)
    assert fitted.named_steps["clf"].class_weight == {0: 1.0, 1: 2.0}
    assert fitted.score(X, y) > 0.8
