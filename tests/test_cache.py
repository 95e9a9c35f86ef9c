"""Tests of the HDF5 code cache and codes files: round trips, crashes, damage, versions, compaction."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from cnncodes.cache import CodeCache, FeatureSet
from cnncodes.cacheops import compact_cache, remove_cache, verify_cache
from cnncodes.codesfile import CodesFile, read_codes_file, write_codes_file
from cnncodes.errors import CacheFormatError

DATA = Path(__file__).parent / "data"
SPEC = {"model": "fixture", "tap": "penultimate", "dtype": "float32"}
V1_FINGERPRINT = "9834a84a517f40ad6ce677b0409b166a60c8542b39b0479e462b6dbc3c6a77c3"


def _keys(n: int, start: int = 0) -> list[str]:
    return [f"{i:064x}" for i in range(start, start + n)]


def _codes(n: int, d: int = 4, seed: int = 0) -> np.ndarray:
    codes = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    codes.setflags(write=False)
    return codes


def test_feature_set_round_trip(cache_path: Path) -> None:
    """Check that codes written in several shards read back by key, in any order, from a new handle."""
    fs = CodeCache(cache_path, shard_size=4).feature_set(SPEC)
    fs.add(_keys(10), _codes(10))
    fs.flush()
    assert len(list((fs.path / "shards").glob("*.h5"))) == 3
    fresh = CodeCache(cache_path).feature_set(SPEC)
    order = [7, 0, 9, 3, 3]
    np.testing.assert_array_equal(fresh.get([_keys(10)[i] for i in order]), _codes(10)[order])
    assert fresh.contains(_keys(12)).tolist() == [True] * 10 + [False] * 2
    assert (fs.path / "spec.json").read_text().count('"tap": "penultimate"') == 1


def test_feature_set_float16_storage(cache_path: Path) -> None:
    """Check that float16 storage returns float32 rows equal to the float16-rounded codes."""
    fs = CodeCache(cache_path).feature_set({**SPEC, "dtype": "float16"})
    fs.add(_keys(3), _codes(3))
    fs.flush()
    got = fs.get(_keys(3))
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, _codes(3).astype(np.float16).astype(np.float32))


def test_feature_set_ignores_uncommitted_temporary_shard(cache_path: Path) -> None:
    """Check that a crash mid-write (a leftover .tmp shard, truncated) is invisible to readers."""
    fs = CodeCache(cache_path, shard_size=2).feature_set(SPEC)
    fs.add(_keys(2), _codes(2))
    shard = next((fs.path / "shards").glob("*.h5"))
    leftover = fs.path / "shards" / ".tmp-deadbeef.h5"
    leftover.write_bytes(shard.read_bytes()[:300])
    fresh = CodeCache(cache_path).feature_set(SPEC)
    assert fresh.keys() == _keys(2)
    assert fresh.verify() == []


def test_feature_set_verify_reports_damage(cache_path: Path) -> None:
    """Check that a truncated shard is skipped with a warning, named by verify, and never served."""
    fs = CodeCache(cache_path, shard_size=2).feature_set(SPEC)
    fs.add(_keys(4), _codes(4))
    first, second = sorted((fs.path / "shards").glob("*.h5"))
    second.write_bytes(second.read_bytes()[:100])
    (fs.path / "index.sqlite").unlink()  # the index is rebuilt from the shards, the damaged one refused
    with h5py.File(first) as handle:
        intact = [k.decode() for k in handle["keys"][:]]
    with pytest.warns(UserWarning, match=re.escape(f"{second}: skipped damaged shard")):
        found = CodeCache(cache_path).feature_set(SPEC).contains(_keys(4)).tolist()
    assert found == [key in intact for key in _keys(4)] and sum(found) == 2
    damage = verify_cache(cache_path)[fs.fingerprint]
    assert [d.path for d in damage] == [second]


def test_compact_merges_shards_and_drops_duplicates(cache_path: Path) -> None:
    """Check that compaction leaves one shard with each key once and the same codes."""
    fs = CodeCache(cache_path, shard_size=3).feature_set(SPEC)
    fs.add(_keys(6), _codes(6))
    fs.add(_keys(3), _codes(3))  # duplicates of the first three, as two writers would leave
    fs.flush()
    result = compact_cache(cache_path)
    assert result == {fs.fingerprint: (3, 6)}
    shards = list((fs.path / "shards").glob("*.h5"))
    assert len(shards) == 1
    with h5py.File(shards[0]) as handle:
        assert handle["keys"].shape == (6,)
    np.testing.assert_array_equal(CodeCache(cache_path).feature_set(SPEC).get(_keys(6)), _codes(6))


def test_remove_cache(cache_path: Path) -> None:
    """Check that rm deletes only the selected feature set."""
    cache = CodeCache(cache_path)
    for tap in ("a", "b"):
        fs = cache.feature_set({**SPEC, "tap": tap})
        fs.add(_keys(1), _codes(1))
        fs.flush()
    target = cache.feature_set({**SPEC, "tap": "a"}).fingerprint
    removed = remove_cache(cache_path, target[:8])
    assert [info.fingerprint for info in removed] == [target]
    assert [fs.spec["tap"] for fs in CodeCache(cache_path)] == ["b"]


def test_v1_shard_still_reads(cache_path: Path) -> None:
    """Check that a shard written by format version 1 (committed under tests/data) still reads."""
    fs = FeatureSet(cache_path, SPEC)
    assert fs.fingerprint == V1_FINGERPRINT  # the key scheme has not drifted
    (fs.path / "shards").mkdir(parents=True)
    shutil.copy(DATA / "v1_shard.h5", fs.path / "shards" / "v1.h5")
    np.testing.assert_array_equal(fs.get(_keys(3)), np.arange(12, dtype=np.float32).reshape(3, 4))


def test_v1_codes_file_still_reads() -> None:
    """Check that a codes file of format version 1 (committed) still reads."""
    content = read_codes_file(DATA / "v1_codes.h5")
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


def test_cache_refuses_newer_feature_set_version(cache_path: Path) -> None:
    """Check that a feature set written by a newer cnncodes is refused with the same wording as files."""
    fs = CodeCache(cache_path, shard_size=1).feature_set(SPEC)
    fs.add(_keys(1), _codes(1))
    spec_path = fs.path / "spec.json"
    spec_path.write_text(spec_path.read_text().replace('"format_version": 1', '"format_version": 2'))
    expected = f"{spec_path}: cache format version 2 is newer than this cnncodes supports (1); upgrade cnncodes"
    with pytest.raises(CacheFormatError, match="^" + re.escape(expected) + "$"):
        list(CodeCache(cache_path))


def test_shard_of_newer_version_is_reported_damaged(cache_path: Path) -> None:
    """Check that verify names a shard of a newer format version, with the upgrade hint."""
    fs = CodeCache(cache_path, shard_size=1).feature_set(SPEC)
    fs.add(_keys(1), _codes(1))
    shard = next((fs.path / "shards").glob("*.h5"))
    with h5py.File(shard, "a") as handle:
        handle.attrs["format_version"] = 3
    reason = f"{shard}: cache format version 3 is newer than this cnncodes supports (1); upgrade cnncodes"
    assert [(d.path, d.reason) for d in fs.verify()] == [(shard, reason)]


def test_writes_leave_no_temporary_file(tmp_path: Path, cache_path: Path) -> None:
    """Check that a failed codes-file write leaves nothing behind, and committed shards leave no temporary files."""
    with pytest.raises(ValueError):
        write_codes_file(tmp_path / "out" / "codes.h5", CodesFile(np.array([["x"]]), ["a"], _keys(1)))
    assert list((tmp_path / "out").iterdir()) == []
    fs = CodeCache(cache_path, shard_size=2).feature_set(SPEC)
    fs.add(_keys(5), _codes(5))
    fs.flush()
    written = sorted(p.relative_to(fs.path).as_posix() for p in fs.path.rglob("*"))
    assert written[:2] == ["index.sqlite", "shards"] and written[-1] == "spec.json" and len(written) == 6  # 2+2+1 rows
    assert all(re.fullmatch(r"shards/[0-9T]+-\d+-\d{6}-[0-9a-f]{8}\.h5", name) for name in written[2:-1]), written


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
