"""Classification metrics as tables and JSON, and PNG plots (matplotlib imported only to plot)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from .errors import CnnCodesError

__all__ = ["Report", "make_report", "write_report", "plot_sweep"]


@dataclass
class Report:
    """Metrics of predictions against true labels."""

    n_samples: int
    accuracy: float
    balanced_accuracy: float
    macro_f1: float
    class_names: list[str]
    per_class: list[dict[str, Any]]  # name, precision, recall, f1, support
    confusion_matrix: list[list[int]]  # rows: true class, columns: predicted
    top_k_accuracy: dict[str, float] = field(default_factory=dict)  # "top_3" -> accuracy

    def as_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return asdict(self)

    def table(self) -> str:
        """A readable summary: headline figures, then per-class precision, recall, F1."""
        lines = [
            f"samples {self.n_samples}  accuracy {self.accuracy:.4f}  balanced accuracy {self.balanced_accuracy:.4f}  "
            f"macro F1 {self.macro_f1:.4f}"
            + "".join(f"  {k.replace('_', '-')} {v:.4f}" for k, v in self.top_k_accuracy.items()),
        ]
        width = max(len("class"), *(len(name) for name in self.class_names))
        lines.append(f"{'class':<{width}}  precision  recall  f1      support")
        for row in self.per_class:
            lines.append(
                f"{row['name']:<{width}}  {row['precision']:9.4f}  {row['recall']:6.4f}  {row['f1']:6.4f}  {row['support']:7d}"
            )
        lines.append("confusion matrix (rows: true, columns: predicted):")
        lines += ["  " + " ".join(f"{v:6d}" for v in row) for row in self.confusion_matrix]
        return "\n".join(lines)


def make_report(
    y_true: Sequence[int], y_pred: Sequence[int], class_names: Sequence[str], scores: np.ndarray | None = None
) -> Report:
    """Compute the report of predictions ``y_pred`` (class indices) against ``y_true``.

    Parameters
    ----------
    y_true, y_pred : sequence of int
        Class indices into ``class_names``.
    class_names : sequence of str
    scores : ndarray of shape (n_samples, n_classes) or None
        Probabilities or decision scores, for top-k accuracy (k = 3, 5 when there
        are more classes than k).

    Examples
    --------
    >>> make_report([0, 1, 1], [0, 1, 0], ["ant", "bee"]).balanced_accuracy
    0.75
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    labels = list(range(len(class_names)))
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    top_k = {}
    if scores is not None:
        ranked = np.argsort(-np.asarray(scores), axis=1)
        for k in (3, 5):
            if k < len(class_names):
                top_k[f"top_{k}"] = float(np.mean([t in row[:k] for t, row in zip(y_true, ranked)]))
    return Report(
        n_samples=int(len(y_true)),
        accuracy=float(accuracy_score(y_true, y_pred)),
        balanced_accuracy=float(balanced_accuracy_score(y_true, y_pred)),
        macro_f1=float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        class_names=list(class_names),
        per_class=[
            {"name": name, "precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(class_names, precision, recall, f1, support)
        ],
        confusion_matrix=confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        top_k_accuracy=top_k,
    )


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        message = f"plots need matplotlib ({error}); install it with: pip install 'cnncodes[plot]'"
        raise CnnCodesError(message) from error
    return plt


def write_report(report: Report, folder: Path | str) -> list[Path]:
    """Write ``report.json``, ``confusion_matrix.png`` and ``per_class_f1.png`` into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    json_path = folder / "report.json"
    json_path.write_text(json.dumps(report.as_dict(), indent=2) + "\n", encoding="utf-8")
    plt = _pyplot()
    n = len(report.class_names)
    figure, axes = plt.subplots(figsize=(2 + 0.6 * n, 1.5 + 0.6 * n))
    matrix = np.asarray(report.confusion_matrix)
    axes.imshow(matrix, cmap="Blues")
    for (i, j), value in np.ndenumerate(matrix):
        axes.text(j, i, str(value), ha="center", va="center", color="black")
    axes.set_xticks(range(n), report.class_names, rotation=45, ha="right")
    axes.set_yticks(range(n), report.class_names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(f"accuracy {report.accuracy:.3f}, balanced {report.balanced_accuracy:.3f}")
    figure.tight_layout()
    confusion_path = folder / "confusion_matrix.png"
    figure.savefig(confusion_path, dpi=100)
    plt.close(figure)
    figure, axes = plt.subplots(figsize=(2 + 0.5 * n, 3))
    axes.bar(report.class_names, [row["f1"] for row in report.per_class], color="tab:blue")
    axes.set_ylim(0, 1)
    axes.set_ylabel("F1")
    axes.tick_params(axis="x", rotation=45)
    figure.tight_layout()
    f1_path = folder / "per_class_f1.png"
    figure.savefig(f1_path, dpi=100)
    plt.close(figure)
    return [json_path, confusion_path, f1_path]


def plot_sweep(rows: Sequence[dict[str, Any]], path: Path | str, ylabel: str = "balanced accuracy") -> Path:
    """A layer x head chart of scores (one group of bars per feature set, one bar per head)."""
    plt = _pyplot()
    features = list(dict.fromkeys(row["features"] for row in rows))
    heads = list(dict.fromkeys(row["head"] for row in rows))
    figure, axes = plt.subplots(figsize=(2 + 1.2 * len(features), 4))
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
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
