"""Which execution providers a device tries, with which options, and why one failed (no onnxruntime import)."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import io
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:
    from .enginecache import EngineFolder

__all__ = [
    "ProviderChoice",
    "Attempt",
    "captured_output",
    "PROVIDERS",
    "AUTO_ORDER",
    "ProviderEntry",
    "fallback_chain",
    "missing_gpu_driver",
    "session_providers",
    "cuda_options",
    "tensorrt_options",
    "largest_batch",
    "failure_reason",
]

PROVIDERS = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
AUTO_ORDER = ("tensorrt", "cuda", "cpu")
ProviderEntry = str | tuple[str, dict[str, str]]  # what onnxruntime.InferenceSession(providers=[...]) takes


@dataclass
class ProviderChoice:
    """Which execution provider runs, and why the ones before it were passed over.

    Examples
    --------
    >>> choice = ProviderChoice("CPUExecutionProvider", "cpu", {"CUDAExecutionProvider": "not in this build"}, "1.31.1")
    >>> choice.describe()
    'onnxruntime 1.31.1: running on CPUExecutionProvider (CUDAExecutionProvider: not in this build)'
    """

    provider: str  # e.g. "CPUExecutionProvider"
    device: str  # "cpu", "cuda" or "tensorrt"
    passed_over: dict[str, str] = field(default_factory=dict)  # provider -> reason
    version: str = ""  # of onnxruntime

    def describe(self) -> str:
        """One line: what runs, and why the others do not."""
        line = f"onnxruntime {self.version}: running on {self.provider}"
        if self.passed_over:
            reasons = "; ".join(f"{name}: {why}" for name, why in self.passed_over.items())
            line += f" ({reasons})"
        return line


@dataclass
class Attempt:
    """One try at a session: its providers and options, whether to trust it only after a warm-up run."""

    device: str  # the device it stands for: "tensorrt", "cuda" or "cpu"
    providers: list[ProviderEntry]  # as onnxruntime.InferenceSession takes them
    options: Any  # an onnxruntime.SessionOptions
    warm_up: bool = True  # run one batch of the real shape before keeping the session
    batch: int = 1  # rows of that batch: the most the session will get in one call
    label: str = ""  # the name its failure is reported under; default: the device's provider
    engines: EngineFolder | None = None  # TensorRT: where to publish the engines built in build_dir
    build_dir: Path | None = None

    @property
    def name(self) -> str:
        return self.label or PROVIDERS[self.device]


@contextlib.contextmanager
def captured_output() -> Iterator[io.StringIO]:
    """Capture what onnxruntime writes while probing a provider: Python prints and C-level stderr.

    Examples
    --------
    >>> with captured_output() as log:
    ...     print("EP Error")
    ...     _ = os.write(2, b"[E:onnxruntime] libcuda.so.1: cannot open shared object file\\n")
    >>> log.getvalue().splitlines()
    ['EP Error', '[E:onnxruntime] libcuda.so.1: cannot open shared object file']
    """
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


def fallback_chain(device: str) -> tuple[str, ...]:
    """The devices tried for ``device``, best first: each one falls back to the next.

    TensorRT falls back to CUDA before the CPU, whether asked for or reached by ``auto``.

    Examples
    --------
    >>> fallback_chain("auto"), fallback_chain("tensorrt"), fallback_chain("cuda"), fallback_chain("cpu")
    (('tensorrt', 'cuda', 'cpu'), ('tensorrt', 'cuda', 'cpu'), ('cuda', 'cpu'), ('cpu',))
    """
    return AUTO_ORDER if device == "auto" else AUTO_ORDER[AUTO_ORDER.index(device) :]


_DRIVER_LIBRARY = {"linux": "libcuda.so.1", "win32": "nvcuda.dll"}  # what the CUDA runtime itself loads


@functools.cache
def missing_gpu_driver() -> str | None:
    """Why no GPU provider can run, where the NVIDIA driver's library does not load: then none is tried.

    The CUDA runtime under both GPU providers loads this library by the same name, so where it
    does not load they would fail after loading their own libraries (hundreds of MB, 0.2-1 s).
    None where it loads, and on platforms without a known driver library: the providers are tried.

    Examples
    --------
    >>> reason = missing_gpu_driver()
    >>> reason is None or reason == "not tried (libcuda.so.1 not found: no NVIDIA driver)"
    True
    """
    library = _DRIVER_LIBRARY.get(sys.platform)
    if library is None:
        return None
    try:
        ctypes.CDLL(library)
    except OSError:
        return f"not tried ({library} not found: no NVIDIA driver)"
    return None


def cuda_options() -> dict[str, str]:
    """CUDA provider options: TF32 off, so fp32 codes match the CPU's (and their shared cache key).

    ``use_tf32`` is on by default in onnxruntime's CUDA provider; on Ampere and later GPUs it
    rounds convolution and matmul inputs to 10-bit mantissas.

    Examples
    --------
    >>> cuda_options()
    {'use_tf32': '0'}
    """
    return {"use_tf32": "0"}


def largest_batch(batch_size: int, n_views: int = 1) -> int:
    """The most rows one inference call gets: whole images of ``n_views`` views until ``batch_size`` is reached.

    Examples
    --------
    >>> largest_batch(64), largest_batch(64, 5), largest_batch(64, 10), largest_batch(8, 16)
    (64, 65, 70, 16)
    """
    return -(-batch_size // n_views) * n_views


# TensorRT's own reduced-precision flags for the graphs of cnncodes.quantize (QDQ int8 is explicit quantization).
_TENSORRT_PRECISION = {"fp32": {}, "fp16": {"trt_fp16_enable": "True"}, "int8": {"trt_int8_enable": "True"}}


def tensorrt_options(
    engine_dir: Path, input_name: str, sample_shape: tuple[int, ...], max_batch: int, precision: str = "fp32"
) -> dict[str, str]:
    """TensorRT provider options: engines and timing cache in ``engine_dir``, one profile for batches 1..max_batch.

    With an explicit optimization profile TensorRT builds one engine valid for every batch in
    the range, so partial last batches and view batches (65, 70) do not trigger a rebuild;
    :class:`cnncodes.runtime.Session` never sends more than ``max_batch`` rows at once.

    Parameters
    ----------
    engine_dir : Path
        An existing folder (TensorRT creates only the last level of a missing one).
    input_name : str
    sample_shape : tuple of int
        The shape of one input row, e.g. ``(224, 224, 3)``.
    max_batch : int
    precision : {"fp32", "int8", "fp16"}, default="fp32"
        The arithmetic of the graph (see :mod:`cnncodes.quantize`): turns on TensorRT's matching flag.

    Returns
    -------
    dict of str to str

    Examples
    --------
    >>> options = tensorrt_options(Path("/m/tensorrt/ab12/.build"), "pixels", (224, 224, 3), 70)
    >>> options["trt_profile_min_shapes"], options["trt_profile_max_shapes"]
    ('pixels:1x224x224x3', 'pixels:70x224x224x3')
    >>> options["trt_engine_cache_path"] == options["trt_timing_cache_path"] == str(Path("/m/tensorrt/ab12/.build"))
    True
    """
    row = "x".join(str(d) for d in sample_shape)
    return {
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": str(engine_dir),
        "trt_timing_cache_enable": "True",
        "trt_timing_cache_path": str(engine_dir),
        "trt_profile_min_shapes": f"{input_name}:1x{row}",
        "trt_profile_opt_shapes": f"{input_name}:{max_batch}x{row}",
        "trt_profile_max_shapes": f"{input_name}:{max_batch}x{row}",
        **_TENSORRT_PRECISION[precision],
    }


def session_providers(device: str, trt: dict[str, str] | None = None) -> list[ProviderEntry]:
    """The providers one session on ``device`` registers, in order of precedence.

    A TensorRT session registers CUDA behind TensorRT, so nodes TensorRT rejects run on the
    GPU instead of on the CPU with copies in between.

    Examples
    --------
    >>> session_providers("tensorrt", {"trt_engine_cache_enable": "True"})  # doctest: +NORMALIZE_WHITESPACE
    [('TensorrtExecutionProvider', {'trt_engine_cache_enable': 'True'}),
     ('CUDAExecutionProvider', {'use_tf32': '0'}), 'CPUExecutionProvider']
    >>> session_providers("cuda"), session_providers("cpu")
    ([('CUDAExecutionProvider', {'use_tf32': '0'}), 'CPUExecutionProvider'], ['CPUExecutionProvider'])
    """
    entries: list[ProviderEntry] = [PROVIDERS["cpu"]]
    if device in ("cuda", "tensorrt"):
        entries.insert(0, (PROVIDERS["cuda"], cuda_options()))
    if device == "tensorrt":
        entries.insert(0, (PROVIDERS["tensorrt"], dict(trt or {})))
    return entries


_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # onnxruntime colours its log lines
_MISSING_LIBRARY = re.compile(r"(lib[\w.+-]+?\.so(?:\.\d+)*): cannot open shared object file")
_LIBRARY_HINTS = {
    "libcuda.so": "no NVIDIA driver",
    "libnvinfer": "TensorRT libraries not found; see README 'GPUs'",
    "libcudnn": "cuDNN 9 not found; pip install 'onnxruntime-gpu[cuda,cudnn]'",
}
_GPU_FAILURE = re.compile(r"\b(CUDA|CUDNN|CUBLAS|CUFFT|CURAND|NVRTC) failure (\d+): ([^;\n]+)")
_ORT_ERROR = re.compile(r"\[ONNXRuntimeError\] : \d+ : (\w+) : ([^\n]+)")
_INSTALL = re.compile(r"Please install [^,.\n]*")
_REQUIRE = re.compile(r"Require (cuDNN [\w.*]+ and CUDA [\w.*]+)")


def failure_reason(log: str, stage: str = "initialize", error: str = "") -> str:
    """The telling part of what onnxruntime printed or raised when a provider did not work.

    The first missing shared library wins (it is the cause of the errors after it), then a
    CUDA/cuDNN/cuBLAS status, then onnxruntime's error code and message, then its install hint.

    Parameters
    ----------
    log : str
        Captured stdout and stderr of the attempt, plus the text of the exception raised.
    stage : str, default="initialize"
        What failed: ``"initialize"`` (creating the session) or ``"run a warm-up batch"``.
    error : str, default=""
        The text of the exception raised, if any: its first line is the reason when nothing more telling is found.

    Returns
    -------
    str
        One line: ``failed to <stage> (<cause>)``.

    Examples
    --------
    >>> failure_reason("Failed to load library libonnxruntime_providers_cuda.so with error: "
    ...                "libcublasLt.so.13: cannot open shared object file: No such file or directory")
    'failed to initialize (libcublasLt.so.13 not found)'
    >>> failure_reason("... with error: libcuda.so.1: cannot open shared object file: No such file or directory")
    'failed to initialize (libcuda.so.1 not found: no NVIDIA driver)'
    >>> failure_reason("CUDA failure 35: CUDA driver version is insufficient for CUDA runtime version ; GPU=0 ; "
    ...                "hostname=n1 ; file=cuda_call.cc ; line=282 ; expr=cudaSetDevice(info_.device_id); ")
    'failed to initialize (CUDA failure 35: CUDA driver version is insufficient for CUDA runtime version)'
    >>> failure_reason("")
    'failed to initialize (onnxruntime did not register it and said nothing)'
    """
    log = _ANSI.sub("", f"{log}\n{error}")
    missing = _MISSING_LIBRARY.search(log)
    if missing:
        library = missing.group(1)
        hint = next((why for prefix, why in _LIBRARY_HINTS.items() if library.startswith(prefix)), "")
        return f"failed to {stage} ({library} not found{': ' + hint if hint else ''})"
    for pattern, render in (
        (_GPU_FAILURE, lambda m: f"{m.group(1)} failure {m.group(2)}: {m.group(3).strip()}"),
        (_ORT_ERROR, lambda m: f"{m.group(1)}: {m.group(2).strip()}"),
        (_INSTALL, lambda m: m.group(0).strip()),
        (_REQUIRE, lambda m: f"requires {m.group(1)}"),
    ):
        found = pattern.search(log)
        if found:
            return f"failed to {stage} ({render(found)})"
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    first_of_error = next((line.strip() for line in error.splitlines() if line.strip()), "")
    cause = first_of_error or (lines[-1] if lines else "onnxruntime did not register it and said nothing")
    return f"failed to {stage} ({cause[:300]})"
