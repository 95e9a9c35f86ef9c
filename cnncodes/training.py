"""Train: labelled images or codes files in, a fitted pipeline (saved as a model file) out."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any, Sequence

import numpy as np
from sklearn.base import clone
from sklearn.linear_model import SGDClassifier
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.utils.class_weight import compute_class_weight

from .codesfile import CodesFile, iter_codes_file, looks_like_codes_file, read_codes_file
from .datasets import load_dataset
from .distributed import check_cluster, dask_backend
from .errors import InputError
from .fileio import refuse_overwriting_an_input
from .featurespec import options_of_codes_spec
from .heads import (
    OUT_OF_CORE_PARAMS,
    check_head,
    check_params,
    fit_out_of_core,
    make_head,
    search_out_of_core,
    selection_metric,
)
from .persist import ModelBundle, save_model
from .transformer import CNNCodes

__all__ = [
    "LabelledCodes",
    "load_labelled_codes",
    "check_labelled",
    "check_finite",
    "choose_folds",
    "TrainResult",
    "train",
]

logger = logging.getLogger("cnncodes")


@dataclass
class LabelledCodes:
    """Codes with labels, from images (extracted, cached) or from a codes file.

    Examples
    --------
    See :func:`load_labelled_codes`.
    """

    X: np.ndarray
    y: np.ndarray
    class_names: list[str]
    paths: list[str]
    codes: CNNCodes  # fitted: makes the same codes from images
    spec: dict[str, Any]
    failures: list[tuple[str, str]] = field(default_factory=list)
    source: Path | None = None  # the codes file, when the codes came from one


def _codes_from_spec(spec: dict[str, Any], template: CNNCodes) -> CNNCodes:
    """The CNNCodes that makes the codes a codes file holds: its feature set, the template's run options."""
    return CNNCodes(**{**template.get_params(), **options_of_codes_spec(spec)})


def load_labelled_codes(
    data: str | Path | Sequence[str | Path], codes: CNNCodes | None = None, *, read_codes: bool = True
) -> LabelledCodes:
    """Codes and labels of a class-per-folder tree, a labelled CSV, or a codes file written by ``extract``.

    Parameters
    ----------
    data : str, Path or sequence
        Images with labels, or an HDF5 codes file (its feature set wins over ``codes``).
    codes : CNNCodes or None, default=None
        How images become codes (None: ``CNNCodes()``); bad images get no row and are
        listed in ``failures``.
    read_codes : bool, default=True
        For a codes file, False reads only its labels and metadata (out-of-core training).

    Returns
    -------
    LabelledCodes
        ``X`` (n_samples, n_features) float32, ``y`` class indices into ``class_names``,
        and ``codes``, a fitted CNNCodes that makes the same codes from images.

    Raises
    ------
    InputError
        If the data has no labels.

    Examples
    --------
    >>> import shutil, tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> images = sorted(Path("../shared/data/hymenoptera/val/bees").glob("*.jpg"))[:2]
    >>> _ = (folder / "labels.csv").write_text("".join(f"{path.resolve()},bees\\n" for path in images))
    >>> labelled = load_labelled_codes(folder / "labels.csv", CNNCodes(cache=False))
    >>> labelled.X.shape, labelled.y.tolist(), labelled.class_names
    ((2, 1280), [0, 0], ['bees'])
    >>> shutil.rmtree(folder)
    """
    template = codes if codes is not None else CNNCodes()
    single = Path(data) if isinstance(data, (str, Path)) else None
    if single is not None and single.is_file() and looks_like_codes_file(single):
        content = _read_labelled_codes_file(single, read_codes)
        try:
            transformer = _codes_from_spec(content.spec, template).fit()
        except (TypeError, AttributeError) as error:
            message = f"{single}: its spec does not describe a feature set ({error})"
            raise InputError(message) from error
        return LabelledCodes(
            content.codes,
            content.labels,
            content.class_names,
            content.paths,
            transformer,
            content.spec,
            content.failures,
            single,
        )
    dataset = load_dataset(data)
    if dataset.labels is None or dataset.class_names is None:
        message = f"{data}: no labels; give a folder with one subfolder per class, or a CSV of path,label rows"
        raise InputError(message)
    # Labels come with the images, so a bad image is dropped with its label: skip it, list it in failures.
    result = clone(template).set_params(on_error="skip").fit().extract(dataset)
    transformer = clone(template).fit()
    return LabelledCodes(
        result.codes, result.labels, dataset.class_names, result.paths, transformer, result.spec, result.failures
    )


def _read_labelled_codes_file(path: Path, read_codes: bool) -> CodesFile:
    """A codes file's content, refused in one line unless its datasets are complete and consistent."""
    content = read_codes_file(path, with_codes=read_codes)  # a damaged file: its one-line CacheFormatError
    if content.labels is None or content.class_names is None:
        message = f"{path}: the codes file has no labels; extract from a class-per-folder tree or a labelled CSV"
        raise InputError(message)
    n_rows = {"codes": len(content.codes), "paths": len(content.paths), "labels": len(content.labels)}
    if len(set(n_rows.values())) > 1:
        counts = ", ".join(f"{n} {name}" for name, n in n_rows.items())
        message = f"{path}: its datasets disagree in length ({counts})"
        raise InputError(message)
    if not isinstance(content.spec, dict) or not content.spec.get("layers"):
        message = f"{path}: its spec names no layers; extract the codes again"
        raise InputError(message)
    labels = np.asarray(content.labels)
    outside = np.flatnonzero((labels < 0) | (labels >= len(content.class_names))) if labels.dtype.kind in "iu" else []
    if labels.dtype.kind not in "iu" or len(outside):
        where = f"label {labels[outside[0]]} of {content.paths[outside[0]]}" if len(outside) else "labels"
        message = f"{path}: {where} is not an index into its {len(content.class_names)} class_names"
        raise InputError(message)
    return content


def check_labelled(labelled: LabelledCodes, data: object, *, n_classes_min: int = 2) -> None:
    """Refuse, in one line, labelled data no classifier can be trained on, or trained on correctly.

    Parameters
    ----------
    labelled : LabelledCodes
        From :func:`load_labelled_codes`.
    data : object
        What to name in the message.
    n_classes_min : int, default=2
        Classes that must have images.

    Raises
    ------
    InputError
        If a label is the empty string, a class has no images (an empty class folder:
        the head would learn fewer classes than the model reports), fewer than
        ``n_classes_min`` classes have images, or a code is NaN or infinite.

    Examples
    --------
    >>> codes = CNNCodes()
    >>> one = LabelledCodes(np.zeros((2, 1), np.float32), np.array([0, 0]), ["ants"], ["a", "b"], codes, {})
    >>> check_labelled(one, "train/")
    Traceback (most recent call last):
    ...
    cnncodes.errors.InputError: train/: only one class ('ants') has images; a classifier needs at least two
    """
    names, y = labelled.class_names, np.asarray(labelled.y)
    if "" in names:
        rows = np.flatnonzero(y == names.index(""))
        where = labelled.paths[int(rows[0])] if len(rows) else "a row"
        message = f"{data}: {where} has an empty label; give every row a label"
        raise InputError(message)
    counts = np.bincount(y, minlength=len(names)) if len(y) else np.zeros(len(names), int)
    empty = [name for name, count in zip(names, counts) if not count]
    if empty and len(names) - len(empty) >= n_classes_min:
        message = (
            f"{data}: class {', '.join(map(repr, empty))} has no images (no file, or every file failed); "
            "remove it or add images"
        )
        raise InputError(message + _failed_files(labelled))
    present = [name for name, count in zip(names, counts) if count]
    if len(present) < n_classes_min:
        which = f"only one class ({present[0]!r}) has" if present else "no class has"
        message = f"{data}: {which} images; a classifier needs at least two"
        raise InputError(message + _failed_files(labelled))
    check_finite(labelled, data)


def _failed_files(labelled: LabelledCodes) -> str:
    """What the refusal adds when files failed: their number and the first reason (the rest are not reported then)."""
    if not labelled.failures:
        return ""
    path, reason = labelled.failures[0]
    first = reason if reason.startswith(path) else f"{path}: {reason}"
    return f" ({len(labelled.failures)} file(s) failed; the first: {first})"


def check_finite(labelled: LabelledCodes, data: object) -> None:
    """Refuse codes that are NaN or infinite (a damaged codes file), naming the first such image.

    Examples
    --------
    >>> bad = LabelledCodes(np.array([[np.nan]]), np.array([0]), ["ants"], ["a.jpg"], CNNCodes(), {})
    >>> check_finite(bad, "codes.h5")
    Traceback (most recent call last):
    ...
    cnncodes.errors.InputError: codes.h5: the codes of a.jpg are not finite (NaN or inf)
    """
    if labelled.X.size and not np.isfinite(labelled.X).all():
        row = int(np.flatnonzero(~np.isfinite(labelled.X).all(axis=1))[0])
        message = f"{labelled.source or data}: the codes of {labelled.paths[row]} are not finite (NaN or inf)"
        raise InputError(message)


def choose_folds(y: np.ndarray, class_names: Sequence[str], cv: int | None, subject: str = "--cv") -> int | None:
    """The folds to cross-validate with: ``cv``, or fewer when the smallest class has fewer images (said in one line).

    Parameters
    ----------
    y : ndarray
        Class indices.
    class_names : sequence of str
        Their names.
    cv : int or None
        Folds asked for; None: no cross-validation.
    subject : str, default="--cv"
        How the message names the folds.

    Returns
    -------
    int or None

    Raises
    ------
    InputError
        If a class has a single image: no stratified fold can hold it out.

    Examples
    --------
    >>> choose_folds(np.array([0, 0, 0, 1, 1]), ["ants", "bees"], 5)
    2
    >>> choose_folds(np.array([0, 0, 1]), ["ants", "bees"], 5)
    Traceback (most recent call last):
    ...
    cnncodes.errors.InputError: class 'bees' has 1 image; --cv 5 needs at least 2 per class: add images
    """
    if not cv:
        return cv
    counts = np.bincount(y, minlength=len(class_names))
    present = np.flatnonzero(counts)
    smallest = int(present[np.argmin(counts[present])])
    n_smallest = int(counts[smallest])
    if n_smallest >= cv:
        return cv
    if n_smallest < 2:
        message = f"class {class_names[smallest]!r} has 1 image; {subject} {cv} needs at least 2 per class: add images"
        raise InputError(message)
    logger.warning(
        "class %r has %d images, fewer than %s %d; using %s %d",
        class_names[smallest],
        n_smallest,
        subject,
        cv,
        subject,
        n_smallest,
    )
    return n_smallest


@dataclass
class TrainResult:
    """What :func:`train` made: the model, where it was saved, and the cross-validation figures."""

    bundle: ModelBundle
    path: Path | None
    n_samples: int
    failures: list[tuple[str, str]]
    cv_accuracy: float | None  # mean score (cv_metric) of the best hyperparameter in the inner cross-validation
    best_params: dict[str, Any]
    cv_metric: str = "accuracy"  # "balanced_accuracy" with class_weight="balanced"

    def summary(self) -> str:
        """One line for the command line: head, samples, classes, cross-validated accuracy, failures, file."""
        metric = self.cv_metric.replace("_", " ")
        cv = f", cross-validated {metric} {self.cv_accuracy:.4f}" if self.cv_accuracy is not None else ""
        params = f" ({', '.join(f'{k}={v}' for k, v in self.best_params.items())})" if self.best_params else ""
        where = f" -> {self.path}" if self.path else ""
        return (
            f"trained {self.bundle.head} on {self.n_samples} images, {len(self.bundle.class_names)} classes"
            f"{cv}{params}, {len(self.failures)} failed{where}"
        )


def train(
    data: str | Path | Sequence[str | Path],
    *,
    head: str = "logistic",
    codes: CNNCodes | None = None,
    cv: int | None = 5,
    class_weight: str | None = None,
    scaling: str | None = None,
    output: str | Path | None = None,
    random_state: int = 0,
    n_jobs: int | None = None,
    chunk_rows: int = 4096,
    client: Any = None,
    params: dict[str, Any] | None = None,
) -> TrainResult:
    """Train a head on the codes of labelled images; optionally save the model.

    Parameters
    ----------
    data : str, Path or sequence
        A class-per-folder tree, a labelled CSV, or a codes file from ``extract``.
    head : str, default="logistic"
        A preset of :func:`cnncodes.make_head`. ``"sgd"`` on a codes file trains out
        of core: ``chunk_rows`` rows in memory at a time.
    codes : CNNCodes or None, default=None
        Backbone, layer, views, pooling, cache... (None: ``CNNCodes()``, the default
        backbone's default tap).
    cv : int or None, default=5
        Stratified folds that choose the head's hyperparameter (on balanced accuracy
        with ``class_weight="balanced"``); fewer when the smallest class has fewer
        images (at least 2, said in one warning); None keeps the preset. ``"sgd"`` on
        a codes file chooses alpha by these folds over the chunks.
    class_weight : {"balanced"} or None, default=None
        For imbalanced sets.
    scaling : str or None, default=None
        Override the head's scaling (see :func:`cnncodes.make_head`).
    output : str, Path or None, default=None
        Save the model there (joblib bundle, written atomically).
    random_state : int, default=0
        Seed of the head and of the folds.
    n_jobs : int or None, default=None
        Parallel folds of the hyperparameter search.
    chunk_rows : int, default=4096
        Rows per chunk of out-of-core training.
    client : dask.distributed.Client, str or None, default=None
        Run the hyperparameter search on a dask cluster (joblib's dask backend):
        a Client, a scheduler address or ``"local:N"``. Codes are extracted first.
    params : dict or None, default=None
        Fixed head hyperparameters (as ``sweep`` reports them) instead of a search;
        checked before the extraction. ``"sgd"`` on a codes file takes ``alpha`` and ``loss``.

    Returns
    -------
    TrainResult
        The model (``bundle``), where it was saved, and the cross-validation figures.

    Raises
    ------
    InputError
        If the head or a fixed hyperparameter is unknown or invalid, the data has no
        labels, a single class, an empty class, an empty label, NaN or infinite codes,
        a class of one image with ``cv``, or is a damaged codes file.
    CnnCodesError
        If ``client`` is a scheduler address nothing listens on (checked before the
        extraction).

    Examples
    --------
    >>> import shutil, tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> images = Path("../shared/data/hymenoptera/train")
    >>> rows = [f"{p.resolve()},{name}\\n" for name in ("ants", "bees") for p in sorted((images / name).glob("*"))[:6]]
    >>> _ = (folder / "labels.csv").write_text("".join(rows))
    >>> result = train(folder / "labels.csv", codes=CNNCodes(cache=False), cv=2, output=folder / "model.skops")
    >>> result.n_samples, result.bundle.class_names, result.path.name
    (12, ['ants', 'bees'], 'model.skops')
    >>> shutil.rmtree(folder)
    """
    check_head(head)  # before the extraction, which may take long
    out_of_core = head == "sgd"
    if params and not out_of_core:
        make_head(head, params=params, class_weight=class_weight, scaling=scaling)  # checks the values now
    check_cluster(client)  # an unreachable scheduler fails now, not after the extraction
    labelled = load_labelled_codes(data, codes, read_codes=not out_of_core)
    check_labelled(labelled, data)
    if output is not None:  # before the fit: a model written over an image or the codes file would lose it
        read = [*(data if isinstance(data, (list, tuple)) else [data]), *labelled.paths]
        refuse_overwriting_an_input(output, [*read, *(path for path, _ in labelled.failures)])
    cv = choose_folds(labelled.y, labelled.class_names, cv) if not params else None
    out_of_core = out_of_core and labelled.source is not None
    classes = np.arange(len(labelled.class_names))
    metric = selection_metric(class_weight)
    if out_of_core:
        fitted, cv_accuracy, best_params = _train_out_of_core(
            labelled, classes, cv, class_weight, params, random_state, chunk_rows
        )
    else:
        with dask_backend(client) as dask_jobs:
            fitted = make_head(
                head,
                cv=cv,
                scaling=scaling,
                class_weight=class_weight,
                random_state=random_state,
                n_jobs=dask_jobs or n_jobs,
                params=params,
            ).fit(labelled.X, labelled.y)
        search = fitted.steps[-1][1]
        cv_accuracy = float(search.best_score_) if isinstance(search, GridSearchCV) else None
        best_params = dict(search.best_params_) if isinstance(search, GridSearchCV) else dict(params or {})
    # Paths as text: a model file holds only plain values and trusted types (a Path is neither for skops).
    labelled.codes.set_params(**{k: str(v) for k, v in labelled.codes.get_params().items() if isinstance(v, PurePath)})
    pipeline = Pipeline([("codes", labelled.codes), ("head", fitted)])
    bundle = ModelBundle(
        pipeline=pipeline,
        class_names=labelled.class_names,
        spec=labelled.spec,
        backbone=labelled.codes.model,
        backbone_sha256=labelled.spec["layers"][0]["model_sha256"],  # the file the codes came from
        head=head,
        metrics={
            "cv_accuracy": cv_accuracy,
            "cv_metric": metric,
            "best_params": best_params,
            "n_samples": int(len(labelled.y)),
        },
    )
    path = save_model(bundle, output) if output is not None else None
    return TrainResult(bundle, path, int(len(labelled.y)), labelled.failures, cv_accuracy, best_params, metric)


def _train_out_of_core(
    labelled: LabelledCodes,
    classes: np.ndarray,
    cv: int | None,
    class_weight: str | None,
    params: dict[str, Any] | None,
    random_state: int,
    chunk_rows: int,
) -> tuple[Pipeline, float | None, dict[str, Any]]:
    """SGD over chunks of the codes file: alpha fixed by ``params`` or chosen by ``cv`` folds, then fitted on all."""
    source = labelled.source
    assert source is not None

    def chunks() -> Any:
        for X, y in iter_codes_file(source, chunk_rows):
            if not np.isfinite(X).all():
                message = f"{source}: some codes are not finite (NaN or inf); extract them again"
                raise InputError(message)
            yield X, y

    unknown = sorted(set(params or {}) - set(OUT_OF_CORE_PARAMS))
    if unknown:
        message = (
            f"The head 'sgd' on a codes file trains out of core and takes only "
            f"{', '.join(OUT_OF_CORE_PARAMS)}; got {', '.join(map(repr, unknown))}"
        )
        raise InputError(message)
    weights = None
    if class_weight == "balanced":
        weights = dict(zip(classes, compute_class_weight("balanced", classes=classes, y=labelled.y)))
    cv_score = None
    if params:
        check_params(SGDClassifier(**params))
        chosen = dict(params)
    elif cv:
        chosen, cv_score = search_out_of_core(
            chunks, labelled.y, classes, cv=cv, class_weight=weights, random_state=random_state
        )
    else:
        chosen = {}
    fitted = fit_out_of_core(chunks, classes, class_weight=weights, random_state=random_state, **chosen)
    return fitted, cv_score, chosen
