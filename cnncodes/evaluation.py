"""Evaluate: a saved model scored on labelled images or a codes file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import InputError
from .params import default
from .persist import ModelBundle, load_model
from .prediction import class_scores, runtime_codes
from .report import Report, make_report, write_report
from .training import check_finite, load_labelled_codes

__all__ = ["EvaluationResult", "evaluate"]


@dataclass
class EvaluationResult:
    """The report of a model on labelled data, the images that failed, and the files written.

    Examples
    --------
    See :func:`evaluate`.
    """

    report: Report
    failures: list[tuple[str, str]]  # (path, reason)
    files: list[Path] = field(default_factory=list)  # written with report_dir


def evaluate(
    model: str | Path | ModelBundle,
    data: str | Path | Sequence[str | Path],
    *,
    report_dir: str | Path | None = None,
    cache: bool | str | Path = default("cache"),
    batch_size: int | None = default("batch_size"),
    device: str = default("device"),
    n_threads: int | None = default("n_threads"),
    optimization: str = default("optimization"),
    n_workers: int | None = default("n_workers"),
    trusted: bool = False,
) -> EvaluationResult:
    """Score a saved model on labelled images or on a codes file of the same feature set.

    Parameters
    ----------
    model : str, Path or ModelBundle
        A model file from :func:`cnncodes.train`, or its bundle.
    data : str, Path or sequence
        Labelled images (a class-per-folder tree, a labelled CSV) or a codes file.
    report_dir : str, Path or None, default=None
        Also write ``report.json`` and PNG plots there (needs matplotlib).
    cache : bool, str or Path, default=True
        As for :class:`cnncodes.CNNCodes`; so are the other run parameters.
    batch_size : int or None, default=None
        Model inputs per inference call; None: 8 on the CPU, 64 on a GPU.
    device : {"auto", "cpu", "cuda", "tensorrt"}, default="auto"
        Execution provider.
    n_threads : int or None, default=None
        onnxruntime intra-op threads; None: every core.
    optimization : {"disable", "basic", "extended", "all"}, default="all"
        onnxruntime graph optimization level.
    n_workers : int or None, default=None
        Decode threads; None: one per core.
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
    >>> import shutil, tempfile
    >>> from cnncodes import CNNCodes, train
    >>> folder = Path(tempfile.mkdtemp())
    >>> images = Path("../shared/data/hymenoptera")
    >>> for split, n in (("train", 6), ("val", 2)):
    ...     files = [(p, c) for c in ("ants", "bees") for p in sorted((images / split / c).glob("*"))[:n]]
    ...     _ = (folder / f"{split}.csv").write_text("".join(f"{p.resolve()},{c}\\n" for p, c in files))
    >>> model = train(folder / "train.csv", codes=CNNCodes(cache=False), cv=2).bundle
    >>> report = evaluate(model, folder / "val.csv", cache=False).report
    >>> report.n_samples, report.class_names
    (4, ['ants', 'bees'])
    >>> shutil.rmtree(folder)
    """
    bundle = model if isinstance(model, ModelBundle) else load_model(model, trusted=trusted)
    run = dict(cache=cache, batch_size=batch_size, device=device, n_threads=n_threads, optimization=optimization)
    labelled = load_labelled_codes(data, runtime_codes(bundle, **run, n_workers=n_workers))
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
    scores, _ = class_scores(head, labelled.X, len(bundle.class_names))
    y_true, y_pred = remap[labelled.y], np.asarray(head.predict(labelled.X))
    # Score the classes the head learned and those in the data: a class the model names but never learned
    # (an empty training folder of an older model) must not count in the macro figures as a class scoring 0.
    present = np.union1d(np.asarray(head.classes_, dtype=int), y_true).astype(int)
    position = np.full(len(bundle.class_names), -1)
    position[present] = np.arange(len(present))
    names = [bundle.class_names[c] for c in present]
    report = make_report(position[y_true], position[y_pred], names, scores[:, present])
    files = write_report(report, report_dir) if report_dir is not None else []
    return EvaluationResult(report, labelled.failures, files)
