"""Tests of codes files: round trips, the committed format-1 file, refusals of other and newer files."""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np
import pytest

from cnncodes.codesfile import CodesFile, read_codes_file, write_codes_file
from cnncodes.errors import CacheFormatError
from tests.legacyfiles import v1_codes_file


def _keys(n: int) -> list[str]:
    return [f"{i:064x}" for i in range(n)]


def _codes(n: int, d: int = 4) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(n, d)).astype(np.float32)


def test_v1_codes_file_still_reads(tmp_path: Path) -> None:
    """Check that a codes file as format version 1 wrote it (no checksum, no seal) still reads."""
    content = read_codes_file(v1_codes_file(tmp_path / "v1_codes.h5"))
    assert content.paths == ["a.jpg", "b/c.jpg"] and content.class_names == ["ants", "bees"]
    assert content.labels.tolist() == [0, 1] and content.failures == [("bad.jpg", "empty file (0 bytes)")]
    np.testing.assert_array_equal(content.codes, np.arange(6, dtype=np.float32).reshape(2, 3))


def test_codes_file_refuses_newer_version(tmp_path: Path) -> None:
    """Check that a codes file of a newer format version is refused with the upgrade hint."""
    path = write_codes_file(tmp_path / "codes.h5", CodesFile(_codes(2), ["a", "b"], _keys(2)))
    with h5py.File(path, "a") as handle:
        handle.attrs["format_version"] = 2
    expected = f"{path}: codes file format version 2 is newer than this cnncodes supports (1); upgrade cnncodes"
    with pytest.raises(CacheFormatError, match="^" + re.escape(expected) + "$"):
        read_codes_file(path)


def test_codes_file_round_trip_without_labels(tmp_path: Path) -> None:
    """Check a codes file with unicode paths and no labels."""
    content = CodesFile(_codes(2), ["ä/ö.jpg", "x.png"], _keys(2), spec={"k": 1})
    back = read_codes_file(write_codes_file(tmp_path / "c.h5", content))
    assert back.paths == content.paths and back.labels is None and back.failures == [] and back.spec == {"k": 1}


def test_read_codes_file_rejects_other_hdf5(tmp_path: Path) -> None:
    """Check that an unrelated HDF5 file is refused naming the file."""
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as handle:
        handle["x"] = [1]
    expected = f"{path}: not a cnncodes-codes file (format attribute None)"
    with pytest.raises(CacheFormatError, match="^" + re.escape(expected) + "$"):
        read_codes_file(path)
