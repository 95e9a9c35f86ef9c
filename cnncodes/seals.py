"""The seal of an HDF5 file of ours: a digest of every byte libhdf5 parses, checked before it parses any.

libhdf5 trusts a file's metadata: fuzzing found a damaged attribute on which it loops for
ever, and no Python code can interrupt it. So each file we write ends in a seal, after the
bytes libhdf5 owns (it ignores what lies past its end of file)::

    [HDF5 file, hdf5_size bytes][skipped ranges: n x (offset, size) <u8][footer, 64 bytes]
    footer = MAGIC (16 bytes) | hdf5_size <u8 | n <u8 | sha256 (32 bytes)

The digest covers the HDF5 file except the skipped ranges (chunks that carry their own
fletcher32 checksum, so a lookup need not read a whole shard), then the range table. A file
whose seal matches is opened; one whose seal does not is refused. A file without a seal (written
before seals, or with its seal cut off) is first read in a child process that is stopped if
libhdf5 hangs or crashes on it; one child reads every unsealed shard of a folder, a file at a
time. Each file is checked once per process.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import select
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Iterable

from .errors import CacheFormatError

__all__ = ["seal", "check_sealed", "is_sealed", "mark_checked"]

MAGIC = b"cnncodes-seal-v1"
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_FOOTER = struct.Struct("<16sQQ32s")
_RANGE = struct.Struct("<QQ")
_BLOCK_BYTES = 1 << 20
PROBE_TIMEOUT_S = 30.0  # an unsealed file's metadata is read in a child process for at most this long
# What the child reads: everything a reader of ours touches, each step on its own, so that one step's error does
# not skip the next (a damaged attribute can make iterating fail at once and looking it up by name loop for ever):
# the attributes by name and all together, every object once, each dataset's shape, type, chunk index, attributes,
# a row at each end, and whole (up to 256 MB) every dataset but /codes, which readers take by rows.
# One file name a line on stdin (its bytes in hex: any name is one line); "done" on stdout after each.
_PROBE = """
import os
import sys
import h5py
ATTRIBUTES = ("format", "format_version", "fingerprint", "spec")
DATASETS = ("keys", "codes", "paths", "labels", "class_names", "failures")
WHOLE_BYTES = 1 << 28
def attempt(step):
    try:
        return step()
    except Exception:
        return None  # the reader's own errors say what is wrong; only a hang or a crash is the child's to find
def read_dataset(name, node):
    attempt(lambda: (node.shape, node.dtype, node.chunks, node.fletcher32))
    attempt(lambda: dict(node.attrs))
    attempt(lambda: node.id.chunk_iter(lambda info: None))
    attempt(lambda: node[:1] if node.ndim else node[()])
    attempt(lambda: node[-1:] if node.ndim else None)
    if name != "codes":  # read by rows: the chunk index and the rows at each end cover what a lookup parses
        attempt(lambda: node[()] if node.size * node.dtype.itemsize <= WHOLE_BYTES else None)
def read_file(handle):
    for name in ATTRIBUTES:
        attempt(lambda: handle.attrs.get(name))
    attempt(lambda: dict(handle.attrs))
    read = set()
    def visit(name, node):
        if name in read:
            return
        read.add(name)
        attempt(lambda: dict(node.attrs))
        if isinstance(node, h5py.Dataset):
            read_dataset(name, node)
    for name in DATASETS:
        node = attempt(lambda: handle[name] if name in handle else None)
        if node is not None:
            visit(name, node)
    attempt(lambda: handle.visititems(visit))
for line in sys.stdin:
    try:
        with h5py.File(os.fsdecode(bytes.fromhex(line)), "r") as handle:
            read_file(handle)
    except Exception:
        pass
    print("done", flush=True)
"""

_checked: set[tuple[int, ...]] = set()  # (device, inode, size, mtime, ctime) of files checked in this process
_refused: dict[tuple[int, ...], str] = {}  # unsealed files libhdf5 hung or crashed on in a child: why
_checked_lock = threading.Lock()


def _merged(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for offset, size in sorted((int(o), int(s)) for o, s in ranges if s > 0):
        if merged and offset <= merged[-1][0] + merged[-1][1]:
            start, length = merged[-1]
            merged[-1] = (start, max(length, offset + size - start))
        else:
            merged.append((offset, size))
    return merged


def _digest(handle: IO[bytes], hdf5_size: int, skipped: list[tuple[int, int]], table: bytes) -> bytes:
    """sha256 of bytes [0, hdf5_size) of ``handle`` outside ``skipped``, then of ``table``."""
    digest, position = hashlib.sha256(), 0
    for start, stop in [*((o, o + s) for o, s in skipped), (hdf5_size, hdf5_size)]:
        handle.seek(position)
        while position < start:
            block = handle.read(min(_BLOCK_BYTES, start - position))
            if not block:
                break
            digest.update(block)
            position += len(block)
        position = max(position, stop)
    digest.update(table)
    return digest.digest()


def seal(path: Path, skipped: Iterable[tuple[int, int]] = ()) -> None:
    """Append the seal to a closed HDF5 file of ours.

    Parameters
    ----------
    path : Path
        The HDF5 file, complete and closed.
    skipped : iterable of (offset, size)
        Byte ranges left out of the digest: chunks with their own checksum.
    """
    hdf5_size = path.stat().st_size
    ranges = [(o, s) for o, s in _merged(skipped) if o + s <= hdf5_size]
    table = b"".join(_RANGE.pack(o, s) for o, s in ranges)
    with open(path, "r+b") as handle:
        digest = _digest(handle, hdf5_size, ranges, table)
        handle.seek(hdf5_size)
        handle.write(table + _FOOTER.pack(MAGIC, hdf5_size, len(ranges), digest))


def is_sealed(path: Path) -> bool:
    """Whether ``path`` ends in a seal (matching or not); never raises."""
    try:
        with open(path, "rb") as handle:
            handle.seek(-_FOOTER.size, os.SEEK_END)
            return handle.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def mark_checked(path: Path) -> None:
    """Record that ``path``, as it is now, needs no check in this process (a file just sealed by us)."""
    with _checked_lock:
        _checked.add(_identity(path))


def _identity(path: Path) -> tuple[int, ...]:
    status = os.stat(path)
    return status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns


def check_sealed(path: Path, kind: str) -> None:
    """Refuse a file libhdf5 must not parse: a broken seal, or an unsealed file on which libhdf5 hangs or crashes.

    Parameters
    ----------
    path : Path
        An HDF5 file of ours (a shard or a codes file).
    kind : str
        What the file should be, for messages (``"shard"``, ``"codes file"``).

    Raises
    ------
    CacheFormatError
        One line naming the file and what is wrong.
    OSError
        If the file cannot be read.
    """
    identity = _identity(path)
    if identity in _checked:
        return
    if identity in _refused:
        raise CacheFormatError(f"{path}: damaged {kind} ({_refused[identity]})")
    with open(path, "rb") as handle:
        size = identity[2]
        footer = b""
        if size >= _FOOTER.size:
            handle.seek(size - _FOOTER.size)
            footer = handle.read(_FOOTER.size)
        if footer[: len(MAGIC)] == MAGIC:
            _check_seal(handle, footer, size, path, kind)
        else:
            handle.seek(0)
            if handle.read(len(HDF5_SIGNATURE)) != HDF5_SIGNATURE:
                raise CacheFormatError(f"{path}: not a {kind} (not an HDF5 file)")
            _probe(path, kind)
    with _checked_lock:
        _checked.add(identity)


def _check_seal(handle: IO[bytes], footer: bytes, size: int, path: Path, kind: str) -> None:
    _, hdf5_size, n_ranges, expected = _FOOTER.unpack(footer)
    if hdf5_size + n_ranges * _RANGE.size + _FOOTER.size != size:
        raise CacheFormatError(f"{path}: damaged {kind} (its seal says {hdf5_size} bytes of HDF5, the file has {size})")
    handle.seek(hdf5_size)
    table = handle.read(n_ranges * _RANGE.size)
    ranges = [_RANGE.unpack_from(table, i * _RANGE.size) for i in range(n_ranges)]
    if ranges != _merged(ranges) or any(o + s > hdf5_size for o, s in ranges):
        raise CacheFormatError(f"{path}: damaged {kind} (its seal's table of checksummed chunks is invalid)")
    if _digest(handle, hdf5_size, ranges, table) != expected:
        message = f"{path}: damaged {kind} (its sha256 does not match its seal: changed since it was written)"
        raise CacheFormatError(message)


def _unsealed_siblings(path: Path) -> list[Path]:
    """Other unsealed HDF5 files beside ``path`` not yet checked: one child reads them all."""
    siblings = []
    for sibling in sorted(path.parent.glob("*" + path.suffix)):
        try:
            identity = _identity(sibling)
            if sibling != path and identity not in _checked and identity not in _refused and not is_sealed(sibling):
                siblings.append(sibling)
        except OSError:
            continue
    return siblings


def _probe(path: Path, kind: str) -> None:
    """Read an unsealed file's metadata in a child process; refuse it if libhdf5 hangs or crashes there.

    The unsealed shards beside it are read by the same child, each given ``PROBE_TIMEOUT_S``;
    those that pass are marked checked.
    """
    queue = [path, *(_unsealed_siblings(path) if kind == "shard" else [])]
    while queue:
        passed, failure = _probe_in_child(queue)
        with _checked_lock:
            _checked.update(_identity(p) for p in passed if p.exists())
        if failure is None:
            return
        failed = queue[len(passed)]
        with contextlib.suppress(OSError), _checked_lock:
            _refused[_identity(failed)] = failure
        if failed == path:
            raise CacheFormatError(f"{path}: damaged {kind} ({failure})")
        queue = queue[len(passed) + 1 :]
        if path not in queue:
            return


def _probe_in_child(paths: list[Path]) -> tuple[list[Path], str | None]:
    """Read ``paths`` in one child, in order: those that passed, and why the next did not (None if all passed)."""
    command = [sys.executable, "-I", "-c", _PROBE]
    child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert child.stdin is not None and child.stdout is not None
    passed: list[Path] = []
    try:
        for path in paths:
            child.stdin.write(os.fsencode(path).hex().encode() + b"\n")
            child.stdin.flush()
            ready, _, _ = select.select([child.stdout], [], [], PROBE_TIMEOUT_S)
            if not ready:
                return passed, f"libhdf5 did not finish reading its metadata in {PROBE_TIMEOUT_S:g} s"
            if child.stdout.readline() != b"done\n":
                code = child.wait()
                ended = f"crashed reading its metadata, signal {-code}" if code < 0 else f"exited ({code})"
                return passed, f"libhdf5 {ended}"
            passed.append(path)
        return passed, None
    except BrokenPipeError:
        code = child.wait()
        return passed, f"libhdf5 crashed reading its metadata, signal {-code}"
    finally:
        child.kill()
        child.wait()
