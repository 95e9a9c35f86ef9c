"""Tests of the key index of a feature set: lookups through it, rebuilds, shards it lacks, concurrent writers."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

from cnncodes.cache import CodeCache, FeatureSet
from cnncodes.keyindex import INDEX_NAME

SPEC = {"model": "fixture", "tap": "index", "dtype": "float32"}


def _keys(n: int, start: int = 0) -> list[str]:
    return [f"{i:064x}" for i in range(start, start + n)]


def _codes(n: int, start: int = 0) -> np.ndarray:
    return np.arange(start * 4, (start + n) * 4, dtype=np.float32).reshape(n, 4)


def _feature_set(cache_path: Path, n: int = 6, shard_size: int = 2) -> FeatureSet:
    fs = CodeCache(cache_path, shard_size=shard_size).feature_set(SPEC)
    fs.add(_keys(n), _codes(n))
    fs.flush()
    return fs


def _fresh(cache_path: Path) -> FeatureSet:
    return CodeCache(cache_path).feature_set(SPEC)


def _write_foreign_shard(
    fs: FeatureSet, keys: list[str], codes: np.ndarray, name: str = "20000101T000000-1-x.h5"
) -> Path:
    """A shard in the documented layout written without the index (an older cnncodes, or a crash before indexing)."""
    path = fs.shards_dir / name
    with h5py.File(path, "w") as handle:
        handle.attrs.update({"format": "cnncodes-shard", "format_version": 1, "fingerprint": fs.fingerprint})
        handle["keys"] = np.array(keys, dtype="S64")
        handle["codes"] = codes
    return path


def test_key_index_reads_only_the_shards_that_hold_the_keys(cache_path: Path) -> None:
    """Check that a lookup and a read open no shard but those holding the keys (the others are unreadable)."""
    fs = _feature_set(cache_path)
    first, *others = sorted(fs.shards_dir.glob("*.h5"))
    with h5py.File(first) as handle:
        wanted = [k.decode() for k in handle["keys"][:]]
    for shard in others:
        shard.write_bytes(b"no longer HDF5")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fresh = _fresh(cache_path)
        assert fresh.contains(_keys(6)).all()
        np.testing.assert_array_equal(fresh.get(wanted), _codes(6)[[_keys(6).index(k) for k in wanted]])


@pytest.mark.parametrize("damage", ["deleted", "garbage"])
def test_key_index_rebuilt_from_the_shards(cache_path: Path, damage: str) -> None:
    """Check that a missing or unreadable index is rebuilt from the shards, with the same answers."""
    fs = _feature_set(cache_path)
    index_path = fs.path / INDEX_NAME
    if damage == "deleted":
        index_path.unlink()
    else:
        index_path.write_bytes(b"this is not an SQLite database" * 100)
    fresh = _fresh(cache_path)
    assert fresh.contains(_keys(8)).tolist() == [True] * 6 + [False] * 2
    np.testing.assert_array_equal(fresh.get(_keys(6)[::-1]), _codes(6)[::-1])
    with sqlite3.connect(index_path) as db:
        assert db.execute("SELECT COUNT(*) FROM keys").fetchone() == (6,)


def test_key_index_finds_a_shard_it_lacks(cache_path: Path) -> None:
    """Check that a shard renamed into place but never indexed is found once the folder changed."""
    fs = _feature_set(cache_path)
    os.utime(fs.shards_dir, ns=(10**18, 10**18))  # long ago: a sync may record it as complete
    fresh = _fresh(cache_path)
    assert not fresh.contains(_keys(2, 6)).any()
    with sqlite3.connect(fs.path / INDEX_NAME) as db:
        assert db.execute("SELECT value FROM meta WHERE name='synced_mtime_ns'").fetchone() == (10**18,)
    _write_foreign_shard(fs, _keys(2, 6), _codes(2, 6))
    assert fresh.contains(_keys(8)).all()
    np.testing.assert_array_equal(fresh.get(_keys(2, 6)), _codes(2, 6))


def test_key_index_forgets_a_shard_deleted_by_hand(cache_path: Path) -> None:
    """Check that a shard deleted outside cnncodes is never pointed at: its keys become absent, the rest stay."""
    fs = _feature_set(cache_path)
    gone = sorted(fs.shards_dir.glob("*.h5"))[1]
    with h5py.File(gone) as handle:
        lost = {k.decode() for k in handle["keys"][:]}
    gone.unlink()
    fresh = _fresh(cache_path)
    assert fresh.contains(_keys(6)).tolist() == [k not in lost for k in _keys(6)]
    kept = [k for k in _keys(6) if k not in lost]
    np.testing.assert_array_equal(fresh.get(kept), _codes(6)[[_keys(6).index(k) for k in kept]])


def test_key_index_out_of_step_is_never_served(cache_path: Path) -> None:
    """Check that an index naming wrong rows serves nothing for them, warns, and is rebuilt from the shards."""
    fs = _feature_set(cache_path)
    with sqlite3.connect(fs.path / INDEX_NAME) as db:
        db.execute("UPDATE keys SET row = 1 - row")  # every key now points at its neighbour's row
    fresh = _fresh(cache_path)
    with pytest.warns(UserWarning, match=re.escape(f"{fs.path / INDEX_NAME}: key index out of step with shard")):
        found, _ = fresh.fetch(_keys(2))
    assert not found.any()
    np.testing.assert_array_equal(fresh.get(_keys(6)), _codes(6))


def test_key_index_unusable_falls_back_to_scanning(cache_path: Path) -> None:
    """Check that where SQLite cannot open the index, lookups warn once and still answer from the shards."""
    fs = _feature_set(cache_path)
    (fs.path / INDEX_NAME).unlink()
    (fs.path / INDEX_NAME).mkdir()  # a folder where the index file should be
    fresh = _fresh(cache_path)
    with pytest.warns(UserWarning, match="key index unavailable .*; scanning the shards instead"):
        assert fresh.contains(_keys(7)).tolist() == [True] * 6 + [False]
    np.testing.assert_array_equal(fresh.get(_keys(6)), _codes(6))
    assert fresh.keys() == _keys(6) and fresh.info().n_codes == 6 and fresh.n_features == 4


def test_key_index_keeps_hex_and_text_keys_apart(cache_path: Path) -> None:
    """Check that sha256 hex keys (stored as bytes) never meet other keys, upper-case hex included."""
    keys = ["ab" * 32, "AB" * 32, "k1", "ab" * 31]
    fs = CodeCache(cache_path).feature_set(SPEC)
    fs.add(keys[:2], _codes(2))
    fs.flush()
    fresh = _fresh(cache_path)
    assert fresh.contains(keys).tolist() == [True, True, False, False]
    np.testing.assert_array_equal(fresh.get(keys[1::-1]), _codes(2)[::-1])
    assert sorted(fresh.keys()) == sorted(keys[:2])


_WRITER = """
import sys
import numpy as np
from cnncodes.cache import CodeCache
root, first = sys.argv[1], int(sys.argv[2])
fs = CodeCache(root, shard_size=7).feature_set({spec!r})
for start in range(first, first + 100, 10):
    fs.add([f"{{i:064x}}" for i in range(start, start + 10)], np.full((10, 4), start, np.float32))
    fs.contains([f"{{first:064x}}"])  # read while the others write
fs.flush()
"""


def test_key_index_concurrent_writers_in_processes(cache_path: Path) -> None:
    """Check that three processes writing into one feature set at once leave every key indexed exactly once."""
    code = _WRITER.format(spec=SPEC)
    writers = [subprocess.Popen([sys.executable, "-c", code, str(cache_path), str(first)]) for first in (0, 100, 200)]
    assert [writer.wait(timeout=300) for writer in writers] == [0, 0, 0]
    fresh = _fresh(cache_path)
    assert fresh.contains(_keys(301)).tolist() == [True] * 300 + [False]
    assert fresh.info().n_codes == 300 and fresh.verify() == []
    np.testing.assert_array_equal(fresh.get(_keys(3, 150))[:, 0], [150, 150, 150])
