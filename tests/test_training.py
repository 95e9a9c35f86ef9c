"""End-to-end tests of train and load_labelled_codes on real images, and the shared trained-model helpers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

import cnncodes
from cnncodes import CNNCodes
from cnncodes.cli import cli
from cnncodes.errors import InputError
from cnncodes.training import load_labelled_codes
from tests.badfiles import make_bad_files
from tests.conftest import HYMENOPTERA, session_model, write_image

pytestmark = pytest.mark.usefixtures("default_backbone")


def test_train_saves_a_model_that_loads(small_tree: Path, shared_cache: Path, tmp_path: Path) -> None:
    """Check that train fits the head by CV, saves a bundle that loads, and summarizes it in one line."""
    output = tmp_path / "model.skops"
    result = cnncodes.train(small_tree, head="logistic", codes=CNNCodes(cache=str(shared_cache)), cv=3, output=output)
    assert result.path == output and result.n_samples == 40 and result.failures == []
    assert set(result.best_params) == {"C"} and result.best_params["C"] in (0.001, 0.01, 0.1, 1.0)
    assert 0.5 < result.cv_accuracy <= 1.0
    bundle = cnncodes.load_model(output)
    assert bundle.class_names == ["ants", "bees"] and bundle.head == "logistic"
    assert bundle.backbone == "efficientnet_lite0" and bundle.spec["layers"][0]["tap"] == "penultimate"
    expected = {"cv_accuracy": result.cv_accuracy, "best_params": result.best_params, "n_samples": 40}
    assert bundle.metrics == {**expected, "cv_metric": "accuracy"}
    assert [name for name, _ in bundle.pipeline.steps] == ["codes", "head"]
    assert result.summary() == (
        f"trained logistic on 40 images, 2 classes, cross-validated accuracy {result.cv_accuracy:.4f} "
        f"(C={result.best_params['C']}), 0 failed -> {output}"
    )
    bees = sorted((HYMENOPTERA / "val" / "bees").glob("*.jpg"))[:4]
    assert bundle.pipeline.predict([str(p) for p in bees]).tolist().count(1) >= 3


def test_train_unknown_head_fails_before_extracting(tmp_path: Path) -> None:
    """Check that an unknown head is refused before the data is read (the folder does not even exist)."""
    expected = (
        "The 'head' parameter must be one of 'extra-trees', 'hist-gb', 'linear-svm', 'logistic', "
        "'random-forest', 'sgd'. Got 'svm' instead."
    )
    with pytest.raises(InputError, match=re.escape(expected)):
        cnncodes.train(tmp_path / "missing", head="svm")


def test_train_from_codes_file_and_out_of_core_sgd(small_tree: Path, shared_cache: Path, tmp_path: Path) -> None:
    """Check training from a codes file: in memory, and out of core with SGD over HDF5 chunks."""
    codes_file = tmp_path / "codes.h5"
    cnncodes.extract(small_tree, cache=str(shared_cache), output=codes_file, progress=False)
    in_memory = cnncodes.train(codes_file, head="logistic", cv=3, codes=CNNCodes(cache=str(shared_cache)))
    assert in_memory.n_samples == 40 and in_memory.bundle.spec["layers"][0]["tap"] == "penultimate"
    chunked = cnncodes.train(
        codes_file, head="sgd", chunk_rows=8, codes=CNNCodes(cache=str(shared_cache)), output=tmp_path / "sgd.skops"
    )
    assert chunked.cv_accuracy > 0.5 and set(chunked.best_params) == {"alpha"}  # --cv chose alpha over the chunks
    assert [name for name, _ in chunked.bundle.pipeline.named_steps["head"].steps] == ["scale", "clf"]
    report = cnncodes.evaluate(tmp_path / "sgd.skops", codes_file, cache=str(shared_cache)).report
    assert report.accuracy > 0.9  # on its own training codes


def test_load_labelled_codes_skips_bad_images(tmp_path: Path, shared_cache: Path) -> None:
    """Check that a bad image gets no row and is listed, and the returned CNNCodes keeps the template's on_error."""
    bad = make_bad_files(tmp_path / "bad")
    tree = tmp_path / "tree"
    write_image(tree / "a" / "one.jpg", seed=1)
    (tree / "a" / "empty.jpg").write_bytes(bad["empty"].read_bytes())
    write_image(tree / "b" / "two.jpg", seed=2)
    labelled = load_labelled_codes(tree, CNNCodes(cache=str(shared_cache)))
    assert labelled.failures == [(str(tree / "a" / "empty.jpg"), "empty file (0 bytes)")]
    assert labelled.paths == [str(tree / "a" / "one.jpg"), str(tree / "b" / "two.jpg")]
    assert labelled.X.shape == (2, 1280) and labelled.y.tolist() == [0, 1] and labelled.class_names == ["a", "b"]
    assert labelled.codes.on_error == "raise" and labelled.codes.n_features_out_ == 1280 and labelled.source is None


def test_load_labelled_codes_codes_file_feature_set_wins(small_tree: Path, shared_cache: Path, tmp_path: Path) -> None:
    """Check that a codes file's feature set replaces the template's, and its run options are kept."""
    codes_file = tmp_path / "stage4.h5"
    cnncodes.extract(small_tree, layer="stage4", cache=str(shared_cache), output=codes_file, progress=False)
    labelled = load_labelled_codes(codes_file, CNNCodes(cache=False, batch_size=4))
    assert labelled.source == codes_file and labelled.X.shape == (40, 80)
    assert labelled.codes.layer == ("stage4",) and labelled.codes.layers_ == ("stage4",)
    assert labelled.codes.cache is False and labelled.codes.batch_size == 4
    assert labelled.y.tolist() == [0] * 20 + [1] * 20
    assert labelled.codes.decoder == "fast"  # what made the file's codes
    exact_file = tmp_path / "exact.h5"
    cnncodes.extract(small_tree, decoder="exact", cache=str(shared_cache), output=exact_file, progress=False)
    assert load_labelled_codes(exact_file, CNNCodes(cache=False)).codes.decoder == "exact"


def test_codes_spec_from_before_the_fast_decoder_reads_as_exact() -> None:
    """Check that a codes file's options without a decoder (files written before it existed) mean Pillow's."""
    from cnncodes.featurespec import options_of_codes_spec

    assert options_of_codes_spec({"options": {"layer": ["stage4"], "views": "flip"}}) == {
        "layer": ("stage4",),
        "views": "flip",
        "decoder": "exact",
    }
    assert options_of_codes_spec({"options": {"decoder": "fast"}}) == {"decoder": "fast"}


def test_load_labelled_codes_refuses_unlabelled_data(tmp_path: Path) -> None:
    """Check that a folder without class subfolders, and a codes file without labels, are refused in one line."""
    flat = tmp_path / "flat"
    write_image(flat / "one.jpg", seed=1)
    expected = f"{flat}: no labels; give a folder with one subfolder per class, or a CSV of path,label rows"
    with pytest.raises(InputError, match=re.escape(expected)):
        load_labelled_codes(flat, CNNCodes(cache=False))
    codes_file = tmp_path / "unlabelled.h5"
    cnncodes.extract(flat, cache=False, output=codes_file, progress=False)
    expected = f"{codes_file}: the codes file has no labels; extract from a class-per-folder tree or a labelled CSV"
    with pytest.raises(InputError, match=re.escape(expected)):
        load_labelled_codes(codes_file, CNNCodes(cache=False))


# --- degenerate data, bad parameters, silent wrong results (issue 9, sections 4 and 5) ---------------------------


def _tree(root: Path, counts: dict[str, int], split: str = "train") -> Path:
    """A class-per-folder tree of real photos: ``counts`` images per class (ants' and bees' photos in turn)."""
    sources = [sorted((HYMENOPTERA / split / name).glob("*.jpg")) for name in ("ants", "bees")]
    for i, (name, count) in enumerate(counts.items()):
        (root / name).mkdir(parents=True)
        for path in sources[i % 2][:count]:
            (root / name / path.name).symlink_to(path)
    return root


def _fails(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["-q", *map(str, args)])
    return result.exit_code, result.stderr


def test_train_refuses_an_empty_class_folder(tmp_path: Path, shared_cache: Path) -> None:
    """Check that an empty class folder is refused in one line, not trained into a head that learns fewer classes."""
    tree = _tree(tmp_path / "tree", {"ants": 6, "bats": 0, "bees": 6})
    expected = f"{tree}: class 'bats' has no images (no file, or every file failed); remove it or add images"
    with pytest.raises(InputError, match=re.escape(expected)):
        cnncodes.train(tree, cv=2, codes=CNNCodes(cache=str(shared_cache)))


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_single_class_is_one_line(tmp_path: Path, shared_cache: Path, command: str) -> None:
    """Check that a training set of one class is one line, exit 1, for train and sweep."""
    tree = _tree(tmp_path / "tree", {"ants": 4})
    options = ["-o", tmp_path / "m.skops"] if command == "train" else ["--layers", "penultimate"]
    code, stderr = _fails(command, tree, *options, "--cache", shared_cache)
    assert (code, stderr) == (
        1,
        f"Error: {tree}: only one class ('ants') has images; a classifier needs at least two\n",
    )


def test_train_with_small_classes_uses_fewer_folds(
    tmp_path: Path, shared_cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Check that a class smaller than --cv gives fewer folds, said in one line, and a real accuracy (not NaN)."""
    tree = _tree(tmp_path / "tree", {"ants": 4, "bees": 2})
    with caplog.at_level("WARNING", logger="cnncodes"):
        result = cnncodes.train(tree, cv=5, codes=CNNCodes(cache=str(shared_cache)))
    assert [r.getMessage() for r in caplog.records] == ["class 'bees' has 2 images, fewer than --cv 5; using --cv 2"]
    assert 0.0 <= result.cv_accuracy <= 1.0


def test_train_with_a_one_image_class(tmp_path: Path, shared_cache: Path) -> None:
    """Check that a one-image class is refused for cross-validation (no NaN accuracy) and trains with --param."""
    tree = _tree(tmp_path / "tree", {"ants": 4, "bees": 1})
    expected = "class 'bees' has 1 image; --cv 5 needs at least 2 per class: add images"
    with pytest.raises(InputError, match=re.escape(expected)):
        cnncodes.train(tree, codes=CNNCodes(cache=str(shared_cache)))
    fixed = cnncodes.train(tree, params={"C": 0.1}, codes=CNNCodes(cache=str(shared_cache)))
    assert fixed.cv_accuracy is None and fixed.best_params == {"C": 0.1} and "nan" not in fixed.summary()


@pytest.mark.parametrize(
    ("param", "expected"),
    [
        (
            "C=abc",
            "The 'C' parameter of LogisticRegression must be a float in the range (0.0, inf]. Got 'abc' instead.",
        ),
        ("C=-1", "The 'C' parameter of LogisticRegression must be a float in the range (0.0, inf]. Got -1 instead."),
    ],
    ids=["text", "negative"],
)
def test_cli_train_invalid_param_value_is_one_line(tmp_path: Path, param: str, expected: str) -> None:
    """Check that an invalid --param value is one line naming the parameter, before anything is extracted."""
    code, stderr = _fails("train", tmp_path, "--param", param, "-o", tmp_path / "m.skops", "--cache", tmp_path / "c")
    assert (code, stderr) == (1, f"Error: {expected}\n") and not (tmp_path / "c").exists()


def test_train_balanced_class_weight_chooses_on_balanced_accuracy() -> None:
    """Check that --class-weight balanced makes the hyperparameter search score balanced accuracy."""
    search = cnncodes.make_head("logistic", class_weight="balanced").steps[-1][1]
    assert search.scoring == "balanced_accuracy"
    assert cnncodes.make_head("logistic").steps[-1][1].scoring is None  # accuracy, the classifier's own score


def test_train_csv_with_empty_labels_names_the_row(tmp_path: Path) -> None:
    """Check that a CSV whose label cells are empty makes no class named '' but a one-line error naming a row."""
    ants = sorted((HYMENOPTERA / "train" / "ants").glob("*.jpg"))[:2]
    bees = sorted((HYMENOPTERA / "train" / "bees").glob("*.jpg"))[:2]
    csv = tmp_path / "labels.csv"
    csv.write_text("".join(f"{p},ants\n" for p in ants) + "".join(f"{p},\n" for p in bees))
    with pytest.raises(
        InputError, match=re.escape(f"{csv}: line 3 has no label but line 1 has one; label every row or none")
    ):
        cnncodes.train(csv, cv=2, codes=CNNCodes(cache=False))


def test_train_sgd_on_a_codes_file_honours_param_and_refuses_others(
    small_tree: Path, shared_cache: Path, tmp_path: Path
) -> None:
    """Check that out-of-core SGD takes --param alpha (alpha=100 is not the default model) and refuses C."""
    codes_file = tmp_path / "codes.h5"
    cnncodes.extract(small_tree, cache=str(shared_cache), output=codes_file, progress=False)
    fixed = cnncodes.train(codes_file, head="sgd", params={"alpha": 100.0}, codes=CNNCodes(cache=str(shared_cache)))
    assert fixed.bundle.pipeline.named_steps["head"].named_steps["clf"].alpha == 100.0
    assert fixed.best_params == {"alpha": 100.0}
    expected = "The head 'sgd' on a codes file trains out of core and takes only alpha, loss; got 'C'"
    with pytest.raises(InputError, match=re.escape(expected)):
        cnncodes.train(codes_file, head="sgd", params={"C": 1.0}, codes=CNNCodes(cache=str(shared_cache)))


def _damaged_codes_file(source: Path, path: Path, change: str) -> Path:
    """A copy of a real codes file with one thing wrong."""
    import shutil

    import h5py
    import numpy as np

    shutil.copy(source, path)
    with h5py.File(path, "r+") as handle:
        if change == "missing codes":
            del handle["codes"]
        elif change == "bad spec":
            handle.attrs["spec"] = "{not json"
        elif change == "short labels":
            labels = handle["labels"][:-1]
            del handle["labels"]
            handle["labels"] = labels
        elif change == "nan codes":
            handle["codes"][3, 5] = np.nan
        elif change == "inf codes":
            handle["codes"][0, 0] = np.inf
        elif change == "label outside":
            handle["labels"][2] = 7
    return path


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (
            "missing codes",
            "cannot read codes file (\"Unable to synchronously open object (object 'codes' doesn't exist)\")",
        ),
        ("bad spec", "cannot read codes file (Expecting property name enclosed in double quotes"),
        ("short labels", "its datasets disagree in length (40 codes, 40 paths, 39 labels)"),
        ("nan codes", "the codes of "),
        ("inf codes", "the codes of "),
        ("label outside", "label 7 of "),
    ],
    ids=lambda value: value.replace(" ", "-")[:20],
)
def test_cli_train_and_evaluate_refuse_bad_codes_files(
    small_tree: Path,
    shared_cache: Path,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    change: str,
    reason: str,
) -> None:
    """Check that a codes file with a missing dataset, bad spec JSON, lengths, NaN/inf codes or labels is one line."""
    codes_file = tmp_path / "codes.h5"
    cnncodes.extract(small_tree, cache=str(shared_cache), output=codes_file, progress=False)
    bad = _damaged_codes_file(codes_file, tmp_path / "bad.h5", change)
    code, stderr = _fails("train", bad, "-o", tmp_path / "m.skops", "--cache", shared_cache)
    assert code == 1 and stderr.startswith(f"Error: {bad}: {reason}") and stderr.count("\n") == 1
    code, stderr = _fails("evaluate", session_model(tmp_path_factory), bad, "--cache", shared_cache)
    assert code == 1 and stderr.startswith(f"Error: {bad}: {reason}") and stderr.count("\n") == 1
