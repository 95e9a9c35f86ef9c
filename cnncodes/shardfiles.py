"""HDF5 files of ours: format attributes and versions, atomic checksummed writes, and the reads of one shard.

A shard holds ``/keys`` (N,) S64 aligned with ``/codes`` (N, D), both chunked by rows and
checksummed (HDF5's fletcher32 filter), so a flipped bit fails the read of its chunk instead of
returning wrong codes. Every file written here ends in a seal (:mod:`cnncodes.seals`): a digest
of all its bytes but those chunks, checked before libhdf5 parses the file. Files written before
seals, or before checksums, read unchanged.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import time
from pathlib import Path
from typing import Any, Iterator

import h5py
import numpy as np

from .errors import CacheFormatError
from .fileio import TEMP_PREFIX, atomic_path
from .keyindex import shard_names
from .messages import newer_format_message
from .seals import check_sealed, is_sealed, mark_checked, seal

__all__ = [
    "SHARD_FORMAT",
    "CODES_FORMAT",
    "FORMAT_VERSION",
    "reading",
    "new_file",
    "writing",
    "shard_datasets",
    "opened_shard",
    "summarize",
    "read_rows",
    "iter_rows",
    "shard_damage",
    "remove_orphans",
    "shards_fingerprint",
]

SHARD_FORMAT = "cnncodes-shard"
CODES_FORMAT = "cnncodes-codes"
FORMAT_VERSION = 1
_FORMAT_NAMES = {SHARD_FORMAT: "cache", CODES_FORMAT: "codes file"}  # what version messages call each format
_FILE_KINDS = {SHARD_FORMAT: "shard", CODES_FORMAT: "codes file"}  # what damage messages call one file
_CHUNK_ROWS = 16  # rows per HDF5 chunk: the unit a checksum covers and a lookup reads (80 KB of 1280 float32)
_BLOCK_ROWS = 4096  # rows in memory at once while verifying or compacting
_ORPHAN_AGE_S = 3600.0  # a temporary file untouched this long belongs to no live writer


@contextlib.contextmanager
def reading(path: Path, expected_format: str) -> Iterator[h5py.File]:
    """Open an HDF5 file of ours for reading, refusing a broken seal, another format or a newer version."""
    check_sealed(path, _FILE_KINDS[expected_format])
    if expected_format == SHARD_FORMAT and not is_sealed(path):
        _seal_old_shard(path)
    with h5py.File(path, "r") as handle:
        try:
            found_format = handle.attrs.get("format")
            if isinstance(found_format, bytes):
                found_format = found_format.decode()
            version = int(handle.attrs.get("format_version", 0))
        except (KeyError, ValueError, TypeError, UnicodeDecodeError) as error:  # damaged attributes (fuzzed)
            message = f"{path}: not a readable {expected_format} file ({error})"
            raise CacheFormatError(message) from error
        if found_format != expected_format:
            message = f"{path}: not a {expected_format} file (format attribute {found_format!r})"
            raise CacheFormatError(message)
        if version > FORMAT_VERSION:
            raise CacheFormatError(newer_format_message(path, _FORMAT_NAMES[expected_format], version, FORMAT_VERSION))
        yield handle


@contextlib.contextmanager
def new_file(path: Path, file_format: str, in_memory: bool = False) -> Iterator[h5py.File]:
    """A new HDF5 file of ours at ``path``, sealed and on disk (fsync) once the block ends.

    ``in_memory``: built in memory and written to ``path`` in one piece, so a disk that fills is
    an ``OSError`` of that write (libhdf5 can crash closing a file whose chunk writes failed).
    """
    image = io.BytesIO() if in_memory else None
    with h5py.File(image or path, "w") as handle:
        handle.attrs["format"] = file_format
        handle.attrs["format_version"] = FORMAT_VERSION
        yield handle
    if image is not None:
        path.write_bytes(image.getbuffer())
    seal(path, _checksummed_chunks(path))
    with open(path, "rb") as synced:
        os.fsync(synced.fileno())


def _seal_old_shard(path: Path) -> None:
    """Seal a shard written before seals, once it passed the child-process check (where the cache is writable)."""
    with contextlib.suppress(OSError), open(path, "r+b") as locked:
        fcntl.lockf(locked, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another process sealing it: leave it to that one
        if is_sealed(path):
            return
        try:
            chunks = _checksummed_chunks(path)
        except (KeyError, RuntimeError, ValueError, TypeError):  # damaged objects: left unsealed, refused on reading
            return
        seal(path, chunks)
        mark_checked(path)


def _checksummed_chunks(path: Path) -> list[tuple[int, int]]:
    """(offset, size) of every chunk of a fletcher32-checksummed dataset: what the seal need not cover."""
    chunks: list[tuple[int, int]] = []

    def add_chunks(name: str, node: Any) -> None:
        if isinstance(node, h5py.Dataset) and node.fletcher32:
            node.id.chunk_iter(lambda info: chunks.append((info.byte_offset, info.size)))

    with h5py.File(path, "r") as handle:
        handle.visititems(add_chunks)
    return chunks


@contextlib.contextmanager
def writing(path: Path, file_format: str, in_memory: bool = False) -> Iterator[h5py.File]:
    """An HDF5 file that appears at ``path`` only once complete and on disk (fsync, then rename)."""
    with atomic_path(path, suffix=".h5") as temporary, new_file(temporary, file_format, in_memory) as handle:
        yield handle


def shard_datasets(
    handle: h5py.File,
    n_rows: int | None,
    width: int,
    dtype: Any,
    keys: np.ndarray | None = None,
    codes: np.ndarray | None = None,
) -> tuple[h5py.Dataset, h5py.Dataset]:
    """/keys and /codes of a shard, chunked by rows and checksummed (fletcher32); ``n_rows=None``: growable."""
    shape, maxshape = (n_rows or 0,), (n_rows,) if n_rows is not None else (None,)
    rows_per_chunk = max(1, min(n_rows or _CHUNK_ROWS, _CHUNK_ROWS))
    keys_out = handle.create_dataset(
        "keys", shape=shape, maxshape=maxshape, dtype="S64", data=keys, chunks=(rows_per_chunk,), fletcher32=True
    )
    codes_out = handle.create_dataset(
        "codes",
        shape=(shape[0], width),
        maxshape=(maxshape[0], width),
        dtype=dtype,
        data=codes,
        chunks=(rows_per_chunk, width),
        fletcher32=True,
    )
    return keys_out, codes_out


def opened_shard(handle: h5py.File, path: Path) -> tuple[h5py.Dataset, h5py.Dataset]:
    """The /keys and /codes of an open shard, refusing a shard whose datasets are missing or misaligned."""
    try:
        keys, codes = handle["keys"], handle["codes"]
    except KeyError as error:  # h5py's word for a missing object, and for a damaged object header (fuzzed)
        raise CacheFormatError(f"{path}: not a readable shard ({error})") from error
    if not isinstance(keys, h5py.Dataset) or not isinstance(codes, h5py.Dataset):
        raise CacheFormatError(f"{path}: not a shard (/keys and /codes are not datasets)")
    if codes.ndim != 2 or keys.shape[0] != codes.shape[0]:
        raise CacheFormatError(f"{path}: {keys.shape[0]} keys but codes of shape {codes.shape}")
    return keys, codes


def summarize(path: Path) -> tuple[np.ndarray, int]:
    """A shard's keys and code width (what the key index stores of it).

    Raises
    ------
    OSError
        Also :class:`CacheFormatError`: why the shard cannot be served, in one line naming it.
    """
    try:
        with reading(path, SHARD_FORMAT) as handle:
            keys, codes = opened_shard(handle, path)
            return np.asarray(keys[:], "S64"), int(codes.shape[1])
    except (ValueError, TypeError) as error:  # attributes or datasets of the wrong kind
        message = f"{path}: not a readable shard ({error})"
        raise CacheFormatError(message) from error


def read_rows(path: Path, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keys and float32 codes at ``rows`` of a shard, reading only the chunks that hold them.

    Raises
    ------
    IndexError
        If a row is past the end of the shard.
    """
    with reading(path, SHARD_FORMAT) as handle:
        keys, codes = opened_shard(handle, path)
        if len(rows) and (rows.min() < 0 or rows.max() >= keys.shape[0]):
            raise IndexError(f"{path}: no row {rows.max()} (it has {keys.shape[0]})")
        if len(rows) * 4 >= codes.shape[0]:  # most of the shard: one contiguous read
            return keys[:][rows], codes[:][rows].astype(np.float32)
        unique_rows, inverse = np.unique(rows, return_inverse=True)  # h5py wants increasing, unique indices
        return keys[unique_rows][inverse], codes[unique_rows][inverse].astype(np.float32)


def iter_rows(path: Path, codes: bool = True) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """A shard's (keys, codes) in blocks of at most ``_BLOCK_ROWS`` rows (codes empty when ``codes=False``)."""
    with reading(path, SHARD_FORMAT) as handle:
        keys, data = opened_shard(handle, path)
        for start in range(0, keys.shape[0], _BLOCK_ROWS):
            stop = min(start + _BLOCK_ROWS, keys.shape[0])
            yield keys[start:stop], data[start:stop] if codes else np.empty((stop - start, 0), np.float32)


def shard_damage(path: Path, width: int | None) -> str | None:
    """Why a shard must not be served, reading all of it (checksums included), or None."""
    for keys, codes in iter_rows(path):
        if width is not None and codes.shape[1] != width:
            return f"{codes.shape[1]} features, but the feature set has {width}"
        if not np.isfinite(codes).all():
            return "codes hold NaN or infinity"
    return None


def remove_orphans(folder: Path) -> None:
    """Delete temporary files no writer touched for ``_ORPHAN_AGE_S`` (left by a killed writer or compaction)."""
    for path in folder.glob(f"{TEMP_PREFIX}*"):
        with contextlib.suppress(OSError):
            if time.time() - path.stat().st_mtime > _ORPHAN_AGE_S:
                path.unlink()


def shards_fingerprint(folder: Path) -> str:
    """The fingerprint a feature-set folder's shards carry (the folder name if none can be read)."""
    for name in shard_names(folder / "shards"):
        # a damaged shard is passed over: h5py raises KeyError or ValueError for some damage (fuzzed)
        with contextlib.suppress(OSError, KeyError, ValueError, TypeError), reading(
            folder / "shards" / name, SHARD_FORMAT
        ) as handle:
            fingerprint = handle.attrs.get("fingerprint", "")
            fingerprint = fingerprint.decode() if isinstance(fingerprint, bytes) else str(fingerprint)
            if fingerprint.startswith(folder.name):
                return fingerprint
    return folder.name
