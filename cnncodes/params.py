"""Every parameter that changes the codes or the run, declared once: default, allowed values, help.

The library's :func:`cnncodes.extract`, the :class:`cnncodes.CNNCodes` estimator, the
extraction engine and the click options all read these declarations; nothing else
repeats a default or a choice list.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .messages import invalid_value_message, one_of_message

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
    "POOLINGS",
    "VIEWS",
    "COMBINES",
    "NORMALIZATIONS",
    "DTYPES",
    "DEVICES",
    "OPTIMIZATIONS",
    "ON_ERRORS",
    "HEAD_NAMES",
    "DEFAULT_BACKBONE",
    "POWER_EXPONENT",
    "ESTIMATOR_ON_ERROR",
]

DEFAULT_BACKBONE = "efficientnet_lite0"
POOLINGS = ("avg", "max", "gem")
VIEWS = ("none", "flip", "5crop", "10crop", "razavian16")
COMBINES = ("mean", "sum", "max", "none")
NORMALIZATIONS = ("none", "l2", "power")
DTYPES = ("float32", "float16")
DEVICES = ("auto", "cpu", "cuda", "tensorrt")
OPTIMIZATIONS = ("disable", "basic", "extended", "all")
ON_ERRORS = ("skip", "raise")
HEAD_NAMES = ("extra-trees", "hist-gb", "linear-svm", "logistic", "random-forest", "sgd")  # heads.make_head builds them
ESTIMATOR_ON_ERROR = "raise"  # CNNCodes must keep rows aligned with y, so a bad image raises unless asked
POWER_EXPONENT = 0.5  # "power" normalization is the signed square root (then L2), a fixed constant
_BATCH_SIZE_BY_DEVICE = {"cpu": 8, "cuda": 64, "tensorrt": 64}  # small batches are fastest on CPUs (measured)


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


_DECLARATIONS = (
    # What the codes are: each of these changes the numbers.
    Parameter(
        "model",
        DEFAULT_BACKBONE,
        "Zoo backbone ('cnncodes models') or path of an .onnx file.",
        kind="any",
        fingerprint=True,
    ),
    Parameter(
        "layer",
        None,
        "Tap, or taps whose codes are concatenated; None: the backbone's default tap.",
        kind="layer",
        fingerprint=True,
    ),
    Parameter("pooling", "avg", "Spatial pooling of feature maps.", POOLINGS, fingerprint=True),
    Parameter(
        "grid",
        None,
        "Pool each cell of a GRID x GRID layout (code length x GRID**2); None: global.",
        kind="positive_int",
        fingerprint=True,
    ),
    Parameter(
        "gem_p",
        3.0,
        "Exponent of generalized-mean pooling (pooling='gem' only).",
        kind="positive_float",
        fingerprint=True,
    ),
    Parameter(
        "relu",
        None,
        "ReLU before pooling; None: only on taps that are not already non-negative.",
        kind="optional_bool",
        fingerprint=True,
    ),
    Parameter("views", "none", "Test-time views of each image.", VIEWS, fingerprint=True),
    Parameter("combine", "mean", "How the views' codes combine; 'none' concatenates them.", COMBINES, fingerprint=True),
    Parameter(
        "normalize",
        "none",
        "Per-layer code normalization; 'power' is signed square root then L2.",
        NORMALIZATIONS,
        fingerprint=True,
    ),
    Parameter("dtype", "float32", "Storage precision of the codes in the cache.", DTYPES, fingerprint=True),
    # How the run goes: none of these changes the numbers.
    Parameter(
        "cache", True, "Cache folder; True: $CNNCODES_CACHE or the user cache folder; False: no cache.", kind="any"
    ),
    Parameter(
        "batch_size", None, "Model inputs per inference call; None: 8 on the CPU, 64 on a GPU.", kind="positive_int"
    ),
    Parameter("device", "auto", "Execution provider; auto tries TensorRT, CUDA, then the CPU.", DEVICES),
    Parameter("n_threads", None, "onnxruntime intra-op threads; None: every core.", kind="positive_int"),
    Parameter("optimization", "all", "onnxruntime graph optimization level.", OPTIMIZATIONS),
    Parameter("n_workers", None, "Decode threads; None: one per core.", kind="positive_int"),
    Parameter(
        "on_error", "skip", "'skip': a bad image becomes a failure row and the run goes on; 'raise': stop.", ON_ERRORS
    ),
)

PARAMETERS: dict[str, Parameter] = {p.name: p for p in _DECLARATIONS}
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


def largest_batch_size(batch_size: int | None) -> int:
    """The largest batch a run may use before its device is known (sizes the decode window)."""
    return batch_size if batch_size is not None else max(_BATCH_SIZE_BY_DEVICE.values())
