"""Every parameter that changes the codes or the run, declared once: default, allowed values, help.

The library's :func:`cnncodes.extract`, the :class:`cnncodes.CNNCodes` estimator, the
extraction engine and the click options all read these declarations; nothing else
repeats a default or a choice list.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence, TypedDict

from .messages import invalid_value_message, one_of_message

if TYPE_CHECKING:
    from .cache import CodeCache

__all__ = [
    "Parameter",
    "CODE_PARAMETERS",
    "RUN_PARAMETERS",
    "PARAMETERS",
    "CLUSTER_PARAMETERS",
    "default",
    "check_parameter",
    "layer_tuple",
    "batch_size_for",
    "decode_workers_for",
    "inference_streams_for",
    "n_cores",
    "POOLINGS",
    "VIEWS",
    "COMBINES",
    "NORMALIZATIONS",
    "DTYPES",
    "PRECISIONS",
    "DEVICES",
    "OPTIMIZATIONS",
    "ON_ERRORS",
    "HEAD_NAMES",
    "DEFAULT_BACKBONE",
    "POWER_EXPONENT",
    "ESTIMATOR_ON_ERROR",
    "RunOptions",
    "ExtractParameters",
]

DEFAULT_BACKBONE = "efficientnet_lite0"
POOLINGS = ("avg", "max", "gem")
VIEWS = ("none", "flip", "5crop", "10crop", "razavian16")
COMBINES = ("mean", "sum", "max", "none")
NORMALIZATIONS = ("none", "l2", "power")
DTYPES = ("float32", "float16")
DECODERS = ("fast", "exact")  # fastdecode.py (libjpeg-turbo + OpenCV) or images.py (Pillow)
PRECISIONS = ("fp32", "int8", "fp16")  # the network's arithmetic; quantize.py builds the int8 and fp16 graphs
DEVICES = ("auto", "cpu", "cuda", "tensorrt")
OPTIMIZATIONS = ("disable", "basic", "extended", "all")
ON_ERRORS = ("skip", "raise")
HEAD_NAMES = ("extra-trees", "hist-gb", "linear-svm", "logistic", "random-forest", "sgd")  # heads.make_head builds them
ESTIMATOR_ON_ERROR = "raise"  # CNNCodes must keep rows aligned with y, so a bad image raises unless asked
POWER_EXPONENT = 0.5  # "power" normalization is the signed square root (then L2), a fixed constant
_BATCH_SIZE_BY_DEVICE = {"cpu": 8, "cuda": 64, "tensorrt": 64}  # small batches are fastest on CPUs (measured)
# Core-ms per image on 2 cores, Lite0 at 224 px, a 500x375 JPEG (issue 11 profile; fast = exact / 1.49, measured
# since the fast views are resampled from the exact crop box): decoding by decoder, inference by precision.
_DECODE_CORE_MS = {"fast": 2.1, "exact": 3.1}
_INFER_CORE_MS = {"fp32": 6.1, "int8": 2.4, "fp16": 6.1}
# Fewer decode threads than this starve inference on bursts, even where their CPU share is smaller (measured
# on 2 cores, fp32: 1 thread 91 images/s, 2 threads 106, 3 threads 105).
_MIN_DECODE_THREADS = 2
# On the CPU one inference call per core, each on one thread, side by side: one call on every core stalls at each
# operator's barrier whenever a decode thread takes one of them (measured on 2 cores, inference alone at batch 8:
# 2 calls of 1 thread 1.07-1.58x one call of 2 threads, fp32 and int8). One thread each, because the calls of
# one session share its intra-op pool: 2 calls of 16 threads on 32 cores would keep only 17 busy.


@dataclass(frozen=True)
class Parameter:
    """The declaration of one parameter: what it is called, its default, what it may be."""

    name: str  # the library and estimator name; the CLI option is its hyphenated twin
    default: Any
    help: str  # one line: the CLI help and the start of the docstring entry
    choices: tuple[Any, ...] | None = None  # allowed values, when a fixed set
    kind: str = "choice"  # how values are checked: choice, layer, positive_int, positive_float, optional_bool, any
    fingerprint: bool = False  # True: it changes the numbers, so it enters the feature-set fingerprint

    @property
    def option(self) -> str:
        """The CLI option: ``batch_size`` -> ``--batch-size``."""
        return "--" + self.name.replace("_", "-")


# A declaration table, one entry a parameter, read across: kept out of the formatter.
# fmt: off
_DECLARATIONS = (
    # What the codes are: each of these changes the numbers.
    Parameter("model", DEFAULT_BACKBONE, "Zoo backbone ('cnncodes models') or path of an .onnx file.", kind="any",
              fingerprint=True),
    Parameter("layer", None, "Tap, or taps whose codes are concatenated; None: the backbone's default tap.",
              kind="layer", fingerprint=True),
    Parameter("pooling", "avg", "Spatial pooling of feature maps.", POOLINGS, fingerprint=True),
    Parameter("grid", None, "Pool each cell of a GRID x GRID layout (code length x GRID**2); None: global.",
              kind="positive_int", fingerprint=True),
    Parameter("gem_p", 3.0, "Exponent of generalized-mean pooling (pooling='gem' only).", kind="positive_float",
              fingerprint=True),
    Parameter("relu", None, "ReLU before pooling; None: only on taps that are not already non-negative.",
              kind="optional_bool", fingerprint=True),
    Parameter("views", "none", "Test-time views of each image.", VIEWS, fingerprint=True),
    Parameter("decoder", "fast", "Decoding and resizing: fast (libjpeg-turbo, OpenCV) or exact (Pillow, as before).",
              DECODERS, fingerprint=True),
    Parameter("combine", "mean", "How the views' codes combine; 'none' concatenates them.", COMBINES,
              fingerprint=True),
    Parameter("normalize", "none", "Per-layer code normalization; 'power' is signed square root then L2.",
              NORMALIZATIONS, fingerprint=True),
    Parameter("dtype", "float32", "Storage precision of the codes in the cache.", DTYPES, fingerprint=True),
    Parameter("precision", "fp32", "Network arithmetic: fp32; int8 (statically quantized, ~2x faster on CPUs); fp16.",
              PRECISIONS, fingerprint=True),
    # How the run goes: none of these changes the numbers.
    Parameter("cache", True, "Cache folder; True: $CNNCODES_CACHE or the user cache folder; False: no cache.",
              kind="any"),
    Parameter("batch_size", None, "Model inputs per inference call; None: 8 on the CPU, 64 on a GPU.",
              kind="positive_int"),
    Parameter("device", "auto", "Execution provider; auto tries TensorRT, CUDA, then the CPU.", DEVICES),
    Parameter("n_threads", None, "onnxruntime intra-op threads, one inference call at a time; None: on the CPU, "
              "one call per core side by side, on one thread each.", kind="positive_int"),
    Parameter("optimization", "all", "onnxruntime graph optimization level.", OPTIMIZATIONS),
    Parameter("n_workers", None, "Decode threads; None: balanced against inference for the cores and device.",
              kind="positive_int"),
    Parameter("on_error", "skip", "'skip': a bad image becomes a failure row and the run goes on; 'raise': stop.",
              ON_ERRORS),
)
# fmt: on

PARAMETERS: dict[str, Parameter] = {p.name: p for p in _DECLARATIONS}


# The types of the declared parameters, for the functions that take them as keywords (PEP 692); names,
# defaults and help stay in the declarations above (a test checks that the two name the same parameters).
class RunOptions(TypedDict, total=False):
    """How a run goes, none of it changing the codes: the keywords of evaluate and predict."""

    cache: CodeCache | Path | str | bool | None  # True: the default folder; False or None: no cache
    batch_size: int | None  # None: by device (batch_size_for)
    device: str
    n_threads: int | None
    optimization: str
    n_workers: int | None  # decode threads; None: decode_workers_for


class ExtractParameters(RunOptions, total=False):
    """Every declared parameter: the keywords of extract (CNNCodes takes them under the same names)."""

    model: str
    layer: str | Sequence[str] | None
    pooling: str
    grid: int | None
    gem_p: float
    relu: bool | None
    views: str
    decoder: str  # "fast" | "exact"
    combine: str
    normalize: str
    dtype: str
    precision: str  # "fp32" | "int8" | "fp16"
    on_error: str  # "skip" | "raise"


# Options of a dask run only: not CNNCodes parameters (they change neither the codes nor a single-process run).
CLUSTER_PARAMETERS: dict[str, Parameter] = {
    "partition_size": Parameter(
        "partition_size",
        None,
        "Images per dask task; None: about four tasks per worker, at most 2000.",
        kind="positive_int",
    ),
}


CODE_PARAMETERS: tuple[str, ...] = tuple(p.name for p in _DECLARATIONS if p.fingerprint)
RUN_PARAMETERS: tuple[str, ...] = tuple(p.name for p in _DECLARATIONS if not p.fingerprint)


def default(name: str) -> Any:
    """The declared default of parameter ``name``.

    Examples
    --------
    >>> default("pooling")
    'avg'
    """
    return PARAMETERS[name].default


def check_parameter(name: str, value: Any, owner: str = "") -> None:
    """Raise a one-line :class:`InputError` if ``value`` is not allowed for parameter ``name``.

    Parameters
    ----------
    name : str
        A declared parameter.
    value : object
        The value to check.
    owner : str, default=""
        The estimator to name in the message (scikit-learn's wording), e.g. ``"CNNCodes"``.

    Raises
    ------
    InputError

    Examples
    --------
    >>> check_parameter("pooling", "max")
    >>> check_parameter("pooling", "mean", owner="CNNCodes")
    Traceback (most recent call last):
    ...
    cnncodes.errors.InputError: The 'pooling' parameter of CNNCodes must be one of 'avg', 'max', 'gem'. Got 'mean' ...
    """
    from .errors import InputError

    parameter = PARAMETERS[name] if name in PARAMETERS else CLUSTER_PARAMETERS[name]
    if parameter.kind == "choice":
        if value not in (parameter.choices or ()):
            raise InputError(one_of_message(name, parameter.choices or (), value, owner))
        return
    expected = {
        "positive_int": "a positive int or None",
        "positive_float": "a positive number",
        "optional_bool": "True, False or None",
        "layer": "a layer name, a non-empty sequence of layer names, or None",
    }.get(parameter.kind)
    if expected is not None and not _is_valid(parameter.kind, value):
        raise InputError(invalid_value_message(name, expected, value, owner))


def _is_valid(kind: str, value: Any) -> bool:
    if kind == "positive_int":
        return value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 1)
    if kind == "positive_float":
        return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
    if kind == "optional_bool":
        return value is None or isinstance(value, bool)
    if kind == "layer":
        if value is None or isinstance(value, str):
            return bool(value) or value is None
        try:
            names = tuple(value)
        except TypeError:
            return False
        return bool(names) and all(isinstance(n, str) and n for n in names)
    return True


def layer_tuple(layer: str | Any | None, default_tap: str) -> tuple[str, ...]:
    """Layers are always a tuple inside cnncodes: ``None`` -> the backbone's default tap.

    Examples
    --------
    >>> layer_tuple("stage4", "penultimate"), layer_tuple(None, "penultimate"), layer_tuple(["a", "b"], "x")
    (('stage4',), ('penultimate',), ('a', 'b'))
    """
    if layer is None:
        return (default_tap,)
    return (layer,) if isinstance(layer, str) else tuple(layer)


def batch_size_for(batch_size: int | None, device: str) -> int:
    """The batch size to run: ``batch_size`` if given, else the rule by device (8 on the CPU, 64 on a GPU).

    Examples
    --------
    >>> batch_size_for(None, "cpu"), batch_size_for(None, "cuda"), batch_size_for(16, "cpu")
    (8, 64, 16)
    """
    return batch_size if batch_size is not None else _BATCH_SIZE_BY_DEVICE.get(device, _BATCH_SIZE_BY_DEVICE["cpu"])


def decode_workers_for(n_workers: int | None, device: str, precision: str, n_cores: int, decoder: str = "fast") -> int:
    """Decode threads: ``n_workers`` if given; else every core on a GPU, and on the CPU as many as keep up.

    On the CPU, inference (one onnxruntime call per core) and decoding share the cores;
    decoding keeps up with ``ceil(n_cores * decode / (decode + inference))`` threads, the
    share of the cores its CPU time per image takes, and never fewer than two (where there
    are two cores): one thread alone falls behind whenever inference takes a burst of CPU.
    More only add threads that wait, or take cores from inference.

    Parameters
    ----------
    n_workers : int or None
        What the user asked for; returned as it is unless None.
    device : str
        The device inference runs on: ``"cpu"``, or a GPU device (``"auto"`` counts as one,
        since it tries one first).
    precision : str
        The network's arithmetic (``"fp32"``, ``"int8"``, ``"fp16"``): its inference cost.
    n_cores : int
        Cores this process may use.
    decoder : str, default="fast"
        The decoder (``"fast"`` or ``"exact"``): its decoding cost.

    Returns
    -------
    int

    Examples
    --------
    >>> decode_workers_for(None, "cpu", "fp32", 2), decode_workers_for(None, "cpu", "int8", 2)
    (2, 2)
    >>> decode_workers_for(None, "cpu", "fp32", 32), decode_workers_for(None, "cpu", "int8", 32)
    (9, 15)
    >>> decode_workers_for(None, "cpu", "fp32", 32, "exact"), decode_workers_for(None, "cuda", "fp32", 32)
    (11, 32)
    >>> decode_workers_for(None, "cpu", "fp32", 1), decode_workers_for(3, "cpu", "fp32", 2)
    (1, 3)
    """
    if n_workers is not None:
        return n_workers
    if device != "cpu":  # a GPU (or auto, which tries one first) leaves the cores to decoding
        return max(1, n_cores)
    decode = _DECODE_CORE_MS.get(decoder, _DECODE_CORE_MS["exact"])
    share = decode / (decode + _INFER_CORE_MS.get(precision, _INFER_CORE_MS["fp32"]))
    return max(min(_MIN_DECODE_THREADS, n_cores), math.ceil(n_cores * share), 1)


def inference_streams_for(n_threads: int | None, device: str, n_cores: int) -> tuple[int, int | None]:
    """Concurrent inference calls, and onnxruntime intra-op threads for each (None: onnxruntime's own choice).

    On the CPU, with ``n_threads`` None, one call per core runs side by side, each on one
    thread (no intra-op pool, which the calls of a session would share), so a decode thread
    that takes a core delays one call instead of every operator of the only one. An explicit
    ``n_threads``, or a GPU, runs one call at a time.

    Parameters
    ----------
    n_threads : int or None
        What the user asked for (intra-op threads of the only call).
    device : str
        The device the session runs on (``"cpu"``, ``"cuda"``, ``"tensorrt"``).
    n_cores : int
        Cores this process may use.

    Returns
    -------
    n_streams : int
    threads_per_stream : int or None

    Examples
    --------
    >>> inference_streams_for(None, "cpu", 2), inference_streams_for(None, "cpu", 32)
    ((2, 1), (32, 1))
    >>> inference_streams_for(4, "cpu", 32), inference_streams_for(None, "cuda", 32)
    ((1, 4), (1, None))
    """
    if n_threads is not None or device != "cpu":
        return 1, n_threads
    return max(1, n_cores), 1


def n_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS tells it).

    Examples
    --------
    >>> n_cores() >= 1
    True
    """
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else os.cpu_count() or 1
