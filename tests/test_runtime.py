"""Tests of execution-provider choice on this (GPU-less) machine, with the real onnxruntime-gpu build."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from cnncodes.errors import CnnCodesError, ProviderFallbackWarning
from cnncodes.runtime import Session, choose_provider
from cnncodes.taps import prepare_model


@pytest.fixture
def prepared(tiny_onnx: Path) -> bytes:
    return prepare_model(tiny_onnx, ["vector"], input_name="images", input_size=32, mean=(0, 0, 0), std=(1, 1, 1))


def test_choose_provider_auto_falls_back_to_cpu_and_says_why(prepared: bytes) -> None:
    """Check that auto tries the GPU providers of this build, keeps none that fail, and names each reason."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # auto must not warn: falling back is its job
        session, choice = choose_provider(prepared, "auto")
    assert session.get_providers() == ["CPUExecutionProvider"]
    assert choice.provider == "CPUExecutionProvider"
    gpu_in_build = [
        p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in ort.get_available_providers()
    ]
    assert list(choice.passed_over) == (gpu_in_build or list(choice.passed_over))
    for provider in ("TensorrtExecutionProvider", "CUDAExecutionProvider"):
        reason = choice.passed_over[provider]
        assert reason.startswith("failed to initialize (") or reason == "not in this onnxruntime build"
    line = choice.describe()
    assert line.startswith(
        f"onnxruntime {ort.__version__}: running on CPUExecutionProvider (TensorrtExecutionProvider: "
    )
    assert "\n" not in line


def test_choose_provider_cuda_requested_warns_and_runs_on_cpu(prepared: bytes) -> None:
    """Check that an explicit CUDA request that cannot initialize warns, naming both providers, and still runs."""
    with pytest.warns(
        ProviderFallbackWarning, match=r"^CUDAExecutionProvider requested but .*; using CPUExecutionProvider$"
    ):
        session, choice = choose_provider(prepared, "cuda")
    assert choice.device == "cpu"
    assert session.run(None, {"pixels": np.zeros((1, 32, 32, 3), np.uint8)})[0].shape == (1, 6)


def test_choose_provider_rejects_unknown_device(prepared: bytes) -> None:
    """Check that an unknown device is a one-line error listing the choices."""
    expected = "The 'device' parameter must be one of 'auto', 'cpu', 'cuda', 'tensorrt'. Got 'gpu' instead."
    with pytest.raises(CnnCodesError, match=re.escape(expected)):
        choose_provider(prepared, "gpu")


@pytest.mark.parametrize("optimization", ["disable", "basic", "all"])
def test_session_options_do_not_change_results(prepared: bytes, optimization: str) -> None:
    """Check that threads and optimization level are settable and give the same outputs."""
    pixels = np.random.default_rng(0).integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)
    reference = Session(prepared, "cpu").run(pixels)["vector"]
    got = Session(prepared, "cpu", n_threads=1, optimization=optimization).run(pixels)["vector"]
    np.testing.assert_allclose(got, reference, rtol=1e-5, atol=1e-5)
