"""The only onnxruntime importer: sessions that load, warm up and fall back, and running named outputs."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Collection, Iterable, Iterator

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from .enginecache import EngineFolder
from .errors import ModelFileError, ProviderFallbackWarning
from .fingerprint import sha256_bytes
from .params import DEVICES, OPTIMIZATIONS, batch_size_for, check_parameter, inference_streams_for, n_cores
from .providers import PROVIDERS, Attempt, ProviderChoice, captured_output, failure_reason, fallback_chain
from .providers import missing_gpu_driver
from .providers import largest_batch, session_providers, tensorrt_options

__all__ = ["ProviderChoice", "Attempt", "open_first", "Session", "onnxruntime_version"]

_OPTIMIZATION_LEVELS = {  # keyed by params.OPTIMIZATIONS, the declared choices
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
assert set(_OPTIMIZATION_LEVELS) == set(OPTIMIZATIONS) and set(PROVIDERS) == set(DEVICES) - {"auto"}
# onnxruntime raises one class per status code, none of them a RuntimeError (EPFail, InvalidArgument, ...).
ORT_ERRORS: tuple[type[Exception], ...] = (
    RuntimeError,
    ValueError,
    *(
        getattr(ort_state, name)
        for name in (
            "Fail", "InvalidArgument", "NoSuchFile", "NoModel", "EngineError", "RuntimeException", "InvalidProtobuf",
            "ModelLoaded", "NotImplemented", "InvalidGraph", "EPFail", "ModelLoadCanceled",
            "ModelRequiresCompilation", "NotFound",
        )  # fmt: skip
        if hasattr(ort_state, name)
    ),
)
_NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
                "tensor(uint8)": np.uint8, "tensor(int8)": np.int8, "tensor(int32)": np.int32,
                "tensor(int64)": np.int64}  # fmt: skip


def onnxruntime_version() -> str:
    """The installed onnxruntime version.

    Examples
    --------
    >>> onnxruntime_version() == ort.__version__
    True
    """
    return str(ort.__version__)


@functools.cache
def preload_gpu_libraries() -> str:
    """Load the pip-installed CUDA and cuDNN libraries once, before any GPU provider is probed; return what it said.

    Without ``onnxruntime.preload_dlls()`` (onnxruntime >= 1.21) the CUDA provider finds the
    ``nvidia-*`` wheels' libraries only if torch happened to load them first. TF32 is turned off
    for every NVIDIA library of the process unless ``NVIDIA_TF32_OVERRIDE`` is already set:
    TensorRT allows TF32 by default and onnxruntime has no TensorRT option against it.

    Examples
    --------
    >>> said = preload_gpu_libraries()  # quiet: a missing library is reported by the provider that needs it
    >>> preload_gpu_libraries() is said, "NVIDIA_TF32_OVERRIDE" in os.environ
    (True, True)
    """
    os.environ.setdefault("NVIDIA_TF32_OVERRIDE", "0")
    with captured_output() as log:
        try:
            ort.preload_dlls()
        except (OSError, RuntimeError) as error:  # a missing library is reported by the provider that needs it
            print(error)
    return log.getvalue()


@dataclass(frozen=True)
class _ModelIO:
    """What the model takes and gives, read once by a CPU session with every optimization off."""

    input_name: str
    input_dtype: type
    sample_shape: tuple[int, ...] | None  # one input row, when every dimension but the batch is fixed
    outputs: tuple[str, ...]

    @classmethod
    def of(cls, model: bytes) -> "_ModelIO":
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.log_severity_level = 3
        try:
            session = ort.InferenceSession(model, sess_options=options, providers=[PROVIDERS["cpu"]])
        except ORT_ERRORS as error:
            message = (
                f"ONNX model sha256 {sha256_bytes(model)[:12]}: onnxruntime cannot load it "
                f"({failure_reason(str(error)).removeprefix('failed to initialize (')}"
            )
            raise ModelFileError(message) from error
        pixels = session.get_inputs()[0]
        outputs = tuple(o.name for o in session.get_outputs())
        return cls(pixels.name, _NUMPY_TYPES.get(pixels.type, np.uint8), _row_shape(pixels.shape), outputs)


def _row_shape(shape: list[int | str | None]) -> tuple[int, ...] | None:
    rest = shape[1:]
    return tuple(rest) if all(isinstance(d, int) for d in rest) else None  # type: ignore[arg-type]


def _session_options(n_threads: int | None, optimization: str) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = _OPTIMIZATION_LEVELS[optimization]
    options.log_severity_level = 3
    # Idle intra-op threads would spin on the cores that image decoding needs (measured: ~6% faster end to end).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if n_threads:
        options.intra_op_num_threads = n_threads
    return options


def _run(session: ort.InferenceSession, io_spec: _ModelIO, pixels: np.ndarray) -> dict[str, np.ndarray]:
    """One inference call, every output by name.

    No IO binding: ``session.run`` already copies a GPU output to the host once and hands that
    buffer over without another copy (the binding this replaces copied every output twice), and
    binding a host input costs the same host-to-device copy as ``session.run``.
    """
    return dict(zip(io_spec.outputs, session.run(list(io_spec.outputs), {io_spec.input_name: pixels})))


def open_first(
    model: bytes, attempts: Iterable[Attempt], io_spec: _ModelIO
) -> tuple[ort.InferenceSession, Attempt, dict[str, str]]:
    """Open a session with the first attempt that initializes on its own provider and survives a warm-up batch.

    Every onnxruntime error class counts as a failure, at creation and at the warm-up run
    (where TensorRT may build its engine, cuDNN loads and memory for the batch is allocated).

    Parameters
    ----------
    model : bytes
    attempts : iterable of Attempt
        Tried in order, lazily.
    io_spec : _ModelIO
        The model's inputs and outputs (``_ModelIO.of(model)``).

    Returns
    -------
    session : onnxruntime.InferenceSession
    attempt : Attempt
        The one that worked.
    passed_over : dict of str to str
        Name of each attempt that did not work -> why.

    Raises
    ------
    ModelFileError
        If no attempt works.
    """
    passed_over: dict[str, str] = {}
    for attempt in attempts:
        session, stage, error = None, "initialize", ""
        with captured_output() as log:
            try:
                session = ort.InferenceSession(model, sess_options=attempt.options, providers=attempt.providers)
                if session.get_providers()[0] == PROVIDERS[attempt.device]:
                    session.disable_fallback()  # an EPFail at run time must reach us, not switch providers silently
                    if attempt.warm_up and io_spec.sample_shape is not None:
                        stage = "run a warm-up batch"
                        _run(session, io_spec, np.zeros((attempt.batch, *io_spec.sample_shape), io_spec.input_dtype))
            except ORT_ERRORS as caught:
                session, error = None, str(caught)
        if session is not None and session.get_providers()[0] == PROVIDERS[attempt.device]:
            if attempt.engines is not None and attempt.build_dir is not None:
                try:
                    attempt.engines.publish(attempt.build_dir)
                except OSError:  # a read-only or full shared folder: this session runs, the next one rebuilds
                    attempt.engines.discard(attempt.build_dir)
            return session, attempt, passed_over
        if attempt.engines is not None and attempt.build_dir is not None:
            attempt.engines.discard(attempt.build_dir)
        passed_over[attempt.name] = failure_reason(log.getvalue(), stage, error)
    reasons = "; ".join(f"{name}: {why}" for name, why in passed_over.items())
    message = f"ONNX model sha256 {sha256_bytes(model)[:12]}: no execution provider runs it ({reasons})"
    raise ModelFileError(message)


def _attempts(
    model: bytes,
    device: str,
    io_spec: _ModelIO,
    max_batch_of: dict[str, int],
    make_options: Callable[[str], Any],
    precision: str = "fp32",
    skip: Collection[str] = (),
) -> Iterator[Attempt]:
    """The attempts for ``device`` whose provider is in this build, but for the devices in ``skip``, made only when
    reached."""
    chain = fallback_chain(device)
    for candidate in chain:
        if PROVIDERS[candidate] not in ort.get_available_providers() or candidate in skip:
            continue
        if candidate != "cpu":
            preload_gpu_libraries()
        if candidate == "tensorrt" and io_spec.sample_shape is not None:
            yield tensorrt_attempt(model, io_spec, max_batch_of[candidate], make_options(candidate), precision)
        else:  # the last resort has nothing to fall back to, so it skips the warm-up
            providers = session_providers(candidate)
            warm_up = candidate != chain[-1]
            yield Attempt(candidate, providers, make_options(candidate), warm_up=warm_up, batch=max_batch_of[candidate])


def tensorrt_attempt(
    model: bytes, io_spec: _ModelIO, max_batch: int, options: ort.SessionOptions, precision: str = "fp32"
) -> Attempt:
    """A TensorRT attempt building in a new private folder of the model's engine folder (created with parents), or
    in a temporary folder, published nowhere, where the models folder cannot be written."""
    assert io_spec.sample_shape is not None
    shared = EngineFolder(sha256_bytes(model), max_batch)
    engines: EngineFolder | None = shared
    try:
        build = shared.open_build()
    except OSError:  # a read-only or full models folder: TensorRT builds in a folder of its own, published nowhere
        engines, build = None, Path(tempfile.mkdtemp(prefix="cnncodes-tensorrt-"))
        atexit.register(shutil.rmtree, build, True)
    providers = session_providers(
        "tensorrt", tensorrt_options(build, io_spec.input_name, io_spec.sample_shape, max_batch, precision)
    )
    return Attempt("tensorrt", providers, options, batch=max_batch, engines=engines, build_dir=build)


def _open(
    model: bytes,
    device: str,
    n_threads: int | None,
    optimization: str,
    batch_size: int | None,
    n_views: int,
    precision: str = "fp32",
) -> tuple[ort.InferenceSession, ProviderChoice, _ModelIO]:
    check_parameter("device", device)
    check_parameter("optimization", optimization)
    io_spec = _ModelIO.of(model)
    max_batch_of = {d: largest_batch(batch_size_for(batch_size, d), n_views) for d in PROVIDERS}
    driver = missing_gpu_driver() if device != "cpu" else None
    passed_over: dict[str, str] = {}
    for d in fallback_chain(device):
        if PROVIDERS[d] not in ort.get_available_providers():
            passed_over[PROVIDERS[d]] = "not in this onnxruntime build"
        elif d != "cpu" and driver:
            passed_over[PROVIDERS[d]] = driver
    skip = {d for d in fallback_chain(device) if PROVIDERS[d] in passed_over}

    def make_options(candidate: str) -> ort.SessionOptions:
        return _session_options(inference_streams_for(n_threads, candidate, n_cores())[1], optimization)

    attempts = _attempts(model, device, io_spec, max_batch_of, make_options, precision, skip)
    session, attempt, failed = open_first(model, attempts, io_spec)
    passed_over.update(failed)
    passed_over = {
        PROVIDERS[d]: passed_over[PROVIDERS[d]] for d in fallback_chain(device) if PROVIDERS[d] in passed_over
    }
    if device in ("cuda", "tensorrt") and attempt.device != device:
        message = f"{PROVIDERS[device]} requested but {passed_over[PROVIDERS[device]]}; using {attempt.name}"
        warnings.warn(message, ProviderFallbackWarning, stacklevel=3)
    return session, ProviderChoice(attempt.name, attempt.device, passed_over, onnxruntime_version()), io_spec


class Session:
    """One onnxruntime session on the best provider that really works: uint8 pixels in, named tensors out.

    ``"auto"`` and ``"tensorrt"`` try TensorRT, then CUDA, then the CPU; ``"cuda"`` tries CUDA,
    then the CPU. A GPU provider is kept only if a session initializes on it and runs one batch
    of the largest shape it will get. An explicit GPU device that does not work falls back with
    a :class:`ProviderFallbackWarning` naming both sides. Batches run in calls of at most
    :attr:`max_batch` rows: the batch range TensorRT's engine was built for, so no batch makes
    it rebuild, and the memory the warm-up run proved available.

    Parameters
    ----------
    model : bytes
        A serialized ONNX model, e.g. from :func:`cnncodes.taps.prepare_model`.
    device : {"auto", "cpu", "cuda", "tensorrt"}, default="auto"
    n_threads : int or None, default=None
        Intra-op threads of one call at a time; None: on the CPU, :attr:`n_streams` calls (one
        per core) side by side, on one thread each.
    optimization : {"disable", "basic", "extended", "all"}, default="all"
        onnxruntime graph optimization level.
    batch_size : int or None, default=None
        Images per call; None: by device (8 on the CPU, 64 on a GPU).
    n_views : int, default=1
        Views (rows) per image: a call gets whole images, up to ``n_views - 1`` rows more than ``batch_size``.
    precision : {"fp32", "int8", "fp16"}, default="fp32"
        The arithmetic of ``model`` (see :mod:`cnncodes.quantize`): turns on TensorRT's matching
        flag; other providers run the graph as it is.

    Attributes
    ----------
    choice : ProviderChoice
        The provider that runs, and why the ones before it were passed over.
    providers : list of str
        What the session registered, in order of precedence.
    batch_size : int
        Images per call on that provider.
    max_batch : int
        The most rows one inference call gets.
    n_streams : int
        Inference calls that run best side by side (:func:`cnncodes.params.inference_streams_for`):
        :meth:`run` may be called from any number of threads at once, and runs the calls of a
        large batch that many at a time (one at a time in the calling thread where it is 1).
    input_name : str
    output_names : list of str

    Raises
    ------
    InputError
        If ``device`` or ``optimization`` is not one of the declared choices.
    ModelFileError
        If onnxruntime cannot load the model, or no provider runs it.

    Warns
    -----
    ProviderFallbackWarning
        If an explicitly requested GPU provider does not work.

    Examples
    --------
    >>> from onnx import TensorProto, helper
    >>> pixels = helper.make_tensor_value_info("pixels", TensorProto.UINT8, ["N", 2, 2, 3])
    >>> mean = helper.make_tensor_value_info("mean", TensorProto.FLOAT, ["N", 1, 1, 1])
    >>> cast = helper.make_node("Cast", ["pixels"], ["f"], to=TensorProto.FLOAT)
    >>> average = helper.make_node("ReduceMean", ["f"], ["mean"], axes=[1, 2, 3])
    >>> graph = helper.make_graph([cast, average], "mean", [pixels], [mean])
    >>> model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    >>> session = Session(model.SerializeToString(), "cpu", batch_size=2)
    >>> session.choice.provider, session.providers, session.max_batch
    ('CPUExecutionProvider', ['CPUExecutionProvider'], 2)
    >>> session.run(np.arange(5 * 12, dtype=np.uint8).reshape(5, 2, 2, 3))["mean"].ravel().tolist()  # 2 + 2 + 1
    [5.5, 17.5, 29.5, 41.5, 53.5]
    >>> Session(model.SerializeToString(), "gpu")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    cnncodes.errors.InputError: The 'device' parameter must be one of 'auto', 'cpu', ... Got 'gpu' instead.
    """

    def __init__(
        self,
        model: bytes,
        device: str = "auto",
        *,
        n_threads: int | None = None,
        optimization: str = "all",
        batch_size: int | None = None,
        n_views: int = 1,
        precision: str = "fp32",
    ) -> None:
        self._session, self.choice, self._io = _open(
            model, device, n_threads, optimization, batch_size, n_views, precision
        )
        self.batch_size = batch_size_for(batch_size, self.choice.device)
        self.max_batch = largest_batch(self.batch_size, n_views)
        self.n_streams = inference_streams_for(n_threads, self.choice.device, n_cores())[0]
        self.providers: list[str] = self._session.get_providers()
        self.input_name = self._io.input_name
        self.output_names = list(self._io.outputs)

    def run(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        """Run a batch of model inputs, in calls of at most :attr:`max_batch` rows.

        Parameters
        ----------
        pixels : ndarray of shape (N, H, W, 3), uint8

        Returns
        -------
        dict of str to ndarray
            Every output of the model, by name, on the host, N rows each.
        """
        pixels = np.ascontiguousarray(pixels)
        if len(pixels) <= self.max_batch:
            return _run(self._session, self._io, pixels)
        starts = range(0, len(pixels), self.max_batch)

        def part(start: int) -> dict[str, np.ndarray]:
            return _run(self._session, self._io, pixels[start : start + self.max_batch])

        if self.n_streams == 1:  # a GPU provider keeps state per thread: its calls stay on the caller's
            parts = [part(start) for start in starts]
        else:
            with ThreadPoolExecutor(min(self.n_streams, len(starts))) as streams:
                parts = list(streams.map(part, starts))
        return {name: np.concatenate([part[name] for part in parts]) for name in self.output_names}
