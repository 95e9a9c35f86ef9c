"""Model selection on cached codes: every backbone x layer set x head, ranked, against a raw-pixel baseline."""

from __future__ import annotations

import itertools
import logging
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np
from sklearn.base import clone
from sklearn.metrics import accuracy_score, balanced_accuracy_score
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, cross_validate

from .backbones import get_backbone
from .distributed import check_cluster, dask_backend
from .errors import InputError
from .heads import check_head, head_grid, make_head
from .images import Preprocessing, decode_image, make_views
from .pages import write_sweep_page
from .params import DEFAULT_BACKBONE
from .report import has_matplotlib, plot_sweep, write_json
from .training import LabelledCodes, check_labelled, choose_folds, load_labelled_codes
from .transformer import CNNCodes

__all__ = ["SweepRow", "SweepResult", "sweep", "default_layer_sets", "BASELINE"]

BASELINE = "raw pixels"
logger = logging.getLogger("cnncodes")
_BASELINE_SIZE = 32  # the no-transfer baseline: heads on 32 x 32 RGB thumbnails


def _pooling_cell(row: SweepRow) -> str:
    """The pooling of a sweep row, with its precision when that is not fp32 ("avg/int8")."""
    if row.model == "-":
        return "-"
    return row.pooling + (f"/{row.precision}" if row.precision != "fp32" else "")


def _with_spread(value: float, std: float | None) -> str:
    """A score, and its spread across CV folds when there is one (never for a single validation split)."""
    return f"{value:.4f}" + (f" ±{std:.3f}" if std is not None else "")


@dataclass
class SweepRow:
    """The score of one feature set with one head and hyperparameter value. Made by :func:`sweep`."""

    model: str  # "-" for the raw-pixel baseline
    features: str  # "stage4", "stage3+stage4", or "raw pixels"
    head: str
    params: dict[str, Any]
    n_features: int
    accuracy: float
    balanced_accuracy: float
    pooling: str = "avg"  # spatial pooling of the feature maps
    precision: str = "fp32"  # the network's arithmetic ("none" for the raw-pixel baseline)
    accuracy_std: float | None = None  # across CV folds; None with a validation split (one score, no spread)
    balanced_accuracy_std: float | None = None
    seconds: float = 0.0


@dataclass
class SweepResult:
    """Every row, best first by balanced accuracy, and a recommendation. Made by :func:`sweep`."""

    rows: list[SweepRow]  # all rows, ranked
    protocol: str  # "5-fold stratified CV" or "validation split: PATH"
    n_samples: int
    class_names: list[str]
    files: list[Path] = field(default_factory=list)
    table_headers: ClassVar = ("rank", "model", "features", "pooling", "head", "params", "dims", "accuracy", "balanced")

    @property
    def best(self) -> SweepRow:
        """The best transfer row (the baseline is never recommended)."""
        return next(row for row in self.rows if row.features != BASELINE and np.isfinite(row.balanced_accuracy))

    @property
    def baseline(self) -> SweepRow | None:
        """The best raw-pixel row, or None when the baseline was not scored."""
        return next((row for row in self.rows if row.features == BASELINE), None)

    def best_per_combination(self) -> list[SweepRow]:
        """The best hyperparameter of each (model, features, pooling, precision, head), ranked."""
        seen: set[tuple[str, str, str, str, str]] = set()
        best = []
        for row in self.rows:
            key = (row.model, row.features, row.pooling, row.precision, row.head)
            if key not in seen:
                seen.add(key)
                best.append(row)
        return best

    def table_rows(self, show_all: bool = False) -> list[list[Any]]:
        """Rows under ``table_headers``, best first; "±" and a spread only where there is one (CV folds)."""
        rows = self.rows if show_all else self.best_per_combination()
        return [
            [rank, r.model, r.features, _pooling_cell(r), r.head]
            + [", ".join(f"{k}={v}" for k, v in r.params.items()), r.n_features]
            + [_with_spread(r.accuracy, r.accuracy_std), _with_spread(r.balanced_accuracy, r.balanced_accuracy_std)]
            for rank, r in enumerate(rows, 1)
        ]

    def recommendation(self) -> str:
        """One or two sentences: what to use, and whether transfer helps at all."""
        best = self.best
        spec = get_backbone(best.model)
        spatial = any(spec.get_tap(tap).is_spatial for tap in best.features.split("+"))
        pooling = f" ({best.pooling} pooling)" if spatial else ""
        precision = f" at {best.precision}" if best.precision != "fp32" else ""
        text = (
            f"Use {best.model} {best.features}{pooling}{precision} with {best.head} "
            f"({', '.join(f'{k}={v}' for k, v in best.params.items())}): balanced accuracy "
            f"{best.balanced_accuracy:.4f}, accuracy {best.accuracy:.4f} ({self.protocol})."
        )
        baseline = self.baseline
        if baseline is not None:
            gain = best.balanced_accuracy - baseline.balanced_accuracy
            if abs(gain) < 1e-9:
                verdict = "no better than raw pixels: the CNN codes give this task nothing here"
            else:
                verdict = "transfer helps" if gain > 0 else "negative transfer: the CNN codes do worse than raw pixels"
            text += f" Raw-pixel baseline: {baseline.balanced_accuracy:.4f} ({verdict}, {gain:+.4f})."
        return text

    def as_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {
            "protocol": self.protocol,
            "n_samples": self.n_samples,
            "class_names": self.class_names,
            "rows": [asdict(row) for row in self.rows],
            "best": asdict(self.best),
            "recommendation": self.recommendation(),
        }


def default_layer_sets(model: str) -> list[str]:
    """The layer sets a sweep tries when none are given: every spatial tap and the default tap (no logits).

    Parameters
    ----------
    model : str
        A zoo backbone.

    Returns
    -------
    list of str
        Tap names, earliest first.

    Raises
    ------
    UnknownBackboneError
        If ``model`` is not in the zoo.

    Examples
    --------
    >>> default_layer_sets("efficientnet_lite0")[-1]
    'penultimate'
    """
    spec = get_backbone(model)
    taps = [t.name for t in spec.taps if t.is_spatial and t.name != "head"]
    return [*taps, spec.default_tap]


def _thumbnails(paths: Sequence[str], n_workers: int | None) -> np.ndarray:
    """Raw-pixel features: centre crop, 32 x 32 RGB, scaled to 0..1."""
    pre = Preprocessing(_BASELINE_SIZE, 0.875, "bilinear")

    def one(path: str) -> np.ndarray:
        return make_views(decode_image(Path(path), pre), pre)[0].reshape(-1)

    with ThreadPoolExecutor(n_workers) as pool:
        return np.stack(list(pool.map(one, paths))).astype(np.float32) / 255.0


def _score(
    estimator: Any,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray] | None,
    cv: Any,
    groups: np.ndarray | None,
    n_jobs: int | None = None,
) -> tuple[float, float, float | None, float | None]:
    if val is not None:
        predicted = clone(estimator).fit(*train).predict(val[0])
        return accuracy_score(val[1], predicted), balanced_accuracy_score(val[1], predicted), None, None
    scores = cross_validate(
        estimator, *train, groups=groups, cv=cv, scoring=("accuracy", "balanced_accuracy"), n_jobs=n_jobs
    )
    acc, bal = scores["test_accuracy"], scores["test_balanced_accuracy"]
    return float(acc.mean()), float(bal.mean()), float(acc.std()), float(bal.std())


def _group_regex(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as error:
        message = f"The 'groups' pattern {pattern!r} is not a regular expression ({error})"
        raise InputError(message) from error


def _group_ids(paths: Sequence[str], regex: re.Pattern[str]) -> np.ndarray:
    ids = []
    for path in paths:
        found = regex.search(Path(path).name)
        if not found:
            message = f"{path}: the group pattern {regex.pattern!r} does not match its name"
            raise InputError(message)
        ids.append(found.group(1) if regex.groups else found.group(0))
    return np.array(ids)


def _n_folds(train: LabelledCodes, cv: int, group_ids: np.ndarray | None, pattern: str | None) -> int:
    """The folds to use: ``cv``, or fewer when a class or the number of groups is smaller (said in one line)."""
    n_folds = choose_folds(train.y, train.class_names, cv) or cv
    if group_ids is None:
        return n_folds
    n_groups = len(set(group_ids.tolist()))
    if n_groups < 2:
        message = (
            f"The 'groups' pattern {pattern!r} finds one group ({str(group_ids[0])!r}) in every file name; "
            "group folds need at least 2 groups"
        )
        raise InputError(message)
    if n_groups < n_folds:
        logger.warning("the groups pattern %r finds %d groups; using --cv %d", pattern, n_groups, n_groups)
        return n_groups
    return n_folds


def _check_group_folds(splitter: Any, train: LabelledCodes, group_ids: np.ndarray, pattern: str | None) -> None:
    """Refuse, in one line, groups that follow the classes: a fold whose training part holds one class cannot fit."""
    y = np.asarray(train.y)
    for train_rows, test_rows in splitter.split(np.zeros((len(y), 1)), y, group_ids):
        left = np.unique(y[train_rows])
        if len(left) < 2:
            held_out = ", ".join(repr(str(g)) for g in sorted(set(group_ids[test_rows].tolist()))[:3])
            only = f"only class {train.class_names[int(left[0])]!r}" if len(left) else "no image"
            message = (
                f"The 'groups' pattern {pattern!r} gives folds that cannot be trained: with group(s) {held_out} "
                f"held out, the rest hold {only}; groups must cut across the classes (one per patient or session)"
            )
            raise InputError(message)


def _rank(row: SweepRow) -> tuple[float, float]:
    """Best first by balanced accuracy, then accuracy; a row that could not be scored (NaN) last."""
    bal = row.balanced_accuracy if np.isfinite(row.balanced_accuracy) else -np.inf
    acc = row.accuracy if np.isfinite(row.accuracy) else -np.inf
    return (-bal, -acc)


@dataclass(frozen=True)
class _Scoring:
    """How every candidate is scored: the same heads, folds, class weights and seed for all."""

    heads: Sequence[str]
    splitter: Any  # a stratified (group) k-fold splitter; unused with a validation split
    class_weight: str | None
    random_state: int


def sweep(
    data: str | Path | Sequence[str | Path],
    *,
    models: Sequence[str] = (DEFAULT_BACKBONE,),
    layers: Sequence[str] | None = None,
    heads: Sequence[str] = ("logistic",),
    poolings: Sequence[str] | None = None,
    precisions: Sequence[str] | None = None,
    codes: CNNCodes | None = None,
    val: str | Path | None = None,
    cv: int = 5,
    groups: str | None = None,
    class_weight: str | None = None,
    baseline: bool = True,
    report_dir: str | Path | None = None,
    random_state: int = 0,
    client: Any = None,
) -> SweepResult:
    """Score every backbone x layer set x head x hyperparameter on cached codes.

    The classic rule of thumb made empirical: an ImageNet-like set usually does best on
    the penultimate codes with a linear head; a set far from ImageNet may do better on
    an earlier stage, or on several taps concatenated. Codes of all taps of a model are
    computed in one pass and cached, so a rerun (or ``train`` afterwards) reads them.

    Parameters
    ----------
    data : str, Path or sequence
        Labelled images (folder per class, CSV) or a codes file.
    models : sequence of str, default=("efficientnet_lite0",)
        Zoo backbones or ONNX files.
    layers : sequence of str or None, default=None
        Layer sets; ``"stage4+penultimate"`` concatenates. None: every spatial tap
        and the default tap of each model.
    heads : sequence of str, default=("logistic",)
        Presets of :func:`cnncodes.make_head`; each is tried over its hyperparameter grid.
    poolings : sequence of str or None, default=None
        Spatial poolings to try ("avg", "max", "gem"); None: the pooling of ``codes``.
    precisions : sequence of str or None, default=None
        Network precisions to try ("fp32", "int8", "fp16"); None: the precision of ``codes``.
    codes : CNNCodes or None, default=None
        Pooling, grid, views, normalization and cache settings for every model.
    val : str, Path or None, default=None
        A labelled validation split to score on; None uses stratified cross-validation.
        A layer chosen on a split is optimistic on that split: report a third one.
    cv : int, default=5
        Folds of the cross-validation.
    groups : str or None, default=None
        A regex on file names whose first group (or match) names a group (e.g. a
        patient) that must not straddle folds.
    class_weight : {"balanced"} or None, default=None
        For imbalanced sets.
    baseline : bool, default=True
        Also score the heads on 32 x 32 raw pixels (no transfer).
    report_dir : str, Path or None, default=None
        Write ``index.html`` (the ranked table and a chart of the score per tap),
        ``sweep.json`` and ``sweep.png`` (feature set x head chart) there.
    random_state : int, default=0
        Seed of the folds and the heads.
    client : dask.distributed.Client, str or None, default=None
        Run the cross-validation fits on a dask cluster (joblib's dask backend).

    Returns
    -------
    SweepResult
        Every row ranked by balanced accuracy, the best transfer row and a recommendation.

    Raises
    ------
    InputError
        If a head is unknown, the data has no labels, or a group pattern does not
        match a file name.

    Examples
    --------
    >>> import shutil, tempfile
    >>> from cnncodes import CNNCodes
    >>> folder = Path(tempfile.mkdtemp())
    >>> images = Path("../shared/data/hymenoptera/train")
    >>> rows = [f"{p.resolve()},{name}\\n" for name in ("ants", "bees") for p in sorted((images / name).glob("*"))[:6]]
    >>> _ = (folder / "labels.csv").write_text("".join(rows))
    >>> result = sweep(folder / "labels.csv", layers=["stage4", "penultimate"], codes=CNNCodes(cache=False), cv=2)
    >>> sorted({row.features for row in result.rows}), result.best.head
    (['penultimate', 'raw pixels', 'stage4'], 'logistic')
    >>> shutil.rmtree(folder)
    """
    template = codes if codes is not None else CNNCodes()
    for head in heads:  # before the extraction, which may take long
        check_head(head)
    group_regex = _group_regex(groups) if groups else None
    check_cluster(client)
    scoring: _Scoring | None = None  # its folds depend on the data: made when the first labels are read
    rows: list[SweepRow] = []
    reference: LabelledCodes | None = None  # the first model's labelled set: its paths feed the baseline
    reference_val: LabelledCodes | None = None
    options = itertools.product(models, poolings or (template.pooling,), precisions or (template.precision,))
    for model, pooling, precision in options:
        layer_sets = list(layers) if layers else default_layer_sets(model)
        taps = list(dict.fromkeys(tap for layer_set in layer_sets for tap in layer_set.split("+")))
        all_codes = clone(template).set_params(model=model, layer=tuple(taps), pooling=pooling, precision=precision)
        train = load_labelled_codes(data, all_codes)
        check_labelled(train, data)
        held_out = load_labelled_codes(val, all_codes) if val is not None else None
        reference, reference_val = reference or train, reference_val or held_out
        widths = {tap: clone(all_codes).set_params(layer=tap).fit().n_features_out_ for tap in taps}
        offsets = dict(zip(taps, np.cumsum([0, *widths.values()])[:-1]))
        group_ids = _group_ids(train.paths, group_regex) if group_regex else None
        if scoring is None:
            n_folds = cv if val is not None else _n_folds(train, cv, group_ids, groups)
            splitter = (StratifiedGroupKFold if groups else StratifiedKFold)(
                n_folds, shuffle=True, random_state=random_state
            )
            if group_ids is not None and val is None:
                _check_group_folds(splitter, train, group_ids, groups)
            scoring = _Scoring(tuple(heads), splitter, class_weight, random_state)
            protocol = (
                f"validation split: {val}"
                if val is not None
                else f"{n_folds}-fold stratified{' group' if groups else ''} CV"
            )
        for layer_set in layer_sets:
            columns = np.concatenate([np.arange(offsets[t], offsets[t] + widths[t]) for t in layer_set.split("+")])
            val_xy = (held_out.X[:, columns], _remap(held_out, train)) if held_out is not None else None
            with dask_backend(client) as n_jobs:
                candidate = (model, layer_set, pooling, precision)
                rows += _score_heads(scoring, candidate, (train.X[:, columns], train.y), val_xy, group_ids, n_jobs)
    assert reference is not None and scoring is not None  # models is not empty
    if baseline and reference.source is None:
        X = _thumbnails(reference.paths, template.n_workers)
        val_xy = None
        if reference_val is not None:
            val_xy = (_thumbnails(reference_val.paths, template.n_workers), _remap(reference_val, reference))
        group_ids = _group_ids(reference.paths, group_regex) if group_regex else None
        rows += _score_heads(scoring, ("-", BASELINE, "none", "none"), (X, reference.y), val_xy, group_ids)
    rows.sort(key=_rank)
    if not any(np.isfinite(row.balanced_accuracy) for row in rows if row.features != BASELINE):
        message = f"{data}: no candidate could be scored (every fit failed); check the data and the heads"
        raise InputError(message)
    result = SweepResult(rows, protocol, int(len(reference.y)), reference.class_names)
    if report_dir is not None:
        result.files = _write_sweep(result, Path(report_dir))
    return result


def _write_sweep(result: SweepResult, folder: Path) -> list[Path]:
    best = result.best_per_combination()
    chart_rows = [
        {
            "features": (f"{r.model} {r.features} {r.pooling}" if r.model != "-" else r.features),
            "head": r.head,
            "accuracy": r.balanced_accuracy,
        }
        for r in best
    ]
    document = result.as_dict()
    page = write_sweep_page(folder, document, (result.table_headers, result.table_rows()), [asdict(r) for r in best])
    files = [write_json(document, folder / "sweep.json")]
    if has_matplotlib(folder):
        files.append(plot_sweep(chart_rows, folder / "sweep.png", f"balanced accuracy ({result.protocol})"))
    return [*files, page]


def _remap(held_out: LabelledCodes, train: LabelledCodes) -> np.ndarray:
    unknown = sorted(set(held_out.class_names) - set(train.class_names))
    if unknown:
        message = f"validation split: classes {', '.join(unknown)} are not in the training data"
        raise InputError(message)
    return np.array([train.class_names.index(n) for n in held_out.class_names])[held_out.y]


def _score_heads(
    scoring: _Scoring,
    candidate: tuple[str, str, str, str],
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray] | None,
    groups: np.ndarray | None,
    n_jobs: int | None = None,
) -> list[SweepRow]:
    """One row per head and hyperparameter value of ``candidate`` = (model, features, pooling, precision)."""
    model, features, pooling, precision = candidate
    rows = []
    for head in scoring.heads:
        base = make_head(head, cv=None, class_weight=scoring.class_weight, random_state=scoring.random_state)
        for params in head_grid(head):
            start = time.monotonic()
            estimator = clone(base).set_params(**{f"clf__{k}": v for k, v in params.items()})
            acc, bal, acc_std, bal_std = _score(estimator, train, val, scoring.splitter, groups, n_jobs)
            rows.append(
                SweepRow(
                    model=model,
                    features=features,
                    head=head,
                    params=params,
                    n_features=int(train[0].shape[1]),
                    accuracy=acc,
                    balanced_accuracy=bal,
                    pooling=pooling,
                    precision=precision,
                    accuracy_std=acc_std,
                    balanced_accuracy_std=bal_std,
                    seconds=time.monotonic() - start,
                )
            )
    return rows
