"""Tests of the HDF5 code cache and codes files: round trips, crashes, damage, versions, compaction."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

import cnncodes
from cnncodes.cache import CodeCache, FeatureSet
from cnncodes.cacheops import compact_cache, remove_cache, verify_cache
from cnncodes.codesfile import CodesFile, write_codes_file
from cnncodes.errors import CacheFormatError
from tests.legacyfiles import V1_FINGERPRINT, v1_shard

SPEC = {"model": "fixture", "tap": "penultimate", "dtype": "float32"}


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
    """Check that a shard as format version 1 wrote it (no checksum, no seal) still reads."""
    fs = FeatureSet(cache_path, SPEC)
    assert fs.fingerprint == V1_FINGERPRINT  # the key scheme has not drifted
    (fs.path / "shards").mkdir(parents=True)
    v1_shard(fs.path / "shards" / "v1.h5")
    np.testing.assert_array_equal(fs.get(_keys(3)), np.arange(12, dtype=np.float32).reshape(3, 4))


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


def _flip_a_code_byte(shard: Path) -> None:
    """Flip one byte inside the first chunk of /codes (what a bad disk or a bad copy does)."""
    with h5py.File(shard) as handle:
        chunk = handle["codes"].id.get_chunk_info(0)
    with open(shard, "r+b") as raw:
        raw.seek(chunk.byte_offset + chunk.size // 2)
        byte = raw.read(1)
        raw.seek(-1, 1)
        raw.write(bytes([byte[0] ^ 0xFF]))


def _foreign_shard(fs: FeatureSet, keys: list[str], codes: np.ndarray, **attrs: object) -> Path:
    """A shard in the documented layout (no checksum), written beside cnncodes' own."""
    path = fs.path / "shards" / f"20000101T000000-1-{keys[0][-6:]}.h5"
    with h5py.File(path, "w") as handle:
        handle.attrs.update({"format": "cnncodes-shard", "format_version": 1, "fingerprint": fs.fingerprint, **attrs})
        handle["keys"] = np.array(keys, dtype="S64")
        handle["codes"] = codes
    return path


def test_shard_checksum_damage_is_never_served(cache_path: Path) -> None:
    """Check that a shard with a flipped byte is refused on reading, its keys then absent, and verify names it."""
    fs = CodeCache(cache_path, shard_size=3).feature_set(SPEC)
    fs.add(_keys(6), _codes(6))
    damaged, intact = sorted((fs.path / "shards").glob("*.h5"))
    with h5py.File(damaged) as handle:
        assert handle["codes"].fletcher32 and handle["keys"].fletcher32
        lost = [k.decode() for k in handle["keys"][:]]
    _flip_a_code_byte(damaged)
    fresh = CodeCache(cache_path).feature_set(SPEC)
    with pytest.warns(UserWarning, match=re.escape(f"{damaged}: skipped damaged shard")):
        found, codes = fresh.fetch(_keys(6))
    assert found.tolist() == [k not in lost for k in _keys(6)]
    np.testing.assert_array_equal(codes[found], _codes(6)[found])
    assert not fresh.contains(lost).any()  # from now on the keys are computed again
    assert [d.path for d in verify_cache(cache_path)[fs.fingerprint]] == [damaged]
    assert damaged.exists() and intact.exists()


def test_shard_of_another_width_is_refused(cache_path: Path) -> None:
    """Check that a shard whose codes are wider than its feature set's is refused, not crashed on."""
    fs = CodeCache(cache_path, shard_size=2).feature_set(SPEC)
    fs.add(_keys(2), _codes(2))
    wide = _foreign_shard(fs, _keys(2, 2), np.ones((2, 5), np.float32))
    fresh = CodeCache(cache_path).feature_set(SPEC)
    with pytest.warns(UserWarning, match=re.escape(f"{wide}: skipped damaged shard (5 features, but the feature")):
        assert fresh.contains(_keys(4)).tolist() == [True, True, False, False]
    np.testing.assert_array_equal(fresh.get(_keys(2)), _codes(2))
    reason = "5 features, but the feature set has 4"
    assert [(d.path, d.reason) for d in fresh.verify()] == [(wide, reason)]


def test_compact_copies_no_damaged_row_and_leaves_unknown_shards(
    cache_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Check that compaction (in blocks of 2 rows) drops non-finite rows, skips damaged and newer shards, keeps them."""
    monkeypatch.setattr("cnncodes.shardfiles._BLOCK_ROWS", 2)
    fs = CodeCache(cache_path, shard_size=3).feature_set(SPEC)
    fs.add(_keys(6), _codes(6))
    fs.flush()
    nan_codes = _codes(3, seed=1).copy()
    nan_codes[1] = np.nan
    with_nan = _foreign_shard(fs, _keys(3, 6), nan_codes)
    newer = _foreign_shard(fs, _keys(1, 9), _codes(1), format_version=2)
    fresh = CodeCache(cache_path).feature_set(SPEC)
    with pytest.warns(UserWarning, match="newer than this cnncodes supports"):
        assert fresh.contains(_keys(10)).tolist() == [True] * 9 + [False]
    damaged = sorted((fs.path / "shards").glob("2026*.h5"))[1]
    _flip_a_code_byte(damaged)
    with pytest.warns(UserWarning, match=re.escape(f"{damaged}: skipped damaged shard")):
        before, n_codes = fresh.compact()
    assert (before, n_codes) == (3, 5)  # 3 healthy-looking shards; 3 + 2 finite rows copied
    left = sorted(p.name for p in (fs.path / "shards").glob("*.h5"))
    assert len(left) == 3 and newer.name in left and damaged.name in left and with_nan.name not in left
    expected = [True] * 3 + [False] * 3 + [True, False, True, False]
    assert CodeCache(cache_path).feature_set(SPEC).contains(_keys(10)).tolist() == expected
    np.testing.assert_array_equal(fresh.get(_keys(3) + [_keys(1, 8)[0]]), np.vstack([_codes(6)[:3], nan_codes[2:]]))


def test_compact_removes_orphaned_temporary_files(cache_path: Path) -> None:
    """Check that compaction deletes the temporary files of killed writers, but not those of live ones."""
    fs = CodeCache(cache_path, shard_size=2).feature_set(SPEC)
    fs.add(_keys(4), _codes(4))
    orphan, live = fs.path / "shards" / ".tmp-compact-dead.h5", fs.path / "shards" / ".tmp-live.h5"
    orphan.write_bytes(b"half a shard")
    live.write_bytes(b"a shard in flight")
    os.utime(orphan, (time.time() - 7200, time.time() - 7200))
    assert compact_cache(cache_path) == {fs.fingerprint: (2, 4)}
    assert not orphan.exists() and live.exists()


def test_feature_set_without_spec_is_listed_and_verified(cache_path: Path) -> None:
    """Check that a feature set whose spec.json is lost is still listed (by its shards' fingerprint) and verified."""
    fs = CodeCache(cache_path, shard_size=2).feature_set(SPEC)
    fs.add(_keys(4), _codes(4))
    (fs.path / "spec.json").unlink()
    [listed] = list(CodeCache(cache_path))
    assert (listed.fingerprint, listed.spec, listed.info().n_codes) == (fs.fingerprint, {}, 4)
    assert verify_cache(cache_path, fs.fingerprint[:8]) == {fs.fingerprint: []}
    assert not (fs.path / "spec.json").exists()


def test_extract_recomputes_the_images_of_a_damaged_shard(image_dir: Path, cache_path: Path) -> None:
    """Check that an extraction never serves codes from a damaged shard: it computes them again, equal to the first."""
    first = cnncodes.extract(image_dir, cache=cache_path, progress=False)
    [shard] = cache_path.glob("*/shards/*.h5")
    _flip_a_code_byte(shard)
    with pytest.warns(UserWarning, match=re.escape(f"{shard}: skipped damaged shard")):
        second = cnncodes.extract(image_dir, cache=cache_path, progress=False)
    assert (first.n_from_cache, second.n_from_cache) == (0, 0)
    np.testing.assert_array_equal(second.codes, first.codes)
    assert cnncodes.extract(image_dir, cache=cache_path, progress=False).n_from_cache == len(first.keys)
