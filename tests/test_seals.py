"""Tests of the seals of our HDF5 files: written on every file, checked before libhdf5 parses one."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

import cnncodes.seals
from cnncodes.cache import CodeCache
from cnncodes.cacheops import verify_cache
from cnncodes.codesfile import CodesFile, is_codes_file, read_codes_file, write_codes_file
from cnncodes.errors import CacheFormatError
from cnncodes.seals import MAGIC, check_sealed, is_sealed
from cnncodes.shardfiles import summarize
from tests.legacyfiles import v1_codes_file, v1_shard

DATA = Path(__file__).parent / "data"
HANG = DATA / "fuzz" / "shard" / "crash-hang-in-libhdf5-attrs"  # libhdf5 2.0.0 loops on its root attribute
# Iterating its attributes fails at once (a damaged datatype), looking "format" up by name loops for ever.
HANG_BY_NAME = DATA / "fuzz" / "shard" / "crash-hang-in-attrs-get-1fc2c65096"
SPEC = {"model": "fixture", "tap": "penultimate", "dtype": "float32"}


def _shard(cache_path: Path, n: int = 40) -> Path:
    feature_set = CodeCache(cache_path).feature_set(SPEC)
    feature_set.add([f"{i:064x}" for i in range(n)], np.arange(n * 8, dtype=np.float32).reshape(n, 8))
    feature_set.flush()
    return next((feature_set.path / "shards").glob("*.h5"))


def _codes_file(tmp_path: Path) -> Path:
    content = CodesFile(np.ones((3, 4), np.float32), ["a.jpg", "b.jpg", "c.jpg"], ["k1", "k2", "k3"])
    return write_codes_file(tmp_path / "codes.h5", content)


def _chunk_ranges(path: Path) -> list[tuple[int, int]]:
    ranges: list[tuple[int, int]] = []
    with h5py.File(path, "r") as handle:
        for name in ("keys", "codes"):
            handle[name].id.chunk_iter(lambda info: ranges.append((info.byte_offset, info.size)))
    return sorted(ranges)


def _copy(source: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target


def _flipped(path: Path, offset: int, out: Path) -> Path:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    out.write_bytes(bytes(data))
    return out


def test_every_file_written_ends_in_a_seal_and_reads(tmp_path: Path, cache_path: Path) -> None:
    """Check that shards and codes files end in a seal, still read with h5py, and pass the check."""
    shard, codes_file = _shard(cache_path), _codes_file(tmp_path)
    for path, kind in ((shard, "shard"), (codes_file, "codes file")):
        assert is_sealed(path) and path.read_bytes()[-64:].startswith(MAGIC)
        check_sealed(path, kind)
    assert summarize(shard)[1] == 8 and read_codes_file(codes_file).paths == ["a.jpg", "b.jpg", "c.jpg"]
    assert is_codes_file(codes_file) and not is_codes_file(shard)


def test_a_changed_byte_libhdf5_would_parse_is_refused_before_it_parses(tmp_path: Path, cache_path: Path) -> None:
    """Check that one flipped byte in a shard's metadata, or anywhere in a codes file, is the seal's one line."""
    shard = _shard(cache_path)
    chunks = _chunk_ranges(shard)
    metadata = next(o for o in range(100, chunks[0][0]) if shard.read_bytes()[o] != 0)  # inside the object headers
    damaged = _flipped(shard, metadata, tmp_path / "shard.h5")
    message = f"{damaged}: damaged shard (its sha256 does not match its seal: changed since it was written)"
    with pytest.raises(CacheFormatError, match="^" + re.escape(message) + "$"):
        summarize(damaged)
    codes_file = _codes_file(tmp_path)
    for offset in (0, 200, codes_file.stat().st_size - 70):
        damaged = _flipped(codes_file, offset, tmp_path / f"codes-{offset}.h5")
        with pytest.raises(CacheFormatError, match=f"^{re.escape(str(damaged))}: damaged codes file"):
            read_codes_file(damaged)
        assert not is_codes_file(damaged)


def test_a_changed_byte_in_a_checksummed_chunk_is_left_to_its_fletcher32(tmp_path: Path, cache_path: Path) -> None:
    """Check that the seal skips the chunks (lookups read no whole shard) and their own checksum refuses them."""
    shard = _shard(cache_path)
    offset, size = _chunk_ranges(shard)[-1]
    damaged = _flipped(shard, offset + size // 2, tmp_path / "shard.h5")
    check_sealed(damaged, "shard")  # the seal passes: the chunk is not its to cover
    with pytest.raises(OSError, match="[Cc]hecksum|[Ff]letcher|[Ff]ilter"):
        with h5py.File(damaged, "r") as handle:
            handle["keys"][:], handle["codes"][:]


def test_a_cut_file_is_refused_and_a_lost_seal_reads_as_a_file_without_one(tmp_path: Path) -> None:
    """Check that a codes file cut into its HDF5 bytes is refused, one line, and one that lost only its seal (cut in
    it, or bytes appended after it) reads as a file written before seals: through the child-process check."""
    codes_file = _codes_file(tmp_path)
    data = codes_file.read_bytes()
    for name, damaged in (("seal-cut", data[:-1]), ("seal-cut-64", data[:-64]), ("appended", data + b"\0" * 100)):
        (tmp_path / name).write_bytes(damaged)
        assert not is_sealed(tmp_path / name) and read_codes_file(tmp_path / name).keys == ["k1", "k2", "k3"]
    cut = tmp_path / "cut.h5"
    cut.write_bytes(data[:-1000])
    with pytest.raises(CacheFormatError, match=f"^{re.escape(str(cut))}: cannot read codes file"):
        read_codes_file(cut)


def test_files_written_before_seals_still_read_and_old_shards_get_sealed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Check that version-1 files (no seal) read through the child-process check, and that a folder
    of old shards, one of them the file libhdf5 hangs on, is checked by one child: the good ones sealed in place
    (same keys), the bad one refused."""
    monkeypatch.setattr(cnncodes.seals, "PROBE_TIMEOUT_S", 2.0)
    codes_file, shard = v1_codes_file(tmp_path / "v1_codes.h5"), v1_shard(tmp_path / "v1_shard.h5")
    assert not is_sealed(codes_file) and not is_sealed(shard)
    assert read_codes_file(codes_file).codes.shape[0] > 0 and is_codes_file(codes_file)
    assert not is_sealed(codes_file)  # a user's codes file is never changed
    expected = summarize(_copy(shard, tmp_path / "alone" / "v1.h5"))[0]
    folder = tmp_path / "shards"
    old = [_copy(shard, folder / f"{i:02d}.h5") for i in range(12)]
    hanging = _copy(HANG, folder / "05b.h5")
    start = time.monotonic()
    for path in old:
        np.testing.assert_array_equal(summarize(path)[0], expected)
    assert time.monotonic() - start < 2 * 2.0 + 20  # one hang and one child, not one per shard
    assert all(is_sealed(path) for path in old) and not is_sealed(hanging)
    with pytest.raises(CacheFormatError, match=re.escape(f"{hanging}: damaged shard (libhdf5 did not finish")):
        summarize(hanging)


@pytest.mark.parametrize("hang", [HANG, HANG_BY_NAME], ids=["iterating", "by-name"])
def test_an_unsealed_file_on_which_libhdf5_hangs_is_refused_in_bounded_time(
    hang: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Check that each fuzzed shard on which libhdf5 loops for ever is refused after the probe's timeout, one line:
    also the one whose attributes fail when iterated and hang only when looked up by name."""
    monkeypatch.setattr(cnncodes.seals, "PROBE_TIMEOUT_S", 2.0)
    copy = tmp_path / "hang.h5"
    copy.write_bytes(hang.read_bytes())
    start = time.monotonic()
    message = f"{copy}: damaged shard (libhdf5 did not finish reading its metadata in 2 s)"
    with pytest.raises(CacheFormatError, match="^" + re.escape(message) + "$"):
        summarize(copy)
    assert time.monotonic() - start < 30
    with pytest.raises(CacheFormatError, match=f"^{re.escape(str(copy))}: damaged codes file"):
        read_codes_file(copy)


def test_a_hanging_shard_in_a_cache_is_passed_over_and_verify_names_it(
    cache_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Check that a cache holding the hanging shard serves the healthy one and verify reports the other."""
    monkeypatch.setattr(cnncodes.seals, "PROBE_TIMEOUT_S", 2.0)
    healthy = _shard(cache_path, n=3)
    hanging = healthy.parent / "20000101T000000-1-000001-00000000.h5"
    hanging.write_bytes(HANG.read_bytes())
    fresh = CodeCache(cache_path).feature_set(SPEC)
    with pytest.warns(UserWarning, match=re.escape(f"{hanging}: skipped damaged shard")):
        found, codes = fresh.fetch([f"{i:064x}" for i in range(3)])
    assert found.all() and codes[2, 0] == 16
    reasons = [(d.path, d.reason) for d in verify_cache(cache_path)[fresh.fingerprint]]
    assert reasons == [(hanging, f"{hanging}: damaged shard (libhdf5 did not finish reading its metadata in 2 s)")]


def test_a_file_is_checked_once_per_process(tmp_path: Path) -> None:
    """Check that a second read of an unchanged file skips the check, and a rewritten one is checked again."""
    codes_file = _codes_file(tmp_path)
    read_codes_file(codes_file)
    assert cnncodes.seals._identity(codes_file) in cnncodes.seals._checked
    _flipped(codes_file, 300, codes_file)
    with pytest.raises(CacheFormatError, match="damaged codes file"):
        read_codes_file(codes_file)
