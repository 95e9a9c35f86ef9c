"""Orchestration: inputs -> content keys -> cache hits -> decode pool -> ONNX Runtime -> pooling -> cache."""

from __future__ import annotations

import collections
import logging
import os
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from .backbones import BackboneSpec, TapSpec
from .cache import CodeCache, CodesFile, FeatureSet
from .datasets import Dataset, load_dataset
from .errors import CnnCodesError, ImageDecodeError, InputError
from .fingerprint import sha256_array, sha256_file
from .images import VIEWS, Preprocessing, decode_image, make_views, n_views
from .pooling import COMBINES, NORMALIZATIONS, POOLINGS, code_length, combine_views, normalize_codes, pool
from .runtime import DEVICES, OPTIMIZATIONS, Session
from .taps import prepare_model
from .modelfiles import ensure_model_file, resolve_backbone

__all__ = ["ExtractionOptions", "ExtractionResult", "ExtractionPlan", "Extractor", "DEFAULT_BATCH_SIZE"]

logger = logging.getLogger("cnncodes")

DEFAULT_BATCH_SIZE = None  # chosen by device: small batches run faster on CPUs, large ones on GPUs
_BATCH_SIZE_BY_DEVICE = {"cpu": 8, "cuda": 64, "tensorrt": 64}
_ON_ERROR = ("skip", "raise")
_DTYPES = ("float32", "float16")
_model_hashes: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256


def _model_sha256(path: Path) -> str:
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _model_hashes:
        _model_hashes[key] = sha256_file(path)
    return _model_hashes[key]


def _parameter(name: str, owner: str) -> str:
    """``The 'name' parameter`` or, for an estimator, ``The 'name' parameter of CNNCodes`` (sklearn's wording)."""
    return f"The '{name}' parameter" + (f" of {owner}" if owner else "")


def _choice_error(parameter: str, allowed: Sequence[Any], got: Any, owner: str = "") -> CnnCodesError:
    message = f"{_parameter(parameter, owner)} must be one of {', '.join(map(repr, allowed))}. Got {got!r} instead."
    return InputError(message)


@dataclass(frozen=True)
class ExtractionOptions:
    """Everything that changes the codes, plus how to run; validated by :meth:`check`."""

    model: str = "efficientnet_lite0"
    layer: str | tuple[str, ...] = "penultimate"  # one tap, or several concatenated
    pooling: str = "avg"
    grid: int | None = None  # pool on a grid x grid layout instead of globally
    gem_p: float = 3.0
    relu: bool | None = None  # None: the tap's default (ReLU unless already non-negative)
    views: str = "none"
    combine: str = "mean"
    normalize: str = "none"
    power: float = 0.5
    dtype: str = "float32"
    draft: bool = True

    @property
    def layers(self) -> tuple[str, ...]:
        """The requested taps as a tuple."""
        return (self.layer,) if isinstance(self.layer, str) else tuple(self.layer)

    def check(self, owner: str = "") -> None:
        """Raise a one-line error for any value out of range (``owner`` names the estimator in it)."""
        for parameter, allowed in (
            ("pooling", POOLINGS),
            ("views", VIEWS),
            ("combine", COMBINES),
            ("normalize", NORMALIZATIONS),
            ("dtype", _DTYPES),
        ):
            if getattr(self, parameter) not in allowed:
                raise _choice_error(parameter, allowed, getattr(self, parameter), owner)
        if self.grid is not None and (not isinstance(self.grid, int) or self.grid < 1):
            message = f"{_parameter('grid', owner)} must be a positive int or None. Got {self.grid!r} instead."
            raise InputError(message)
        if not self.layers:
            message = f"{_parameter('layer', owner)} must name at least one layer."
            raise InputError(message)


@dataclass
class ExtractionResult:
    """Codes of the images that worked, aligned with ``paths``; failures apart."""

    codes: np.ndarray  # (n_ok, n_features) float32
    paths: list[str]  # inputs as given, one per row
    keys: list[str]  # content sha256 per row
    indices: np.ndarray  # (n_ok,) positions of the rows among the inputs
    labels: np.ndarray | None = None  # (n_ok,) int, when the inputs had labels
    class_names: list[str] | None = None
    failures: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    n_images: int = 0
    n_from_cache: int = 0
    elapsed_s: float = 0.0
    spec: dict[str, Any] = field(default_factory=dict)
    feature_names: list[str] = field(default_factory=list)

    @property
    def n_failed(self) -> int:
        """How many inputs have no codes."""
        return len(self.failures)

    def summary(self) -> str:
        """One line: N images, K from cache, F failed."""
        computed = self.n_images - self.n_from_cache - self.n_failed
        rate = computed / self.elapsed_s if self.elapsed_s > 0 else 0.0
        return f"{self.n_images} images, {self.n_from_cache} from cache, {self.n_failed} failed ({self.elapsed_s:.1f} s, {rate:.1f} images/s computed)"

    def to_codes_file(self) -> CodesFile:
        """The content of a codes file."""
        return CodesFile(self.codes, self.paths, self.keys, self.labels, self.class_names, self.failures, self.spec)


@dataclass
class _Item:
    name: str
    source: Any  # Path, ndarray or PIL image
    key: str | None = None


@dataclass
class ExtractionPlan:
    """One extraction in progress: inputs with keys, codes filled so far, and what is left to compute."""

    items: list[_Item]
    labels: np.ndarray | None
    class_names: list[str] | None
    codes: list[np.ndarray]  # one (n, length) block per tap, filled in place
    ok: np.ndarray  # rows that have codes
    progress: "_Progress"
    feature_sets: list[FeatureSet]
    on_error: str = "skip"
    failures: dict[int, str] = field(default_factory=dict)
    todo: list[int] = field(default_factory=list)  # positions still to compute
    stored: list[set[str]] = field(default_factory=list)  # per tap: keys its feature set already holds
    n_from_cache: int = 0
    start: float = field(default_factory=time.monotonic)

    def fail(self, index: int, error: CnnCodesError) -> None:
        """Record a failed input (or raise it, with ``on_error="raise"``)."""
        if self.on_error == "raise":
            raise error
        self.failures[index] = str(error).removeprefix(f"{self.items[index].name}: ")
        self.progress.update(done=1, failed=1)


class _Progress:
    """A one-line progress display on stderr, refreshed at most twice a second."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.enabled = total, enabled
        self.done = self.cached = self.failed = 0
        self.start = self.last = time.monotonic()

    def update(self, done: int = 0, cached: int = 0, failed: int = 0) -> None:
        self.done += done
        self.cached += cached
        self.failed += failed
        now = time.monotonic()
        if self.enabled and (now - self.last > 0.5 or self.done == self.total):
            self.last = now
            computed = self.done - self.cached
            rate = computed / max(now - self.start, 1e-9)
            eta = (self.total - self.done) / rate if rate > 0 else 0
            sys.stderr.write(
                f"\r{self.done}/{self.total} images  {rate:6.1f} images/s  {self.cached} from cache  "
                f"{self.failed} failed  ETA {int(eta) // 60}:{int(eta) % 60:02d} "
            )
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def _as_items(inputs: Any) -> tuple[list[_Item], np.ndarray | None, list[str] | None]:
    """Normalize every accepted input form to named items, with labels when known."""
    if isinstance(inputs, Dataset):
        return [_Item(str(p), p) for p in inputs.paths], inputs.labels, inputs.class_names
    if isinstance(inputs, np.ndarray):
        if inputs.ndim != 4 or inputs.shape[-1] != 3 or inputs.dtype != np.uint8:
            message = f"<array>: expected N x H x W x 3 uint8 images, got shape {inputs.shape} and dtype {inputs.dtype}"
            raise InputError(message)
        return [_Item(f"<array {i}>", image) for i, image in enumerate(inputs)], None, None
    if isinstance(inputs, (str, Path)):
        return _as_items(load_dataset(inputs))
    inputs = list(inputs)
    if inputs and all(isinstance(x, (np.ndarray, Image.Image)) for x in inputs):
        return [_Item(f"<image {i}>", x) for i, x in enumerate(inputs)], None, None
    if all(isinstance(x, (str, Path)) for x in inputs):
        files = [x for x in inputs if not Path(x).is_dir()]
        if len(files) == len(inputs):  # plain file list: keep order and duplicates, no existence check here
            return [_Item(str(x), Path(x)) for x in inputs], None, None
        return _as_items(load_dataset(inputs))
    kinds = sorted({type(x).__name__ for x in inputs})
    message = f"inputs: expected paths, a folder, a CSV, uint8 arrays or PIL images; got {', '.join(kinds)}"
    raise InputError(message)


def _key(item: _Item) -> tuple[str, os.stat_result | None]:
    """The content key, and for files the stat taken before reading (for the key memo)."""
    if isinstance(item.source, Path):
        stat = os.stat(item.source)
        return sha256_file(item.source), stat
    if isinstance(item.source, Image.Image):
        return sha256_array(np.asarray(item.source)), None
    return sha256_array(item.source), None


class Extractor:
    """Turns images into codes for one backbone and set of options; owns the session and cache.

    ``Extractor.n_inferred_total`` counts the images every extractor of this process ran
    through a model (not served from the cache).

    Parameters
    ----------
    options : ExtractionOptions
    cache : CodeCache, Path, str, bool or None, default=True
        True: the default cache folder; a path or CodeCache: that cache; False or
        None: no cache.
    batch_size : int or None, default=None
        Model inputs per inference call; None picks 8 on the CPU (cache-friendly,
        measured fastest there) and 64 on a GPU.
    device : {"auto", "cpu", "cuda", "tensorrt"}, default="auto"
    n_threads : int or None, default=None
        onnxruntime intra-op threads; None: every core.
    optimization : {"disable", "basic", "extended", "all"}, default="all"
        onnxruntime graph optimization level.
    n_workers : int or None, default=None
        Decode threads; None uses the number of cores.
    on_error : {"skip", "raise"}, default="skip"
        "skip" collects failures and goes on; "raise" stops at the first one.
    progress : bool or None, default=None
        Progress line on stderr; None shows it only on a terminal.
    owner : str, default=""
        The estimator to name in parameter errors (``CNNCodes``).
    """

    n_inferred_total = 0

    def __init__(
        self,
        options: ExtractionOptions,
        *,
        cache: CodeCache | Path | str | bool | None = True,
        batch_size: int | None = DEFAULT_BATCH_SIZE,
        device: str = "auto",
        n_threads: int | None = None,
        optimization: str = "all",
        n_workers: int | None = None,
        on_error: str = "skip",
        progress: bool | None = None,
        owner: str = "",
    ) -> None:
        options.check(owner)
        if on_error not in _ON_ERROR:
            raise _choice_error("on_error", _ON_ERROR, on_error, owner)
        if device not in DEVICES:
            raise _choice_error("device", DEVICES, device, owner)
        if optimization not in OPTIMIZATIONS:
            raise _choice_error("optimization", OPTIMIZATIONS, optimization, owner)
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            message = f"{_parameter('batch_size', owner)} must be a positive int. Got {batch_size!r} instead."
            raise InputError(message)
        self.options = options
        self.backbone: BackboneSpec = resolve_backbone(options.model)
        self.taps: list[TapSpec] = [self.backbone.get_tap(name) for name in options.layers]
        self.preprocessing = Preprocessing(
            self.backbone.input_size,
            self.backbone.crop_fraction,
            self.backbone.interpolation,
            options.draft,
            options.views,
        )
        self.batch_size, self.device, self.n_threads, self.optimization = batch_size, device, n_threads, optimization
        self.n_workers = n_workers or os.cpu_count() or 1
        self.on_error, self.progress = on_error, progress
        if cache is True:
            cache = CodeCache()
        elif isinstance(cache, (str, Path)):
            cache = CodeCache(cache)
        self.cache: CodeCache | None = cache or None
        self._session: Session | None = None
        self._session_lock = threading.Lock()
        self._model_path: Path | None = None
        self.n_inferred = 0  # images run through the model by this extractor

    # -- specs ------------------------------------------------------------------
    @property
    def model_path(self) -> Path:
        """The ONNX file, built or fetched on first use."""
        if self._model_path is None:
            self._model_path = ensure_model_file(self.backbone)
        return self._model_path

    def _tap_length(self, tap: TapSpec) -> int:
        grid = self.options.grid if tap.is_spatial else None
        length = code_length(tap.channels, grid)
        return length * (n_views(self.options.views) if self.options.combine == "none" else 1)

    @property
    def n_features(self) -> int:
        """Length of the concatenated code."""
        return sum(self._tap_length(tap) for tap in self.taps)

    def feature_names(self) -> list[str]:
        """One name per code dimension: ``<model>_<layer>_<i>``."""
        stem = Path(self.backbone.name).stem.replace(".", "_")
        return [f"{stem}_{tap.name}_{i}" for tap in self.taps for i in range(self._tap_length(tap))]

    def tap_spec(self, tap: TapSpec) -> dict[str, Any]:
        """Everything that changes one tap's codes: the cache key of its feature set."""
        options = self.options
        spatial = tap.is_spatial
        return {
            "model": self.backbone.name,
            "model_sha256": _model_sha256(self.model_path),
            "tap": tap.name,
            "tensor": tap.tensor,
            "preprocessing": {
                **self.preprocessing.as_dict(),
                "mean": list(self.backbone.mean),
                "std": list(self.backbone.std),
                "color_order": self.backbone.color_order,
            },
            "relu": tap.relu_by_default if options.relu is None else options.relu,
            "pooling": options.pooling if spatial else "none",
            "grid": options.grid if spatial else None,
            "gem_p": options.gem_p if spatial and options.pooling == "gem" else None,
            "combine": options.combine if options.views != "none" else None,
            "normalize": options.normalize,
            "power": options.power if options.normalize == "power" else None,
            "dtype": options.dtype,
        }

    def spec(self) -> dict[str, Any]:
        """The spec of the whole (concatenated) code."""
        options = {**asdict(self.options), "layer": list(self.options.layers)}
        return {"layers": [self.tap_spec(tap) for tap in self.taps], "n_features": self.n_features, "options": options}

    # -- running ------------------------------------------------------------------
    def _get_session(self) -> Session:
        with self._session_lock:
            return self._open_session()

    def _open_session(self) -> Session:
        if self._session is None:
            tensors = list(dict.fromkeys(tap.tensor for tap in self.taps))
            model = prepare_model(
                self.model_path,
                tensors,
                input_name=self.backbone.input_name,
                input_size=self.backbone.input_size,
                mean=self.backbone.mean,
                std=self.backbone.std,
                color_order=self.backbone.color_order,
            )
            self._session = Session(model, self.device, n_threads=self.n_threads, optimization=self.optimization)
            logger.info(self._session.choice.describe())
        return self._session

    def codes_of_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """Codes of already decoded and cut model inputs, bypassing decoding and the cache.

        Parameters
        ----------
        pixels : ndarray of shape (n * n_views, input_size, input_size, 3), uint8
            Model inputs, RGB, the views of each image consecutive.

        Returns
        -------
        ndarray of shape (n, n_features), float32
        """
        n_images = len(pixels) // n_views(self.options.views)
        return np.concatenate(self._codes_of_batch(np.ascontiguousarray(pixels, np.uint8), n_images), axis=1)

    def _codes_of_batch(self, pixels: np.ndarray, n_images: int) -> list[np.ndarray]:
        """Run one batch of views; return per-tap codes (n_images, length)."""
        outputs = self._get_session().run(pixels)
        self.n_inferred += n_images
        Extractor.n_inferred_total += n_images
        options, per_tap = self.options, []
        for tap in self.taps:
            spec_relu = tap.relu_by_default if options.relu is None else options.relu
            codes = pool(
                outputs[tap.tensor],
                method=options.pooling,
                relu=spec_relu,
                grid=options.grid if tap.is_spatial else None,
                gem_p=options.gem_p,
            )
            codes = combine_views(codes, n_views(options.views), options.combine)
            codes = normalize_codes(codes, options.normalize, options.power)
            if options.dtype == "float16":  # in memory exactly what the cache will return
                codes = codes.astype(np.float16).astype(np.float32)
            per_tap.append(codes)
        return per_tap

    def _prepare_views(self, item: _Item) -> list[np.ndarray]:
        image = decode_image(item.source, self.preprocessing, item.name)
        return make_views(image, self.preprocessing)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._session_lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_session"] = None  # onnxruntime sessions do not pickle; rebuilt lazily
        del state["_session_lock"]
        return state

    def run(self, inputs: Any) -> ExtractionResult:
        """Extract codes for ``inputs`` (see :func:`cnncodes.extract` for the accepted forms)."""
        plan = self.plan(inputs)
        try:
            with ThreadPoolExecutor(self.n_workers) as pool_:
                self._compute(plan, pool_)
        finally:  # whatever stops the run, keep what was computed
            self.flush(plan)
        return self.finish(plan)

    def plan(self, inputs: Any) -> ExtractionPlan:
        """Name and key every input and fill what the cache holds; ``plan.todo`` is what is left."""
        items, labels, class_names = _as_items(inputs)
        n = len(items)
        plan = ExtractionPlan(
            items=items,
            labels=labels,
            class_names=class_names,
            codes=[np.zeros((n, self._tap_length(tap)), np.float32) for tap in self.taps],
            ok=np.zeros(n, dtype=bool),
            progress=_Progress(n, sys.stderr.isatty() if self.progress is None else self.progress),
            feature_sets=[self.cache.feature_set(self.tap_spec(t)) for t in self.taps] if self.cache else [],
            on_error=self.on_error,
        )
        with ThreadPoolExecutor(self.n_workers) as pool_:
            self._set_keys(items, pool_, plan.fail)
        plan.todo = [i for i in range(n) if i not in plan.failures]
        if plan.feature_sets:
            self._read_cached(plan)
            plan.progress.update(done=int(plan.ok.sum()), cached=int(plan.ok.sum()))
        plan.n_from_cache = int(plan.ok.sum())
        return plan

    @staticmethod
    def flush(plan: ExtractionPlan) -> None:
        """Write the pending shards of every feature set of ``plan``."""
        for fs in plan.feature_sets:
            fs.flush()

    def finish(self, plan: ExtractionPlan) -> ExtractionResult:
        """The result of a plan whose ``todo`` items were computed (or failed)."""
        plan.progress.close()
        items, codes, n = plan.items, plan.codes, len(plan.items)
        rows = np.flatnonzero(plan.ok)
        if len(codes) == 1 and rows.size == n:  # the common case: no copy of what may be a large array
            all_codes = codes[0]
        else:
            all_codes = (
                np.concatenate([block[rows] for block in codes], axis=1) if codes else np.empty((0, 0), np.float32)
            )
        return ExtractionResult(
            codes=all_codes,
            paths=[items[i].name for i in rows],
            keys=[items[i].key or "" for i in rows],
            indices=rows,
            labels=plan.labels[rows] if plan.labels is not None else None,
            class_names=plan.class_names,
            failures=[(items[i].name, plan.failures[i]) for i in sorted(plan.failures)],
            n_images=n,
            n_from_cache=plan.n_from_cache,
            elapsed_s=time.monotonic() - plan.start,
            spec=self.spec(),
            feature_names=self.feature_names(),
        )

    @staticmethod
    def _read_cached(plan: ExtractionPlan) -> None:
        """Fill the rows every tap has cached; leave in ``plan.todo`` the items still to compute."""
        keys = [plan.items[i].key or "" for i in plan.todo]
        present_by_tap = np.array([fs.contains(keys) for fs in plan.feature_sets])
        plan.stored = [{keys[j] for j in np.flatnonzero(column)} for column in present_by_tap]
        present = present_by_tap.all(axis=0)
        hits = [i for i, hit in zip(plan.todo, present) if hit]
        if hits:
            for fs, block in zip(plan.feature_sets, plan.codes):
                block[hits] = fs.get([plan.items[i].key or "" for i in hits])
        plan.ok[hits] = True
        plan.todo = [i for i, hit in zip(plan.todo, present) if not hit]

    def _set_keys(
        self, items: list[_Item], pool_: ThreadPoolExecutor, fail: Callable[[int, CnnCodesError], None]
    ) -> None:
        """Content keys of every item; files unchanged since a previous run come from the cache's memo."""
        files = [i for i, item in enumerate(items) if isinstance(item.source, Path)]
        memo = self.cache.key_memo if self.cache else None
        known = memo.lookup([items[i].source for i in files]) if memo else {}
        for position, key in known.items():
            items[files[position]].key = key
        todo = [i for i, item in enumerate(items) if item.key is None]
        hashed = []
        for index, outcome in zip(todo, pool_.map(_safe_key, [items[i] for i in todo])):
            if isinstance(outcome, CnnCodesError):
                fail(index, outcome)
                continue
            items[index].key, stat = outcome
            if stat is not None:
                hashed.append((items[index].source, stat, items[index].key))
        if memo:
            memo.store(hashed)

    def _compute(self, plan: ExtractionPlan, pool_: ThreadPoolExecutor) -> None:
        """Decode in the pool, a bounded window ahead of inference; fill the plan's codes in place."""
        items, todo, codes, ok = plan.items, plan.todo, plan.codes, plan.ok
        feature_sets, fail, progress = plan.feature_sets, plan.fail, plan.progress
        if not todo:
            return
        views_per_image = n_views(self.options.views)
        largest_batch = self.batch_size or max(_BATCH_SIZE_BY_DEVICE.values())
        window = max(2 * largest_batch // views_per_image, 2 * self.n_workers, 4)
        pending: collections.deque[tuple[int, Future[list[np.ndarray]]]] = collections.deque()
        batch_index: list[int] = []
        batch_views: list[np.ndarray] = []
        queue = iter(todo)

        def flush_batch() -> None:
            per_tap = self._codes_of_batch(np.stack(batch_views), len(batch_index))
            keys = [items[i].key or "" for i in batch_index]
            for block, tap_codes in zip(codes, per_tap):
                block[batch_index] = tap_codes
            for fs, stored, tap_codes in zip(feature_sets, plan.stored, per_tap):
                new = [
                    j for j, key in enumerate(keys) if key not in stored
                ]  # a tap cached already gets no duplicate rows
                if new:
                    fs.add([keys[j] for j in new], tap_codes[new])
            ok[batch_index] = True
            progress.update(done=len(batch_index))
            batch_index.clear()
            batch_views.clear()

        def submit_next() -> None:
            index = next(queue, None)
            if index is not None:
                pending.append((index, pool_.submit(self._prepare_views, items[index])))

        for _ in range(window):
            submit_next()
        # The session (model preparation, provider probing) opens while the first images decode.
        batch_size = self.batch_size or _BATCH_SIZE_BY_DEVICE[self._get_session().choice.device]
        while pending:
            index, future = pending.popleft()
            submit_next()
            try:
                views = future.result()
            except ImageDecodeError as error:
                fail(index, error)
                continue
            batch_index.append(index)
            batch_views.extend(views)
            if len(batch_views) >= batch_size:
                flush_batch()
        if batch_index:
            flush_batch()


def _safe_key(item: _Item) -> tuple[str, os.stat_result | None] | CnnCodesError:
    try:
        return _key(item)
    except OSError as error:
        return ImageDecodeError(f"{item.name}: cannot read file ({error.strerror or error})")
