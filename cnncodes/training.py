"""Train: labelled images or codes files in, a fitted pipeline (saved as a model file) out."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.utils.class_weight import compute_class_weight

from .cache import is_codes_file, iter_codes_file, read_codes_file
from .datasets import load_dataset
from .distributed import dask_backend
from .errors import InputError
from .heads import check_head, fit_out_of_core, make_head
from .params import CODE_PARAMETERS
from .persist import ModelBundle, save_model
from .transformer import CNNCodes

__all__ = ["LabelledCodes", "load_labelled_codes", "TrainResult", "train"]


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
    options = spec.get("options") or {}
    params = {name: options[name] for name in CODE_PARAMETERS if name in options}
    if isinstance(params.get("layer"), list):  # JSON has no tuples; layers are tuples inside cnncodes
        params["layer"] = tuple(params["layer"])
    return CNNCodes(**{**template.get_params(), **params})


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
    if single is not None and single.is_file() and is_codes_file(single):
        content = read_codes_file(single, with_codes=read_codes)
        if content.labels is None or content.class_names is None:
            message = f"{single}: the codes file has no labels; extract from a class-per-folder tree or a labelled CSV"
            raise InputError(message)
        transformer = _codes_from_spec(content.spec, template).fit()
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


@dataclass
class TrainResult:
    """What :func:`train` made: the model, where it was saved, and the cross-validation figures.

    Examples
    --------
    See :func:`train`.
    """

    bundle: ModelBundle
    path: Path | None
    n_samples: int
    failures: list[tuple[str, str]]
    cv_accuracy: float | None  # mean accuracy of the best hyperparameter in the inner cross-validation
    best_params: dict[str, Any]

    def summary(self) -> str:
        """One line for the command line: head, samples, classes, cross-validated accuracy, failures, file."""
        cv = f", cross-validated accuracy {self.cv_accuracy:.4f}" if self.cv_accuracy is not None else ""
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
        Stratified folds that choose the head's hyperparameter; None keeps the preset.
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
        Fixed head hyperparameters (as ``sweep`` reports them) instead of a search.

    Returns
    -------
    TrainResult
        The model (``bundle``), where it was saved, and the cross-validation figures.

    Raises
    ------
    InputError
        If the head is unknown or the data has no labels.

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
    labelled = load_labelled_codes(data, codes, read_codes=not out_of_core)
    out_of_core = out_of_core and labelled.source is not None
    classes = np.arange(len(labelled.class_names))
    if out_of_core:
        weights = None
        if class_weight == "balanced":
            weights = dict(zip(classes, compute_class_weight("balanced", classes=classes, y=labelled.y)))
        fitted = fit_out_of_core(
            lambda: iter_codes_file(labelled.source, chunk_rows),
            classes,
            class_weight=weights,
            random_state=random_state,
        )
        cv_accuracy, best_params = None, {}
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
        best_params = dict(search.best_params_) if isinstance(search, GridSearchCV) else {}
    pipeline = Pipeline([("codes", labelled.codes), ("head", fitted)])
    bundle = ModelBundle(
        pipeline=pipeline,
        class_names=labelled.class_names,
        spec=labelled.spec,
        backbone=labelled.codes.model,
        backbone_sha256=labelled.spec["layers"][0]["model_sha256"],  # the file the codes came from
        head=head,
        metrics={"cv_accuracy": cv_accuracy, "best_params": best_params, "n_samples": int(len(labelled.y))},
    )
    path = save_model(bundle, output) if output is not None else None
    return TrainResult(bundle, path, int(len(labelled.y)), labelled.failures, cv_accuracy, best_params)
