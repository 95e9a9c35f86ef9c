"""End-to-end tests of sweep: layer sets x heads x hyperparameters on real cached codes, ranked, with a baseline."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import cnncodes
from cnncodes import CNNCodes
from cnncodes.errors import InputError
from cnncodes.selection import BASELINE, SweepResult, default_layer_sets, sweep
from tests.conftest import HYMENOPTERA

pytestmark = pytest.mark.usefixtures("default_backbone")


@pytest.fixture(scope="module")
def swept(small_tree: Path, shared_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> SweepResult:
    """Two layers and their concatenation, two heads, 3-fold CV, the baseline, and a report folder."""
    return sweep(
        small_tree,
        layers=["stage4", "penultimate", "stage4+penultimate"],
        heads=["logistic", "linear-svm"],
        codes=CNNCodes(cache=str(shared_cache)),
        cv=3,
        report_dir=tmp_path_factory.mktemp("sweep"),
    )


def test_sweep_scores_every_combination_ranked(swept: SweepResult) -> None:
    """Check that every layer set x head x grid value is scored, ranked best first, with the baseline."""
    combos = {(r.features, r.head) for r in swept.best_per_combination()}
    assert combos == {
        (f, h) for f in ("stage4", "penultimate", "stage4+penultimate", BASELINE) for h in ("logistic", "linear-svm")
    }
    assert len(swept.rows) == 4 * (4 + 4)  # four feature sets, each head has four values of C
    keys = [(-r.balanced_accuracy, -r.accuracy) for r in swept.rows]
    assert keys == sorted(keys)
    assert swept.protocol == "3-fold stratified CV" and swept.n_samples == 40
    assert swept.class_names == ["ants", "bees"]


def test_sweep_rows_carry_their_fields(swept: SweepResult) -> None:
    """Check each row's model, width, pooling and spread: the baseline has no pooling, codes rows the template's."""
    widths = {"stage4": 80, "penultimate": 1280, "stage4+penultimate": 80 + 1280, BASELINE: 32 * 32 * 3}
    for row in swept.rows:
        assert row.n_features == widths[row.features]
        assert (row.model, row.pooling) == (
            ("-", "none") if row.features == BASELINE else ("efficientnet_lite0", "avg")
        )
        assert 0.0 <= row.accuracy_std <= 0.5 and 0.0 <= row.balanced_accuracy_std <= 0.5
        assert set(row.params) == {"C"} and row.seconds >= 0.0


def test_sweep_recommends_the_best_transfer_row(swept: SweepResult) -> None:
    """Check that the recommendation names the best non-baseline row and compares it with the baseline."""
    best, baseline = swept.best, swept.baseline
    assert best.features != BASELINE and best.balanced_accuracy > 0.8
    assert baseline is not None and baseline.features == BASELINE
    params = ", ".join(f"{k}={v}" for k, v in best.params.items())
    pooling = " (avg pooling)" if best.features != "penultimate" else ""
    gain = best.balanced_accuracy - baseline.balanced_accuracy
    assert swept.recommendation() == (
        f"Use efficientnet_lite0 {best.features}{pooling} with {best.head} ({params}): balanced accuracy "
        f"{best.balanced_accuracy:.4f}, accuracy {best.accuracy:.4f} (3-fold stratified CV). "
        f"Raw-pixel baseline: {baseline.balanced_accuracy:.4f} (transfer helps, {gain:+.4f})."
    )


def test_sweep_report_files(swept: SweepResult) -> None:
    """Check that the report folder holds sweep.json (the result as a dict), the chart, and the page with its chart."""
    json_path, png_path, page_path = swept.files
    assert (json_path.name, png_path.name, page_path.name) == ("sweep.json", "sweep.png", "index.html")
    assert sorted(p.name for p in json_path.parent.iterdir()) == [
        "index.html",
        "sweep.json",
        "sweep.png",
        "sweep_taps.svg",
    ]
    assert json.loads(json_path.read_text()) == json.loads(json.dumps(swept.as_dict()))
    assert png_path.read_bytes()[:4] == b"\x89PNG"


def test_sweep_on_a_validation_split(small_tree: Path, shared_cache: Path, tmp_path: Path) -> None:
    """Check that a validation split is scored once per candidate (no spread) and named in the protocol."""
    val = tmp_path / "val"
    for name in ("ants", "bees"):
        (val / name).mkdir(parents=True)
        for path in sorted((HYMENOPTERA / "val" / name).glob("*.jpg"))[:5]:
            (val / name / path.name).symlink_to(path)
    result = sweep(small_tree, layers=["penultimate"], val=val, baseline=False, codes=CNNCodes(cache=str(shared_cache)))
    assert result.protocol == f"validation split: {val}" and result.baseline is None
    assert all(r.accuracy_std is None and r.accuracy in (i / 10 for i in range(11)) for r in result.rows)
    assert all(r.balanced_accuracy_std is None for r in result.rows)
    assert not any("±" in str(cell) for row in result.table_rows(show_all=True) for cell in row)
    assert result.best.balanced_accuracy >= 0.8


@pytest.mark.parametrize(
    "option,values,layer,width",
    [("poolings", ("avg", "max"), "stage4", 80), ("precisions", ("fp32", "int8"), "penultimate", 1280)],
    ids=["pooling", "precision"],
)
def test_sweep_tries_each_value(
    small_tree: Path, shared_cache: Path, option: str, values: tuple[str, str], layer: str, width: int
) -> None:
    """Check that each pooling (or precision) gets its own rows with the same width; a non-fp32 best is named."""
    codes = CNNCodes(cache=str(shared_cache))
    result = sweep(small_tree, layers=[layer], cv=3, baseline=False, codes=codes, **{option: values})
    assert {getattr(r, option[:-1]) for r in result.rows} == set(values) and {r.n_features for r in result.rows} == {
        width
    }
    assert len(result.best_per_combination()) == 2
    assert (" at int8 with " in result.recommendation()) == (result.best.precision == "int8")


def test_sweep_groups_by_file_name(small_tree: Path, shared_cache: Path) -> None:
    """Check that a group pattern switches to group CV, and a file name it does not match is refused."""
    result = sweep(
        small_tree,
        layers=["penultimate"],
        groups=r"^(\d\d)",
        cv=3,
        baseline=False,
        codes=CNNCodes(cache=str(shared_cache)),
    )
    assert result.protocol == "3-fold stratified group CV"
    first = sorted((small_tree / "ants").iterdir())[0]
    expected = f"{first}: the group pattern '^zzz' does not match its name"
    with pytest.raises(InputError, match=re.escape(expected)):
        sweep(small_tree, layers=["penultimate"], groups="^zzz", cv=3, codes=CNNCodes(cache=str(shared_cache)))


def test_sweep_unknown_head_is_refused_before_extracting(tmp_path: Path) -> None:
    """Check that an unknown head is refused before the data is read (the folder does not even exist)."""
    expected = (
        "The 'head' parameter must be one of 'extra-trees', 'hist-gb', 'linear-svm', 'logistic', "
        "'random-forest', 'sgd'. Got 'svm' instead."
    )
    with pytest.raises(InputError, match=re.escape(expected)):
        sweep(tmp_path / "missing", heads=["logistic", "svm"])


def test_default_layer_sets_are_the_spatial_taps_then_the_default() -> None:
    """Check that a sweep without layers tries every spatial stage and the default tap, never the logits."""
    spec = cnncodes.get_backbone("efficientnet_lite0")
    expected = [t.name for t in spec.taps if t.is_spatial and t.name != "head"] + ["penultimate"]
    assert default_layer_sets("efficientnet_lite0") == expected
    assert expected[:2] == ["stage1", "stage2"] and "logits" not in expected


def test_sweep_json_fields_by_value(small_tree: Path, shared_cache: Path, tmp_path: Path) -> None:
    """Check the --json rows field by field: pooling is a name, seconds are measured, the baseline is only its rows."""
    from click.testing import CliRunner

    from cnncodes.cli import cli

    args = ["-q", "sweep", str(small_tree), "--layers", "penultimate", "--cv", "3", "--cache", str(shared_cache)]
    result = CliRunner().invoke(cli, [*args, "--format", "json"], catch_exceptions=False)
    document = json.loads(result.stdout)
    rows = document["rows"]
    assert len(rows) == 8 and {row["features"] for row in rows} == {"penultimate", BASELINE}
    for row in rows:
        assert set(row) == {
            "model", "features", "head", "params", "n_features", "accuracy", "balanced_accuracy", "pooling",
            "precision", "accuracy_std", "balanced_accuracy_std", "seconds",
        }  # fmt: skip
        assert row["pooling"] == ("none" if row["features"] == BASELINE else "avg")
        assert row["seconds"] > 0 and 0 <= row["accuracy"] <= 1 and 0 <= row["balanced_accuracy_std"] <= 0.5
        assert row["head"] == "logistic" and set(row["params"]) == {"C"} and isinstance(row["params"]["C"], float)
    assert document["best"]["features"] == "penultimate"
    swept = sweep(small_tree, layers=["penultimate"], cv=3, codes=CNNCodes(cache=str(shared_cache)))
    assert swept.baseline is not None and swept.baseline.features == BASELINE and swept.baseline.model == "-"


def test_sweep_degenerate_data_is_one_line(tmp_path: Path, shared_cache: Path) -> None:
    """Check one image per class, an invalid --groups regex and a pattern finding one group: one line each."""
    from tests.test_training import _fails, _tree

    tree = _tree(tmp_path / "tree", {"ants": 1, "bees": 1})
    code, stderr = _fails("sweep", tree, "--layers", "penultimate", "--cache", shared_cache)
    expected = "class 'ants' has 1 image; --cv 5 needs at least 2 per class: add images"
    assert (code, stderr) == (1, f"Error: {expected}\n")
    code, stderr = _fails("sweep", tree, "--groups", "(", "--cache", tmp_path / "never")
    expected = "The 'groups' pattern '(' is not a regular expression (missing ), unterminated subpattern at position 0)"
    assert (code, stderr) == (1, f"Error: {expected}\n") and not (tmp_path / "never").exists()
    small = _tree(tmp_path / "small", {"ants": 3, "bees": 3})
    code, stderr = _fails(
        "sweep", small, "--layers", "penultimate", "--cv", "3", "--groups", r"\.jpg$", "--cache", shared_cache
    )
    expected = (
        "The 'groups' pattern '\\\\.jpg$' finds one group ('.jpg') in every file name; group folds need at least 2"
    )
    assert (code, stderr[: len(expected) + 7]) == (1, f"Error: {expected}")


def test_sweep_never_recommends_a_nan_row() -> None:
    """Check that a row that could not be scored (NaN) ranks last and is never the best or the recommendation."""
    from cnncodes.selection import SweepRow, _rank

    nan = SweepRow("efficientnet_lite0", "stage4", "logistic", {"C": 1.0}, 80, float("nan"), float("nan"))
    good = SweepRow("efficientnet_lite0", "penultimate", "logistic", {"C": 0.1}, 1280, 0.9, 0.88)
    rows = sorted([nan, good], key=_rank)
    result = SweepResult(rows, "3-fold stratified CV", 40, ["ants", "bees"])
    assert result.rows == [good, nan] and result.best is good and "nan" not in result.recommendation()
