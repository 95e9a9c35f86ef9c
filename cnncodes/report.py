"""Classification metrics as tables and JSON, and PNG plots (matplotlib imported only to plot)."""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from .errors import MissingExtraError
from .extras import import_extra
from .fileio import atomic_path, write_text_atomic

__all__ = ["Report", "make_report", "write_report", "write_json", "plot_sweep", "has_matplotlib"]

_TOP_K = (3, 5)  # top-k accuracies reported when there are more classes than k
_DPI = 100


@dataclass
class Report:
    """Metrics of predictions against true labels.

    Examples
    --------
    >>> print(make_report([0, 1, 1], [0, 1, 0], ["ant", "bee"]).table())
    samples 3  accuracy 0.6667  balanced accuracy 0.7500  macro F1 0.6667
    class  precision  recall  f1      support
    ant       0.5000  1.0000  0.6667        1
    bee       1.0000  0.5000  0.6667        2
    confusion matrix (rows: true, columns: predicted):
           1      0
           1      1
    """

    n_samples: int
    accuracy: float
    balanced_accuracy: float
    macro_f1: float
    class_names: list[str]
    per_class: list[dict[str, Any]]  # name, precision, recall, f1, support
    confusion_matrix: list[list[int]]  # rows: true class, columns: predicted
    top_k_accuracy: dict[str, float] = field(default_factory=dict)  # "top_3" -> accuracy
    absent_classes: list[str] = field(default_factory=list)  # no image, never predicted: left out of the averages

    def as_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return asdict(self)

    def table(self) -> str:
        """A readable summary: headline figures, then per-class precision, recall, F1, the confusion matrix."""
        top_k = "".join(f"  {k.replace('_', '-')} {v:.4f}" for k, v in self.top_k_accuracy.items())
        lines = [
            f"samples {self.n_samples}  accuracy {self.accuracy:.4f}  balanced accuracy {self.balanced_accuracy:.4f}  "
            f"macro F1 {self.macro_f1:.4f}{top_k}",
        ]
        if self.absent_classes:
            names = ", ".join(map(repr, self.absent_classes))
            lines.append(
                f"class {names}: no image here and never predicted; left out of balanced accuracy and macro F1"
            )
        width = max(len("class"), *(len(name) for name in self.class_names))
        lines.append(f"{'class':<{width}}  precision  recall  f1      support")
        for row in self.per_class:
            figures = f"{row['precision']:9.4f}  {row['recall']:6.4f}  {row['f1']:6.4f}  {row['support']:7d}"
            lines.append(f"{row['name']:<{width}}  {figures}")
        lines.append("confusion matrix (rows: true, columns: predicted):")
        lines += ["  " + " ".join(f"{v:6d}" for v in row) for row in self.confusion_matrix]
        return "\n".join(lines)


def make_report(
    y_true: Sequence[int], y_pred: Sequence[int], class_names: Sequence[str], scores: np.ndarray | None = None
) -> Report:
    """Compute the report of predictions ``y_pred`` (class indices) against ``y_true``.

    Parameters
    ----------
    y_true : sequence of int
        True class indices into ``class_names``.
    y_pred : sequence of int
        Predicted class indices into ``class_names``.
    class_names : sequence of str
        The name of each class index.
    scores : ndarray of shape (n_samples, n_classes) or None, default=None
        Probabilities or decision scores, for top-k accuracy (k = 3, 5 when there
        are more classes than k).

    Returns
    -------
    Report

    Examples
    --------
    >>> make_report([0, 1, 1], [0, 1, 0], ["ant", "bee"]).balanced_accuracy
    0.75
    >>> only_bees = make_report([1, 1], [1, 1], ["ant", "bee"])
    >>> only_bees.macro_f1, only_bees.absent_classes
    (1.0, ['ant'])
    >>> scores = np.tile([0.1, 0.2, 0.3, 0.4], (4, 1))  # every row ranks d, c, b, a
    >>> make_report([0, 1, 2, 3], [3, 3, 3, 3], list("abcd"), scores).top_k_accuracy
    {'top_3': 0.75}
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    labels = list(range(len(class_names)))
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    predicted = set(y_pred.tolist())
    seen = [c for c in labels if support[c] or c in predicted]  # as scikit-learn's macro F1 without labels
    top_k = {}
    if scores is not None:
        ranked = np.argsort(-np.asarray(scores), axis=1, kind="stable")
        for k in _TOP_K:
            if k < len(class_names):
                top_k[f"top_{k}"] = float(np.mean([t in row[:k] for t, row in zip(y_true, ranked)]))
    return Report(
        n_samples=int(len(y_true)),
        accuracy=float(accuracy_score(y_true, y_pred)),
        # balanced_accuracy_score's figure (mean recall of the classes present), without its warning when the
        # data holds only some of the model's classes
        balanced_accuracy=float(np.mean(recall[support > 0])) if support.any() else 0.0,
        macro_f1=float(f1_score(y_true, y_pred, labels=seen, average="macro", zero_division=0)) if seen else 0.0,
        class_names=list(class_names),
        per_class=[
            {"name": name, "precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(class_names, precision, recall, f1, support)
        ],
        confusion_matrix=confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        top_k_accuracy=top_k,
        absent_classes=[class_names[c] for c in labels if c not in seen],
    )


def write_json(document: Any, path: Path | str) -> Path:
    """Write plain JSON data to ``path`` as indented JSON with a final newline, atomically; return ``path``.

    >>> import shutil, tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> write_json({"accuracy": 1.0}, folder / "report.json").read_text()
    '{\\n  "accuracy": 1.0\\n}\\n'
    >>> shutil.rmtree(folder)
    """
    return write_text_atomic(path, json.dumps(document, indent=2) + "\n")


def has_matplotlib(folder: Path) -> bool:
    """Whether PNG plots can be drawn; if not, one warning that ``folder`` gets the JSON and HTML files only."""
    try:
        import_extra("matplotlib", "plot", "PNG plots")
    except MissingExtraError as error:
        warnings.warn(f"{folder}: PNG plots skipped ({error})", stacklevel=3)
        return False
    return True


def _new_figure(width: float, height: float) -> Any:
    """A matplotlib Figure drawn by its own canvas: no pyplot, so the user's backend and figures are untouched."""
    import_extra("matplotlib", "plot", "plotting")
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def _save_png(figure: Any, path: Path) -> Path:
    figure.tight_layout()
    with atomic_path(path, suffix=".png") as temporary:
        figure.savefig(temporary, dpi=_DPI, format="png")
    return path


def write_report(report: Report, folder: Path | str) -> list[Path]:
    """Write ``report.json``, ``confusion_matrix.png`` and ``per_class_f1.png`` into ``folder``.

    Parameters
    ----------
    report : Report
        What :func:`make_report` computed.
    folder : Path or str
        Created if missing; files there of the same names are replaced.

    Returns
    -------
    list of Path
        The three files, in that order; only ``report.json`` without matplotlib (the
        ``plot`` extra), with one warning that the PNG plots were skipped.

    Examples
    --------
    >>> import shutil, tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> files = write_report(make_report([0, 1, 1], [0, 1, 0], ["ant", "bee"]), folder)
    >>> [path.name for path in files]
    ['report.json', 'confusion_matrix.png', 'per_class_f1.png']
    >>> shutil.rmtree(folder)
    """
    folder = Path(folder)
    json_path = write_json(report.as_dict(), folder / "report.json")
    if not has_matplotlib(folder):
        return [json_path]
    n = len(report.class_names)
    figure = _new_figure(2 + 0.6 * n, 1.5 + 0.6 * n)
    axes = figure.add_subplot()
    matrix = np.asarray(report.confusion_matrix)
    axes.imshow(matrix, cmap="Blues")
    for (i, j), value in np.ndenumerate(matrix):
        axes.text(j, i, str(value), ha="center", va="center", color="black")
    axes.set_xticks(range(n), report.class_names, rotation=45, ha="right")
    axes.set_yticks(range(n), report.class_names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(f"accuracy {report.accuracy:.3f}, balanced {report.balanced_accuracy:.3f}")
    confusion_path = _save_png(figure, folder / "confusion_matrix.png")
    figure = _new_figure(2 + 0.5 * n, 3)
    axes = figure.add_subplot()
    axes.bar(report.class_names, [row["f1"] for row in report.per_class], color="tab:blue")
    axes.set_ylim(0, 1)
    axes.set_ylabel("F1")
    axes.tick_params(axis="x", rotation=45)
    f1_path = _save_png(figure, folder / "per_class_f1.png")
    return [json_path, confusion_path, f1_path]


def plot_sweep(rows: Sequence[dict[str, Any]], path: Path | str, ylabel: str = "balanced accuracy") -> Path:
    """A feature set x head chart of scores: one group of bars per feature set, one bar per head.

    Parameters
    ----------
    rows : sequence of dict
        Each with ``features`` (str), ``head`` (str) and ``accuracy`` (float); a missing
        (features, head) pair draws as 0.
    path : Path or str
        The PNG file.
    ylabel : str, default="balanced accuracy"
        What the scores are.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    MissingExtraError
        If matplotlib is not installed.

    Examples
    --------
    >>> import shutil, tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> rows = [{"features": "stage4", "head": "logistic", "accuracy": 0.9}]
    >>> plot_sweep(rows, folder / "sweep.png").read_bytes()[:4]
    b'\\x89PNG'
    >>> shutil.rmtree(folder)
    """
    features = list(dict.fromkeys(row["features"] for row in rows))
    heads = list(dict.fromkeys(row["head"] for row in rows))
    figure = _new_figure(2 + 1.2 * len(features), 4)
    axes = figure.add_subplot()
    width = 0.8 / max(len(heads), 1)
    for h, head in enumerate(heads):
        values = [
            next((r["accuracy"] for r in rows if r["features"] == f and r["head"] == head), 0.0) for f in features
        ]
        axes.bar(np.arange(len(features)) + h * width, values, width, label=head)
    axes.set_xticks(np.arange(len(features)) + width * (len(heads) - 1) / 2, features, rotation=30, ha="right")
    axes.set_ylabel(ylabel)
    low = min((r["accuracy"] for r in rows), default=0.0)
    axes.set_ylim(max(0.0, low - 0.05), 1.0)
    axes.legend(fontsize="small")
    return _save_png(figure, Path(path))
