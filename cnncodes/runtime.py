"""The only onnxruntime importer: execution-provider choice, sessions, running named outputs."""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import onnxruntime as ort

from .errors import ProviderFallbackWarning
from .params import DEVICES, OPTIMIZATIONS, check_parameter
from .paths import models_dir

__all__ = ["ProviderChoice", "choose_provider", "Session", "onnxruntime_version"]

_PROVIDERS = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
_AUTO_ORDER = ("tensorrt", "cuda", "cpu")
_OPTIMIZATION_LEVELS = {  # keyed by params.OPTIMIZATIONS, the declared choices
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
assert set(_OPTIMIZATION_LEVELS) == set(OPTIMIZATIONS) and set(_PROVIDERS) == set(DEVICES) - {"auto"}


def onnxruntime_version() -> str:
    """The installed onnxruntime version.

    Returns
    -------
    str

    Examples
    --------
    >>> onnxruntime_version() == ort.__version__
    True
    """
    return str(ort.__version__)


@dataclass
class ProviderChoice:
    """Which execution provider runs, and why the ones before it were passed over.

    Examples
    --------
    >>> choice = ProviderChoice("CPUExecutionProvider", "cpu", {"CUDAExecutionProvider": "not in this build"})
    >>> choice.describe().endswith(": running on CPUExecutionProvider (CUDAExecutionProvider: not in this build)")
    True
    """

    provider: str  # e.g. "CPUExecutionProvider"
    device: str  # "cpu", "cuda" or "tensorrt"
    passed_over: dict[str, str] = field(default_factory=dict)  # provider -> reason

    def describe(self) -> str:
        """One line: what runs, and why the others do not."""
        line = f"onnxruntime {onnxruntime_version()}: running on {self.provider}"
        if self.passed_over:
            reasons = "; ".join(f"{name}: {why}" for name, why in self.passed_over.items())
            line += f" ({reasons})"
        return line


def _session_options(n_threads: int | None, optimization: str) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = _OPTIMIZATION_LEVELS[optimization]
    options.log_severity_level = 3
    # Idle intra-op threads would spin on the cores that image decoding needs (measured: ~6% faster end to end).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if n_threads:
        options.intra_op_num_threads = n_threads
    return options


@contextlib.contextmanager
def _captured_output() -> Iterator[io.StringIO]:
    """Capture what onnxruntime writes while probing a provider: Python prints and C-level stderr."""
    text = io.StringIO()
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            with contextlib.redirect_stdout(text):
                yield text
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text.write(sink.read().decode(errors="replace"))


def _failure_reason(log: str) -> str:
    """The most telling line of onnxruntime's provider-loading chatter."""
    missing = re.search(r"error: (\S+\.so[.\d]*): cannot open shared object file", log)
    if missing:
        return f"failed to initialize ({missing.group(1)} not found)"
    install = re.search(r"Please install [^,.]*", log)
    if install:
        return f"failed to initialize ({install.group(0)})"
    return "failed to initialize (no usable GPU or driver)"


# TensorRT's own reduced-precision flags for the graphs of cnncodes.quantize (QDQ int8 is explicit quantization).
_TENSORRT_PRECISION = {"fp32": {}, "fp16": {"trt_fp16_enable": "True"}, "int8": {"trt_int8_enable": "True"}}


def _with_options(device: str, precision: str = "fp32") -> str | tuple[str, dict[str, str]]:
    """A provider with its options: TensorRT keeps its built engines, so only the first session waits for them."""
    if device != "tensorrt":
        return _PROVIDERS[device]
    engines = models_dir() / "tensorrt"
    return _PROVIDERS[device], {
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": str(engines),
        "trt_timing_cache_enable": "True",
        "trt_timing_cache_path": str(engines),
        **_TENSORRT_PRECISION[precision],
    }


def _try_provider(
    model: bytes, device: str, options: ort.SessionOptions, precision: str = "fp32"
) -> tuple[ort.InferenceSession | None, str]:
    """Open a session on ``device``; return it only if that provider really initialized."""
    provider = _PROVIDERS[device]
    if provider not in ort.get_available_providers():
        return None, "not in this onnxruntime build"
    session: ort.InferenceSession | None = None
    error_text = ""
    with _captured_output() as log:
        try:
            session = ort.InferenceSession(
                model, sess_options=options, providers=[_with_options(device, precision), _PROVIDERS["cpu"]]
            )
        except (RuntimeError, ort.capi.onnxruntime_pybind11_state.Fail) as error:  # type: ignore[attr-defined]
            error_text = str(error)
    if session is not None and session.get_providers()[0] == provider:
        return session, ""
    return None, _failure_reason(log.getvalue() + error_text)


def choose_provider(
    model: bytes,
    device: str = "auto",
    *,
    n_threads: int | None = None,
    optimization: str = "all",
    precision: str = "fp32",
) -> tuple[ort.InferenceSession, ProviderChoice]:
    """Open an inference session on the best provider that really works.

    ``"auto"`` tries TensorRT, then CUDA, then the CPU, keeping a provider only if a
    session initializes with it. An explicit GPU device that does not initialize
    falls back to the CPU with a :class:`ProviderFallbackWarning` naming both.

    Parameters
    ----------
    model : bytes
        A serialized ONNX model.
    device : {"auto", "cpu", "cuda", "tensorrt"}, default="auto"
    n_threads : int or None, default=None
        Intra-op threads; None lets onnxruntime use every core.
    optimization : {"disable", "basic", "extended", "all"}, default="all"
        onnxruntime graph optimization level.
    precision : {"fp32", "int8", "fp16"}, default="fp32"
        The arithmetic of ``model`` (see :mod:`cnncodes.quantize`): turns on TensorRT's
        matching flags. Other providers run the graph as it is.

    Returns
    -------
    session : onnxruntime.InferenceSession
    choice : ProviderChoice

    Raises
    ------
    InputError
        If ``device`` or ``optimization`` is not one of the declared choices.

    Warns
    -----
    ProviderFallbackWarning
        If an explicitly requested GPU provider does not initialize.

    Examples
    --------
    >>> from onnx import TensorProto, helper
    >>> x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    >>> y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    >>> graph = helper.make_graph([helper.make_node("Neg", ["x"], ["y"])], "neg", [x], [y])
    >>> model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    >>> session, choice = choose_provider(model.SerializeToString(), "cpu")
    >>> choice.provider, session.get_providers()
    ('CPUExecutionProvider', ['CPUExecutionProvider'])
    >>> choose_provider(model.SerializeToString(), "gpu")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    cnncodes.errors.InputError: The 'device' parameter must be one of 'auto', 'cpu', ... Got 'gpu' instead.
    """
    check_parameter("device", device)
    check_parameter("optimization", optimization)
    options = _session_options(n_threads, optimization)
    order = _AUTO_ORDER if device == "auto" else (device, "cpu")
    passed_over: dict[str, str] = {}
    for candidate in order:
        if candidate == "cpu":
            break
        session, reason = _try_provider(model, candidate, options, precision)
        if session is not None:
            return session, ProviderChoice(_PROVIDERS[candidate], candidate, passed_over)
        passed_over[_PROVIDERS[candidate]] = reason
    if device in ("cuda", "tensorrt"):
        message = f"{_PROVIDERS[device]} requested but {passed_over[_PROVIDERS[device]]}; using CPUExecutionProvider"
        warnings.warn(message, ProviderFallbackWarning, stacklevel=2)
    session = ort.InferenceSession(model, sess_options=options, providers=[_PROVIDERS["cpu"]])
    return session, ProviderChoice(_PROVIDERS["cpu"], "cpu", passed_over)


class Session:
    """One onnxruntime session on a prepared model: uint8 pixels in, named tensors out.

    Parameters
    ----------
    model : bytes
        A model from :func:`cnncodes.taps.prepare_model`.
    device : {"auto", "cpu", "cuda", "tensorrt"}, default="auto"
        Where to run; see :func:`choose_provider`.
    n_threads : int or None, default=None
        Intra-op threads; None lets onnxruntime use every core.
    optimization : {"disable", "basic", "extended", "all"}, default="all"
        onnxruntime graph optimization level.
    precision : {"fp32", "int8", "fp16"}, default="fp32"
        The arithmetic of ``model``; see :func:`choose_provider`.

    Attributes
    ----------
    choice : ProviderChoice
        The provider that runs.
    input_name : str
    output_names : list of str

    Examples
    --------
    >>> from onnx import TensorProto, helper
    >>> pixels = helper.make_tensor_value_info("pixels", TensorProto.UINT8, ["N", 2, 2, 3])
    >>> mean = helper.make_tensor_value_info("mean", TensorProto.FLOAT, ["N", 1, 1, 1])
    >>> cast = helper.make_node("Cast", ["pixels"], ["f"], to=TensorProto.FLOAT)
    >>> graph = helper.make_graph([cast, helper.make_node("ReduceMean", ["f"], ["mean"])], "mean", [pixels], [mean])
    >>> model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    >>> session = Session(model.SerializeToString(), "cpu")
    >>> session.run(np.full((1, 2, 2, 3), 7, np.uint8))["mean"].ravel().tolist()
    [7.0]
    """

    def __init__(
        self,
        model: bytes,
        device: str = "auto",
        *,
        n_threads: int | None = None,
        optimization: str = "all",
        precision: str = "fp32",
    ) -> None:
        self._session, self.choice = choose_provider(
            model, device, n_threads=n_threads, optimization=optimization, precision=precision
        )
        self.input_name = self._session.get_inputs()[0].name
        self.output_names = [output.name for output in self._session.get_outputs()]
        self._use_binding = self.choice.device != "cpu"

    def run(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        """Run a batch of model inputs.

        Parameters
        ----------
        pixels : ndarray of shape (N, H, W, 3), uint8

        Returns
        -------
        dict of str to ndarray
            Every output of the model, by name, on the host.
        """
        if self._use_binding:  # keep the input copy to the device explicit, outputs back on host
            binding = self._session.io_binding()
            binding.bind_cpu_input(self.input_name, np.ascontiguousarray(pixels))
            for name in self.output_names:
                binding.bind_output(name, "cpu")
            self._session.run_with_iobinding(binding)
            results = binding.copy_outputs_to_cpu()
        else:
            results = self._session.run(self.output_names, {self.input_name: pixels})
        return dict(zip(self.output_names, results))
