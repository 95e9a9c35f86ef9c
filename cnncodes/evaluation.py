"""Evaluate: a saved model scored on labelled images or a codes file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from .errors import InputError
from .pages import ScoredImages, write_evaluation_page
from .params import RunOptions
from .persist import ModelBundle
from .prediction import class_scores, runtime_codes
from .report import Report, make_report, write_report
from .training import check_finite, load_labelled_codes

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["EvaluationResult", "evaluate"]


@dataclass
class EvaluationResult:
    """What :func:`evaluate` found: the report, the images that failed, and the files written."""

    report: Report
    failures: list[tuple[str, str]]  # (path, reason)
    files: list[Path] = field(default_factory=list)  # written with report_dir


def evaluate(
    model: str | Path | ModelBundle,
    data: str | Path | Sequence[str | Path],
    *,
    report_dir: str | Path | None = None,
    trusted: bool = False,
    **run: Unpack[RunOptions],
) -> EvaluationResult:
    """Score a saved model on labelled images or on a codes file of the same feature set.

    Parameters
    ----------
    model : str, Path or ModelBundle
        The model to score: a file that :func:`cnncodes.train` wrote, or its bundle.
    data : str, Path or sequence
        Labelled images (a class-per-folder tree, a labelled CSV) or a codes file.
    report_dir : str, Path or None, default=None
        Also write ``index.html`` there (the figures, every mistake as a thumbnail, a
        map of the codes), ``report.json`` and PNG plots (needs matplotlib).
    **run : run options
        ``cache``, ``batch_size``, ``device``, ``n_threads``, ``optimization``,
        ``n_workers``: as for :class:`cnncodes.CNNCodes` (declared in :mod:`cnncodes.params`).
    trusted : bool, default=False
        Also read a joblib (pickle) model file of the first format; it runs code
        when loaded (see :func:`cnncodes.load_model`).

    Returns
    -------
    EvaluationResult
        Accuracy, balanced accuracy, macro F1, top-k, per-class figures, confusion
        matrix; the images that failed are not scored and are listed in ``failures``.

    Raises
    ------
    InputError
        If the data holds a class the model does not know, or is a codes file of
        another feature set.

    Examples
    --------
    >>> from tempfile import TemporaryDirectory
    >>> from cnncodes import CNNCodes, train
    >>> images = Path("../shared/data/hymenoptera")
    >>> with TemporaryDirectory() as tmp:
    ...     for split, n in (("train", 6), ("val", 2)):
    ...         files = [(p, c) for c in ("ants", "bees") for p in sorted((images / split / c).glob("*"))[:n]]
    ...         _ = Path(tmp, f"{split}.csv").write_text("".join(f"{p.resolve()},{c}\\n" for p, c in files))
    ...     model = train(Path(tmp, "train.csv"), codes=CNNCodes(cache=False), cv=2).bundle
    ...     report = evaluate(model, Path(tmp, "val.csv"), cache=False).report
    >>> report.n_samples, report.class_names
    (4, ['ants', 'bees'])
    """
    bundle, codes = runtime_codes(model, "evaluate", trusted=trusted, **run)
    labelled = load_labelled_codes(data, codes)
    check_finite(labelled, data)
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
    head = bundle.pipeline.named_steps["head"]
    scores, kind = class_scores(head, labelled.X, len(bundle.class_names))
    y_true, y_pred = remap[labelled.y], np.asarray(head.predict(labelled.X))
    # Score the classes the head learned and those in the data: a class the model names but never learned
    # (an empty training folder of an older model) must not count in the macro figures as a class scoring 0.
    present = np.union1d(np.asarray(head.classes_, dtype=int), y_true).astype(int)
    position = np.full(len(bundle.class_names), -1)
    position[present] = np.arange(len(present))
    names = [bundle.class_names[c] for c in present]
    report = make_report(position[y_true], position[y_pred], names, scores[:, present])
    files = []
    if report_dir is not None:  # the page first, listed last: it needs no matplotlib
        scored = ScoredImages(labelled.paths, position[y_true], position[y_pred], scores[:, present], kind, labelled.X)
        page = write_evaluation_page(report_dir, report.as_dict(), scored, labelled.failures)
        files = [*write_report(report, report_dir), page]
    return EvaluationResult(report, labelled.failures, files)
