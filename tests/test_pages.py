"""End-to-end tests of the report pages: real images, the real default backbone, rendered in headless Chromium."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from click.testing import CliRunner

import cnncodes
from cnncodes.cli import cli
from cnncodes.pages import ScoredImages, write_evaluation_page
from cnncodes.report import make_report
from cnncodes.selection import sweep
from tests.browser import render
from tests.conftest import HYMENOPTERA
from tests.conftest import session_model, session_tree

pytestmark = pytest.mark.usefixtures("default_backbone")

HOSTILE = '<img src=x onerror=alert(1)> & "bee".jpg'  # a legal file name that breaks a page which does not escape
ESCAPED = "&lt;img src=x onerror=alert(1)&gt; &amp; &quot;bee&quot;.jpg"


@pytest.fixture(scope="module")
def val_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real validation split (153 images) linked into a tree, and a broken file of a hostile name."""
    root = tmp_path_factory.mktemp("val-tree")
    for name in ("ants", "bees"):
        (root / name).mkdir()
        for path in sorted((HYMENOPTERA / "val" / name).glob("*.jpg")):
            (root / name / path.name).symlink_to(path)
    (root / "bees" / HOSTILE).write_bytes(b"not an image at all")
    return root


@pytest.fixture
def screenshots(capsys: pytest.CaptureFixture[str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A folder kept after the run for the screenshots; their paths are printed on the terminal (and in CI logs)."""
    folder = tmp_path_factory.mktemp("screenshots")
    yield folder
    with capsys.disabled():
        for path in sorted(folder.glob("*.png")):
            print(f"\nreport screenshot: {path}")


def assert_renders(page: Path, screenshot: Path, n_images: int) -> str:
    """Check the page as a person sees it: drawn, every image loaded, nothing on the console; return its text."""
    rendered = render(page, screenshot)
    assert rendered.ink() > 0.05, f"{screenshot} is (nearly) blank"
    assert len(rendered.images) == n_images
    broken = [image["src"] for image in rendered.images if not (image["complete"] and image["width"] > 0)]
    assert broken == [] and rendered.errors == [] and rendered.console == []
    text = page.read_text()
    assert not re.search(r'(src|href)="(https?:)?//', text), "the page must not reach the network"
    return text


def test_evaluate_report_page_in_a_browser(
    val_tree: Path, shared_cache: Path, tmp_path_factory: pytest.TempPathFactory, screenshots: Path
) -> None:
    """Check that evaluate --report writes a page with figures, anchored matrix cells, every mistake and a map."""
    model = session_model(tmp_path_factory)
    folder = tmp_path_factory.mktemp("evaluate-report")
    result = cnncodes.evaluate(model, val_tree, cache=str(shared_cache), report_dir=folder)
    report = result.report
    assert report.n_samples == 153 and [path for path, _ in result.failures] == [str(val_tree / "bees" / HOSTILE)]
    n_wrong = report.n_samples - int(np.trace(report.confusion_matrix))
    assert 0 < n_wrong < 25  # a real head on real images: some mistakes, each shown
    n_correct_shown = sum(min(12, report.confusion_matrix[i][i]) for i in range(2))
    text = assert_renders(folder / "index.html", screenshots / "evaluate.png", n_wrong + n_correct_shown + 1)
    for t in range(2):
        for p in range(2):
            if report.confusion_matrix[t][p]:
                assert f'href="#cell-{t}-{p}"' in text and f'id="cell-{t}-{p}"' in text
    assert text.count('class="wrong"') == n_wrong and HOSTILE not in text and ESCAPED in text
    assert 'src="code_map.svg"' in text and "t-SNE map of 153 codes" in text
    assert f"{report.balanced_accuracy:.4f}" in text


def test_evaluation_page_caps_thumbnails_per_cell(tmp_path: Path) -> None:
    """Check that a cell with more images than the cap shows the worst ones and says how many are not shown."""
    paths = [str(p) for p in sorted((HYMENOPTERA / "val" / "ants").glob("*.jpg"))[:10]]
    scores = np.column_stack([np.linspace(0.05, 0.45, 10), 1 - np.linspace(0.05, 0.45, 10)])  # all called bees
    codes = np.random.default_rng(0).normal(size=(10, 16))
    images = ScoredImages(paths, np.zeros(10, int), np.ones(10, int), scores, "probability", codes)
    report = make_report(images.y_true, images.y_pred, ["ants", "bees"], scores).as_dict()
    text = write_evaluation_page(tmp_path, report, images, max_per_cell=3).read_text()
    assert text.count('class="wrong"') == 3 and "7 more images not shown." in text
    shown = re.findall(r'<img src="thumbnails/\d+\.jpg" alt="([^"]+)"', text)
    assert shown == paths[:3]  # the lowest scores of the true class first
    assert len(list((tmp_path / "thumbnails").iterdir())) == 3


def test_sweep_report_page_in_a_browser(
    shared_cache: Path, tmp_path_factory: pytest.TempPathFactory, screenshots: Path
) -> None:
    """Check that sweep --report writes the ranked table (recommendation first, ± only with CV) and a per-tap chart."""
    folder = tmp_path_factory.mktemp("sweep-report")
    result = sweep(
        session_tree(tmp_path_factory),
        layers=["stage3", "stage4", "penultimate"],
        heads=["logistic", "linear-svm"],
        codes=cnncodes.CNNCodes(cache=str(shared_cache)),
        cv=3,
        report_dir=folder,
    )
    assert [p.name for p in result.files] == ["sweep.json", "sweep.png", "index.html"]
    text = assert_renders(folder / "index.html", screenshots / "sweep.png", 1)
    assert text.index('class="rec"') < text.index("<table") and 'src="sweep_taps.svg"' in text
    best = result.best
    first_row = re.search(r'<tr class="best">(.*?)</tr>', text).group(1)
    assert f"{best.balanced_accuracy:.4f} ±{best.balanced_accuracy_std:.3f}" in first_row
    chart = (folder / "sweep_taps.svg").read_text()
    assert chart.index("stage3") < chart.index("stage4") < chart.index("penultimate") and "raw pixels" in chart


def test_sweep_on_a_validation_split_shows_no_spread(
    shared_cache: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Check that with a validation split neither the CLI table, the JSON nor the page shows a "±"."""
    tree, folder = session_tree(tmp_path_factory), tmp_path_factory.mktemp("sweep-val")
    val = HYMENOPTERA / "val"
    args = ["-q", "sweep", str(tree), "--layers", "penultimate", "--val", str(val), "--no-baseline"]
    result = CliRunner().invoke(cli, [*args, "--cache", str(shared_cache), "--report", str(folder)])
    assert result.exit_code == 0, result.output
    assert "±" not in result.stdout and "balanced" in result.stdout
    document = (folder / "sweep.json").read_text()
    assert '"accuracy_std": null' in document and "±" not in (folder / "index.html").read_text()


def test_extract_report_page_in_a_browser(
    val_tree: Path, shared_cache: Path, tmp_path_factory: pytest.TempPathFactory, screenshots: Path
) -> None:
    """Check that extract --report maps the codes and shows each class's most and least typical images."""
    folder = tmp_path_factory.mktemp("extract-report")
    args = ["-q", "extract", str(val_tree), "--cache", str(shared_cache), "--report", str(folder)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 3  # the broken file
    text = assert_renders(folder / "index.html", screenshots / "extract.png", 1 + 2 * 2 * 6)
    assert text.count("Most typical") == 2 and text.count("Least typical") == 2
    assert HOSTILE not in text and ESCAPED in text and "t-SNE map of 153 codes" in text


def test_extract_report_without_labels_is_one_group(shared_cache: Path, tmp_path: Path) -> None:
    """Check that images without labels form one group: typical and least typical ends, no overlap between them."""
    files = sorted((HYMENOPTERA / "val" / "bees").glob("*.jpg"))[:9]
    result = cnncodes.extract(files, cache=str(shared_cache), progress=False, report_dir=tmp_path / "report")
    assert result.labels is None and result.n_failed == 0
    text = (tmp_path / "report" / "index.html").read_text()
    assert "<h3>all images (9 images)</h3>" in text and "t-SNE map of 9 codes" in text
    near, far = text.split("Least typical")
    assert near.count('class="thumb"') == 6 and far.count('class="thumb"') == 3  # 9 images: 6 typical, 3 left
    assert len(list((tmp_path / "report" / "thumbnails").iterdir())) == 9
