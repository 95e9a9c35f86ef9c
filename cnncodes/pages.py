"""The report pages: an evaluation's mistakes, a sweep's table and a collection's code map, as index.html."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from .backbones import get_backbone
from .codemap import map_codes, typical_order
from .engine import ExtractionResult
from .errors import UnknownBackboneError
from .fileio import write_text_atomic
from .htmlreport import Markup, cards, escape, gallery, page, table, thumbnail, write_page
from .svgplots import line_chart_svg, scatter_svg
from .thumbnails import write_thumbnails

__all__ = ["ScoredImages", "write_evaluation_page", "write_sweep_page", "write_extraction_page", "MAX_PER_CELL"]

MAX_PER_CELL = 40  # thumbnails per cell of mistakes; the page says how many more there are
MAX_PER_CORRECT_CELL = 12  # thumbnails per cell of correct images (the closest calls)
N_TYPICAL = 6  # most and least typical images shown per class
PAGE_NAME = "index.html"
MAP_NAME = "code_map.svg"


@dataclass
class ScoredImages:
    """The images an evaluation scored, aligned: paths, true and predicted class, class scores, codes.

    Examples
    --------
    >>> scores = np.array([[0.3, 0.7]])
    >>> one = ScoredImages(["a.jpg"], np.array([0]), np.array([1]), scores, "probability", np.ones((1, 2)))
    >>> one.margins().round(2).tolist()
    [-0.4]
    """

    paths: list[str]
    y_true: np.ndarray  # (n,) class indices
    y_pred: np.ndarray  # (n,)
    scores: np.ndarray  # (n, n_classes) probabilities or decision scores
    score_kind: str  # "probability" or "decision score"
    codes: np.ndarray  # (n, n_features)

    def margins(self) -> np.ndarray:
        """Score of the true class minus the best other score: negative for a mistake, lowest = worst."""
        scores = np.asarray(self.scores, dtype=float)
        rows = np.arange(len(scores))
        true = scores[rows, self.y_true]
        others = scores.copy()
        others[rows, self.y_true] = -np.inf
        return true - others.max(axis=1)


def _path_caption(path: str) -> str:
    """The file name under a thumbnail (the whole path is its alt text and tooltip)."""
    return f'<span class="path">{escape(Path(path).name or path)}</span>'


def _image_svg(folder: Path, name: str, text: str, caption: str) -> Markup:
    write_text_atomic(folder / name, text)
    return Markup(
        f'<figure><img class="plot" src="{name}" alt="{escape(caption)}"><figcaption>{escape(caption)}'
        "</figcaption></figure>"
    )


def _code_map(folder: Path, codes: np.ndarray, labels: np.ndarray, names: Sequence[str], marked: np.ndarray) -> Markup:
    """The map image and its caption; colour: class, black-ringed cross: marked (a mistake)."""
    code_map = map_codes(codes)
    points = [(float(x), float(y)) for x, y in code_map.points]
    svg = scatter_svg(points, labels[code_map.indices].tolist(), names, marked[code_map.indices].tolist())
    caption = f"{code_map.describe(len(codes))}: nearby points have similar codes; colour is the class"
    if marked.any():
        caption += "; a ringed cross is a misclassified image"
    return _image_svg(folder, MAP_NAME, svg, caption)


def _failures(failures: Sequence[tuple[str, str]]) -> Markup:
    if not failures:
        return Markup("<p>None: every image was read.</p>")
    items = "".join(f"<li><code>{escape(path)}</code>: {escape(reason)}</li>" for path, reason in failures)
    return Markup(f'<ul class="failures">{items}</ul>')


def _matrix(matrix: list[list[int]], names: Sequence[str]) -> Markup:
    """The confusion matrix: each non-empty cell links to its images."""
    head = "".join(f"<th>{escape(name)}</th>" for name in names)
    lines = [f'<table><tr><th class="name">true \\ predicted</th>{head}<th>total</th></tr>']
    for t, counts in enumerate(matrix):
        cells = []
        for p, count in enumerate(counts):
            css = "zero" if not count else "hit" if t == p else "miss"
            value = f'<a href="#cell-{t}-{p}">{count}</a>' if count else "0"
            cells.append(f'<td class="{css}">{value}</td>')
        lines.append(f'<tr><td class="name">{escape(names[t])}</td>{"".join(cells)}<td>{sum(counts)}</td></tr>')
    return Markup("\n".join(lines) + "</table>")


def _per_class(report: dict[str, Any]) -> Markup:
    rows = [
        [
            row["name"],
            f"{row['precision']:.4f}",
            f"{row['recall']:.4f}",
            Markup(f'<span class="bar" style="width:{80 * row["f1"]:.0f}px"></span>{row["f1"]:.4f}'),
            row["support"],
        ]
        for row in report["per_class"]
    ]
    return table(["class", "precision", "recall", "F1", "support"], rows)


def _score_caption(images: ScoredImages, i: int, names: Sequence[str]) -> Markup:
    true, pred = int(images.y_true[i]), int(images.y_pred[i])
    unit = "p" if images.score_kind == "probability" else "score"
    verdict = (
        f'<span class="wrong">{escape(names[pred])}</span> (true {escape(names[true])})'
        if true != pred
        else escape(names[pred])
    )
    figures = f"{unit} {images.scores[i, pred]:.3f}"
    if true != pred:
        figures += f", true class {images.scores[i, true]:.3f}"
    return Markup(f"{verdict}<br>{figures}<br>" + _path_caption(images.paths[i]))


def _cell_galleries(
    folder: Path, images: ScoredImages, names: Sequence[str], max_per_cell: int
) -> tuple[list[str], list[str]]:
    """A titled gallery per confusion-matrix cell, worst image first: (mistakes, correct), the worst cell first."""
    margins = images.margins()
    members = {}
    for t, p in dict.fromkeys(zip(images.y_true.tolist(), images.y_pred.tolist())):
        rows = np.flatnonzero((images.y_true == t) & (images.y_pred == p))
        members[(t, p)] = rows[np.argsort(margins[rows], kind="stable")]
    cap = {True: max_per_cell, False: min(max_per_cell, MAX_PER_CORRECT_CELL)}
    shown = {(t, p): rows[: cap[t != p]] for (t, p), rows in members.items()}
    order = [int(i) for rows in shown.values() for i in rows]
    urls = dict(zip(order, write_thumbnails([images.paths[i] for i in order], folder)))
    mistakes: list[str] = []
    correct: list[str] = []
    for (t, p), rows in sorted(shown.items(), key=lambda item: margins[item[1][0]]):
        count = len(members[(t, p)])
        title = f"true {names[t]}, predicted {names[p]}: {count} image{'s' if count != 1 else ''}"
        items = [thumbnail(urls[int(i)], _score_caption(images, int(i), names), images.paths[i]) for i in rows]
        body = f'<div class="cell"><h3 id="cell-{t}-{p}">{escape(title)}</h3>{gallery(items, count - len(items))}</div>'
        (correct if t == p else mistakes).append(body)
    return mistakes, correct


def _cells(blocks: Sequence[str]) -> str:
    """Cell galleries side by side where they fit: many small cells of a many-class matrix stay compact."""
    return f'<div class="cells">{"".join(blocks)}</div>'


def write_evaluation_page(
    folder: Path | str,
    report: dict[str, Any],
    images: ScoredImages,
    failures: Sequence[tuple[str, str]] = (),
    *,
    max_per_cell: int = MAX_PER_CELL,
) -> Path:
    """Write ``index.html`` of an evaluation: figures, confusion matrix, per-class F1, the mistakes, a code map.

    Parameters
    ----------
    folder : Path or str
        The report folder; thumbnails go to its ``thumbnails/``, the map to ``code_map.svg``.
    report : dict
        :meth:`cnncodes.report.Report.as_dict`.
    images : ScoredImages
        What was scored, in the order of the report's counts.
    failures : sequence of (path, reason), default=()
        Images that could not be read.
    max_per_cell : int, default=40
        Thumbnails shown per confusion-matrix cell, worst first (lowest margin).

    Returns
    -------
    Path
        ``folder/index.html``, beside ``code_map.svg`` and ``thumbnails/``.

    Examples
    --------
    >>> import shutil, tempfile
    >>> from cnncodes.report import make_report
    >>> folder = Path(tempfile.mkdtemp())
    >>> ants = sorted(Path("../shared/data/hymenoptera/val/ants").glob("*.jpg"))[:4]
    >>> scores = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    >>> scored = ScoredImages([str(p) for p in ants], np.zeros(4, int), scores.argmax(1), scores, "probability",
    ...                       np.random.default_rng(0).normal(size=(4, 8)))
    >>> report = make_report(scored.y_true, scored.y_pred, ["ants", "bees"], scores).as_dict()
    >>> write_evaluation_page(folder, report, scored).name
    'index.html'
    >>> sorted(p.name for p in (folder / "thumbnails").iterdir())
    ['0001.jpg', '0002.jpg', '0003.jpg', '0004.jpg']
    >>> shutil.rmtree(folder)
    """
    folder = Path(folder)
    names = report["class_names"]
    wrong = images.y_true != images.y_pred
    mistakes, correct = _cell_galleries(folder, images, names, max_per_cell)
    figures = [("images", report["n_samples"]), ("accuracy", report["accuracy"])]
    figures += [("balanced accuracy", report["balanced_accuracy"]), ("macro F1", report["macro_f1"])]
    figures += [(k.replace("_", "-") + " accuracy", v) for k, v in report["top_k_accuracy"].items()]
    figures += [("misclassified", int(wrong.sum())), ("not read", len(failures))]
    worst = "worst first: the lowest score of the true class against the best other class"
    mistakes_note = Markup(f"<p>Every misclassified image, by confusion-matrix cell, {worst}.</p>")
    correct_note = Markup("<p>The correctly classified images, the closest calls first.</p>")
    parts = [
        ("figures", "Figures", cards(figures)),
        (
            "matrix",
            "Confusion matrix",
            Markup("<p>Rows: true class; columns: predicted. Click a count to see its images.</p>")
            + _matrix(report["confusion_matrix"], names),
        ),
        ("classes", "Per class", _per_class(report)),
        (
            "mistakes",
            f"Mistakes ({int(wrong.sum())})",
            (
                mistakes_note + _cells(mistakes)
                if mistakes
                else Markup("<p>None: every image was classified correctly.</p>")
            ),
        ),
        ("map", "Map of the codes", _code_map(folder, images.codes, images.y_true, names, wrong)),
        ("correct", "Correct", correct_note + _cells(correct) if correct else Markup("<p>None.</p>")),
        ("failures", f"Not read ({len(failures)})", _failures(failures)),
    ]
    kind = {"probability": "probabilities"}.get(images.score_kind, images.score_kind + "s")
    subtitle = f"{report['n_samples']} images, {len(names)} classes; scores are {kind}"
    return write_page(page("Evaluation report", subtitle, parts), folder / PAGE_NAME)


def _tap_order(models: Iterable[str]) -> list[str]:
    """Tap names in network order: the spatial taps (cards list them earliest first), then the vectors."""
    order = []
    for model in models:
        try:
            taps = get_backbone(model).taps
        except UnknownBackboneError:  # not a zoo model: its taps keep the order of the rows
            continue
        order += [t.name for spatial in (True, False) for t in taps if t.is_spatial == spatial]
    return order


def _tap_chart(rows: Sequence[dict[str, Any]], protocol: str, baseline: float | None) -> str:
    """Balanced accuracy per single tap, earliest first: one line per model, head and pooling."""
    singles = [r for r in rows if r["model"] != "-" and "+" not in r["features"]]
    models = {r["model"] for r in singles}
    labels = list(dict.fromkeys([*_tap_order(sorted(models)), *(r["features"] for r in singles)]))
    labels = [t for t in labels if any(r["features"] == t for r in singles)]
    poolings = {r["pooling"] for r in singles}
    series = []
    for key in dict.fromkeys((r["model"], r["head"], r["pooling"]) for r in singles):
        best = {r["features"]: r for r in singles if (r["model"], r["head"], r["pooling"]) == key}
        name = " ".join(part for part, many in zip(key, (len(models) > 1, True, len(poolings) > 1)) if many)
        values = [best[t]["balanced_accuracy"] if t in best else None for t in labels]
        spreads = [best[t]["balanced_accuracy_std"] if t in best else None for t in labels]
        series.append((name, values, spreads))
    reference = ("raw pixels", baseline) if baseline is not None else None
    return line_chart_svg(labels, series, f"balanced accuracy ({protocol})", reference)


def write_sweep_page(
    folder: Path | str,
    document: dict[str, Any],
    table_rows: tuple[Sequence[str], Sequence[Sequence[Any]]],
    best_rows: Sequence[dict[str, Any]],
) -> Path:
    """Write ``index.html`` of a sweep: the recommendation, a chart per tap, and the ranked table.

    Parameters
    ----------
    folder : Path or str
        The report folder; the chart goes to ``sweep_taps.svg``.
    document : dict
        :meth:`cnncodes.selection.SweepResult.as_dict`.
    table_rows : (headers, rows)
        The ranked table as the command line shows it, best first.
    best_rows : sequence of dict
        The best hyperparameter row of each combination, as in ``document["rows"]``.

    Returns
    -------
    Path
        ``folder/index.html``, beside ``sweep_taps.svg``.

    Examples
    --------
    See :func:`cnncodes.sweep`.
    """
    folder = Path(folder)
    baseline = next((r["balanced_accuracy"] for r in best_rows if r["model"] == "-"), None)
    chart = _tap_chart(best_rows, document["protocol"], baseline)
    caption = "Balanced accuracy of each single tap, earliest first"
    caption += ", bars: the spread across folds" if document["protocol"].endswith("CV") else ""
    headers, rows = table_rows
    classes = ["best" if i == 0 else "baseline" if row[1] == "-" else "" for i, row in enumerate(rows)]
    spread = (
        "± is the standard deviation across the CV folds."
        if document["protocol"].endswith("CV")
        else ("One validation split: one score per row, no spread.")
    )
    parts = [
        ("recommendation", "Recommendation", Markup(f'<p class="rec">{escape(document["recommendation"])}</p>')),
        ("taps", "Score per tap", _image_svg(folder, "sweep_taps.svg", chart, caption)),
        (
            "table",
            "Ranked candidates",
            Markup(f"<p>{escape(spread)}</p>") + table(headers, rows, row_classes=classes, names=6),
        ),
    ]
    subtitle = f"{document['n_samples']} images, {len(document['class_names'])} classes, {document['protocol']}"
    return write_page(page("Sweep report", subtitle, parts), folder / PAGE_NAME)


def write_extraction_page(folder: Path | str, result: ExtractionResult, *, n_typical: int = N_TYPICAL) -> Path:
    """Write ``index.html`` of an extraction: counts, a code map, each class's most and least typical images.

    Parameters
    ----------
    folder : Path or str
        The report folder.
    result : ExtractionResult
        What :func:`cnncodes.extract` returned; without labels all images are one group.
    n_typical : int, default=6
        Images shown at each end of every class.

    Returns
    -------
    Path
        ``folder/index.html``; the map and the thumbnails lie beside it.

    Examples
    --------
    See :func:`cnncodes.extract`.
    """
    folder = Path(folder)
    labels = result.labels if result.labels is not None else np.zeros(len(result.paths), int)
    names = list(result.class_names) if result.class_names else ["all images"]
    order = typical_order(result.codes, labels) if len(result.paths) else {}
    picks = {
        label: (rows[:n_typical], rows[::-1][: max(0, min(n_typical, len(rows) - n_typical))])
        for label, (rows, _) in order.items()
    }
    distance = {int(r): float(d) for rows, ds in order.values() for r, d in zip(rows, ds)}
    chosen = list(dict.fromkeys(int(r) for near, far in picks.values() for r in (*near, *far)))
    urls = dict(zip(chosen, write_thumbnails([result.paths[i] for i in chosen], folder)))

    def items(rows: np.ndarray) -> list[str]:
        captions = [f"distance {distance[int(r)]:.3f}<br>" + _path_caption(result.paths[r]) for r in rows]
        return [thumbnail(urls[int(r)], Markup(c), result.paths[r]) for r, c in zip(rows, captions)]

    grid = []
    for label, (near, far) in picks.items():
        grid.append(f"<h3>{escape(names[label])} ({len(order[label][0])} images)</h3><p>Most typical</p>")
        grid.append(gallery(items(near)))
        if len(far):
            grid.append("<p>Least typical (farthest first)</p>" + gallery(items(far)))
    options = result.spec.get("options", {})
    figures = [("images", result.n_images), ("from cache", result.n_from_cache), ("failed", result.n_failed)]
    figures += [("code length", int(result.codes.shape[1])), ("classes", len(order))]
    empty = np.zeros(len(result.paths), bool)
    map_part = (
        _code_map(folder, result.codes, labels, names, empty) if len(result.paths) else Markup("<p>No codes.</p>")
    )
    note = (
        "Distance of each image's L2-normalized code to its class mean: near = typical, far = unusual or mislabelled."
    )
    parts = [
        ("figures", "Figures", cards(figures)),
        ("map", "Map of the codes", map_part),
        ("typical", "Most and least typical images", Markup(f"<p>{escape(note)}</p>" + "".join(grid))),
        ("failures", f"Failed ({result.n_failed})", _failures(result.failures)),
    ]
    layer = options.get("layer")
    subtitle = f"{options.get('model', 'model')} {'+'.join(layer) if isinstance(layer, list) else layer or ''}: "
    return write_page(page("Extraction report", subtitle + result.summary(), parts), folder / PAGE_NAME)
