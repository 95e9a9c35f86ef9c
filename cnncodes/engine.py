"""The extraction pipeline: content keys -> cache hits -> decode pool -> ONNX Runtime -> pooling -> cache."""

from __future__ import annotations

import collections
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .backbones import BackboneSpec, TapSpec
from .cache import CodeCache, FeatureSet
from .codesfile import CodesFile
from .contentkeys import content_keys, file_sha256
from .errors import CnnCodesError, ImageDecodeError, InputError
from .featurespec import ExtractionOptions, FeatureSetSpec
from .fastdecode import prepare_views
from .images import n_views
from .messages import invalid_value_message
from .inputs import Inputs, Source, read_inputs
from .modelfiles import ensure_model_file, resolve_backbone
from .params import RUN_PARAMETERS, RunOptions, check_parameter, decode_workers_for, default
from .params import n_cores
from .pooling import code_length, combine_views, normalize_codes, pool
from .progress import Progress
from .quantize import precision_model_file

if TYPE_CHECKING:
    from .runtime import Session
    from typing_extensions import Unpack  # typing.Unpack from Python 3.11 on

__all__ = ["ExtractionOptions", "ExtractionResult", "ExtractionPlan", "Extractor", "RunSettings"]

logger = logging.getLogger("cnncodes")


class RunSettings(RunOptions, total=False):
    """How an :class:`Extractor` runs (none of it changes the codes); see :mod:`cnncodes.params`."""

    on_error: str  # "skip" | "raise"
    progress: bool | None  # None: only on a terminal
    owner: str  # the estimator that parameter errors name


@dataclass
class ExtractionResult:
    """Codes of the images that worked, aligned with ``paths``; failures apart.

    Examples
    --------
    >>> result = ExtractionResult(np.zeros((1, 4), np.float32), ["a.jpg"], ["k"], np.array([0]), n_images=2,
    ...                           failures=[("b.jpg", "empty file (0 bytes)")], elapsed_s=0.5)
    >>> result.summary()
    '2 images, 0 from cache, 1 failed (0.5 s, 2.0 images/s computed)'
    """

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
    spec: dict[str, Any] = field(default_factory=dict)  # feature-set specs of the taps, and the options
    feature_names: list[str] = field(default_factory=list)

    @property
    def n_failed(self) -> int:
        """How many inputs have no codes."""
        return len(self.failures)

    def summary(self) -> str:
        """One line: N images, K from cache, F failed, and the rate of the images computed.

        Returns
        -------
        str
        """
        computed = self.n_images - self.n_from_cache - self.n_failed
        rate = computed / self.elapsed_s if self.elapsed_s > 0 else 0.0
        counts = f"{self.n_images} images, {self.n_from_cache} from cache, {self.n_failed} failed"
        return f"{counts} ({self.elapsed_s:.1f} s, {rate:.1f} images/s computed)"

    def to_codes_file(self) -> CodesFile:
        """The content of a codes file.

        Returns
        -------
        CodesFile
        """
        return CodesFile(self.codes, self.paths, self.keys, self.labels, self.class_names, self.failures, self.spec)


@dataclass
class ExtractionPlan:
    """One extraction in progress: inputs with keys, codes filled so far, and what is left to compute.

    :meth:`Extractor.plan` makes one; :meth:`Extractor.finish` turns it into the result. A
    plan is filled through its methods, by the extractor or on a dask cluster.

    Examples
    --------
    >>> extractor = Extractor(ExtractionOptions(), cache=False, progress=False)
    >>> plan = extractor.plan([b"not an image", b"nor this"])
    >>> plan.todo, plan.partitions(1)
    ([0, 1], [[0], [1]])
    """

    inputs: Inputs
    keys: list[str | None]  # content key per input; None where it could not be read
    codes: list[np.ndarray]  # one (n, length) block per tap, filled in place
    ok: np.ndarray  # rows that have codes
    feature_sets: list[FeatureSet]  # one per tap; empty without a cache
    progress: Progress = field(default_factory=lambda: Progress(0, show=False))  # see show_progress
    on_error: str = default("on_error")
    failures: dict[int, str] = field(default_factory=dict)  # position -> reason
    todo: list[int] = field(default_factory=list)  # positions still to compute
    stored: list[set[str]] = field(default_factory=list)  # per tap: keys its feature set already holds
    n_from_cache: int = 0
    start: float = field(default_factory=time.monotonic)

    def fail(self, index: int, error: CnnCodesError) -> None:
        """Record a failed input, or raise ``error`` with ``on_error="raise"``.

        Parameters
        ----------
        index : int
            Position of the input.
        error : CnnCodesError
            Its message starts with the input's name.

        Raises
        ------
        CnnCodesError
            ``error`` itself, with ``on_error="raise"``.
        """
        if self.on_error == "raise":
            raise error
        self.failures[index] = str(error).removeprefix(f"{self.inputs.names[index]}: ")
        self.progress.update(failed=1)

    def show_progress(self, show: bool | None) -> None:
        """Open the progress line, counting the inputs already served from the cache or failed."""
        self.progress = Progress(len(self.inputs), show=show, from_cache=self.n_from_cache, failed=len(self.failures))

    def fail_with(self, index: int, reason: str) -> None:
        """Record that input ``index`` failed for ``reason`` (as :meth:`fail`)."""
        self.fail(index, ImageDecodeError(f"{self.inputs.names[index]}: {reason}"))

    def sources(self, indices: list[int]) -> list[Source]:
        """The image sources at ``indices`` (what a worker needs to compute them)."""
        return [self.inputs.sources[i] for i in indices]

    def partitions(self, size: int) -> list[list[int]]:
        """What is left to compute, in consecutive parts of at most ``size`` positions."""
        return [self.todo[i : i + size] for i in range(0, len(self.todo), size)]

    def count_computed(self, n_images: int) -> None:
        """Count images computed elsewhere (their codes are read back by :meth:`read_back`)."""
        self.progress.update(done=n_images)

    def store(self, indices: list[int], per_tap: list[np.ndarray]) -> None:
        """Fill the rows of ``indices`` with freshly computed codes and queue them for the cache."""
        keys = [self.keys[i] or "" for i in indices]
        for block, tap_codes in zip(self.codes, per_tap):
            block[indices] = tap_codes
        for feature_set, stored, tap_codes in zip(self.feature_sets, self.stored, per_tap):
            new = [j for j, key in enumerate(keys) if key not in stored]  # a tap cached already gets no duplicates
            if new:
                feature_set.add([keys[j] for j in new], tap_codes[new])
        self.ok[indices] = True
        self.progress.update(done=len(indices))

    def read_back(self, indices: list[int]) -> None:
        """Fill the rows of ``indices`` from the cache, which other processes wrote."""
        keys = [self.keys[i] or "" for i in indices]
        for feature_set, block in zip(self.feature_sets, self.codes):
            feature_set.refresh()
            if indices:
                block[indices] = feature_set.get(keys)
        self.ok[indices] = True

    def read_cached(self) -> None:
        """Fill the rows every tap has cached; leave in ``todo`` the inputs still to compute."""
        if not self.feature_sets:
            return
        keys = [self.keys[i] or "" for i in self.todo]
        fetched = [fs.fetch(keys) for fs in self.feature_sets]  # a damaged shard's keys come back absent
        self.stored = [{keys[j] for j in np.flatnonzero(found)} for found, _ in fetched]
        present = np.all([found for found, _ in fetched], axis=0)
        hits = [i for i, hit in zip(self.todo, present) if hit]
        if hits:
            for block, (_, codes) in zip(self.codes, fetched):
                block[hits] = codes[present]
            self.ok[hits] = True
        self.todo = [i for i, hit in zip(self.todo, present) if not hit]
        self.n_from_cache = len(hits)

    def flush(self) -> None:
        """Write the pending shards of every feature set."""
        for feature_set in self.feature_sets:
            feature_set.flush()


def _check_grid(grid: int | None, taps: list[TapSpec], model: str, owner: str) -> None:
    """Refuse a grid when no tap has a feature map, or with more cells per side than a tap's map has pixels.

    With several taps, the grid applies to the spatial ones and vectors pass through as they are.
    """
    if grid is not None and not any(tap.is_spatial for tap in taps):
        tap = taps[0]
        message = invalid_value_message(
            "grid", f"None for tap '{tap.name}' of {model}, a vector (no feature map)", grid, owner
        )
        raise InputError(message)
    for tap in taps:
        if grid is not None and tap.is_spatial and tap.size and grid > tap.size:
            message = invalid_value_message(
                "grid",
                f"at most {tap.size}, the size of tap '{tap.name}' of {model} ({tap.size} x {tap.size})",
                grid,
                owner,
            )
            raise InputError(message)


class Extractor:
    """Turns images into codes for one backbone and set of options; owns the session and the cache.

    ``Extractor.n_inferred_total`` counts the images every extractor of this process ran
    through a model (not served from the cache).

    Parameters
    ----------
    options : ExtractionOptions
        What the codes are.
    **settings : RunSettings
        How to run: ``cache``, ``batch_size``, ``device``, ``n_threads``, ``optimization``,
        ``n_workers``, ``on_error`` (declared in :mod:`cnncodes.params`, defaults from there),
        ``progress`` (None: only on a terminal) and ``owner`` (the estimator that parameter
        errors name).

    Raises
    ------
    InputError
        For a parameter out of range.
    UnknownBackboneError, UnknownLayerError
        For a model or layer that does not exist.

    Examples
    --------
    >>> extractor = Extractor(ExtractionOptions(layer="stage4"), cache=False, progress=False)
    >>> extractor.layers, extractor.n_features, extractor.feature_names()[0]
    (('stage4',), 80, 'efficientnet_lite0_stage4_0')
    >>> extractor.run(np.full((2, 64, 64, 3), 128, np.uint8)).codes.shape
    (2, 80)
    """

    n_inferred_total = 0

    def __init__(self, options: ExtractionOptions, **settings: Unpack[RunSettings]) -> None:
        owner = settings.get("owner", "")
        unknown = set(settings) - {*RUN_PARAMETERS, "progress", "owner"}
        if unknown:
            message = f"Extractor() got unexpected settings {', '.join(sorted(unknown))}"
            raise TypeError(message)
        run = {name: settings.get(name, default(name)) for name in RUN_PARAMETERS}
        options.check(owner)
        for name, value in run.items():
            check_parameter(name, value, owner)
        self.options = options
        self.backbone: BackboneSpec = resolve_backbone(options.model)
        self.layers: tuple[str, ...] = options.layers(self.backbone.default_tap)
        self._taps: list[TapSpec] = [self.backbone.get_tap(name) for name in self.layers]
        _check_grid(options.grid, self._taps, self.backbone.name, owner)
        self._preprocessing = options.preprocessing(self.backbone)
        self.batch_size: int | None = run["batch_size"]
        self.device: str = run["device"]
        self.n_threads: int | None = run["n_threads"]
        self.optimization: str = run["optimization"]
        self._requested_workers: int | None = run["n_workers"]
        # Threads that hash inputs and, until the session has chosen its device, the decode threads planned.
        self.n_workers: int = self._decode_threads(self.device)
        self.on_error: str = run["on_error"]
        self.progress: bool | None = settings.get("progress")
        cache = run["cache"]
        self.cache: CodeCache | None = (
            CodeCache() if cache is True else CodeCache(cache) if isinstance(cache, (str, Path)) else cache or None
        )
        self._session: Session | None = None
        self._session_lock = threading.Lock()
        self._model_path: Path | None = None
        self.n_inferred = 0  # images run through the model by this extractor

    # -- what the codes are -------------------------------------------------------------
    @property
    def model_path(self) -> Path:
        """The ONNX file at the options' precision, built or fetched on first use."""
        if self._model_path is None:
            self._model_path = precision_model_file(
                self.backbone, ensure_model_file(self.backbone), self.options.precision
            )
        return self._model_path

    def _tap_length(self, tap: TapSpec) -> int:
        length = code_length(tap.channels, self.options.grid if tap.is_spatial else None)
        return length * (n_views(self.options.views) if self.options.combine == "none" else 1)

    @property
    def n_features(self) -> int:
        """Length of the concatenated code."""
        return sum(self._tap_length(tap) for tap in self._taps)

    def feature_names(self) -> list[str]:
        """One name per code dimension: ``<model>_<layer>_<i>``.

        Returns
        -------
        list of str
        """
        stem = Path(self.backbone.name).stem.replace(".", "_")
        return [f"{stem}_{tap.name}_{i}" for tap in self._taps for i in range(self._tap_length(tap))]

    def feature_set_specs(self) -> list[FeatureSetSpec]:
        """The spec of each tap's codes: the key of its feature set in the cache.

        Returns
        -------
        list of FeatureSetSpec
        """
        model_sha256 = file_sha256(self.model_path)
        return [FeatureSetSpec.of_tap(self.options, self.backbone, tap, model_sha256) for tap in self._taps]

    def spec(self) -> dict[str, Any]:
        """The spec of the whole (concatenated) code, as codes files store it.

        Returns
        -------
        dict
            ``layers`` (each tap's feature-set spec), ``n_features`` and ``options``.
        """
        options = {**asdict(self.options), "layer": list(self.layers)}
        layers = [spec.as_dict() for spec in self.feature_set_specs()]
        return {"layers": layers, "n_features": self.n_features, "options": options}

    # -- running ------------------------------------------------------------------------
    def _get_session(self) -> Session:
        # onnxruntime loads here, on the first image to compute: a run served by the cache never needs it; onnx
        # loads only where the prepared graph is not in the models folder yet.
        from .preparedgraphs import prepared_model
        from .runtime import Session

        with self._session_lock:
            if self._session is None:
                model = prepared_model(
                    self.model_path, list(dict.fromkeys(t.tensor for t in self._taps)), self.backbone
                )
                self._session = Session(
                    model,
                    self.device,
                    n_threads=self.n_threads,
                    optimization=self.optimization,
                    batch_size=self.batch_size,
                    n_views=n_views(self.options.views),
                    precision=self.options.precision,
                )
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
        codes = np.concatenate(self._codes_of_batch(np.ascontiguousarray(pixels, np.uint8)), axis=1)
        self._count_inferred(n_images)
        return codes

    def _codes_of_batch(self, pixels: np.ndarray) -> list[np.ndarray]:
        """Run one batch of views; return per-tap codes (images, length). Called from several threads at once."""
        outputs = self._get_session().run(pixels)
        options, per_tap = self.options, []
        for tap in self._taps:
            codes = pool(
                outputs[tap.tensor],
                method=options.pooling,
                relu=tap.relu_by_default if options.relu is None else options.relu,
                grid=options.grid if tap.is_spatial else None,
                gem_p=options.gem_p,
            )
            codes = combine_views(codes, n_views(options.views), options.combine)
            codes = normalize_codes(codes, options.normalize)
            if options.dtype == "float16":  # in memory exactly what the cache will return
                codes = codes.astype(np.float16).astype(np.float32)
            per_tap.append(codes)
        return per_tap

    def _count_inferred(self, n_images: int) -> None:
        self.n_inferred += n_images
        Extractor.n_inferred_total += n_images

    def _decode_threads(self, device: str) -> int:
        precision, decoder = self.options.precision, self.options.decoder
        return decode_workers_for(self._requested_workers, device, precision, n_cores(), decoder)

    def _prepare_views(self, source: Source, name: str) -> list[np.ndarray]:
        return prepare_views(source, self._preprocessing, name)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_session"] = None  # onnxruntime sessions do not pickle; rebuilt lazily
        del state["_session_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._session_lock = threading.Lock()

    def run(self, inputs: Any) -> ExtractionResult:
        """Extract the codes of ``inputs`` (any form :func:`cnncodes.inputs.read_inputs` accepts).

        What the cache holds is read, what is computed is stored, and what was computed is
        kept whatever stops the run. Raises :class:`InputError` for inputs that cannot be
        read and, with ``on_error="raise"``, :class:`ImageDecodeError` at the first bad image.
        """
        plan = self.plan(inputs)
        try:
            self._compute(plan)
        finally:  # whatever stops the run, keep what was computed
            plan.flush()
        return self.finish(plan)

    def plan(self, inputs: Any) -> ExtractionPlan:
        """Name and key every input and fill what the cache holds; ``plan.todo`` is what is left.

        Parameters
        ----------
        inputs : object
            Any form :func:`cnncodes.inputs.read_inputs` accepts.

        Returns
        -------
        ExtractionPlan

        Raises
        ------
        InputError
            For inputs that cannot be read.
        ImageDecodeError
            With ``on_error="raise"``, for the first file that cannot be read.
        """
        read = read_inputs(inputs)
        memo = self.cache.key_memo if self.cache else None
        keys, key_failures = content_keys(read.sources, read.names, memo=memo, n_workers=self.n_workers)
        if key_failures and self.on_error == "raise":
            raise key_failures[min(key_failures)]
        n = len(read)
        plan = ExtractionPlan(
            inputs=read,
            keys=keys,
            codes=[np.zeros((n, self._tap_length(tap)), np.float32) for tap in self._taps],
            ok=np.zeros(n, dtype=bool),
            feature_sets=[self.cache.feature_set(s.as_dict()) for s in self.feature_set_specs()] if self.cache else [],
            on_error=self.on_error,
            failures={i: str(e).removeprefix(f"{read.names[i]}: ") for i, e in key_failures.items()},
            todo=[i for i in range(n) if i not in key_failures],
        )
        plan.read_cached()
        plan.show_progress(self.progress)
        return plan

    def finish(self, plan: ExtractionPlan) -> ExtractionResult:
        """The result of a plan whose ``todo`` inputs were computed (or failed).

        Parameters
        ----------
        plan : ExtractionPlan
            From :meth:`plan`, completed.

        Returns
        -------
        ExtractionResult
        """
        plan.progress.close()
        names, codes, n = plan.inputs.names, plan.codes, len(plan.inputs)
        rows = np.flatnonzero(plan.ok)
        if len(codes) == 1 and rows.size == n:  # the common case: no copy of what may be a large array
            all_codes = codes[0]
        else:
            all_codes = np.concatenate([block[rows] for block in codes], axis=1)
        return ExtractionResult(
            codes=all_codes,
            paths=[names[i] for i in rows],
            keys=[plan.keys[i] or "" for i in rows],
            indices=rows,
            labels=plan.inputs.labels[rows] if plan.inputs.labels is not None else None,
            class_names=plan.inputs.class_names,
            failures=[(names[i], plan.failures[i]) for i in sorted(plan.failures)],
            n_images=n,
            n_from_cache=plan.n_from_cache,
            elapsed_s=time.monotonic() - plan.start,
            spec=self.spec(),
            feature_names=self.feature_names(),
        )

    def _compute(self, plan: ExtractionPlan) -> None:
        """Decode in a thread pool, a bounded window ahead of inference, which runs ``session.n_streams`` batches
        side by side; fill the plan's codes in place, batch by batch in order."""
        if not plan.todo:
            return
        names, sources = plan.inputs.names, plan.inputs.sources
        # The session first: decode threads are balanced against the device it runs on (auto may end on the CPU).
        session = self._get_session()
        n_decoders = self._decode_threads(session.choice.device)
        logger.debug(
            "decoding on %d threads beside %d inference calls on %s",
            n_decoders,
            session.n_streams,
            session.choice.device,
        )
        batch_size, n_streams = session.batch_size, session.n_streams
        window = max((n_streams + 2) * batch_size // n_views(self.options.views), 2 * n_decoders, 4)
        pending: collections.deque[tuple[int, Future[list[np.ndarray]]]] = collections.deque()
        running: collections.deque[tuple[list[int], Future[list[np.ndarray]]]] = collections.deque()
        batch_index: list[int] = []
        batch_views: list[np.ndarray] = []
        queue = iter(plan.todo)
        with ThreadPoolExecutor(n_decoders) as decoders, ThreadPoolExecutor(n_streams) as inference:

            def submit_next() -> None:
                index = next(queue, None)
                if index is not None:
                    pending.append((index, decoders.submit(self._prepare_views, sources[index], names[index])))

            def store_oldest() -> None:
                indices, codes = running.popleft()
                self._store(plan, indices, codes.result())

            def infer(indices: list[int], views: list[np.ndarray]) -> None:
                if n_streams == 1:  # a GPU provider keeps state per thread: its calls stay on this one, as its warm-up
                    self._store(plan, indices, self._codes_of_batch(np.stack(views)))
                    return
                # One batch more than the streams waits in the pool, so a stream that ends starts the next at once.
                while len(running) > n_streams:
                    store_oldest()
                running.append((indices, inference.submit(self._codes_of_batch, np.stack(views))))

            try:
                for _ in range(window):
                    submit_next()
                while pending:
                    index, future = pending.popleft()
                    submit_next()
                    try:
                        views = future.result()
                    except ImageDecodeError as error:
                        plan.fail(index, error)
                        continue
                    batch_index.append(index)
                    batch_views.extend(views)
                    if len(batch_views) >= batch_size:
                        infer(batch_index, batch_views)
                        batch_index, batch_views = [], []
                if batch_index:
                    infer(batch_index, batch_views)
                while running:
                    store_oldest()
            finally:  # a run stopped early keeps the batches computed so far
                self._keep_computed(plan, running)

    def _store(self, plan: ExtractionPlan, indices: list[int], per_tap: list[np.ndarray]) -> None:
        plan.store(indices, per_tap)
        self._count_inferred(len(indices))

    def _keep_computed(
        self, plan: ExtractionPlan, running: collections.deque[tuple[list[int], Future[list[np.ndarray]]]]
    ) -> None:
        """Store, in order, the batches in flight (at most one more than the streams) that finish without an error."""
        for indices, codes in running:
            if codes.exception() is None:  # waits for a batch still running
                self._store(plan, indices, codes.result())
        running.clear()
