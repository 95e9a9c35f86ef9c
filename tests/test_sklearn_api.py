"""scikit-learn compliance of cnncodes' own estimators: the check suite, clone, pickle, Pipeline, GridSearchCV."""

from __future__ import annotations

import pickle
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC
from sklearn.utils import estimator_checks

from cnncodes import CNNCodes
from cnncodes.engine import Extractor
from cnncodes.heads import PowerNormalizer
from tests.conftest import HYMENOPTERA

# CNNCodes takes images, not numeric X, so the checks that feed it random arrays do not apply: these are the
# data-free API checks, called by name.
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

# The array API checks need SCIPY_ARRAY_API and array-api-strict, which cnncodes does not use: its numeric
# estimators are numpy-only. Everything else of scikit-learn's suite runs.
NOT_APPLICABLE = {"check_array_api_input"}
NUMERIC_CHECKS = [
    (estimator, check)
    for estimator, check in estimator_checks.estimator_checks_generator(PowerNormalizer(), mark=None)
    if check.func.__name__ not in NOT_APPLICABLE
]


@pytest.mark.parametrize("check_name", API_CHECKS)
def test_cnncodes_passes_data_free_api_check(check_name: str) -> None:
    """Check that CNNCodes passes each of scikit-learn's data-free API checks, called by name."""
    check = getattr(estimator_checks, check_name)
    estimator = CNNCodes(cache=False)
    check(type(estimator).__name__, estimator)


@pytest.mark.parametrize(
    "estimator, check", NUMERIC_CHECKS, ids=[f"{type(e).__name__}-{c.func.__name__}" for e, c in NUMERIC_CHECKS]
)
def test_numeric_estimator_passes_sklearn_check(estimator: object, check) -> None:
    """Check that cnncodes' own numeric transformers pass every check of scikit-learn's full suite."""
    check(estimator)


def test_numeric_checks_cover_the_full_suite() -> None:
    """Check that the parametrized suite is scikit-learn's whole list for a transformer, minus the array API."""
    names = {check.func.__name__ for _, check in NUMERIC_CHECKS}
    assert len(NUMERIC_CHECKS) > 40 and NOT_APPLICABLE.isdisjoint(names)
    assert {"check_fit_idempotent", "check_transformer_general", "check_n_features_in_after_fitting"} <= names


@pytest.fixture(scope="module")
def small_set() -> tuple[list[str], np.ndarray]:
    """15 ants and 15 bees from the real training set."""
    paths, labels = [], []
    for label, name in enumerate(["ants", "bees"]):
        files = sorted((HYMENOPTERA / "train" / name).glob("*.jpg"))[:15]
        paths += [str(p) for p in files]
        labels += [label] * len(files)
    return paths, np.array(labels)


@pytest.mark.usefixtures("default_backbone")
def test_cnncodes_clone_pickle_joblib_without_session(small_set, shared_cache: Path, tmp_path: Path) -> None:
    """Check that a fitted CNNCodes clones, pickles and joblib-dumps without its session, and still transforms."""
    paths, _ = small_set
    codes = CNNCodes(cache=str(shared_cache))
    expected = codes.fit(paths).transform(paths[:2])
    unpickled = pickle.loads(pickle.dumps(codes))
    assert "_extractor" not in unpickled.__dict__
    np.testing.assert_array_equal(unpickled.transform(paths[:2]), expected)
    joblib.dump(codes, tmp_path / "codes.joblib")
    np.testing.assert_array_equal(joblib.load(tmp_path / "codes.joblib").transform(paths[:2]), expected)
    cloned = clone(codes)
    assert cloned.get_params() == codes.get_params() and not hasattr(cloned, "n_features_out_")


@pytest.mark.usefixtures("default_backbone")
def test_cnncodes_set_output_pandas(small_set, shared_cache: Path) -> None:
    """Check that set_output(transform='pandas') gives a DataFrame named by the feature names."""
    paths, _ = small_set
    frame = CNNCodes(cache=str(shared_cache)).set_output(transform="pandas").fit(paths).transform(paths[:3])
    assert list(frame.columns[:2]) == ["efficientnet_lite0_penultimate_0", "efficientnet_lite0_penultimate_1"]
    assert frame.shape == (3, 1280) and frame.dtypes.unique().tolist() == [np.float32]


@pytest.mark.usefixtures("default_backbone")
def test_column_transformer_pipeline_fits_and_predicts(small_set, shared_cache: Path) -> None:
    """Check that CNNCodes on a "path" column next to a numeric column fits and predicts inside a Pipeline."""
    paths, y = small_set
    frame = pd.DataFrame({"path": paths, "x": np.linspace(0.0, 1.0, len(paths))})
    columns = ColumnTransformer([("img", CNNCodes(cache=str(shared_cache)), ["path"]), ("num", "passthrough", ["x"])])
    model = Pipeline([("features", columns), ("head", LogisticRegression(max_iter=2000))]).fit(frame, y)
    assert model.named_steps["features"].transform(frame.iloc[:2]).shape == (2, 1280 + 1)
    assert model.score(frame, y) > 0.9 and model.predict(frame.iloc[:3]).shape == (3,)
    names = model.named_steps["features"].get_feature_names_out()
    assert names[0] == "img__efficientnet_lite0_penultimate_0" and names[-1] == "num__x"


@pytest.mark.usefixtures("default_backbone")
def test_pipeline_gridsearch_runs_cnn_once_per_image_and_layer(small_set, tmp_path: Path) -> None:
    """Check that a 5-fold GridSearchCV over layer and C computes each image's codes at most once per layer."""
    paths, y = small_set
    pipeline = Pipeline([("codes", CNNCodes(cache=str(tmp_path / "cache"))), ("svm", LinearSVC(max_iter=5000))])
    search = GridSearchCV(
        pipeline,
        {"codes__layer": ["penultimate", "stage4"], "svm__C": [0.01, 1.0]},
        cv=StratifiedKFold(5, shuffle=True, random_state=0),
    )
    before = Extractor.n_inferred_total
    search.fit(paths, y)
    assert 0 < Extractor.n_inferred_total - before <= 2 * len(paths)
    assert search.best_score_ > 0.6 and search.predict(paths[:3]).shape == (3,)
    before = Extractor.n_inferred_total
    search.fit(paths, y)  # a second search: everything from the cache
    assert Extractor.n_inferred_total == before
