"""Evaluate: a saved model scored on labelled images or a codes file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import InputError
from .persist import ModelBundle, load_model
from .prediction import class_scores, runtime_codes
from .report import Report, make_report, write_report
from .training import load_labelled_codes

__all__ = ["EvaluationResult", "evaluate"]


@dataclass
class EvaluationResult:
    """The report of a model on labelled data."""

    report: Report
    failures: list[tuple[str, str]]
    files: list[Path] = field(default_factory=list)  # written with report_dir


def evaluate(
    model: str | Path | ModelBundle,
    data: str | Path | Sequence[str | Path],
    *,
    report_dir: str | Path | None = None,
    cache: bool | str | Path = True,
    device: str = "auto",
) -> EvaluationResult:
    """Score a saved model on labelled images or on a codes file of the same feature set.

    Returns
    -------
    EvaluationResult
        Accuracy, balanced accuracy, macro F1, top-k, per-class figures, confusion matrix.

    Raises
    ------
    InputError
        If the data holds a class the model does not know, or a codes file of
        another feature set.
    """
    bundle = model if isinstance(model, ModelBundle) else load_model(model)
    codes = runtime_codes(bundle, cache, device)
    labelled = load_labelled_codes(data, codes)
    if labelled.source is not None and labelled.spec.get("layers") != bundle.spec.get("layers"):
        message = (
            f"{labelled.source}: its codes are of another feature set than the model's; evaluate on the images instead"
        )
        raise InputError(message)
    unknown = sorted(set(labelled.class_names) - set(bundle.class_names))
    if unknown:
        message = f"{data}: classes {', '.join(unknown)} are not among the model's ({', '.join(bundle.class_names)})"
        raise InputError(message)
    remap = np.array([bundle.class_names.index(name) for name in labelled.class_names])
    y_true = remap[labelled.y]
    head = bundle.pipeline.named_steps["head"]
    scores, _ = class_scores(head, labelled.X, len(bundle.class_names))
    report = make_report(y_true, head.predict(labelled.X), bundle.class_names, scores)
    files = write_report(report, report_dir) if report_dir is not None else []
    return EvaluationResult(report, labelled.failures, files)
