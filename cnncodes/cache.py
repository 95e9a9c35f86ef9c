"""The content-addressed code cache: feature sets of immutable shards, found through a key index.

Cache layout (schema version 1)::

    <root>/<fingerprint[:20]>/spec.json        the feature-set spec, human-readable
    <root>/<fingerprint[:20]>/shards/*.h5      immutable shards: /keys (N,) S64, /codes (N, D)
    <root>/<fingerprint[:20]>/index.sqlite     key -> (shard, row); rebuilt from the shards when lost

A writer fills a ``.tmp-*`` file and renames it into place when complete
(:func:`cnncodes.fileio.atomic_path`), then indexes it, so readers never see half a file, a
crash loses only the shard in flight, and any number of processes can write into one feature
set. Duplicate keys across shards are harmless. The shards are the truth; the index
(:mod:`cnncodes.keyindex`) only says where each key is, so a lookup costs what the query
costs, not what the cache holds.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, TypeVar

import numpy as np

from .contentkeys import FileKeyMemo
from .errors import CacheFormatError, OutputError
from .fileio import TEMP_PREFIX, write_reason, write_refusal, write_text_atomic
from .fingerprint import spec_fingerprint
from .keyindex import INDEX_NAME, IndexUnavailable, KeyIndex, shard_names
from .shardfiles import (
    FORMAT_VERSION,
    SHARD_FORMAT,
    iter_rows,
    read_rows,
    remove_orphans,
    shard_damage,
    shard_datasets,
    shards_fingerprint,
    summarize,
    writing,
    new_file,
)
from .messages import newer_format_message
from .paths import default_cache_dir

__all__ = ["CodeCache", "FeatureSet", "FeatureSetInfo", "ShardDamage"]

_FOLDER_DIGITS = 20
_ROOM_MARGIN_BYTES = 1 << 20  # beyond the shards' own size, what a merge may need (HDF5 metadata, the seal)
_shard_numbers = itertools.count()  # orders one process's shards within a second
_T = TypeVar("_T")


class NotWrittenNotice:
    """Says once per cache that it is not being written (read-only, missing, full); later refusals stay quiet.

    The file-key memo, the key indexes and the shards of one cache share it, so a run into a
    cache it cannot write gives one warning, not one per part.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.said = False

    def covers(self, error: BaseException) -> bool:
        """Whether ``error`` came from the cache refusing writes (then said, once), found by trying a write."""
        if not self.said:
            refusal = write_refusal(self.root)
            if refusal is None:
                return False  # the folder takes files: ``error`` is that part's own problem
            self.say(refusal)
        return True

    def say(self, error: BaseException) -> None:
        """Warn that the cache is not being written, the first time only."""
        if not self.said:
            self.said = True
            message = f"{self.root}: the cache is not being written ({write_reason(error)})"
            warnings.warn(message, stacklevel=4)


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
    """Codes of one feature set: lookup by key through its key index, append in immutable shards.

    Use :meth:`CodeCache.feature_set` to get one.

    Parameters
    ----------
    root : Path
        The cache folder.
    spec : dict
        The feature-set spec (see :class:`cnncodes.featurespec.FeatureSetSpec`); its
        fingerprint names the folder. Empty for a folder whose ``spec.json`` is lost
        (``fingerprint`` then names it, and no spec is written).
    shard_size : int, default=512
        Rows per shard: what a crash can lose at most.
    fingerprint : str or None, default=None
        The fingerprint, when ``spec`` cannot give it.

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

    def __init__(
        self,
        root: Path,
        spec: dict[str, Any],
        shard_size: int = 512,
        *,
        fingerprint: str | None = None,
        not_written: NotWrittenNotice | None = None,
    ) -> None:
        self.not_written = not_written or NotWrittenNotice(root)
        self.spec = spec
        self.fingerprint = fingerprint or spec_fingerprint(spec)
        self.path = root / self.fingerprint[:_FOLDER_DIGITS]
        self.shards_dir = self.path / "shards"
        self.shard_size = shard_size
        self.index = KeyIndex(self.path / INDEX_NAME, self.shards_dir, summarize)
        self._scan_only = False  # the index proved unusable here: every lookup scans the shards
        self._pending_keys: list[bytes] = []
        self._unwritable = False  # set once a write failed: the run goes on without writing the cache
        self._pending_codes: list[np.ndarray] = []

    # -- reading -------------------------------------------------------------
    def _shard_paths(self) -> list[Path]:
        return [self.shards_dir / name for name in shard_names(self.shards_dir)]

    def _use_index(self, action: Callable[[KeyIndex], _T], sync: bool = True) -> _T | None:
        """``action(index)`` on the index brought up to date; None (after one warning) once it is unusable here."""
        if self._scan_only:
            return None
        try:
            if sync:
                for name, problem in self.index.sync().items():
                    self._warn_damaged(name, problem)
            return action(self.index)
        except IndexUnavailable as error:
            if not self.not_written.covers(error):  # a read-only cache gets its one warning instead
                warnings.warn(f"{error}; scanning the shards instead", stacklevel=3)
            self._scan_only = True
            return None

    def refresh(self) -> None:
        """Index the shards that appeared since the last look (other processes may write)."""
        self._use_index(lambda index: None)

    def _locate(self, keys: Sequence[str]) -> dict[str, tuple[str, int]]:
        """(shard name, row) of each key held; only the keys asked for are ever in memory."""
        found = self._use_index(lambda index: index.lookup(keys))
        return found if found is not None else self._scan(keys)

    def _scan(self, keys: Sequence[str]) -> dict[str, tuple[str, int]]:
        """What :meth:`_locate` does without an index: read the keys of every shard, one at a time."""
        wanted = np.unique(np.array([k.encode() for k in keys], dtype="S64"))
        found: dict[str, tuple[str, int]] = {}
        width = None
        for path in self._shard_paths():
            try:
                shard_keys, shard_width = summarize(path)
            except OSError:
                continue
            width = width or shard_width
            if shard_width == width:
                for row in np.flatnonzero(np.isin(shard_keys, wanted)):
                    found.setdefault(shard_keys[row].decode(), (path.name, int(row)))
        return found

    def contains(self, keys: Sequence[str]) -> np.ndarray:
        """Boolean mask: which keys have codes here (written shards and pending rows); opens no shard."""
        found = self._locate(keys)
        pending = set(self._pending_keys)
        return np.array([k in found or k.encode() in pending for k in keys], dtype=bool)

    def fetch(self, keys: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Codes of the ``keys`` held here, reading only the shards that hold them.

        A shard found damaged on reading (checksum, truncation, width) is never served: it is
        reported once and its keys count as absent, so they are computed again.

        Parameters
        ----------
        keys : sequence of str
            Keys to read.

        Returns
        -------
        found : ndarray of shape (n_keys,), bool
        codes : ndarray of shape (n_keys, n_features), float32
            Rows of absent keys are zeros.
        """
        self.flush()
        found = np.zeros(len(keys), bool)
        out: np.ndarray | None = None
        located = self._locate(keys)
        for _ in range(2):  # a second look after a concurrent compaction moved rows
            by_shard: dict[str, list[tuple[int, int]]] = {}
            for position, key in enumerate(keys):
                if not found[position] and key in located:
                    name, row = located[key]
                    by_shard.setdefault(name, []).append((row, position))
            moved = False
            for name, pairs in by_shard.items():
                positions = np.array([position for _, position in pairs])
                try:
                    stored, rows = read_rows(self.shards_dir / name, np.array([row for row, _ in pairs]))
                except FileNotFoundError:
                    moved = True
                    continue
                except IndexError:
                    stored, rows = np.empty(0, "S64"), np.empty((0, 0), np.float32)
                except OSError as error:
                    self._refuse(name, str(error).splitlines()[0])
                    continue
                if len(stored) != len(positions) or (stored != [keys[p].encode() for p in positions]).any():
                    self._out_of_step(name)  # the index names rows that do not hold these keys
                    continue
                if out is None:
                    out = np.zeros((len(keys), rows.shape[1]), np.float32)
                if rows.shape[1] != out.shape[1]:
                    self._refuse(name, f"{rows.shape[1]} features, but the feature set has {out.shape[1]}")
                    continue
                out[positions], found[positions] = rows, True
            if not moved:
                break
            located = self._locate([key for key, hit in zip(keys, found) if not hit])
        return found, out if out is not None else np.zeros((len(keys), self.n_features or 0), np.float32)

    def _warn_damaged(self, name: str, reason: str) -> None:
        warnings.warn(
            f"{self.shards_dir / name}: skipped damaged shard ({reason}); run 'cnncodes cache verify'", stacklevel=3
        )

    def _out_of_step(self, name: str) -> None:
        """Serve nothing the index says about shard ``name`` and have the index rebuilt from the shards."""
        warnings.warn(f"{self.index.path}: key index out of step with shard {name}; rebuilding it", stacklevel=3)
        self._use_index(lambda index: index.clear(), sync=False)

    def _refuse(self, name: str, reason: str) -> None:
        self._warn_damaged(name, reason)
        self._use_index(lambda index: index.refuse(name, reason), sync=False)

    def get(self, keys: Sequence[str]) -> np.ndarray:
        """Codes for ``keys`` (all must be present), as float32 rows in the same order."""
        found, codes = self.fetch(keys)
        if not found.all():
            message = f"{self.path}: no code for key {keys[int(np.argmin(found))]}"
            raise CacheFormatError(message)
        return codes

    @property
    def n_features(self) -> int | None:
        """Code length, once any shard exists."""
        width = self._use_index(lambda index: index.n_features)
        if width is not None or not self._scan_only:
            return width
        for path in self._shard_paths():
            with contextlib.suppress(OSError):
                return summarize(path)[1]
        return None

    # -- writing -------------------------------------------------------------
    def _write_spec(self) -> None:
        spec_path = self.path / "spec.json"
        if spec_path.exists() or not self.spec:  # a folder that lost its spec.json gets none made up
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
        if not self._pending_keys or self._unwritable:
            return
        keys = np.array(self._pending_keys, dtype="S64")
        codes = np.concatenate(self._pending_codes)
        start = 0
        while len(keys) - start >= self.shard_size or (not whole_shards_only and start < len(keys)):
            stop = min(start + self.shard_size, len(keys))
            try:
                self._write_shard(keys[start:stop], codes[start:stop])
            except OSError as error:  # read-only, full or missing: the run keeps its codes, the cache does not
                self.not_written.say(error)
                self._unwritable = True
                return
            start = stop
        self._pending_keys = [bytes(k) for k in keys[start:]]
        self._pending_codes = [codes[start:]] if start < len(keys) else []

    def _new_shard_path(self) -> Path:
        stamp = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{next(_shard_numbers):06d}"
        return self.shards_dir / f"{stamp}-{uuid.uuid4().hex[:8]}.h5"

    def _write_shard(self, keys: np.ndarray, codes: np.ndarray) -> Path:
        self._write_spec()
        dtype = np.float16 if self.spec.get("dtype") == "float16" else np.float32
        final = self._new_shard_path()
        with writing(final, SHARD_FORMAT, in_memory=True) as handle:  # a few MB: a full disk is a plain OSError
            handle.attrs["fingerprint"] = self.fingerprint
            shard_datasets(handle, keys.shape[0], codes.shape[1], dtype, keys, codes.astype(dtype))
        # Indexed after the rename, so the index never names a missing shard; if this fails, sync catches up.
        with contextlib.suppress(IndexUnavailable):
            self.index.add_shard(final.name, keys, codes.shape[1])
        return final

    def compact(self) -> tuple[int, int]:
        """Merge every healthy shard into one (duplicates and damaged rows dropped), atomically, in bounded memory.

        Shards that cannot be served (damaged, of a newer format version, of another width)
        are left in place for ``cnncodes cache verify`` to report.

        Returns
        -------
        (int, int)
            Healthy shards before, codes held after.
        """
        self.flush()
        remove_orphans(self.shards_dir)
        try:
            self.index.sync()
            shards = self.index.healthy_shards()
            if len(shards) <= 1:
                return len(shards), self.index.n_keys()
            return len(shards), self._merge(shards)
        except IndexUnavailable as error:
            message = f"{error}; compaction needs it"
            raise CacheFormatError(message) from error

    def _merge(self, shards: list[str]) -> int:
        self._check_room(shards)
        final = self._new_shard_path()
        temporary = self.shards_dir / f"{TEMP_PREFIX}compact-{uuid.uuid4().hex}.h5"
        try:
            merged = self._copy_rows(shards, temporary)
            keys = (chunk for chunk, _ in iter_rows(final, codes=False))  # read once renamed into place
            width = self.index.n_features or 0
            if merged and self.index.replace(merged, final.name, keys, width, lambda: os.replace(temporary, final)):
                for name in merged:
                    (self.shards_dir / name).unlink(missing_ok=True)
        finally:
            temporary.unlink(missing_ok=True)
        return self.index.n_keys()

    def _check_room(self, shards: list[str]) -> None:
        """Refuse to start a merge the disk cannot hold: a write failing inside it must not look like damage."""
        needed = sum(map(self._file_size, shards)) * 1.1 + _ROOM_MARGIN_BYTES
        free = shutil.disk_usage(self.shards_dir).free
        if free < needed:
            message = (
                f"{self.shards_dir}: not enough free space to compact ({free / 1e6:.1f} MB free, about "
                f"{needed / 1e6:.1f} MB needed); free some space, nothing was changed"
            )
            raise OutputError(message, "not enough free space")

    def _file_size(self, name: str) -> int:
        with contextlib.suppress(OSError):
            return (self.shards_dir / name).stat().st_size
        return 0

    def _copy_rows(self, shards: list[str], temporary: Path) -> list[str]:
        """Copy the rows the index serves from ``shards`` into ``temporary``, block by block; return those copied."""
        copied = []
        with new_file(temporary, SHARD_FORMAT) as out:
            out.attrs["fingerprint"] = self.fingerprint
            keys_out = codes_out = None
            for name in shards:
                try:
                    for keys, codes in self._served_rows(name):
                        if keys_out is None or codes_out is None:
                            keys_out, codes_out = shard_datasets(out, None, codes.shape[1], codes.dtype)
                        start = keys_out.shape[0]
                        keys_out.resize((start + len(keys),))
                        codes_out.resize((start + len(keys), codes.shape[1]))
                        keys_out[start:], codes_out[start:] = keys, codes
                except FileNotFoundError:  # another compaction took it
                    continue
                except OSError as error:  # rows copied before the damage stay valid; the shard stays for verify
                    self._refuse(name, str(error).splitlines()[0])
                    continue
                copied.append(name)
            if keys_out is None:  # nothing to keep: still a valid (empty) shard
                shard_datasets(out, None, self.index.n_features or 1, np.float32)
        return copied

    def _served_rows(self, name: str) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Blocks of the rows of shard ``name`` the index points at (first copy of a key), with finite codes."""
        start = 0
        for keys, codes in iter_rows(self.shards_dir / name):
            located = self.index.lookup([k.decode() for k in keys])
            rows = np.arange(start, start + len(keys))
            own = np.array([located.get(k.decode(), (name, row)) == (name, row) for k, row in zip(keys, rows)], bool)
            keep = own & np.isfinite(codes).all(axis=1)
            start += len(keys)
            yield keys[keep], codes[keep]

    def keys(self) -> list[str]:
        """Every key with a code here."""
        keys = self._use_index(lambda index: list(index.iter_keys()))
        if keys is not None:
            return keys
        every: set[str] = set()
        for path in self._shard_paths():
            with contextlib.suppress(OSError):
                every.update(k.decode() for k in summarize(path)[0])
        return sorted(every)

    def verify(self) -> list[ShardDamage]:
        """Read every shard completely (checksums included); return the damaged ones, which are then never served."""
        width = self.n_features
        damage = []
        for path in self._shard_paths():
            try:
                reason = shard_damage(path, width)
            except OSError as error:
                reason = str(error).splitlines()[0]
            if reason:
                damage.append(ShardDamage(path, reason))
                self._use_index(lambda index: index.refuse(path.name, reason), sync=False)
        return damage

    def info(self) -> FeatureSetInfo:
        """Counts and sizes of this feature set."""
        shards = self._shard_paths()
        n_codes = self._use_index(lambda index: index.n_keys())
        return FeatureSetInfo(
            self.fingerprint,
            self.path,
            self.spec,
            len(self.keys()) if n_codes is None else n_codes,
            len(shards),
            sum(p.stat().st_size for p in shards if p.exists()),
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
        self.not_written = NotWrittenNotice(self.root)
        self.key_memo = FileKeyMemo(self.root / "file-keys.sqlite", on_unwritable=self.not_written.covers)

    def feature_set(self, spec: dict[str, Any]) -> FeatureSet:
        """The feature set of ``spec`` (created on first write)."""
        return self._feature_set(spec, spec_fingerprint(spec))

    def _feature_set(self, spec: dict[str, Any], fingerprint: str) -> FeatureSet:
        if fingerprint not in self._open:
            self._open[fingerprint] = FeatureSet(
                self.root, spec, self.shard_size, fingerprint=fingerprint, not_written=self.not_written
            )
        return self._open[fingerprint]

    def flush(self) -> None:
        """Write every pending shard."""
        for feature_set in self._open.values():
            feature_set.flush()

    def __iter__(self) -> Iterator[FeatureSet]:
        if not self.root.is_dir():
            return
        for folder in sorted(p for p in self.root.iterdir() if len(p.name) == _FOLDER_DIGITS and p.is_dir()):
            spec_path = folder / "spec.json"
            try:
                document = json.loads(spec_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):  # lost or damaged: the shards still name the feature set
                if (folder / "shards").is_dir():
                    yield self._feature_set({}, shards_fingerprint(folder))
                continue
            version = int(document.get("format_version", 0))
            if version > FORMAT_VERSION:
                raise CacheFormatError(newer_format_message(spec_path, "cache", version, FORMAT_VERSION))
            yield self._feature_set(document["spec"], spec_fingerprint(document["spec"]))

    def find(self, prefix: str) -> list[FeatureSet]:
        """Feature sets whose fingerprint starts with ``prefix`` (all of them for "")."""
        return [fs for fs in self if fs.fingerprint.startswith(prefix)]

    def remove(self, feature_set: FeatureSet) -> None:
        """Delete a feature set folder."""
        shutil.rmtree(feature_set.path, ignore_errors=True)
        self._open = {k: v for k, v in self._open.items() if v is not feature_set}
