"""scikit-learn compliance of CNNCodes and the heads: API checks, clone, pickle, Pipeline, GridSearchCV."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC
from sklearn.utils import estimator_checks
from sklearn.utils.estimator_checks import check_estimator

import cnncodes
from cnncodes import CNNCodes, make_head
from cnncodes.errors import ImageDecodeError
from cnncodes.engine import Extractor
from tests.badfiles import make_bad_files
from tests.conftest import HYMENOPTERA

API_CHECKS = [
    "check_estimator_cloneable",
    "check_estimator_repr",
    "check_no_attributes_set_in_init",
    "check_do_not_raise_errors_in_init_or_set_params",
    "check_get_params_invariance",
    "check_set_params",
    "check_parameters_default_constructible",
    "check_mixin_order",
    "check_valid_tag_types",
    "check_estimator_tags_renamed",
    "check_estimators_unfitted",
    "check_dont_overwrite_parameters",
]


@pytest.mark.parametrize("check_name", API_CHECKS)
def test_cnncodes_passes_data_free_api_check(check_name: str) -> None:
    """Check that CNNCodes passes each of sklearn's data-free API checks, called by name."""
    check = getattr(estimator_checks, check_name)
    estimator = CNNCodes(cache=False)
    check(type(estimator).__name__, estimator)


def _head_steps() -> list[object]:
    """Every estimator the head presets chain, with the power+L2 scaling included.

    The presets are sklearn Pipelines, which sklearn itself keeps out of its common checks
    (a Pipeline fits its steps in place); their steps are what gets checked.
    """
    steps = {}
    for name in sorted(cnncodes.HEADS):
        for scaling in ("standardize", "power-l2"):
            for _, step in make_head(name, cv=None, scaling=scaling).steps:
                steps[repr(step)] = step
    return list(steps.values())


# sklearn's own test suite marks these as known failures of these estimators (stochastic or
# approximate solvers do not give identical models for weights and repetitions).
KNOWN_SKLEARN_FAILURES = {
    "check_sample_weight_equivalence_on_dense_data": "sample weights are not equivalent to repetitions here",
    "check_sample_weight_equivalence_on_sparse_data": "sample weights are not equivalent to repetitions here",
}
NOT_APPLICABLE = ("array_api", "does not have a decision_function method")


@pytest.mark.parametrize(
    "estimator", _head_steps(), ids=lambda est: type(est).__name__ + ("-power" if "power" in repr(est) else "")
)
def test_head_steps_pass_sklearn_checks(estimator) -> None:
    """Check that every estimator of the head presets passes sklearn's full check suite on numeric codes."""
    expected = (
        KNOWN_SKLEARN_FAILURES
        if type(estimator).__name__ in ("LinearSVC", "RandomForestClassifier", "SGDClassifier")
        else {}
    )
    results = check_estimator(estimator, expected_failed_checks=expected, on_skip=None, on_fail=None)
    failed = [
        (r["check_name"], str(r["exception"])[:200])
        for r in results
        if r["status"] == "failed" and not r["expected_to_fail"]
    ]
    skipped = [r for r in results if r["status"] == "skipped" and not r["expected_to_fail"]]
    assert failed == []
    assert all(any(reason in str(r["exception"]) for reason in NOT_APPLICABLE) for r in skipped), skipped
    assert sum(r["status"] == "passed" for r in results) > 30


@pytest.fixture(scope="module")
def small_set() -> tuple[list[str], np.ndarray]:
    paths, labels = [], []
    for label, name in enumerate(["ants", "bees"]):
        files = sorted((HYMENOPTERA / "train" / name).glob("*.jpg"))[:15]
        paths += [str(p) for p in files]
        labels += [label] * len(files)
    return paths, np.array(labels)


@pytest.fixture
def codes(cache_path: Path) -> CNNCodes:
    return CNNCodes(cache=str(cache_path))


def test_cnncodes_init_stores_params_untouched() -> None:
    """Check that __init__ stores every parameter verbatim (device 'auto' stays 'auto') and loads nothing."""
    estimator = CNNCodes(device="auto", layer=("stage4", "penultimate"), cache=False)
    assert estimator.get_params()["device"] == "auto" and estimator.layer == ("stage4", "penultimate")
    assert not hasattr(estimator, "_extractor") and not hasattr(estimator, "backbone_")


def test_cnncodes_fit_validates_with_sklearn_message() -> None:
    """Check that fit raises a sklearn-shaped message for a bad parameter."""
    expected = "The 'pooling' parameter of CNNCodes must be one of 'avg', 'max', 'gem'. Got 'mean' instead."
    with pytest.raises(ValueError, match=re.escape(expected)):
        CNNCodes(pooling="mean").fit()


def test_cnncodes_transform_shape_dtype_and_names(small_set, codes: CNNCodes) -> None:
    """Check transform's float32 (n, n_features_out_) output and the feature names."""
    paths, _ = small_set
    X = codes.fit(paths).transform(paths[:4])
    assert X.shape == (4, 1280) and X.dtype == np.float32 and codes.n_features_out_ == 1280
    names = codes.get_feature_names_out()
    assert names[0] == "efficientnet_lite0_penultimate_0" and len(names) == 1280


def test_cnncodes_set_output_pandas(small_set, codes: CNNCodes) -> None:
    """Check that set_output(transform='pandas') gives a DataFrame with the feature names."""
    paths, _ = small_set
    frame = codes.set_output(transform="pandas").fit(paths).transform(paths[:3])
    assert list(frame.columns[:2]) == ["efficientnet_lite0_penultimate_0", "efficientnet_lite0_penultimate_1"]
    assert frame.shape == (3, 1280)


def test_cnncodes_clone_pickle_joblib_without_session(small_set, codes: CNNCodes, tmp_path: Path) -> None:
    """Check that a fitted CNNCodes clones, pickles and joblib-dumps without its session, and still transforms."""
    paths, _ = small_set
    expected = codes.fit(paths).transform(paths[:2])
    assert codes._extractor._session is not None
    unpickled = pickle.loads(pickle.dumps(codes))
    assert not hasattr(unpickled, "_extractor")
    np.testing.assert_array_equal(unpickled.transform(paths[:2]), expected)
    joblib.dump(codes, tmp_path / "codes.joblib")
    np.testing.assert_array_equal(joblib.load(tmp_path / "codes.joblib").transform(paths[:2]), expected)
    cloned = clone(codes)
    assert cloned.get_params() == codes.get_params() and not hasattr(cloned, "n_features_out_")


def test_cnncodes_on_error_raise_names_file(tmp_path: Path, codes: CNNCodes) -> None:
    """Check that on_error='raise' raises naming the bad file."""
    files = make_bad_files(tmp_path / "bad")
    with pytest.raises(ImageDecodeError, match=re.escape(f"{files['empty']}: empty file (0 bytes)")):
        codes.fit().transform([str(files["good"]), str(files["empty"])])


def test_cnncodes_on_error_drop_reports_indices(tmp_path: Path, codes: CNNCodes) -> None:
    """Check that on_error='drop' returns rows for good images and the dropped indices, so y can be aligned."""
    files = make_bad_files(tmp_path / "bad")
    X_in = [str(files["good"]), str(files["empty"]), str(files["cmyk"]), str(files["garbage"])]
    y = np.array([0, 1, 0, 1])
    codes.set_params(on_error="drop").fit()
    with pytest.warns(UserWarning, match=r"^CNNCodes dropped 2 of 4 images"):
        X = codes.transform(X_in)
    assert codes.dropped_indices_.tolist() == [1, 3]
    assert X.shape == (2, 1280) and np.delete(y, codes.dropped_indices_).tolist() == [0, 0]


def test_pipeline_gridsearch_runs_cnn_once_per_image_and_layer(small_set, cache_path: Path) -> None:
    """Check that a 5-fold GridSearchCV over layer and C computes each image's codes at most once per layer."""
    paths, y = small_set
    pipeline = Pipeline([("codes", CNNCodes(cache=str(cache_path))), ("svm", LinearSVC(max_iter=5000))])
    search = GridSearchCV(
        pipeline,
        {"codes__layer": ["penultimate", "stage4"], "svm__C": [0.01, 1.0]},
        cv=StratifiedKFold(5, shuffle=True, random_state=0),
    )
    before = Extractor.n_inferred_total
    search.fit(paths, y)
    assert Extractor.n_inferred_total - before <= 2 * len(paths)
    assert search.best_score_ > 0.6 and search.predict(paths[:3]).shape == (3,)
    before = Extractor.n_inferred_total
    search.fit(paths, y)  # a second search: everything from the cache
    assert Extractor.n_inferred_total == before
