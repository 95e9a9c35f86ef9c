"""Tests of classification reports: figures, the table, JSON and PNG files, and no global matplotlib state."""

from __future__ import annotations

import json
import re
import sys
import warnings
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import balanced_accuracy_score

from cnncodes.report import Report, make_report, plot_sweep, write_json, write_report

Y_TRUE = [0, 0, 0, 1, 1, 2]
Y_PRED = [0, 0, 1, 1, 2, 2]
NAMES = ["ants", "bees", "wasps"]


@pytest.fixture
def report() -> Report:
    return make_report(Y_TRUE, Y_PRED, NAMES)


def test_make_report_figures_by_hand(report: Report) -> None:
    """Check accuracy, balanced accuracy, per-class figures and the confusion matrix against hand counts."""
    assert report.n_samples == 6 and report.accuracy == pytest.approx(4 / 6)
    assert report.balanced_accuracy == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert report.confusion_matrix == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    ants, bees, wasps = report.per_class
    assert (ants["precision"], ants["recall"], ants["support"]) == (1.0, pytest.approx(2 / 3), 3)
    assert (bees["precision"], bees["recall"], wasps["precision"]) == (0.5, 0.5, 0.5)
    assert report.macro_f1 == pytest.approx(np.mean([row["f1"] for row in report.per_class]))
    assert report.top_k_accuracy == {}


@pytest.mark.parametrize("seed", range(5))
def test_make_report_balanced_accuracy_is_sklearns(seed: int) -> None:
    """Check that the balanced accuracy equals scikit-learn's on random labels, classes missing included."""
    rng = np.random.default_rng(seed)
    y_true, y_pred = rng.integers(0, 3, 20), rng.integers(0, 4, 20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn warns about the class only predicted
        expected = balanced_accuracy_score(y_true, y_pred)
    assert make_report(y_true, y_pred, list("abcd")).balanced_accuracy == pytest.approx(expected)


def test_make_report_one_class_present_does_not_warn() -> None:
    """Check that data holding only one of the model's classes is scored without a warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = make_report([1, 1, 1], [1, 1, 0], ["ants", "bees"])
    assert report.balanced_accuracy == pytest.approx(2 / 3) and report.per_class[0]["support"] == 0


def test_make_report_top_k_only_below_the_class_count() -> None:
    """Check that top-k accuracy is computed from scores for each k smaller than the number of classes."""
    scores = np.array([[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1], [0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4]])
    report = make_report([0, 0, 3, 2], [3, 0, 3, 3], list("abcd"), scores)
    assert report.top_k_accuracy == {"top_3": 0.75}  # only the first image's class ranks last; no top-5 of 4 classes


def test_make_report_classes_without_samples() -> None:
    """Check that a class with no sample and no prediction reports zeros, not a warning or NaN."""
    empty = make_report([0, 1], [0, 1], ["a", "b", "c"])
    assert empty.per_class[2] == {"name": "c", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


def test_report_table_layout(report: Report) -> None:
    """Check the whole table: headline, per-class rows aligned to the longest name, confusion matrix."""
    assert report.table().splitlines() == [
        "samples 6  accuracy 0.6667  balanced accuracy 0.7222  macro F1 0.6556",
        "class  precision  recall  f1      support",
        "ants      1.0000  0.6667  0.8000        3",
        "bees      0.5000  0.5000  0.5000        2",
        "wasps     0.5000  1.0000  0.6667        1",
        "confusion matrix (rows: true, columns: predicted):",
        "       2      1      0",
        "       0      1      1",
        "       0      0      1",
    ]


def test_write_report_files_and_json(report: Report, tmp_path: Path) -> None:
    """Check that the JSON equals the report, the PNGs are images, and no temporary file is left."""
    folder = tmp_path / "new" / "report"
    files = write_report(report, folder)
    assert files == [folder / "report.json", folder / "confusion_matrix.png", folder / "per_class_f1.png"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in files)
    assert json.loads(files[0].read_text()) == report.as_dict()
    for png in files[1:]:
        with Image.open(png) as image:
            assert image.format == "PNG" and image.width > 100 and image.height > 100


def test_write_report_keeps_the_users_matplotlib_backend(report: Report, tmp_path: Path) -> None:
    """Check that plotting neither switches the matplotlib backend nor leaves figures open in pyplot."""
    previous = matplotlib.get_backend()
    matplotlib.use("pdf")  # a backend that is not Agg, so a switch to Agg would show
    try:
        write_report(report, tmp_path)
        plot_sweep([{"features": "stage4", "head": "logistic", "accuracy": 0.9}], tmp_path / "sweep.png")
        assert matplotlib.get_backend() == "pdf"
    finally:
        matplotlib.use(previous)
    import matplotlib.pyplot as plt

    assert plt.get_fignums() == []


def test_plot_sweep_draws_every_feature_set_and_head(tmp_path: Path) -> None:
    """Check that a sweep chart is written as a PNG, including a (features, head) pair that is missing."""
    rows = [
        {"features": "stage4", "head": "logistic", "accuracy": 0.8},
        {"features": "stage4", "head": "linear-svm", "accuracy": 0.85},
        {"features": "penultimate", "head": "logistic", "accuracy": 0.95},
    ]
    path = plot_sweep(rows, tmp_path / "sweep.png", ylabel="accuracy")
    assert path == tmp_path / "sweep.png" and sorted(p.name for p in tmp_path.iterdir()) == ["sweep.png"]
    with Image.open(path) as image:
        assert image.format == "PNG"


def test_write_json_replaces_atomically(tmp_path: Path) -> None:
    """Check that write_json writes indented JSON with a final newline over an existing file, leaving nothing else."""
    path = tmp_path / "figures.json"
    path.write_text("old")
    assert write_json({"b": [1, 2], "a": None}, path) == path
    assert path.read_text() == '{\n  "b": [\n    1,\n    2\n  ],\n  "a": null\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["figures.json"]


def test_write_report_without_matplotlib_keeps_json_and_warns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Check that without matplotlib the report keeps its JSON (no PNGs), with one warning instead of an error."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what an install without the plot extra sees
    with pytest.warns(UserWarning, match=re.escape(f"{tmp_path}: PNG plots skipped (PNG plots needs matplotlib")):
        files = write_report(make_report([0, 1, 1], [0, 1, 0], ["ant", "bee"]), tmp_path)
    assert [path.name for path in files] == ["report.json"] and sorted(p.name for p in tmp_path.iterdir()) == [
        "report.json"
    ]
