"""End-to-end tests of predict, class_scores and runtime_codes on real images."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.svm import LinearSVC

import cnncodes
from cnncodes import CNNCodes
from cnncodes.errors import InputError
from cnncodes.prediction import class_scores, runtime_codes
from tests.badfiles import make_bad_files
from tests.conftest import HYMENOPTERA
from tests.conftest import session_tree

pytestmark = pytest.mark.usefixtures("default_backbone")


def test_predict_top_k_probabilities(trained: Path, shared_cache: Path) -> None:
    """Check that predict gives per-image top-k classes with probabilities summing to one, best first."""
    images = sorted((HYMENOPTERA / "val" / "bees").glob("*.jpg"))[:3]
    result = cnncodes.predict(trained, images, top_k=5, cache=str(shared_cache))
    assert result.score_kind == "probability" and result.failures == []
    assert [p.path for p in result.predictions] == [str(p) for p in images]
    for prediction in result.predictions:
        scores = [score for _, score in prediction.top]
        assert len(prediction.top) == 2 and abs(sum(scores) - 1) < 1e-6 and scores == sorted(scores, reverse=True)
    assert sum(p.top[0][0] == "bees" for p in result.predictions) >= 2


def test_predict_agrees_with_the_pipeline(trained: Path, shared_cache: Path) -> None:
    """Check that predict's top class is the saved pipeline's own prediction for each image."""
    images = [str(p) for p in sorted((HYMENOPTERA / "val" / "ants").glob("*.jpg"))[:4]]
    bundle = cnncodes.load_model(trained)
    expected = [bundle.class_names[i] for i in bundle.pipeline.predict(images)]
    result = cnncodes.predict(bundle, images, top_k=1, cache=str(shared_cache))
    assert [p.top[0][0] for p in result.predictions] == expected and all(len(p.top) == 1 for p in result.predictions)


def test_predict_decision_scores_for_svm(shared_cache: Path, tmp_path: Path, tmp_path_factory) -> None:
    """Check that a head without probabilities reports decision scores and says so."""
    path = tmp_path / "svm.skops"
    codes = CNNCodes(cache=str(shared_cache))
    cnncodes.train(session_tree(tmp_path_factory), head="linear-svm", codes=codes, cv=3, output=path)
    result = cnncodes.predict(path, [sorted((HYMENOPTERA / "val" / "ants").glob("*.jpg"))[0]], cache=str(shared_cache))
    assert result.score_kind == "decision score"
    (name, score), (_, other) = result.predictions[0].top
    assert score == -other and score > 0


def test_predict_searches_folders_and_lists_bad_images(trained: Path, tmp_path: Path) -> None:
    """Check that a folder is searched for images, and a bad image is listed as a failure, not predicted."""
    files = make_bad_files(tmp_path / "mixed")
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "good.jpg").symlink_to(files["good"])
    (folder / "empty.jpg").symlink_to(files["empty"])
    result = cnncodes.predict(trained, folder, cache=False, batch_size=1, n_workers=1, device="cpu")
    assert [p.path for p in result.predictions] == [str(folder / "good.jpg")]
    assert result.failures == [(str(folder / "empty.jpg"), "empty file (0 bytes)")]


def test_predict_only_bad_images_gives_no_predictions(trained: Path, tmp_path: Path) -> None:
    """Check that when every image fails, the result has no predictions and lists each failure."""
    files = make_bad_files(tmp_path / "bad")
    result = cnncodes.predict(trained, [files["empty"]], cache=False)
    assert result.predictions == [] and result.failures == [(str(files["empty"]), "empty file (0 bytes)")]


def test_predict_bad_run_parameter_is_named(trained: Path) -> None:
    """Check that a wrong run parameter is refused with the estimator's message."""
    expected = "The 'n_workers' parameter of CNNCodes must be a positive int or None. Got 0 instead."
    with pytest.raises(InputError, match=re.escape(expected)):
        cnncodes.predict(trained, [HYMENOPTERA / "val" / "ants"], cache=False, n_workers=0)


def test_runtime_codes_leaves_the_bundle_untouched(trained: Path) -> None:
    """Check that runtime_codes returns a fitted copy with the run options and skipping, and changes no bundle step."""
    bundle = cnncodes.load_model(trained)
    before = bundle.pipeline.named_steps["codes"].get_params()
    same, codes = runtime_codes(bundle, "predict", cache=False, batch_size=3, device="cpu")
    assert same is bundle and codes is not bundle.pipeline.named_steps["codes"] and codes.n_features_out_ == 1280
    assert (codes.cache, codes.batch_size, codes.device, codes.on_error) == (False, 3, "cpu", "skip")
    assert bundle.pipeline.named_steps["codes"].get_params() == before


def test_predict_unknown_run_option_is_a_type_error(trained: Path) -> None:
    """Check that a keyword that is no run option fails as Python's own unexpected-keyword error, naming it."""
    with pytest.raises(TypeError, match=re.escape("predict() got an unexpected keyword argument 'pooling'")):
        cnncodes.predict(trained, [], pooling="max")


@pytest.mark.parametrize(
    "head, kind",
    [
        (LogisticRegression(), "probability"),
        (LinearSVC(), "decision score"),
        (SGDClassifier(loss="hinge", random_state=0), "decision score"),
    ],
    ids=["logistic", "svm", "hinge-sgd"],
)
def test_class_scores_kind_and_shape(head, kind: str) -> None:
    """Check that class_scores gives probabilities where a head has them, else two-column decision scores."""
    X = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    head.fit(X, [0, 0, 1, 1])
    scores, found = class_scores(head, X)
    assert found == kind and scores.shape == (4, 2)
    np.testing.assert_array_equal(np.argmax(scores, axis=1), head.predict(X))


@pytest.mark.parametrize("head", ["logistic", "linear-svm"])
def test_predict_and_evaluate_map_columns_through_the_heads_classes(
    shared_cache: Path, tmp_path_factory: pytest.TempPathFactory, head: str
) -> None:
    """Check a model whose head learned classes [0, 2] of three names (an empty middle class, as models trained
    before the empty-class check have): a bee is 'bees', not the empty 'bats', and macro F1 leaves 'bats' out."""
    from sklearn.pipeline import Pipeline

    from cnncodes.persist import ModelBundle
    from cnncodes.training import load_labelled_codes

    labelled = load_labelled_codes(session_tree(tmp_path_factory), CNNCodes(cache=str(shared_cache)))
    fitted = cnncodes.make_head(head, cv=None).fit(labelled.X, np.where(labelled.y == 1, 2, 0))
    names = ["ants", "bats", "bees"]
    bundle = ModelBundle(
        Pipeline([("codes", labelled.codes), ("head", fitted)]), names, labelled.spec, "efficientnet_lite0", "0" * 64
    )
    bees = sorted((HYMENOPTERA / "val" / "bees").glob("*.jpg"))[:3]
    result = cnncodes.predict(bundle, bees, top_k=3, cache=str(shared_cache))
    assert [p.top[0][0] for p in result.predictions] == ["bees"] * 3
    assert [name for name, _ in result.predictions[0].top][2] == "bats"  # the unlearned class ranks last
    report = cnncodes.evaluate(bundle, session_tree(tmp_path_factory), cache=str(shared_cache)).report
    assert report.class_names == ["ants", "bees"]
    assert report.macro_f1 == pytest.approx(np.mean([row["f1"] for row in report.per_class]))


def test_predict_refuses_zero_workers_and_threads(trained: Path) -> None:
    """Check that n_workers=0 and n_threads=0 are refused in one line, not silently the default."""
    image = sorted((HYMENOPTERA / "val" / "bees").glob("*.jpg"))[0]
    for name in ("n_workers", "n_threads"):
        expected = f"The '{name}' parameter of CNNCodes must be a positive int or None. Got 0 instead."
        with pytest.raises(InputError, match=re.escape(expected)):
            cnncodes.predict(trained, [image], cache=False, **{name: 0})
