"""End-to-end tests of train / evaluate / predict / sweep and model files, on real images."""

from __future__ import annotations

import json
import re
from pathlib import Path

import joblib
import numpy as np
import pytest
from click.testing import CliRunner

import cnncodes
from cnncodes import CNNCodes
from cnncodes.cli import cli
from cnncodes.errors import InputError, ModelFileError, ModelMismatchError, ModelMismatchWarning
from cnncodes.persist import MODEL_FORMAT
from tests.conftest import HYMENOPTERA


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("training-cache")


@pytest.fixture(scope="module")
def small_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 ants and 20 bees from the real training set, linked into a class-per-folder tree."""
    root = tmp_path_factory.mktemp("small")
    for name in ("ants", "bees"):
        (root / name).mkdir()
        for path in sorted((HYMENOPTERA / "train" / name).glob("*.jpg"))[:20]:
            (root / name / path.name).symlink_to(path)
    return root


@pytest.fixture(scope="module")
def trained(small_tree: Path, shared_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "model.joblib"
    cnncodes.train(small_tree, head="logistic", codes=CNNCodes(cache=str(shared_cache)), cv=3, output=path)
    return path


def test_train_evaluate_on_real_split(trained: Path, shared_cache: Path, tmp_path: Path) -> None:
    """Check that a model trained on 40 real images scores well on the real val split, with a full report."""
    result = cnncodes.evaluate(trained, HYMENOPTERA / "val", cache=str(shared_cache), report_dir=tmp_path / "report")
    report = result.report
    assert report.n_samples == 153 and report.accuracy > 0.85
    assert report.class_names == ["ants", "bees"] and np.sum(report.confusion_matrix) == 153
    assert {row["name"] for row in report.per_class} == {"ants", "bees"}
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == [
        "confusion_matrix.png",
        "per_class_f1.png",
        "report.json",
    ]
    assert json.loads((tmp_path / "report" / "report.json").read_text())["accuracy"] == report.accuracy


def test_predict_top_k_probabilities(trained: Path, shared_cache: Path) -> None:
    """Check that predict gives per-image top-k classes with probabilities summing to one."""
    images = sorted((HYMENOPTERA / "val" / "bees").glob("*.jpg"))[:3]
    result = cnncodes.predict(trained, images, top_k=5, cache=str(shared_cache))
    assert result.score_kind == "probability" and [p.path for p in result.predictions] == [str(p) for p in images]
    for prediction in result.predictions:
        assert len(prediction.top) == 2 and abs(sum(score for _, score in prediction.top) - 1) < 1e-6
    assert sum(p.top[0][0] == "bees" for p in result.predictions) >= 2


def test_predict_decision_scores_for_svm(small_tree: Path, shared_cache: Path, tmp_path: Path) -> None:
    """Check that a head without probabilities reports decision scores and says so."""
    path = tmp_path / "svm.joblib"
    cnncodes.train(small_tree, head="linear-svm", codes=CNNCodes(cache=str(shared_cache)), cv=3, output=path)
    result = cnncodes.predict(path, [sorted((HYMENOPTERA / "val" / "ants").glob("*.jpg"))[0]], cache=str(shared_cache))
    assert result.score_kind == "decision score"
    (name, score), (_, other) = result.predictions[0].top
    assert score == -other


def test_train_from_codes_file_and_out_of_core_sgd(small_tree: Path, shared_cache: Path, tmp_path: Path) -> None:
    """Check training from a codes file: in memory, and out of core with SGD over HDF5 chunks."""
    codes_file = tmp_path / "codes.h5"
    cnncodes.extract(small_tree, cache=str(shared_cache), output=codes_file, progress=False)
    in_memory = cnncodes.train(codes_file, head="logistic", cv=3, codes=CNNCodes(cache=str(shared_cache)))
    assert in_memory.n_samples == 40 and in_memory.bundle.spec["layers"][0]["tap"] == "penultimate"
    chunked = cnncodes.train(
        codes_file, head="sgd", chunk_rows=8, codes=CNNCodes(cache=str(shared_cache)), output=tmp_path / "sgd.joblib"
    )
    assert chunked.cv_accuracy is None
    report = cnncodes.evaluate(tmp_path / "sgd.joblib", codes_file, cache=str(shared_cache)).report
    assert report.accuracy > 0.9  # on its own training codes


def test_evaluate_rejects_codes_of_another_feature_set(
    trained: Path, small_tree: Path, shared_cache: Path, tmp_path: Path
) -> None:
    """Check that a codes file of another layer is refused in one line."""
    codes_file = tmp_path / "stage4.h5"
    cnncodes.extract(small_tree, layer="stage4", cache=str(shared_cache), output=codes_file, progress=False)
    expected = f"{codes_file}: its codes are of another feature set than the model's; evaluate on the images instead"
    with pytest.raises(InputError, match=re.escape(expected)):
        cnncodes.evaluate(trained, codes_file, cache=str(shared_cache))


def test_load_model_refuses_other_backbone(trained: Path, tmp_path: Path) -> None:
    """Check that a model whose backbone file differs from the training one is refused in one line."""
    document = joblib.load(trained)
    document["bundle"].backbone_sha256 = "0" * 64
    tampered = tmp_path / "tampered.joblib"
    joblib.dump(document, tampered)
    with pytest.raises(
        ModelMismatchError,
        match=re.escape(f"{tampered}: backbone 'efficientnet_lite0' differs from the one this model was trained on"),
    ):
        cnncodes.load_model(tampered)


def test_load_model_warns_on_other_versions_and_refuses_newer_format(trained: Path, tmp_path: Path) -> None:
    """Check that other library versions warn, a newer format is refused, and a foreign file is named."""
    document = joblib.load(trained)
    document["bundle"].versions["scikit-learn"] = "0.1"
    older = tmp_path / "older.joblib"
    joblib.dump(document, older)
    with pytest.warns(ModelMismatchWarning, match=re.escape(f"{older}: saved with scikit-learn 0.1")):
        cnncodes.load_model(older)
    document["format_version"] = 99
    newer = tmp_path / "newer.joblib"
    joblib.dump(document, newer)
    with pytest.raises(
        ModelFileError, match=re.escape(f"{newer}: model format version 99 is newer than this cnncodes supports (1)")
    ):
        cnncodes.load_model(newer)
    foreign = tmp_path / "foreign.joblib"
    joblib.dump({"format": "other"}, foreign)
    with pytest.raises(ModelFileError, match=re.escape(f"{foreign}: not a cnncodes model file")):
        cnncodes.load_model(foreign)
    assert document["format"] == MODEL_FORMAT


def test_sweep_ranks_layers_with_baseline(small_tree: Path, shared_cache: Path, tmp_path: Path) -> None:
    """Check that sweep scores every layer set and head with CV, ranks them, adds the raw-pixel baseline, and reports."""
    result = cnncodes.sweep(
        small_tree,
        layers=["stage4", "penultimate", "stage4+penultimate"],
        heads=["logistic", "linear-svm"],
        codes=CNNCodes(cache=str(shared_cache)),
        cv=3,
        report_dir=tmp_path / "sweep",
    )
    combos = {(r.features, r.head) for r in result.best_per_combination()}
    assert combos == {
        (f, h)
        for f in ("stage4", "penultimate", "stage4+penultimate", "raw pixels")
        for h in ("logistic", "linear-svm")
    }
    scores = [r.balanced_accuracy for r in result.rows]
    assert scores == sorted(scores, reverse=True)
    assert next(r for r in result.rows if r.features == "stage4+penultimate").n_features == 80 + 1280
    assert result.best.features != "raw pixels" and result.best.balanced_accuracy > 0.8
    assert result.recommendation().startswith(f"Use efficientnet_lite0 {result.best.features}")
    assert (
        f"with {result.best.head} ({', '.join(f'{k}={v}' for k, v in result.best.params.items())})"
        in result.recommendation()
    )
    assert "transfer helps" in result.recommendation()
    assert sorted(p.name for p in (tmp_path / "sweep").iterdir()) == ["sweep.json", "sweep.png"]


def test_cli_train_evaluate_predict(small_tree: Path, shared_cache: Path, tmp_path: Path) -> None:
    """Check the train -> evaluate -> predict commands as a user runs them."""
    model = tmp_path / "model.joblib"
    runner = CliRunner()
    result = runner.invoke(
        cli,
        [
            "-q",
            "train",
            str(small_tree),
            "--head",
            "logistic",
            "--cv",
            "3",
            "-o",
            str(model),
            "--cache",
            str(shared_cache),
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0
    pattern = rf"trained logistic on 40 images, 2 classes, cross-validated accuracy [0-9.]+ \(C=[0-9.]+\), 0 failed -> {re.escape(str(model))}\n"
    assert re.fullmatch(pattern, result.stdout)
    result = runner.invoke(
        cli,
        ["-q", "evaluate", str(model), str(HYMENOPTERA / "val"), "--json", "--cache", str(shared_cache)],
        catch_exceptions=False,
    )
    figures = json.loads(result.stdout.splitlines()[-1])
    assert {"accuracy", "balanced_accuracy", "macro_f1", "n_samples", "per_class"} <= set(figures) and figures[
        "n_samples"
    ] == 153
    image = sorted((HYMENOPTERA / "val" / "ants").glob("*.jpg"))[0]
    result = runner.invoke(
        cli,
        ["-q", "predict", str(model), str(image), "--format", "json", "--top-k", "1", "--cache", str(shared_cache)],
        catch_exceptions=False,
    )
    output = json.loads(result.stdout)
    assert output["score"] == "probability" and output["predictions"][0]["path"] == str(image)
    assert len(output["predictions"][0]["top"]) == 1
    result = runner.invoke(
        cli,
        ["-q", "predict", str(model), str(image), "--format", "csv", "--cache", str(shared_cache)],
        catch_exceptions=False,
    )
    assert result.stdout.splitlines()[0] == "path,rank,class,score" and len(result.stdout.splitlines()) == 3


def test_cli_train_unlabelled_folder_is_one_line_error(tmp_path: Path) -> None:
    """Check that training on a folder without class subfolders fails in one line."""
    (tmp_path / "flat").mkdir()
    result = CliRunner().invoke(cli, ["-q", "train", str(tmp_path / "flat"), "-o", str(tmp_path / "m.joblib")])
    assert result.exit_code == 1
    assert (
        result.stderr
        == f"Error: {tmp_path / 'flat'}: no labels; give a folder with one subfolder per class, or a CSV of path,label rows\n"
    )


def test_train_with_fixed_params(small_tree: Path, shared_cache: Path, tmp_path: Path) -> None:
    """Check that `--param C=0.001` fixes the head's hyperparameter instead of searching, and a wrong name is one line."""
    model = tmp_path / "fixed.joblib"
    result = CliRunner().invoke(
        cli,
        ["-q", "train", str(small_tree), "--param", "C=0.001", "-o", str(model), "--cache", str(shared_cache)],
        catch_exceptions=False,
    )
    assert result.exit_code == 0 and "cross-validated" not in result.stdout
    head = cnncodes.load_model(model).pipeline.named_steps["head"]
    assert head.named_steps["clf"].C == 0.001
    result = CliRunner().invoke(
        cli, ["-q", "train", str(small_tree), "--param", "alpha=1", "-o", str(model), "--cache", str(shared_cache)]
    )
    assert result.exit_code == 1
    assert result.stderr == "Error: The head 'logistic' has no parameter 'alpha'; its main one is C.\n"
