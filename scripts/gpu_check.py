"""Does cnncodes run on this machine's GPU? ONNX Runtime's build, which providers load and why not, codes and speed.

Run: python scripts/gpu_check.py [--expect-gpu] [--seconds 3] [--batches 1 8 64 256]

Prints the onnxruntime build (its CUDA version, the cuDNN/cuBLAS/TensorRT libraries installed
beside it), then runs EfficientNet-Lite0 through the public API (``cnncodes.CNNCodes``) on the
CPU and with ``device="cuda"`` and ``device="tensorrt"``: which provider really ran and why the
others did not, the largest difference of the codes against the CPU's, and images/s at each
batch size. Exits 1 if a GPU was expected (``--expect-gpu``, or an NVIDIA GPU is visible) and no
GPU provider ran. The last line is a JSON summary.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.metadata
import json
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import warnings
from typing import Any

import numpy as np
import onnxruntime

import cnncodes

MODEL = "efficientnet_lite0"
DEVICES = ("cpu", "cuda", "tensorrt")
_LIBRARY_PACKAGES = (  # what pip may have put beside onnxruntime-gpu (CUDA 13 names, then CUDA 12 names)
    "nvidia-cuda-runtime",
    "nvidia-cublas",
    "nvidia-cudnn-cu13",
    "nvidia-cuda-runtime-cu12",
    "nvidia-cublas-cu12",
    "nvidia-cudnn-cu12",
    "tensorrt",
    "tensorrt-cu13",
    "tensorrt-cu12",
    "tensorrt-cu13-libs",
    "tensorrt-cu12-libs",
)


class _Lines(logging.Handler):
    """Collects cnncodes' log lines: the engine logs which provider runs and why the others do not."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def build_info() -> dict[str, Any]:
    """What this onnxruntime was built with and what GPU libraries are installed or loadable."""
    packages = {}
    for name in _LIBRARY_PACKAGES:
        try:
            packages[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    loadable = {}
    for library in ("libcuda.so.1", "libnvinfer.so.10"):  # the driver; TensorRT 10 (onnxruntime >= 1.18)
        try:
            ctypes.CDLL(library)
            loadable[library] = "loads"
        except OSError as error:
            loadable[library] = str(error).split(":")[-1].strip()
    return {
        "onnxruntime": f"{getattr(onnxruntime, 'package_name', 'onnxruntime')} {onnxruntime.__version__}",
        "build": onnxruntime.get_build_info(),
        "cuda_build_version": getattr(onnxruntime, "cuda_version", "") or "none (a CPU build)",
        "available_providers": onnxruntime.get_available_providers(),
        "installed_libraries": packages,
        "loadable": loadable,
        "LD_LIBRARY_PATH": os.environ.get("LD_LIBRARY_PATH", "(unset)"),
        "NVIDIA_TF32_OVERRIDE": os.environ.get("NVIDIA_TF32_OVERRIDE", "(unset; cnncodes sets 0)"),
    }


def visible_gpus() -> list[str]:
    """NVIDIA GPUs the driver lists (``nvidia-smi -L``), or the device files when nvidia-smi is missing."""
    if shutil.which("nvidia-smi"):
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60)
        return [line for line in listed.stdout.splitlines() if line.startswith("GPU ")]
    return (
        [name for name in sorted(os.listdir("/dev")) if re.fullmatch(r"nvidia\d+", name)]
        if os.path.isdir("/dev")
        else []
    )


def run_device(device: str, images: np.ndarray, batch_size: int) -> tuple[np.ndarray, str, list[str], Any]:
    """Codes of ``images`` with ``device``; the provider that ran, the fallback warnings, the fitted estimator."""
    handler = _Lines()
    logger = logging.getLogger("cnncodes")
    logger.addHandler(handler)
    previous = logger.level
    logger.setLevel(logging.INFO)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            encoder = cnncodes.CNNCodes(model=MODEL, device=device, batch_size=batch_size, cache=False).fit()
            codes = encoder.transform(images)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
    described = next((line for line in handler.lines if "running on " in line), "")
    fallbacks = [str(w.message) for w in caught if issubclass(w.category, cnncodes.ProviderFallbackWarning)]
    return codes, described, fallbacks, encoder


def images_per_second(device: str, images: np.ndarray, batch_size: int, seconds: float) -> float:
    """Images/s of ``transform`` on batches of ``batch_size`` (the first one, which opens the session, untimed)."""
    batch = np.resize(images, (batch_size, *images.shape[1:]))
    encoder = cnncodes.CNNCodes(model=MODEL, device=device, batch_size=batch_size, cache=False).fit()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cnncodes.ProviderFallbackWarning)
        encoder.transform(batch)
        done, start = 0, time.perf_counter()
        while done == 0 or time.perf_counter() - start < seconds:
            encoder.transform(batch)
            done += batch_size
    return done / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--expect-gpu", action="store_true", help="fail unless a GPU provider runs")
    parser.add_argument("--seconds", type=float, default=3.0, help="timing budget per device and batch size")
    parser.add_argument("--batches", type=int, nargs="*", default=[1, 8, 64, 256])
    parser.add_argument("--images", type=int, default=16, help="images whose codes are compared with the CPU's")
    args = parser.parse_args()

    info = build_info()
    gpus = visible_gpus()
    print(f"{platform.platform()}, Python {platform.python_version()}, cnncodes {cnncodes.__version__}")
    for key, value in info.items():
        print(f"{key:22} {value}")
    print(f"{'visible NVIDIA GPUs':22} {gpus or 'none'}")

    size = cnncodes.get_backbone(MODEL).input_size
    images = np.random.default_rng(0).integers(0, 256, size=(args.images, size, size, 3), dtype=np.uint8)
    results: dict[str, dict[str, Any]] = {}
    reference = None
    print(f"\n{MODEL} on {args.images} random {size}x{size} images, cache off")
    for device in DEVICES:
        codes, described, fallbacks, _ = run_device(device, images, batch_size=8)
        ran = re.search(r"running on (\w+)", described)
        provider = ran.group(1) if ran else "unknown"
        if device == "cpu":
            reference = codes
        difference = float(np.abs(codes - reference).max()) if reference is not None else float("nan")
        results[device] = {"provider": provider, "max_abs_difference_vs_cpu": difference, "log": described}
        print(f"--device {device:9} ran on {provider}; max |codes - CPU codes| = {difference:.3g}")
        print(f"  {described}")
        for message in fallbacks:
            print(f"  warning: {message}")

    gpu_ran = sorted({r["provider"] for r in results.values()} - {"CPUExecutionProvider", "unknown"})
    print("\nimages/s (CNNCodes.transform on in-memory images, decoding included):")
    print(f"{'provider':28}" + "".join(f"{'batch ' + str(b):>12}" for b in args.batches))
    timed = {"CPUExecutionProvider": "cpu"}
    timed.update({results[d]["provider"]: d for d in ("cuda", "tensorrt") if results[d]["provider"] in gpu_ran})
    speeds: dict[str, dict[str, float]] = {}
    for provider, device in timed.items():
        speeds[provider] = {f"batch_{b}": images_per_second(device, images, b, args.seconds) for b in args.batches}
        print(f"{provider:28}" + "".join(f"{speeds[provider][f'batch_{b}']:12.1f}" for b in args.batches))

    expected = args.expect_gpu or bool(gpus)
    if gpu_ran:
        print(f"\nGPU providers that ran: {', '.join(gpu_ran)}")
    else:
        print("\nNo GPU provider ran: every run above used the CPU (the reasons are in the lines above).")
    failed = expected and not gpu_ran
    if failed:
        print("A GPU was expected (--expect-gpu or a visible NVIDIA GPU): exit status 1.", file=sys.stderr)
    summary = {"build": info, "visible_gpus": gpus, "runs": results, "images_per_second": speeds}
    summary.update({"gpu_providers_ran": gpu_ran, "gpu_expected": expected, "ok": not failed})
    print(json.dumps(summary))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
