"""End-to-end tests of evaluate: a saved model scored on real labelled images and codes files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

import cnncodes
from cnncodes.errors import InputError
from tests.conftest import HYMENOPTERA
from tests.conftest import session_tree

pytestmark = pytest.mark.usefixtures("default_backbone")


def test_evaluate_on_real_split_writes_report(trained: Path, shared_cache: Path, tmp_path: Path) -> None:
    """Check that a model trained on 40 real images scores well on the real val split, with a full report."""
    result = cnncodes.evaluate(trained, HYMENOPTERA / "val", cache=str(shared_cache), report_dir=tmp_path / "report")
    report = result.report
    assert report.n_samples == 153 and report.accuracy > 0.85 and result.failures == []
    assert report.class_names == ["ants", "bees"] and np.sum(report.confusion_matrix) == 153
    assert [row["support"] for row in report.per_class] == [70, 83]
    names = ("report.json", "confusion_matrix.png", "per_class_f1.png", "index.html")
    assert result.files == [tmp_path / "report" / name for name in names]
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == [
        "code_map.svg",
        "confusion_matrix.png",
        "index.html",
        "per_class_f1.png",
        "report.json",
        "thumbnails",
    ]
    assert json.loads((tmp_path / "report" / "report.json").read_text()) == report.as_dict()


def test_evaluate_takes_every_run_parameter(trained: Path, shared_cache: Path, tmp_path: Path) -> None:
    """Check that the run parameters reach the extraction: other values give the same report, a bad one is named."""
    images = tmp_path / "val"
    for name in ("ants", "bees"):
        (images / name).mkdir(parents=True)
        for path in sorted((HYMENOPTERA / "val" / name).glob("*.jpg"))[:3]:
            (images / name / path.name).symlink_to(path)
    plain = cnncodes.evaluate(trained, images, cache=False).report
    tuned = cnncodes.evaluate(
        trained, images, cache=False, batch_size=2, device="cpu", n_threads=1, optimization="basic", n_workers=1
    ).report
    assert tuned.confusion_matrix == plain.confusion_matrix and tuned.n_samples == 6
    np.testing.assert_allclose(tuned.accuracy, plain.accuracy)
    expected = (
        "The 'optimization' parameter of CNNCodes must be one of 'disable', 'basic', 'extended', 'all'. "
        "Got 'fast' instead."
    )
    with pytest.raises(InputError, match=re.escape(expected)):
        cnncodes.evaluate(trained, images, cache=False, optimization="fast")


def test_evaluate_rejects_codes_of_another_feature_set(
    trained: Path, shared_cache: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Check that a codes file of another layer is refused in one line."""
    codes_file = tmp_path / "stage4.h5"
    tree = session_tree(tmp_path_factory)
    cnncodes.extract(tree, layer="stage4", cache=str(shared_cache), output=codes_file, progress=False)
    expected = f"{codes_file}: its codes are of another feature set than the model's; evaluate on the images instead"
    with pytest.raises(InputError, match=re.escape(expected)):
        cnncodes.evaluate(trained, codes_file, cache=str(shared_cache))


def test_evaluate_maps_a_subset_of_classes(trained: Path, shared_cache: Path, tmp_path: Path) -> None:
    """Check that data holding only the model's second class is scored against that class, not the first."""
    tree = tmp_path / "tree"
    (tree / "bees").mkdir(parents=True)
    for path in sorted((HYMENOPTERA / "val" / "bees").glob("*.jpg"))[:4]:
        (tree / "bees" / path.name).symlink_to(path)
    report = cnncodes.evaluate(trained, tree, cache=str(shared_cache)).report
    assert report.class_names == ["ants", "bees"] and [row["support"] for row in report.per_class] == [0, 4]
    assert report.confusion_matrix[0] == [0, 0] and sum(report.confusion_matrix[1]) == 4


def test_evaluate_rejects_unknown_classes(trained: Path, tmp_path: Path) -> None:
    """Check that data with a class the model does not know is refused, naming both class lists."""
    tree = tmp_path / "tree"
    for name in ("ants", "wasps"):
        (tree / name).mkdir(parents=True)
        source = sorted((HYMENOPTERA / "val" / "ants").glob("*.jpg"))[0]
        (tree / name / source.name).symlink_to(source)
    expected = f"{tree}: classes wasps are not among the model's (ants, bees)"
    with pytest.raises(InputError, match=re.escape(expected)):
        cnncodes.evaluate(trained, tree, cache=False)
