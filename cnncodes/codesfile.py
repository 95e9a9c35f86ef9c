"""Codes files, the output of ``cnncodes extract -o``: codes aligned with paths and keys, labels, failures, spec."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import h5py
import numpy as np

from .errors import CacheFormatError
from .seals import HDF5_SIGNATURE, check_sealed
from .shardfiles import CODES_FORMAT, reading, writing

__all__ = [
    "CodesFile",
    "write_codes_file",
    "read_codes_file",
    "iter_codes_file",
    "is_codes_file",
    "looks_like_codes_file",
]

_IN_MEMORY_BYTES = 256 << 20  # codes files up to this size are built in memory and written in one piece


@dataclass
class CodesFile:
    """The content of a codes file: codes aligned with paths and keys, labels, failures and the spec.

    Examples
    --------
    >>> content = CodesFile(np.zeros((2, 3), np.float32), ["a.jpg", "b.jpg"], ["k1", "k2"])
    >>> content.codes.shape, content.labels, content.failures
    ((2, 3), None, [])
    """

    codes: np.ndarray  # (n, d) float32
    paths: list[str]  # one per row, as given
    keys: list[str]  # content sha256 per row
    labels: np.ndarray | None = None  # (n,) int, indices into class_names
    class_names: list[str] | None = None
    failures: list[tuple[str, str]] = field(default_factory=list)  # (path, reason) of images without codes
    spec: dict[str, Any] = field(default_factory=dict)  # the feature-set spec of the codes


def write_codes_file(path: Path | str, content: CodesFile) -> Path:
    """Write a self-contained codes file atomically (schema in the README).

    Parameters
    ----------
    path : Path or str
        Where to write; an existing file is replaced only once the new one is complete.
    content : CodesFile
        What to write.

    Returns
    -------
    Path

    Examples
    --------
    >>> import shutil, tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> content = CodesFile(np.ones((1, 2), np.float32), ["a.jpg"], ["k1"], failures=[("b.jpg", "empty file")])
    >>> read_codes_file(write_codes_file(folder / "codes.h5", content)).failures
    [('b.jpg', 'empty file')]
    >>> shutil.rmtree(folder)
    """
    path = Path(path)
    strings = h5py.string_dtype("utf-8")
    small = np.asarray(content.codes).nbytes < _IN_MEMORY_BYTES  # built in memory: a full disk is one clean OSError
    with writing(path, CODES_FORMAT, in_memory=small) as handle:
        handle.attrs["spec"] = json.dumps(content.spec, sort_keys=True)
        handle.create_dataset("codes", data=np.asarray(content.codes, np.float32))
        handle.create_dataset("paths", data=np.array(content.paths, dtype=object), dtype=strings)
        handle.create_dataset("keys", data=np.array(content.keys, dtype="S64"))
        if content.labels is not None:
            handle.create_dataset("labels", data=np.asarray(content.labels, np.int64))
        if content.class_names is not None:
            handle.create_dataset("class_names", data=np.array(content.class_names, dtype=object), dtype=strings)
        failures = np.array([list(f) for f in content.failures] or np.empty((0, 2)), dtype=object)
        handle.create_dataset("failures", data=failures.reshape(-1, 2), dtype=strings)
    return path


def _strings(dataset: h5py.Dataset) -> list[str]:
    return [s.decode() if isinstance(s, bytes) else str(s) for s in dataset[:]]


def read_codes_file(path: Path | str, *, with_codes: bool = True) -> CodesFile:
    """Read a codes file written by :func:`write_codes_file`.

    Parameters
    ----------
    path : str or Path
        The codes file.
    with_codes : bool, default=True
        False reads only the metadata (paths, keys, labels, class names, spec);
        ``codes`` is then an (n, 0) array. :func:`iter_codes_file` reads codes in chunks.

    Returns
    -------
    CodesFile

    Raises
    ------
    CacheFormatError
        If the file is not a codes file, or of a newer format version.

    Examples
    --------
    >>> import shutil, tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> path = write_codes_file(folder / "codes.h5", CodesFile(np.ones((2, 4), np.float32), ["a", "b"], ["1", "2"]))
    >>> read_codes_file(path).codes.shape, read_codes_file(path, with_codes=False).codes.shape
    ((2, 4), (2, 0))
    >>> shutil.rmtree(folder)
    """
    path = Path(path)
    try:
        with reading(path, CODES_FORMAT) as handle:
            spec = json.loads(handle.attrs.get("spec", "{}"))
            codes = _checked_codes(handle, path, spec)
            return CodesFile(
                codes=codes[:] if with_codes else np.empty((codes.shape[0], 0), np.float32),
                paths=_strings(handle["paths"]),
                keys=_strings(handle["keys"]),
                labels=handle["labels"][:] if "labels" in handle else None,
                class_names=_strings(handle["class_names"]) if "class_names" in handle else None,
                failures=[(a.decode(), b.decode()) for a, b in handle["failures"][:]] if "failures" in handle else [],
                spec=spec,
            )
    except CacheFormatError:
        raise  # already one line naming the file
    except (OSError, KeyError, ValueError, TypeError, IndexError, AttributeError) as error:  # h5py on damage (fuzzed)
        message = f"{path}: cannot read codes file ({error})"
        raise CacheFormatError(message) from error


def iter_codes_file(path: Path | str, chunk_rows: int = 4096) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """Read a codes file in chunks of rows, memory bounded by ``chunk_rows``.

    Parameters
    ----------
    path : Path or str
        The codes file.
    chunk_rows : int, default=4096
        Rows per chunk.

    Yields
    ------
    codes : ndarray of shape (<= chunk_rows, d), float32
    labels : ndarray of shape (<= chunk_rows,) or None

    Raises
    ------
    CacheFormatError
        As :func:`read_codes_file` does.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     content = CodesFile(np.zeros((5, 2), np.float32), list("abcde"), list("12345"))
    ...     path = write_codes_file(Path(folder) / "c.h5", content)
    ...     [codes.shape for codes, labels in iter_codes_file(path, chunk_rows=2)]
    [(2, 2), (2, 2), (1, 2)]
    """
    with reading(Path(path), CODES_FORMAT) as handle:
        try:
            codes = _checked_codes(handle, Path(path), json.loads(handle.attrs.get("spec", "{}")))
        except (KeyError, ValueError, TypeError) as error:
            raise CacheFormatError(f"{path}: cannot read codes file ({error})") from error
        labels = handle["labels"] if "labels" in handle else None
        for start in range(0, codes.shape[0], chunk_rows):
            stop = min(start + chunk_rows, codes.shape[0])
            yield codes[start:stop].astype(np.float32), (labels[start:stop] if labels is not None else None)


def _checked_codes(handle: h5py.File, path: Path, spec: Any) -> h5py.Dataset:
    """The /codes dataset, refused unless it is a table as wide as the spec says (a damaged or edited file)."""
    codes = handle["codes"]
    if not isinstance(codes, h5py.Dataset) or codes.ndim != 2:
        raise CacheFormatError(f"{path}: not a readable codes file (/codes is not a table of rows)")
    width = spec.get("n_features") if isinstance(spec, dict) else None
    if isinstance(width, int) and codes.shape[1] != width:
        message = f"{path}: damaged codes file (its codes are {codes.shape[1]} wide, its spec says {width})"
        raise CacheFormatError(message)
    return codes


def looks_like_codes_file(path: Path | str) -> bool:
    """Whether ``path`` is meant as a codes file: an HDF5 file (by its first bytes) or named ``.h5``/``.hdf5``.

    Such a file given as training data is read as a codes file, so that one that is not a
    valid codes file is refused with the reason (:func:`read_codes_file`).

    Examples
    --------
    >>> looks_like_codes_file(__file__), looks_like_codes_file("missing.h5")
    (False, True)
    """
    if Path(path).suffix.lower() in (".h5", ".hdf5"):
        return True
    try:
        with open(path, "rb") as handle:
            return handle.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE
    except (OSError, ValueError):
        return False


def is_codes_file(path: Path | str) -> bool:
    """Whether ``path`` is an HDF5 file in the codes-file format (root attribute ``format``); never raises.

    Parameters
    ----------
    path : Path or str
        Any file, of any content; one that cannot be read is not a codes file.

    See Also
    --------
    read_codes_file : reads one.

    Examples
    --------
    >>> is_codes_file(__file__)
    False
    """
    try:
        check_sealed(Path(path), "codes file")
        with h5py.File(path, "r") as handle:
            return handle.attrs.get("format") in (CODES_FORMAT, CODES_FORMAT.encode())
    except (OSError, ValueError):  # CacheFormatError included
        return False
