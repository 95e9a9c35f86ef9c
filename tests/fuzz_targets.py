"""Fuzz targets of the readers of untrusted files, their seed inputs, and an atheris entry point.

Each target takes the bytes of one file (an image, a CSV, a codes file, a cache shard, a model card,
a ``.pth`` weights file, a model file), hands them to the reader a user's file would reach, and lets
only the project's own errors (:class:`cnncodes.errors.CnnCodesError`) pass: any other exception is a
crash. ``python -m tests.fuzz_targets TARGET [libFuzzer flags] [corpus folder]`` runs one under atheris
(coverage-guided); ``scripts/fuzz.py`` runs them all and counts executions and crashes.
"""

from __future__ import annotations

import io
import json
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from tests.legacyfiles import v1_codes_file, v1_shard

FUZZ_DATA = Path(__file__).parent / "data" / "fuzz"  # committed crash reproducers, one folder per target
_WORK = Path(tempfile.mkdtemp(prefix="cnncodes-fuzz-"))  # one scratch folder per process: files to read
PROBE_TIMEOUT_S = 2.0  # how long an unsealed HDF5 file may keep libhdf5 busy in its child, below the fuzz timeout


def _file(name: str, data: bytes) -> Path:
    path = _WORK / name
    path.write_bytes(data)
    return path


def fuzz_image(data: bytes) -> None:
    """Decode ``data`` as an image file by both decoders (from bytes: files take the same path after opening)."""
    from cnncodes.errors import CnnCodesError
    from cnncodes.fastdecode import prepare_views
    from cnncodes.images import Preprocessing

    for decoder in ("exact", "fast"):
        try:
            prepare_views(data, Preprocessing(16, 0.875, "bilinear", decoder=decoder), "<fuzz>")
        except CnnCodesError:
            pass


def fuzz_csv(data: bytes) -> None:
    """Read ``data`` as a CSV of ``path[,label]`` rows, then key the images it lists."""
    from cnncodes.contentkeys import content_keys
    from cnncodes.errors import CnnCodesError
    from cnncodes.inputs import read_inputs

    try:
        inputs = read_inputs(_file("list.csv", data))
    except CnnCodesError:
        return
    inside = [i for i, p in enumerate(inputs.sources) if str(p).startswith(str(_WORK))]  # never hash /dev or /
    content_keys([inputs.sources[i] for i in inside[:8]], [inputs.names[i] for i in inside[:8]])


def _short_probes() -> None:
    import cnncodes.seals

    cnncodes.seals.PROBE_TIMEOUT_S = PROBE_TIMEOUT_S


def _read_file(reader: Callable[[Path], object], name: str, data: bytes) -> None:
    """Write ``data`` as the file ``name`` and hand it to ``reader``; the project's own errors are fine."""
    from cnncodes.errors import CnnCodesError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reader(_file(name, data))
    except CnnCodesError:
        pass


def fuzz_codes_file(data: bytes) -> None:
    """Read ``data`` as a codes file (metadata and codes)."""
    from cnncodes.codesfile import read_codes_file

    _short_probes()
    _read_file(read_codes_file, "codes.h5", data)


def fuzz_shard(data: bytes) -> None:
    """Put ``data`` in a feature set as a shard, then look up, read and verify its codes."""
    from cnncodes.cache import CodeCache
    from cnncodes.cacheops import verify_cache
    from cnncodes.errors import CnnCodesError

    _short_probes()
    root = _WORK / "cache"
    feature_set = CodeCache(root).feature_set({"tap": "fuzz", "dtype": "float32"})
    shards = feature_set.path / "shards"
    shards.mkdir(parents=True, exist_ok=True)
    for old in shards.iterdir():
        old.unlink()
    (shards / "fuzz.h5").write_bytes(data)
    fresh = CodeCache(root).feature_set({"tap": "fuzz", "dtype": "float32"})
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fresh.refresh()
            keys = fresh.keys() or ["absent"]
            fresh.fetch(keys)  # a damaged shard's rows come back as misses
            if fresh.contains(keys).all():
                fresh.get(keys)
            verify_cache(root)
    except CnnCodesError:
        pass


def fuzz_card(data: bytes) -> None:
    """Parse ``data`` as a model card."""
    from cnncodes.backbones import _parse_card

    _read_file(_parse_card, "card.json", data)


def fuzz_weights(data: bytes) -> None:
    """Read ``data`` as a ``.pth`` state dict."""
    from cnncodes.weights import load_state_dict

    _read_file(load_state_dict, "weights.pth", data)


def fuzz_model_file(data: bytes) -> None:
    """Load ``data`` as a saved model (without the backbone check, which needs a real backbone)."""
    from cnncodes.persist import load_model

    _read_file(lambda path: load_model(path, check_backbone=False), "model.joblib", data)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "image": fuzz_image,
    "csv": fuzz_csv,
    "codes_file": fuzz_codes_file,
    "shard": fuzz_shard,
    "card": fuzz_card,
    "weights": fuzz_weights,
    "model_file": fuzz_model_file,
}


_MODULES = {  # what each target reads with: instrumented for coverage before anything imports them
    "image": [
        "cnncodes.images",
        "cnncodes.fastdecode",
        "PIL.Image",
        "PIL.JpegImagePlugin",
        "PIL.PngImagePlugin",
        "PIL.TiffImagePlugin",
    ],
    "csv": ["cnncodes.inputs", "cnncodes.datasets", "cnncodes.contentkeys"],
    "codes_file": ["cnncodes.cache", "cnncodes.seals"],
    "shard": ["cnncodes.cache", "cnncodes.seals"],
    "card": ["cnncodes.backbones"],
    "weights": ["cnncodes.weights"],
    "model_file": ["cnncodes.persist", "joblib"],
}


def _image_seeds() -> list[bytes]:
    from PIL import Image

    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
    seeds = []
    for fmt, options in [("JPEG", {}), ("JPEG", {"progressive": True}), ("PNG", {}), ("GIF", {}), ("BMP", {})]:
        encoded = io.BytesIO()
        image.save(encoded, fmt, **options)
        seeds.append(encoded.getvalue())
    for fmt, mode in [("WEBP", "RGB"), ("TIFF", "RGB"), ("PNG", "RGBA"), ("PNG", "I;16"), ("TIFF", "CMYK")]:
        encoded = io.BytesIO()
        (image.convert("L").convert(mode) if mode == "I;16" else image.convert(mode)).save(encoded, fmt)
        seeds.append(encoded.getvalue())
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotated
    encoded = io.BytesIO()
    image.save(encoded, "JPEG", exif=exif.tobytes())
    return seeds + [encoded.getvalue()]


def _codes_seed() -> bytes:
    from cnncodes.codesfile import CodesFile, write_codes_file

    path = write_codes_file(
        _WORK / "seed_codes.h5",
        CodesFile(np.ones((2, 3), np.float32), ["a.jpg", "b.jpg"], ["k1", "k2"], np.array([0, 1]), ["x", "y"]),
    )
    return path.read_bytes()


def _shard_seed() -> bytes:
    from cnncodes.cache import CodeCache

    feature_set = CodeCache(_WORK / "seed_cache").feature_set({"tap": "seed", "dtype": "float32"})
    feature_set.add(["k1", "k2", "k3"], np.ones((3, 4), np.float32))
    feature_set.flush()
    return next((feature_set.path / "shards").glob("*.h5")).read_bytes()


def _weights_seeds() -> list[bytes]:
    """A small state dict as torch saves it, in its zip format and in its legacy format."""
    import torch

    state = {
        "conv.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3),
        "bn.num_batches_tracked": torch.tensor(3),
    }
    torch.save(state, _WORK / "seed_zip.pth")
    torch.save(state, _WORK / "seed_legacy.pth", _use_new_zipfile_serialization=False)
    return [(_WORK / name).read_bytes() for name in ("seed_zip.pth", "seed_legacy.pth")]


def _model_seed() -> bytes:
    from sklearn.dummy import DummyClassifier

    from cnncodes.persist import ModelBundle, save_model

    bundle = ModelBundle(DummyClassifier().fit([[0], [1]], [0, 1]), ["ant", "bee"], {}, "none", "0" * 64)
    return save_model(bundle, _WORK / "seed.joblib").read_bytes()


def seeds(target: str) -> list[bytes]:
    """Valid inputs of ``target`` to start mutating from, and the committed reproducers of past crashes."""
    if target == "image":
        found = _image_seeds()
    elif target == "csv":
        found = [b"path,label\nimage,cat\nimage,dog\n", "\ufeffpath\nimage\n".encode(), b"a.jpg\n\nb.jpg\n"]
    elif target == "codes_file":
        found = [_codes_seed(), v1_codes_file(_WORK / "v1_codes.h5").read_bytes()]
    elif target == "shard":
        found = [_shard_seed(), v1_shard(_WORK / "v1_shard.h5").read_bytes()]
    elif target == "card":
        cards = sorted((Path(__file__).parents[1] / "models_onnx").glob("*.json"))
        found = [path.read_bytes() for path in cards[:3]] + [json.dumps({"taps": []}).encode()]
    elif target == "weights":
        found = _weights_seeds()
    else:
        found = [_model_seed()]
    folder = FUZZ_DATA / target
    return found + ([path.read_bytes() for path in sorted(folder.iterdir())] if folder.is_dir() else [])


def main(argv: list[str]) -> None:
    """Run one target under atheris: ``TARGET [libFuzzer flags] [corpus folder]``; the seeds join the corpus."""
    import atheris

    target, flags = argv[1], argv[2:]
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    warnings.simplefilter("ignore")
    with atheris.instrument_imports(include=["cnncodes", "PIL", "h5py", "joblib"]):
        for module in _MODULES[target]:
            __import__(module)
    corpus = [flag for flag in flags if not flag.startswith("-")]
    for folder in corpus[:1]:  # after instrumenting: making seeds imports the readers
        Path(folder).mkdir(parents=True, exist_ok=True)
        for index, seed in enumerate(seeds(target)):
            Path(folder, f"seed{index:03d}").write_bytes(seed)
    atheris.Setup([argv[0], *flags], TARGETS[target])
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
