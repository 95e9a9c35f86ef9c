"""Tests of execution-provider choice and sessions, true on CPU-only and GPU machines alike."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from cnncodes.errors import InputError, ProviderFallbackWarning
from cnncodes.params import DEVICES, OPTIMIZATIONS
from cnncodes.runtime import ProviderChoice, Session, _with_options, choose_provider
from cnncodes.taps import prepare_model

PROVIDER = {"tensorrt": "TensorrtExecutionProvider", "cuda": "CUDAExecutionProvider", "cpu": "CPUExecutionProvider"}
PIXELS = np.random.default_rng(0).integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)
PIXELS.flags.writeable = False


@pytest.fixture
def prepared(tiny_onnx: Path) -> bytes:
    return prepare_model(tiny_onnx, ["vector"], input_name="images", input_size=32, mean=(0, 0, 0), std=(1, 1, 1))


def _works(model: bytes, device: str) -> bool:
    """Ground truth from onnxruntime alone: does a session on ``device``'s provider really initialize?"""
    provider = PROVIDER[device]
    if provider not in ort.get_available_providers():
        return False
    try:
        session = ort.InferenceSession(model, providers=[provider, PROVIDER["cpu"]])
    except (RuntimeError, ort.capi.onnxruntime_pybind11_state.Fail):
        return False
    return session.get_providers()[0] == provider


def _cpu_vector(model: bytes) -> np.ndarray:
    session = ort.InferenceSession(model, providers=[PROVIDER["cpu"]])
    return session.run(["vector"], {"pixels": np.asarray(PIXELS)})[0]


def test_choose_provider_auto_takes_the_first_provider_that_works(prepared: bytes) -> None:
    """Check that auto runs on the first of TensorRT, CUDA, CPU that initializes, and says why not the others."""
    expected = next(device for device in ("tensorrt", "cuda", "cpu") if device == "cpu" or _works(prepared, device))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # auto must not warn: falling back is its job
        session, choice = choose_provider(prepared, "auto")
    assert (choice.device, choice.provider) == (expected, PROVIDER[expected])
    assert session.get_providers()[0] == PROVIDER[expected]
    passed = [PROVIDER[d] for d in ("tensorrt", "cuda", "cpu")][: ("tensorrt", "cuda", "cpu").index(expected)]
    assert list(choice.passed_over) == passed
    for provider, reason in choice.passed_over.items():
        if provider in ort.get_available_providers():
            assert re.fullmatch(r"failed to initialize \(.+\)", reason), reason
        else:
            assert reason == "not in this onnxruntime build"
    np.testing.assert_allclose(
        session.run(["vector"], {"pixels": np.asarray(PIXELS)})[0], _cpu_vector(prepared), rtol=1e-3, atol=1e-3
    )


@pytest.mark.parametrize("device", ["cuda", "tensorrt"])
def test_choose_provider_gpu_request_runs_there_or_warns_and_uses_cpu(prepared: bytes, device: str) -> None:
    """Check that an explicit GPU device runs there if it initializes, else warns naming both and runs on the CPU."""
    works = _works(prepared, device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        session, choice = choose_provider(prepared, device)
    fallbacks = [str(w.message) for w in caught if issubclass(w.category, ProviderFallbackWarning)]
    if works:
        assert (choice.device, fallbacks) == (device, [])
    else:
        reason = choice.passed_over[PROVIDER[device]]
        assert choice.device == "cpu"
        assert fallbacks == [f"{PROVIDER[device]} requested but {reason}; using CPUExecutionProvider"]
    assert session.get_providers()[0] == choice.provider == PROVIDER[choice.device]
    np.testing.assert_allclose(
        session.run(["vector"], {"pixels": np.asarray(PIXELS)})[0], _cpu_vector(prepared), rtol=1e-3, atol=1e-3
    )


def test_choose_provider_cpu_passes_nothing_over(prepared: bytes) -> None:
    """Check that an explicit CPU request tries no GPU provider and describes itself in one line."""
    session, choice = choose_provider(prepared, "cpu")
    assert session.get_providers() == ["CPUExecutionProvider"]
    assert (choice.device, choice.passed_over) == ("cpu", {})
    assert choice.describe() == f"onnxruntime {ort.__version__}: running on CPUExecutionProvider"


def test_provider_choice_describe_names_each_reason() -> None:
    """Check that the one-line description lists every provider passed over with its reason."""
    choice = ProviderChoice("CPUExecutionProvider", "cpu", {"A": "not in this onnxruntime build", "B": "failed (x)"})
    assert choice.describe() == (
        f"onnxruntime {ort.__version__}: running on CPUExecutionProvider "
        "(A: not in this onnxruntime build; B: failed (x))"
    )


@pytest.mark.parametrize(
    "device,optimization,expected",
    [
        ("gpu", "all", f"The 'device' parameter must be one of {', '.join(map(repr, DEVICES))}. Got 'gpu' instead."),
        (
            "cpu",
            "max",
            f"The 'optimization' parameter must be one of {', '.join(map(repr, OPTIMIZATIONS))}. Got 'max' instead.",
        ),
    ],
    ids=["device", "optimization"],
)
def test_choose_provider_rejects_unknown_choices(
    prepared: bytes, device: str, optimization: str, expected: str
) -> None:
    """Check that an unknown device or optimization level is a one-line error listing the declared choices."""
    with pytest.raises(InputError, match=re.escape(expected)):
        choose_provider(prepared, device, optimization=optimization)


def test_tensorrt_caches_go_to_the_models_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Check that TensorRT keeps its engine and timing caches under models_dir()/tensorrt."""
    monkeypatch.setenv("CNNCODES_MODELS_DIR", str(tmp_path / "models"))
    provider, options = _with_options("tensorrt")
    assert provider == "TensorrtExecutionProvider"
    assert options["trt_engine_cache_path"] == options["trt_timing_cache_path"] == str(tmp_path / "models" / "tensorrt")
    assert _with_options("cuda") == "CUDAExecutionProvider"


@pytest.mark.parametrize("optimization", OPTIMIZATIONS)
def test_session_options_do_not_change_results(prepared: bytes, optimization: str) -> None:
    """Check that every optimization level, with one thread, gives the plain CPU session's outputs."""
    session = Session(prepared, "cpu", n_threads=1, optimization=optimization)
    assert (session.input_name, session.output_names) == ("pixels", ["vector"])
    np.testing.assert_allclose(session.run(np.asarray(PIXELS))["vector"], _cpu_vector(prepared), rtol=1e-5, atol=1e-5)
