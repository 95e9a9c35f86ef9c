"""Files as cnncodes wrote them before seals (format version 1): plain contiguous HDF5, no checksum, no seal."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

V1_FINGERPRINT = "9834a84a517f40ad6ce677b0409b166a60c8542b39b0479e462b6dbc3c6a77c3"  # of tests' SPEC in test_cache


def _keys(n: int) -> np.ndarray:
    return np.array([f"{i:064d}" for i in range(n)], dtype="S64")


def v1_shard(path: Path) -> Path:
    """A version-1 shard of three keys ("000...0" to "000...2") and codes 0..11 as a 3 x 4 float32 array."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as handle:
        handle.attrs.update({"fingerprint": V1_FINGERPRINT, "format": "cnncodes-shard", "format_version": 1})
        handle.create_dataset("keys", data=_keys(3))
        handle.create_dataset("codes", data=np.arange(12, dtype=np.float32).reshape(3, 4))
    return path


def v1_codes_file(path: Path) -> Path:
    """A version-1 codes file: two labelled images (ants, bees), codes 0..5 as 2 x 3, one failure row."""
    path.parent.mkdir(parents=True, exist_ok=True)
    strings = h5py.string_dtype("utf-8")
    with h5py.File(path, "w") as handle:
        handle.attrs.update({"format": "cnncodes-codes", "format_version": 1, "spec": '{"n_features": 3}'})
        handle.create_dataset("codes", data=np.arange(6, dtype=np.float32).reshape(2, 3))
        handle.create_dataset("paths", data=np.array(["a.jpg", "b/c.jpg"], dtype=object), dtype=strings)
        handle.create_dataset("keys", data=_keys(2))
        handle.create_dataset("labels", data=np.array([0, 1], np.int64))
        handle.create_dataset("class_names", data=np.array(["ants", "bees"], dtype=object), dtype=strings)
        failures = np.array([["bad.jpg", "empty file (0 bytes)"]], dtype=object)
        handle.create_dataset("failures", data=failures, dtype=strings)
    return path
