"""The only h5py importer: the content-addressed code cache (feature sets of immutable shards) and codes files.

Cache layout (schema version 1)::

    <root>/<fingerprint[:20]>/spec.json        the feature-set spec, human-readable
    <root>/<fingerprint[:20]>/shards/*.h5      immutable shards: /keys (N,) S64, /codes (N, D)

A writer fills a ``.tmp-*`` file and renames it into place when complete
(:func:`cnncodes.fileio.atomic_path`), so readers never see half a file, a crash loses only
the shard in flight, and any number of processes can write into one feature set. Duplicate
keys across shards are harmless.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import time
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import h5py
import numpy as np

from .contentkeys import FileKeyMemo
from .errors import CacheFormatError
from .fileio import TEMP_PREFIX, atomic_path, write_text_atomic
from .fingerprint import canonical_json, spec_fingerprint
from .messages import newer_format_message
from .paths import default_cache_dir

__all__ = [
    "CodeCache",
    "FeatureSet",
    "FeatureSetInfo",
    "ShardDamage",
    "CodesFile",
    "write_codes_file",
    "read_codes_file",
    "cache_info",
    "verify_cache",
    "compact_cache",
    "remove_cache",
    "iter_codes_file",
    "is_codes_file",
]

SHARD_FORMAT = "cnncodes-shard"
CODES_FORMAT = "cnncodes-codes"
FORMAT_VERSION = 1
_FOLDER_DIGITS = 20
_FORMAT_NAMES = {SHARD_FORMAT: "cache", CODES_FORMAT: "codes file"}  # what version messages call each format
_shard_numbers = itertools.count()  # orders one process's shards within a second


@contextlib.contextmanager
def _reading(path: Path, expected_format: str) -> Iterator[h5py.File]:
    """Open an HDF5 file of ours for reading, refusing another format or a newer version."""
    with h5py.File(path, "r") as handle:
        found_format = handle.attrs.get("format")
        if isinstance(found_format, bytes):
            found_format = found_format.decode()
        if found_format != expected_format:
            message = f"{path}: not a {expected_format} file (format attribute {found_format!r})"
            raise CacheFormatError(message)
        version = int(handle.attrs.get("format_version", 0))
        if version > FORMAT_VERSION:
            raise CacheFormatError(newer_format_message(path, _FORMAT_NAMES[expected_format], version, FORMAT_VERSION))
        yield handle


@contextlib.contextmanager
def _writing(path: Path, file_format: str) -> Iterator[h5py.File]:
    """An HDF5 file that appears at ``path`` only once complete and on disk (fsync, then rename)."""
    with atomic_path(path, suffix=".h5") as temporary:
        with h5py.File(temporary, "w") as handle:
            handle.attrs["format"] = file_format
            handle.attrs["format_version"] = FORMAT_VERSION
            yield handle
        with open(temporary, "rb") as synced:
            os.fsync(synced.fileno())


@dataclass
class ShardDamage:
    """A shard that :func:`verify_cache` could not read, and why.

    Examples
    --------
    >>> ShardDamage(Path("shards/a.h5"), "codes hold NaN or infinity").reason
    'codes hold NaN or infinity'
    """

    path: Path
    reason: str


@dataclass
class FeatureSetInfo:
    """Summary of one feature set, as ``cnncodes cache ls`` and ``cnncodes cache info`` show it.

    Examples
    --------
    >>> info = FeatureSetInfo("3fa2", Path("cache/3fa2"), {"tap": "stage4"}, 6, 1, 4096, 80)
    >>> info.n_codes, info.n_features
    (6, 80)
    """

    fingerprint: str
    path: Path
    spec: dict[str, Any]
    n_codes: int  # unique keys
    n_shards: int
    n_bytes: int  # on disk, all shards
    n_features: int | None  # None while no shard exists


class FeatureSet:
    """Codes of one feature set: lookup by key, append in immutable shards.

    Use :meth:`CodeCache.feature_set` to get one.

    Parameters
    ----------
    root : Path
        The cache folder.
    spec : dict
        The feature-set spec (see :class:`cnncodes.featurespec.FeatureSetSpec`); its
        fingerprint names the folder.
    shard_size : int, default=512
        Rows per shard: what a crash can lose at most.

    Examples
    --------
    >>> import shutil, tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> fs = CodeCache(root).feature_set({"tap": "demo", "dtype": "float32"})
    >>> fs.add(["k1", "k2"], np.ones((2, 3), np.float32))
    >>> fs.contains(["k2", "k3"]).tolist(), fs.get(["k2"]).shape
    ([True, False], (1, 3))
    >>> shutil.rmtree(root)
    """

    def __init__(self, root: Path, spec: dict[str, Any], shard_size: int = 512) -> None:
        self.spec = spec
        self.fingerprint = spec_fingerprint(spec)
        self.path = root / self.fingerprint[:_FOLDER_DIGITS]
        self.shards_dir = self.path / "shards"
        self.shard_size = shard_size
        self._index: dict[bytes, tuple[Path, int]] = {}
        self._scanned: set[Path] = set()
        self._pending_keys: list[bytes] = []
        self._pending_codes: list[np.ndarray] = []

    # -- reading -------------------------------------------------------------
    def _shard_paths(self) -> list[Path]:
        if not self.shards_dir.is_dir():
            return []
        return sorted(p for p in self.shards_dir.glob("*.h5") if not p.name.startswith(TEMP_PREFIX))

    def refresh(self) -> None:
        """Index shards that appeared since the last look (other processes may write)."""
        current = self._shard_paths()
        gone = self._scanned - set(current)
        if gone:  # compaction replaced shards: rebuild the index
            self._index.clear()
            self._scanned.clear()
        for shard in current:
            if shard in self._scanned:
                continue
            try:
                with _reading(shard, SHARD_FORMAT) as handle:
                    keys = handle["keys"][:]
            except (OSError, KeyError, TypeError, AttributeError, CacheFormatError) as error:
                warnings.warn(f"{shard}: skipped unreadable shard ({error}); run 'cnncodes cache verify'", stacklevel=2)
                self._scanned.add(shard)
                continue
            for row, key in enumerate(keys):
                self._index.setdefault(bytes(key), (shard, row))
            self._scanned.add(shard)

    def contains(self, keys: Sequence[str]) -> np.ndarray:
        """Boolean mask: which keys have codes here (written shards and pending rows)."""
        self.refresh()
        pending = set(self._pending_keys)
        return np.array([k.encode() in self._index or k.encode() in pending for k in keys], dtype=bool)

    def get(self, keys: Sequence[str]) -> np.ndarray:
        """Codes for ``keys`` (all must be present), as float32 rows in the same order."""
        self.flush()
        self.refresh()
        by_shard: dict[Path, list[tuple[int, int]]] = {}
        for position, key in enumerate(keys):
            try:
                shard, row = self._index[key.encode()]
            except KeyError as error:
                message = f"{self.path}: no code for key {key}"
                raise CacheFormatError(message) from error
            by_shard.setdefault(shard, []).append((row, position))
        out: np.ndarray | None = None
        for shard, pairs in by_shard.items():
            rows = np.array([row for row, _ in pairs])
            positions = [position for _, position in pairs]
            try:
                with h5py.File(shard, "r") as handle:
                    dataset = handle["codes"]
                    if out is None:
                        out = np.empty((len(keys), dataset.shape[1]), np.float32)
                    if len(rows) * 4 >= dataset.shape[0]:  # most of the shard: one contiguous read
                        out[positions] = dataset[:][rows]
                    else:  # h5py wants increasing, unique indices
                        unique_rows, inverse = np.unique(rows, return_inverse=True)
                        out[positions] = dataset[unique_rows][inverse]
            except (OSError, KeyError, ValueError, TypeError, IndexError, AttributeError) as error:  # (fuzzed)
                raise CacheFormatError(f"{shard}: cannot read shard ({error})") from error
        if out is None:
            return np.empty((0, self.n_features or 0), np.float32)
        return out

    @property
    def n_features(self) -> int | None:
        """Code length, once any shard exists."""
        for shard in self._shard_paths():
            try:
                with h5py.File(shard, "r") as handle:
                    return int(handle["codes"].shape[1])
            except (OSError, KeyError):
                continue
        return None

    # -- writing -------------------------------------------------------------
    def _write_spec(self) -> None:
        spec_path = self.path / "spec.json"
        if spec_path.exists():
            return
        document = {"fingerprint": self.fingerprint, "format_version": FORMAT_VERSION, "spec": self.spec}
        write_text_atomic(spec_path, json.dumps(document, indent=2, sort_keys=True) + "\n")

    def add(self, keys: Sequence[str], codes: np.ndarray) -> None:
        """Queue codes; a shard is written each time ``shard_size`` rows are pending."""
        self._pending_keys.extend(k.encode() for k in keys)
        self._pending_codes.append(np.asarray(codes))
        if len(self._pending_keys) >= self.shard_size:
            self._write_pending(whole_shards_only=True)

    def flush(self) -> None:
        """Write every pending row, in shards of at most ``shard_size`` rows."""
        self._write_pending(whole_shards_only=False)

    def _write_pending(self, whole_shards_only: bool) -> None:
        if not self._pending_keys:
            return
        keys = np.array(self._pending_keys, dtype="S64")
        codes = np.concatenate(self._pending_codes)
        start = 0
        while len(keys) - start >= self.shard_size or (not whole_shards_only and start < len(keys)):
            stop = min(start + self.shard_size, len(keys))
            self._write_shard(keys[start:stop], codes[start:stop])
            start = stop
        self._pending_keys = [bytes(k) for k in keys[start:]]
        self._pending_codes = [codes[start:]] if start < len(keys) else []

    def _write_shard(self, keys: np.ndarray, codes: np.ndarray) -> Path:
        self._write_spec()
        dtype = np.float16 if self.spec.get("dtype") == "float16" else np.float32
        stamp = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{next(_shard_numbers):06d}"
        final = self.shards_dir / f"{stamp}-{uuid.uuid4().hex[:8]}.h5"
        with _writing(final, SHARD_FORMAT) as handle:
            handle.attrs["fingerprint"] = self.fingerprint
            handle.create_dataset("keys", data=keys)
            handle.create_dataset("codes", data=codes.astype(dtype))
        return final

    def compact(self) -> tuple[int, int]:
        """Merge every shard into one (duplicates dropped), atomically; return (shards before, codes)."""
        self.flush()
        shards = self._shard_paths()
        if len(shards) <= 1:
            return len(shards), len(self.keys())
        self._index.clear()
        self._scanned.clear()
        self.refresh()
        keys = sorted(self._index)
        codes = self.get([k.decode() for k in keys])
        self._write_shard(np.array(keys, dtype="S64"), codes)
        for shard in shards:
            shard.unlink(missing_ok=True)
        self._index.clear()
        self._scanned.clear()
        return len(shards), len(keys)

    def keys(self) -> list[str]:
        """Every key with a code here."""
        self.refresh()
        return [k.decode() for k in self._index]

    def verify(self) -> list[ShardDamage]:
        """Read every shard completely; return the damaged ones."""
        damage = []
        for shard in self._shard_paths():
            try:
                with _reading(shard, SHARD_FORMAT) as handle:
                    keys, codes = handle["keys"][:], handle["codes"][:]
                    if len(keys) != len(codes):
                        damage.append(ShardDamage(shard, f"{len(keys)} keys but {len(codes)} codes"))
                    elif not np.isfinite(codes).all():
                        damage.append(ShardDamage(shard, "codes hold NaN or infinity"))
            except (OSError, KeyError, CacheFormatError) as error:
                damage.append(ShardDamage(shard, str(error).splitlines()[0]))
        return damage

    def info(self) -> FeatureSetInfo:
        """Counts and sizes of this feature set."""
        shards = self._shard_paths()
        return FeatureSetInfo(
            self.fingerprint,
            self.path,
            self.spec,
            len(self.keys()),
            len(shards),
            sum(p.stat().st_size for p in shards),
            self.n_features,
        )


class CodeCache:
    """A cache folder holding one subfolder per feature set.

    Parameters
    ----------
    root : Path, str or None, default=None
        The folder; None means :func:`cnncodes.default_cache_dir`.
    shard_size : int, default=512
        Rows per shard: what a crash can lose at most.

    Examples
    --------
    >>> import shutil, tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> cache = CodeCache(root)
    >>> cache.feature_set({"tap": "demo"}).add(["k"], np.zeros((1, 2), np.float32))
    >>> cache.flush()
    >>> [fs.spec["tap"] for fs in CodeCache(root)]
    ['demo']
    >>> shutil.rmtree(root)
    """

    def __init__(self, root: Path | str | None = None, shard_size: int = 512) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()
        self.shard_size = shard_size
        self._open: dict[str, FeatureSet] = {}
        self.key_memo = FileKeyMemo(self.root / "file-keys.sqlite")

    def feature_set(self, spec: dict[str, Any]) -> FeatureSet:
        """The feature set of ``spec`` (created on first write)."""
        key = canonical_json(spec)
        if key not in self._open:
            self._open[key] = FeatureSet(self.root, spec, self.shard_size)
        return self._open[key]

    def flush(self) -> None:
        """Write every pending shard."""
        for feature_set in self._open.values():
            feature_set.flush()

    def __iter__(self) -> Iterator[FeatureSet]:
        if not self.root.is_dir():
            return
        for spec_path in sorted(self.root.glob("*/spec.json")):
            try:
                document = json.loads(spec_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            version = int(document.get("format_version", 0))
            if version > FORMAT_VERSION:
                raise CacheFormatError(newer_format_message(spec_path, "cache", version, FORMAT_VERSION))
            yield self.feature_set(document["spec"])

    def find(self, prefix: str) -> list[FeatureSet]:
        """Feature sets whose fingerprint starts with ``prefix`` (all of them for "")."""
        return [fs for fs in self if fs.fingerprint.startswith(prefix)]

    def remove(self, feature_set: FeatureSet) -> None:
        """Delete a feature set folder."""
        shutil.rmtree(feature_set.path, ignore_errors=True)
        self._open = {k: v for k, v in self._open.items() if v is not feature_set}


# -- codes files (the output of `cnncodes extract -o`) -------------------------------
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
    with _writing(path, CODES_FORMAT) as handle:
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
        with _reading(path, CODES_FORMAT) as handle:
            codes = handle["codes"]
            return CodesFile(
                codes=codes[:] if with_codes else np.empty((codes.shape[0], 0), np.float32),
                paths=_strings(handle["paths"]),
                keys=_strings(handle["keys"]),
                labels=handle["labels"][:] if "labels" in handle else None,
                class_names=_strings(handle["class_names"]) if "class_names" in handle else None,
                failures=[(a.decode(), b.decode()) for a, b in handle["failures"][:]] if "failures" in handle else [],
                spec=json.loads(handle.attrs.get("spec", "{}")),
            )
    except CacheFormatError:
        raise  # already one line naming the file
    except (OSError, KeyError, ValueError, TypeError) as error:  # h5py's errors for damage (fuzzed: test_fuzz.py)
        message = f"{path}: cannot read codes file ({error})"
        raise CacheFormatError(message) from error


# -- whole-cache operations (``cnncodes cache ...``) ------------------------------------
def _select(root: Path | str | None, prefix: str) -> list[FeatureSet]:
    return CodeCache(root).find(prefix)


def cache_info(root: Path | str | None = None, prefix: str = "") -> list[FeatureSetInfo]:
    """Summaries of the feature sets whose fingerprint starts with ``prefix``.

    Parameters
    ----------
    root : Path, str or None, default=None
        The cache folder; None: :func:`cnncodes.default_cache_dir`.
    prefix : str, default=""
        Start of the fingerprints to select; "" selects all.

    Returns
    -------
    list of FeatureSetInfo

    Raises
    ------
    CacheFormatError
        If a feature set was written by a newer cnncodes.

    Examples
    --------
    >>> import shutil, tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> CodeCache(root, shard_size=1).feature_set({"tap": "demo"}).add(["k"], np.zeros((1, 5), np.float32))
    >>> [(info.spec["tap"], info.n_codes, info.n_features) for info in cache_info(root)]
    [('demo', 1, 5)]
    >>> shutil.rmtree(root)
    """
    return [fs.info() for fs in _select(root, prefix)]


def verify_cache(root: Path | str | None = None, prefix: str = "") -> dict[str, list[ShardDamage]]:
    """Read every shard of the selected feature sets completely.

    Parameters
    ----------
    root : Path, str or None, default=None
        The cache folder; None: :func:`cnncodes.default_cache_dir`.
    prefix : str, default=""
        Start of the fingerprints to select; "" selects all.

    Returns
    -------
    dict of str to list of ShardDamage
        The damaged shards (none: an empty list) by fingerprint.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as root:
    ...     verify_cache(root)
    {}
    """
    return {fs.fingerprint: fs.verify() for fs in _select(root, prefix)}


def compact_cache(root: Path | str | None = None, prefix: str = "") -> dict[str, tuple[int, int]]:
    """Merge each selected feature set into one shard (duplicate keys dropped), atomically.

    Parameters
    ----------
    root : Path, str or None, default=None
        The cache folder; None: :func:`cnncodes.default_cache_dir`.
    prefix : str, default=""
        Start of the fingerprints to select; "" selects all.

    Returns
    -------
    dict of str to (int, int)
        (shards before, codes) by fingerprint.

    Examples
    --------
    >>> import shutil, tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> fs = CodeCache(root, shard_size=1).feature_set({"tap": "demo"})
    >>> fs.add(["a", "b", "a"], np.zeros((3, 2), np.float32))
    >>> list(compact_cache(root).values())
    [(3, 2)]
    >>> shutil.rmtree(root)
    """
    return {fs.fingerprint: fs.compact() for fs in _select(root, prefix)}


def remove_cache(root: Path | str | None = None, prefix: str = "") -> list[FeatureSetInfo]:
    """Delete the selected feature sets.

    Parameters
    ----------
    root : Path, str or None, default=None
        The cache folder; None: :func:`cnncodes.default_cache_dir`.
    prefix : str, default=""
        Start of the fingerprints to select; "" selects all.

    Returns
    -------
    list of FeatureSetInfo
        What was removed.

    Examples
    --------
    >>> import shutil, tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> CodeCache(root, shard_size=1).feature_set({"tap": "demo"}).add(["k"], np.zeros((1, 2), np.float32))
    >>> [info.spec["tap"] for info in remove_cache(root)], list(CodeCache(root))
    (['demo'], [])
    >>> shutil.rmtree(root)
    """
    cache = CodeCache(root)
    removed = []
    for fs in cache.find(prefix):
        removed.append(fs.info())
        cache.remove(fs)
    return removed


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
        If the file is not a codes file, or of a newer format version.

    Examples
    --------
    >>> import shutil, tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> path = write_codes_file(folder / "c.h5", CodesFile(np.zeros((5, 2), np.float32), list("abcde"), list("12345")))
    >>> [codes.shape for codes, labels in iter_codes_file(path, chunk_rows=2)]
    [(2, 2), (2, 2), (1, 2)]
    >>> shutil.rmtree(folder)
    """
    with _reading(Path(path), CODES_FORMAT) as handle:
        codes, labels = handle["codes"], handle["labels"] if "labels" in handle else None
        for start in range(0, codes.shape[0], chunk_rows):
            stop = min(start + chunk_rows, codes.shape[0])
            yield codes[start:stop].astype(np.float32), (labels[start:stop] if labels is not None else None)


def is_codes_file(path: Path | str) -> bool:
    """Whether ``path`` is an HDF5 file in the codes-file format.

    Parameters
    ----------
    path : Path or str
        Any file.

    Returns
    -------
    bool

    Examples
    --------
    >>> is_codes_file(__file__)
    False
    """
    try:
        with h5py.File(path, "r") as handle:
            return handle.attrs.get("format") in (CODES_FORMAT, CODES_FORMAT.encode())
    except (OSError, ValueError):
        return False
