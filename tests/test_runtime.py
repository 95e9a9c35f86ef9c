"""Tests of execution-provider choice, fallback, warm-up, engine folders and sessions, true on CPU and GPU machines.

Ground truth about the machine comes from onnxruntime alone: a GPU provider "works" if a plain
onnxruntime session initializes on it and runs a batch; failures are raised by real sessions.
"""

from __future__ import annotations

import ctypes.util
import json
import multiprocessing
import os
import re
import subprocess
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from cnncodes.enginecache import STALE_BUILD_S, EngineFolder
from cnncodes.errors import InputError, ModelFileError, ProviderFallbackWarning
from cnncodes.params import DEVICES, OPTIMIZATIONS, batch_size_for, inference_streams_for, n_cores
from cnncodes.providers import failure_reason, largest_batch, session_providers
from cnncodes.runtime import (
    ORT_ERRORS,
    Attempt,
    ProviderChoice,
    Session,
    _attempts,
    _ModelIO,
    _session_options,
    open_first,
    preload_gpu_libraries,
    tensorrt_attempt,
)
from cnncodes.taps import prepare_model
from tests.conftest import build_tiny_model

PROVIDER = {"tensorrt": "TensorrtExecutionProvider", "cuda": "CUDAExecutionProvider", "cpu": "CPUExecutionProvider"}
CHAIN = {"auto": ("tensorrt", "cuda", "cpu"), "tensorrt": ("tensorrt", "cuda", "cpu"), "cuda": ("cuda", "cpu")}
CHAIN["cpu"] = ("cpu",)
AVAILABLE = ort.get_available_providers()
PIXELS = np.random.default_rng(0).integers(0, 256, size=(7, 32, 32, 3), dtype=np.uint8)
PIXELS.flags.writeable = False
TINY = {"input_name": "images", "input_size": 32, "mean": (0, 0, 0), "std": (1, 1, 1)}
NO_DRIVER = "not tried (libcuda.so.1 not found: no NVIDIA driver)"
REASON = re.compile(r"failed to (initialize|run a warm-up batch) \(.+\)")


@pytest.fixture
def prepared(tiny_onnx: Path) -> bytes:
    return prepare_model(tiny_onnx, ["vector"], **TINY)


def _works(model: bytes, device: str) -> bool:
    """Ground truth from onnxruntime alone: does a session on ``device``'s provider initialize and run a batch?"""
    provider = PROVIDER[device]
    if provider not in ort.get_available_providers():
        return False
    ort.preload_dlls()
    try:
        session = ort.InferenceSession(model, providers=[provider, PROVIDER["cpu"]])
        session.run(None, {"pixels": np.asarray(PIXELS)})
    except ORT_ERRORS:
        return False
    return session.get_providers()[0] == provider


def _cpu_outputs(model: bytes, pixels: np.ndarray = PIXELS) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(model, providers=[PROVIDER["cpu"]])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, {"pixels": np.asarray(pixels)})))


def _model(node: helper.NodeProto, dtype: int = TensorProto.FLOAT, extra: list | None = None) -> bytes:
    """A one-node model x (N, 4) -> y (N, 4)."""
    graph = helper.make_graph(
        [node, *(extra or [])],
        "g",
        [helper.make_tensor_value_info("x", dtype, ["N", 4])],
        [helper.make_tensor_value_info("y", dtype, ["N", 4])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8).SerializeToString()


# -- which providers each device registers, in which order ----------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
def test_attempts_register_providers_in_order_for_every_device(prepared: bytes, device: str) -> None:
    """Check each device's attempts: TensorRT then CUDA then CPU, TensorRT sessions with CUDA behind them."""
    io_spec = _ModelIO.of(prepared)
    batches = {d: largest_batch(batch_size_for(None, d)) for d in PROVIDER}
    attempts = list(_attempts(prepared, device, io_spec, batches, lambda device: _session_options(None, "all")))
    assert tuple(a.device for a in attempts) == tuple(d for d in CHAIN[device] if PROVIDER[d] in AVAILABLE)
    for attempt in attempts:
        names = [entry if isinstance(entry, str) else entry[0] for entry in attempt.providers]
        assert names == [PROVIDER[d] for d in CHAIN[attempt.device]]
        assert attempt.batch == batches[attempt.device] and attempt.warm_up == (attempt is not attempts[-1])
        if attempt.device != "cpu":
            assert dict(attempt.providers[names.index(PROVIDER["cuda"])][1]) == {"use_tf32": "0"}
        if attempt.build_dir is not None:
            attempt.engines.discard(attempt.build_dir)


def test_no_gpu_provider_library_loads_where_the_driver_is_missing(prepared: bytes, tmp_path: Path) -> None:
    """Check that a session on auto loads the CUDA provider's library only where the NVIDIA driver is there: on a
    machine without one, trying it costs 0.2-1 s and cannot work."""
    (tmp_path / "model.onnx").write_bytes(prepared)
    script = (
        "import sys; from pathlib import Path; from cnncodes.runtime import Session\n"
        "session = Session(Path(sys.argv[1]).read_bytes(), 'auto')\n"
        "print(session.choice.device, 'libonnxruntime_providers_cuda' in Path('/proc/self/maps').read_text())"
    )
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "model.onnx")], capture_output=True, text=True)
    device, loaded = done.stdout.split()
    driver = ctypes.util.find_library("cuda") is not None
    cuda_built = PROVIDER["cuda"] in AVAILABLE
    assert loaded == str(driver and cuda_built) and (device == "cpu" or driver), done.stderr


@pytest.mark.parametrize("device", DEVICES)
def test_session_takes_the_first_provider_that_works(prepared: bytes, device: str) -> None:
    """Check each device runs on the first provider of its chain that works, says why not the others, warns if asked."""
    expected = next(d for d in CHAIN[device] if d == "cpu" or _works(prepared, d))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        session = Session(prepared, device)
    choice = session.choice
    fallbacks = [str(w.message) for w in caught if issubclass(w.category, ProviderFallbackWarning)]
    assert (choice.device, choice.provider) == (expected, PROVIDER[expected])
    assert session.providers == [PROVIDER[d] for d in CHAIN[expected]]
    assert list(choice.passed_over) == [PROVIDER[d] for d in CHAIN[device][: CHAIN[device].index(expected)]]
    for provider, reason in choice.passed_over.items():
        assert REASON.fullmatch(reason) or reason in ("not in this onnxruntime build", NO_DRIVER), reason
        assert (reason == "not in this onnxruntime build") == (provider not in ort.get_available_providers())
        if provider in ort.get_available_providers():  # the linker's own cache says whether the driver is there
            assert (reason == NO_DRIVER) == (ctypes.util.find_library("cuda") is None)
    if device in ("cuda", "tensorrt") and expected != device:
        reason = choice.passed_over[PROVIDER[device]]
        assert fallbacks == [f"{PROVIDER[device]} requested but {reason}; using {PROVIDER[expected]}"]
    else:
        assert fallbacks == []
    tolerance = 0 if expected == "cpu" else 1e-4  # a GPU sums in another order (TF32 is off)
    codes = session.run(np.asarray(PIXELS))["vector"]
    np.testing.assert_allclose(codes, _cpu_outputs(prepared)["vector"], rtol=tolerance, atol=tolerance)


def test_session_on_the_cpu_passes_nothing_over(prepared: bytes) -> None:
    """Check that an explicit CPU request tries no GPU provider and describes itself in one line."""
    session = Session(prepared, "cpu")
    choice = session.choice
    assert session.providers == ["CPUExecutionProvider"]
    assert (choice.device, choice.passed_over) == ("cpu", {})
    assert choice.describe() == f"onnxruntime {ort.__version__}: running on CPUExecutionProvider"


def test_provider_choice_describe_names_each_reason() -> None:
    """Check that the one-line description lists every provider passed over with its reason."""
    reasons = {"A": "not in this onnxruntime build", "B": "failed (x)"}
    choice = ProviderChoice("CPUExecutionProvider", "cpu", reasons, ort.__version__)
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
def test_session_rejects_unknown_choices(prepared: bytes, device: str, optimization: str, expected: str) -> None:
    """Check that an unknown device or optimization level is a one-line error listing the declared choices."""
    with pytest.raises(InputError, match=re.escape(expected)):
        Session(prepared, device, optimization=optimization)


# -- fallback on each exception class a real session raises, at creation and at the first run -------------


def _options_with(entry: tuple[str, str] | None = None, free_batch: int | None = None) -> ort.SessionOptions:
    options = _session_options(2, "all")  # thread affinities are read only for more than one thread
    if entry:
        options.add_session_config_entry(*entry)
    if free_batch:
        options.add_free_dimension_override_by_name("N", free_batch)
    return options


FAILING = {  # a real cause of each class: session options that onnxruntime rejects, at creation or at the run
    "RuntimeError-at-creation": (
        RuntimeError,
        _options_with(("session.intra_op_thread_affinities", "zz")),
        "Processor id must consist of only digits: zz)",
    ),
    "InvalidArgument-at-creation": (
        ort_state.InvalidArgument,
        _options_with(("session.disable_cpu_ep_fallback", "1")),
        "failed to initialize (INVALID_ARGUMENT: Conflicting session configuration: explicitly added the CPU EP",
    ),
    "Fail-at-creation": (
        ort_state.Fail,
        _options_with(("session.load_model_format", "ORT")),
        "failed to initialize (FAIL: ",
    ),
    "InvalidArgument-at-warm-up": (
        ort_state.InvalidArgument,
        _options_with(free_batch=2),  # the session takes batches of 2; the warm-up batch has 7 rows
        "failed to run a warm-up batch (INVALID_ARGUMENT: Got invalid dimensions for input: pixels for the",
    ),
}


@pytest.mark.parametrize("case", FAILING, ids=list(FAILING))
def test_open_first_falls_back_on_each_onnxruntime_error(prepared: bytes, case: str) -> None:
    """Check that each onnxruntime error class, raised by a real session, makes the next attempt run instead."""
    error_class, options, reason_part = FAILING[case]
    with pytest.raises(error_class):  # ground truth: this is what onnxruntime itself raises
        session = ort.InferenceSession(prepared, sess_options=options, providers=[PROVIDER["cpu"]], enable_fallback=0)
        session.run(None, {"pixels": np.asarray(PIXELS)})
    assert issubclass(error_class, ORT_ERRORS)
    io_spec = _ModelIO.of(prepared)
    attempts = [
        Attempt("cpu", [PROVIDER["cpu"]], options, batch=len(PIXELS), label="first"),
        Attempt("cpu", [PROVIDER["cpu"]], _options_with(), batch=len(PIXELS), label="second"),
    ]
    session, attempt, passed_over = open_first(prepared, attempts, io_spec)
    assert attempt.label == "second" and list(passed_over) == ["first"]
    reason = passed_over["first"]
    assert REASON.fullmatch(reason) and reason_part in reason and "\n" not in reason, reason
    np.testing.assert_allclose(session.run(None, {"pixels": np.asarray(PIXELS)})[0], _cpu_outputs(prepared)["vector"])


def test_onnxruntime_error_classes_are_no_runtime_errors() -> None:
    """Check that the classes caught include EPFail and InvalidGraph, which RuntimeError alone would miss."""
    for name in ("EPFail", "InvalidArgument", "InvalidGraph", "Fail", "InvalidProtobuf", "NotImplemented"):
        error_class = getattr(ort_state, name)
        assert error_class in ORT_ERRORS and not issubclass(error_class, RuntimeError), name


def test_open_first_warm_up_runs_the_real_batch_shape(prepared: bytes) -> None:
    """Check that an attempt is kept only if a batch of its real size runs: 2 rows pass, 3 fail, on the same session."""
    io_spec = _ModelIO.of(prepared)
    fits = Attempt("cpu", [PROVIDER["cpu"]], _options_with(free_batch=2), batch=2)
    session, attempt, passed_over = open_first(prepared, [fits], io_spec)
    assert attempt is fits and passed_over == {}
    too_big = Attempt("cpu", [PROVIDER["cpu"]], _options_with(free_batch=2), batch=3, label="batch of 3")
    untested = Attempt("cpu", [PROVIDER["cpu"]], _options_with(free_batch=2), batch=3, warm_up=False, label="no run")
    _, attempt, passed_over = open_first(prepared, [too_big, untested], io_spec)
    assert attempt is untested  # without the warm-up the session looks fine, and would fail at its first batch
    assert passed_over["batch of 3"].startswith("failed to run a warm-up batch (INVALID_ARGUMENT: Got invalid dim")


@pytest.mark.parametrize(
    "model,expected",
    [
        (_model(helper.make_node("NoSuchOp", ["x"], ["y"])), "(INVALID_GRAPH: This is an invalid model. In Node, "),
        (b"not a model", "(INVALID_PROTOBUF: Failed to load model because protobuf parsing failed.)"),
        (
            _model(helper.make_node("Relu", ["x"], ["y"]), extra=[helper.make_node("Relu", ["x"], ["y"])]),
            "(FAIL: This is an invalid model. Error: Duplicate definition of name (y).)",
        ),
    ],
    ids=["InvalidGraph", "InvalidProtobuf", "Fail"],
)
def test_session_on_a_model_onnxruntime_rejects_is_one_line_model_error(model: bytes, expected: str) -> None:
    """Check that a model onnxruntime cannot load is a ModelFileError with onnxruntime's reason, on any device."""
    for device in DEVICES:
        with pytest.raises(ModelFileError) as raised:
            Session(model, device)
        message = str(raised.value)
        assert re.match(r"ONNX model sha256 [0-9a-f]{12}: onnxruntime cannot load it \(", message), message
        assert expected in message and "\n" not in message


def test_open_first_with_no_working_attempt_names_every_reason(prepared: bytes) -> None:
    """Check that when every attempt fails the error lists each attempt with its reason."""
    attempts = [Attempt("cpu", [PROVIDER["cpu"]], FAILING[case][1], batch=7, label=case) for case in FAILING]
    with pytest.raises(ModelFileError) as raised:
        open_first(prepared, attempts, _ModelIO.of(prepared))
    message = str(raised.value)
    assert message.startswith("ONNX model sha256 ") and ": no execution provider runs it (" in message
    assert all(f"{case}: failed to " in message for case in FAILING) and "\n" not in message


# -- TensorRT engine folders ----------------------------------------------------------------------------


def test_tensorrt_attempt_uses_a_per_model_engine_folder_created_with_parents(
    tiny_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Check TensorRT's folders: per model sha256 and batch range, with parents, profile shapes set."""
    monkeypatch.setenv("CNNCODES_MODELS_DIR", str(tmp_path / "fresh" / "custom" / "models"))
    models = [prepare_model(tiny_onnx, [tap], **TINY) for tap in ("vector", "conv1")]
    folders = []
    for model in models:
        io_spec = _ModelIO.of(model)
        attempt = tensorrt_attempt(model, io_spec, 70, _options_with())
        options = dict(attempt.providers[0][1])
        assert attempt.build_dir is not None and Path(attempt.build_dir).is_dir()
        assert options["trt_engine_cache_path"] == options["trt_timing_cache_path"] == str(attempt.build_dir)
        assert (options["trt_profile_min_shapes"], options["trt_profile_max_shapes"]) == (
            "pixels:1x32x32x3",
            "pixels:70x32x32x3",
        )
        folders.append(attempt.engines.published)
        assert Path(attempt.build_dir).parent == attempt.engines.published.parent
        attempt.engines.discard(attempt.build_dir)
        assert not Path(attempt.build_dir).exists()
    assert folders[0] != folders[1]
    assert [f.parent.parent for f in folders] == [tmp_path / "fresh" / "custom" / "models" / "tensorrt"] * 2


def test_tensorrt_choice_leaves_no_build_folder(
    prepared: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Check that after choosing, TensorRT's private build folder is gone: published if it ran, else discarded."""
    monkeypatch.setenv("CNNCODES_MODELS_DIR", str(tmp_path / "models"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ProviderFallbackWarning)
        choice = Session(prepared, "tensorrt").choice
    assert [p for p in (tmp_path / "models").rglob(".build-*")] == []
    if choice.device != "tensorrt":  # nothing built: not even an empty model folder stays
        assert list((tmp_path / "models").rglob("*")) in ([], [tmp_path / "models" / "tensorrt"])
    published = list((tmp_path / "models" / "tensorrt").glob("*/batch-1-*/*.engine"))
    assert bool(published) == (choice.device == "tensorrt")


def _publish_engine(args: tuple[str, int, int]) -> list[str]:
    root, writer, size = args
    folder = EngineFolder("cd" * 32, 64, Path(root))
    build = folder.open_build()
    (build / "TensorrtExecutionProvider_TRTKernel_graph_7_0_0_sm89.engine").write_bytes(bytes([writer]) * size)
    (build / "TensorrtExecutionProvider_cache_sm89.timing").write_bytes(bytes([writer]) * 1000)
    return folder.publish(build)


def test_engine_folder_concurrent_publishers_never_leave_a_partial_file(tmp_path: Path) -> None:
    """Check that 6 processes publishing the same engine at once leave one whole file, never a mix or a half file
    (forkserver: forking the test process, gigabytes by now, can fail with ENOMEM under heuristic overcommit)."""
    size = 4_000_000
    with multiprocessing.get_context("forkserver").Pool(3) as pool:
        results = pool.map(_publish_engine, [(str(tmp_path), writer, size) for writer in range(1, 7)])
    folder = EngineFolder("cd" * 32, 64, tmp_path)
    engine = (folder.published / "TensorrtExecutionProvider_TRTKernel_graph_7_0_0_sm89.engine").read_bytes()
    assert len(engine) == size and len(set(engine)) == 1
    timing = (folder.timing_dir / "TensorrtExecutionProvider_cache_sm89.timing").read_bytes()
    assert len(timing) == 1000 and len(set(timing)) == 1
    assert all(len(names) in (1, 2) for names in results)  # a later writer may find its copy unchanged
    assert sorted(p.name for p in folder.published.parent.iterdir()) == ["batch-1-64"]  # no build folder left


def test_engine_folder_seeds_a_build_with_published_engines(tmp_path: Path) -> None:
    """Check that a new build starts from copies of the published engines and republishes nothing unchanged."""
    folder = EngineFolder("ef" * 32, 8, tmp_path / "a" / "b")
    first = folder.open_build()
    (first / "e.engine").write_bytes(b"built once")
    assert folder.publish(first) == ["e.engine"]
    second = folder.open_build()
    assert (second / "e.engine").read_bytes() == b"built once"
    assert not os.path.samefile(second / "e.engine", folder.published / "e.engine")  # a copy, never a link
    (second / "f.engine").write_bytes(b"new")
    assert folder.publish(second) == ["f.engine"]


# -- batch shapes and outputs -------------------------------------------------------------------------------


@pytest.mark.parametrize("batch_size,n_views,max_batch", [(2, 1, 2), (4, 3, 6), (8, 1, 8), (1, 1, 1)])
def test_session_batches_give_the_codes_of_one_unsplit_cpu_run(
    prepared: bytes, batch_size: int, n_views: int, max_batch: int
) -> None:
    """Check that runs split at max_batch (the TensorRT profile's top) give exactly the outputs of one plain CPU run."""
    session = Session(prepared, "cpu", batch_size=batch_size, n_views=n_views, n_threads=1)
    assert (session.batch_size, session.max_batch) == (batch_size, max_batch)
    np.testing.assert_array_equal(session.run(np.asarray(PIXELS))["vector"], _cpu_outputs(prepared)["vector"])


def test_cpu_session_runs_calls_side_by_side_with_the_outputs_of_one_at_a_time(prepared: bytes) -> None:
    """Check that the default CPU session runs one call per core side by side, on one thread each, and that calls
    from threads at once and a large batch run in parts at once give exactly the outputs of one plain CPU run."""
    session = Session(prepared, "cpu", batch_size=2)
    n_streams, threads = inference_streams_for(None, "cpu", n_cores())
    assert session.n_streams == n_streams == n_cores() and threads == 1  # calls of a session share its pool
    assert session._session.get_session_options().intra_op_num_threads == threads
    single = Session(prepared, "cpu", batch_size=2, n_threads=3)
    assert single.n_streams == 1 and single._session.get_session_options().intra_op_num_threads == 3
    expected = _cpu_outputs(prepared)["vector"]
    np.testing.assert_array_equal(session.run(np.asarray(PIXELS))["vector"], expected)  # 4 calls, 2 at a time
    with ThreadPoolExecutor(4) as callers:
        rows = list(callers.map(lambda row: session.run(PIXELS[row : row + 1])["vector"], range(len(PIXELS))))
    np.testing.assert_array_equal(np.concatenate(rows), expected)


def test_session_run_gives_every_output_of_a_plain_cpu_run(tmp_path: Path) -> None:
    """Check that a session with two taps returns both, by name, equal to a plain onnxruntime CPU run."""
    model = prepare_model(build_tiny_model(tmp_path / "t.onnx"), ["conv1", "vector"], **TINY)
    session = Session(model, "cpu", batch_size=3)
    outputs, expected = session.run(np.asarray(PIXELS)), _cpu_outputs(model)
    assert session.output_names == list(outputs) == ["conv1", "vector"]
    for name in session.output_names:
        assert (
            outputs[name].shape == expected[name].shape == (len(PIXELS), *{"conv1": (4, 16, 16), "vector": (6,)}[name])
        )
        np.testing.assert_array_equal(outputs[name], expected[name])


@pytest.mark.parametrize("optimization", OPTIMIZATIONS)
def test_session_options_do_not_change_results(prepared: bytes, optimization: str) -> None:
    """Check that every optimization level, with one thread, gives the plain CPU session's outputs."""
    session = Session(prepared, "cpu", n_threads=1, optimization=optimization)
    assert (session.input_name, session.output_names) == ("pixels", ["vector"])
    np.testing.assert_allclose(
        session.run(np.asarray(PIXELS))["vector"], _cpu_outputs(prepared)["vector"], rtol=1e-5, atol=1e-5
    )


# -- failure reasons from real onnxruntime messages -------------------------------------------------------

_PROBE = """
import sys, onnxruntime as ort
if sys.argv[2] == "preload":
    ort.preload_dlls()
session = ort.InferenceSession(sys.argv[1], providers=[sys.argv[3], "CPUExecutionProvider"])
print("PROVIDERS", session.get_providers()[0])
"""


@pytest.mark.parametrize("preload", ["preload", "no-preload"])
@pytest.mark.parametrize("device", ["cuda", "tensorrt"])
def test_failure_reason_of_real_provider_loading_messages(tiny_onnx: Path, device: str, preload: str) -> None:
    """Check the reason parsed from what onnxruntime prints in a fresh process when a GPU provider does not load."""
    if PROVIDER[device] not in ort.get_available_providers():
        assert failure_reason("") == "failed to initialize (onnxruntime did not register it and said nothing)"
        return
    completed = subprocess.run(
        [sys.executable, "-c", _PROBE, str(tiny_onnx), preload, PROVIDER[device]], capture_output=True, text=True
    )
    assert completed.returncode == 0, completed.stderr
    if f"PROVIDERS {PROVIDER[device]}" in completed.stdout:  # it loads on this machine: nothing to explain
        return
    reason = failure_reason(completed.stdout + completed.stderr)
    missing = re.fullmatch(r"failed to initialize \((lib[\w.+-]+\.so[.\d]*) not found(: .+)?\)", reason)
    status = re.fullmatch(r"failed to initialize \((CUDA|CUDNN|CUBLAS) failure \d+: .+\)", reason)
    assert missing or status or reason.startswith("failed to initialize (Please install"), reason
    if missing:
        assert f"{missing.group(1)}: cannot open shared object file" in completed.stderr


@pytest.mark.parametrize(
    "log,expected",
    [
        (
            "[E:onnxruntime:Default, provider_bridge_ort.cc:2458 operator()] /onnxruntime_src/onnxruntime/core/session/"
            "provider_bridge_ort.cc:2043 onnxruntime::Provider& onnxruntime::ProviderLibrary::Get() [ONNXRuntimeError]"
            " : 1 : FAIL : Failed to load library /site-packages/onnxruntime/capi/libonnxruntime_providers_tensorrt.so"
            " with error: libnvinfer.so.10: cannot open shared object file: No such file or directory",
            "failed to initialize (libnvinfer.so.10 not found: TensorRT libraries not found; see README 'GPUs')",
        ),
        (
            "EP Error /onnxruntime_src/onnxruntime/python/onnxruntime_pybind_state.cc:729 void onnxruntime::python::"
            "RegisterTensorRTPluginsAsCustomOps(PySessionOptions&, const onnxruntime::ProviderOptions&) Please install"
            " TensorRT libraries as mentioned in the GPU requirements page, make sure they're in the PATH or "
            "LD_LIBRARY_PATH, and that your GPU is supported.",
            "failed to initialize (Please install TensorRT libraries as mentioned in the GPU requirements page)",
        ),
        (
            "/onnxruntime_src/onnxruntime/core/providers/cuda/cuda_call.cc:129 std::conditional_t<THRW, void, "
            "onnxruntime::common::Status> onnxruntime::CudaCall(...) [with ERRTYPE = cudaError; bool THRW = true] "
            "CUDA failure 100: no CUDA-capable device is detected ; GPU=-1 ; hostname=node1 ; file=/onnxruntime_src/"
            "onnxruntime/core/providers/cuda/cuda_execution_provider.cc ; line=282 ; "
            "expr=cudaSetDevice(info_.device_id);",
            "failed to initialize (CUDA failure 100: no CUDA-capable device is detected)",
        ),
        (
            "\x1b[0;93m[W:onnxruntime:Default, onnxruntime_pybind_state.cc:1295 CreateExecutionProviderFactoryInstance]"
            " Failed to create CUDAExecutionProvider. Require cuDNN 9.* and CUDA 13.*. Please install all dependencies"
            " as mentioned in the GPU requirements page\x1b[m",
            "failed to initialize (Please install all dependencies as mentioned in the GPU requirements page)",
        ),
    ],
    ids=["libnvinfer", "tensorrt-install", "cuda-status", "cuda-require"],
)
def test_failure_reason_of_onnxruntime_message_formats(log: str, expected: str) -> None:
    """Check the reasons of onnxruntime's own message formats (its loader, TensorRT and CUDA status lines)."""
    assert failure_reason(log) == expected


def test_preload_gpu_libraries_runs_once_and_turns_tf32_off() -> None:
    """Check that preloading is done once per process and leaves NVIDIA_TF32_OVERRIDE set (to 0 unless set before)."""
    assert preload_gpu_libraries() is preload_gpu_libraries()
    assert os.environ.get("NVIDIA_TF32_OVERRIDE") is not None
    assert session_providers("cuda")[0] == ("CUDAExecutionProvider", {"use_tf32": "0"})


def test_gpu_check_script_reports_what_ran_and_fails_only_if_a_gpu_was_expected() -> None:
    """Check scripts/gpu_check.py here: a line per device, a JSON summary, exit 1 with --expect-gpu unless a GPU ran."""
    script = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.py"
    args = [sys.executable, str(script), "--expect-gpu", "--seconds", "0.1", "--batches", "1", "--images", "2"]
    completed = subprocess.run(args, capture_output=True, text=True, timeout=900)
    summary = json.loads(completed.stdout.splitlines()[-1])
    assert [line.split()[1] for line in completed.stdout.splitlines() if line.startswith("--device ")] == [
        "cpu",
        "cuda",
        "tensorrt",
    ]
    assert summary["runs"]["cpu"]["provider"] == "CPUExecutionProvider"
    assert summary["runs"]["cpu"]["max_abs_difference_vs_cpu"] == 0.0
    for device in ("cuda", "tensorrt"):
        ran = summary["runs"][device]["provider"]
        assert ran in (PROVIDER["cpu"], PROVIDER["cuda"], PROVIDER[device])
        assert summary["runs"][device]["max_abs_difference_vs_cpu"] < 1e-3
    assert completed.returncode == (0 if summary["gpu_providers_ran"] else 1), completed.stderr
    if not summary["gpu_providers_ran"]:
        assert "\nNo GPU provider ran: every run above used the CPU" in completed.stdout


def test_engine_folder_removes_build_folders_that_dying_processes_left(tmp_path: Path) -> None:
    """Check that opening a build removes build folders untouched for a day, and keeps recent ones (in use)."""
    folder = EngineFolder("ab" * 32, 8, tmp_path)
    left, busy = folder.open_build(), folder.open_build()
    (left / "half.engine").write_bytes(b"half")
    old = time.time() - STALE_BUILD_S - 60
    os.utime(left, (old, old))
    mine = folder.open_build()
    assert not left.exists() and busy.is_dir() and mine.is_dir()
